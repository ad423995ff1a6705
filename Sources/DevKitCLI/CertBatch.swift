import DevKitModel
import DevKitSystem
import DiceRIoT
import Dispatch
import Foundation

/// `devkit cert --batch`: many devices, one measured firmware.
///
/// Lines are taken in windows of a few hundred: each window is parsed and certified
/// on `jobs` threads, then printed in input order before the next window starts, so
/// the output is byte-identical whatever `jobs` is and only one window of results is
/// ever held in memory.
struct CertBatch {
    let command: CertCommand
    let firmware: MeasuredFirmware
    /// Threads certifying at once (`--jobs`), at least 1.
    var jobs: Int = 1

    /// One line of the batch file.
    private struct Entry: Decodable {
        var uds: String
        var registrationID: String?
        var mac: String?
        var firmwareVersion: String?

        enum CodingKeys: String, CodingKey {
            case uds, registrationID = "registration_id", mac, firmwareVersion = "firmware_version"
        }
    }

    /// Certifies every line; a failing line is reported with its number and the
    /// others go on. Throws `.batchIncomplete` when any failed.
    func run(path: String) throws(CertError) {
        let lines: InputLines
        do { lines = try InputLines(path, lineLimit: .certBatchLine) } catch {
            throw .unreadable(path: path, reason: error.reason)
        }
        var state = State(path: path)
        // Enough lines per window that the threads rarely wait for each other at its
        // end (a certificate is ~0.1 ms), few enough that a window's results are small.
        let windowSize = 256 * max(jobs, 1)
        var window: [Line] = []
        window.reserveCapacity(windowSize)
        var lineNumber = 0
        while true {
            let next: ArraySlice<UInt8>?
            do { next = try lines.next() } catch {
                // What was read is certified and printed; the rest of the file is not.
                process(window, &state)
                throw .unreadable(path: path, reason: "line \(lineNumber + 1): \(error.reason)")
            }
            guard var line = next else { break }
            lineNumber += 1
            if line.last == 0x0D { line = line.dropLast() }
            if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) { continue }
            window.append(Line(number: lineNumber, text: line))
            if window.count == windowSize {
                process(window, &state)
                window.removeAll(keepingCapacity: true)
            }
        }
        process(window, &state)
        if state.failed > 0 { throw .batchIncomplete(failed: state.failed, total: state.total) }
    }

    private struct Line {
        let number: Int
        let text: ArraySlice<UInt8>
    }

    /// What carries over from one window to the next.
    private struct State {
        let path: String
        /// Registration ID → the line that first used it.
        var seen: [String: Int] = [:]
        var total = 0, failed = 0
        var warned = false
    }

    /// Parses and certifies one window on `jobs` threads, then prints it in order.
    private func process(_ window: [Line], _ state: inout State) {
        guard !window.isEmpty else { return }
        // Parsing is independent per line; the duplicate check needs every earlier
        // line, so it runs in order between the two parallel steps.
        var parsed = parallelMap(window) { line -> Result<(UDS, RegistrationID), LineError> in
            // A decoder per line: JSONDecoder makes no promise about concurrent use.
            Result { () throws(LineError) in try parse(line.text, decoder: JSONDecoder()) }
        }
        for (i, line) in window.enumerated() {
            guard case .success(let (_, id)) = parsed[i] else { continue }
            if let first = state.seen[id.value] {
                parsed[i] = .failure(LineError("registration ID \(id.value) already appears on line \(first); each device needs its own ID"))
            } else {
                state.seen[id.value] = line.number
            }
        }
        let certified = parallelMap(parsed) { (outcome: Result<(UDS, RegistrationID), LineError>) -> Result<CertResult, LineError> in
            switch outcome {
            case .failure(let error): return .failure(error)
            case .success(let (uds, id)):
                do throws(CertError) { return .success(try command.certify(firmware: firmware, uds: uds, id: id)) } catch {
                    return .failure(LineError(error.userMessage))
                }
            }
        }
        for (i, line) in window.enumerated() {
            state.total += 1
            switch certified[i] {
            case .success(let result):
                for warning in result.warnings { printWarning("line \(line.number): \(warning)") }
                if !state.warned { printWarning(fixedNonceWarning); state.warned = true }
                if command.json {
                    print(result.jsonLine())
                } else if command.streamsOutput {
                    print(result.certificatePEM ?? "", terminator: "")
                } else {
                    printOutput("\(result.registrationID)\t\(escaped(result.certificate ?? ""))\tSHA-1 \(result.sha1Thumbprint)")
                }
            case .failure(let error):
                state.failed += 1
                printError("devkit: error: \(escaped(state.path)):\(line.number): \(error.message)")
                if command.json {
                    print(try! JSONOutput.text(CertBatchLineFailure(error: error.message, line: line.number)))
                }
            }
        }
    }

    /// `transform` of every element, on `jobs` threads, results in input order.
    /// Each thread takes every `jobs`-th element: certificates cost the same, so the
    /// threads finish together without a shared queue.
    private func parallelMap<T, R>(_ items: [T], _ transform: (T) -> R) -> [R] {
        let threads = min(jobs, items.count)
        if threads <= 1 { return items.map(transform) }
        return [R](unsafeUninitializedCapacity: items.count) { buffer, count in
            let slots = UncheckedSendable(buffer.baseAddress!)
            withoutActuallyEscaping(transform) { transform in
                let work = UncheckedSendable(transform)
                items.withUnsafeBufferPointer { input in
                    let input = UncheckedSendable(input)
                    DispatchQueue.concurrentPerform(iterations: threads) { thread in
                        // Each index is written by exactly one thread.
                        for i in stride(from: thread, to: input.value.count, by: threads) {
                            (slots.value + i).initialize(to: work.value(input.value[i]))
                        }
                    }
                }
            }
            count = items.count
        }
    }

    private struct LineError: Error {
        let message: String
        init(_ message: String) { self.message = message }
    }

    private func parse(_ line: ArraySlice<UInt8>, decoder: JSONDecoder) throws(LineError) -> (UDS, RegistrationID) {
        let entry: Entry
        do { entry = try decoder.decode(Entry.self, from: Data(line)) } catch {
            throw LineError(#"not a JSON object with "uds" and "registration_id" (or "mac" and "firmware_version")"#)
        }
        let uds: UDS
        do { uds = try UDS(hex: entry.uds) } catch { throw LineError("\(error)") }
        do {
            switch (entry.registrationID, entry.mac, entry.firmwareVersion) {
            case (let id?, nil, nil): return (uds, try RegistrationID(id))
            case (nil, let mac?, let version?):
                return (uds, try RegistrationID(mac: try MACAddress(mac), firmwareVersion: try FirmwareVersion(version)))
            default:
                throw LineError(#"give either "registration_id", or "mac" with "firmware_version""#)
            }
        } catch let error as LineError {
            throw error
        } catch {
            throw LineError("\(error)")
        }
    }
}

/// A value handed to the batch's worker threads, which each touch disjoint parts of
/// it (the caller guarantees it; the compiler cannot see it).
private struct UncheckedSendable<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}

/// The JSON line for a batch line that failed: `{"error":"…","line":N}`.
struct CertBatchLineFailure: Encodable {
    let error: String
    let line: Int
}
