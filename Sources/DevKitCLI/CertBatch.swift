import DevKitBoardCLI
import DevKitModel
import DevKitSystem
import DiceRIoT
import Dispatch
import Foundation
import Synchronization

/// `devkit cert --batch`: many devices, one measured firmware.
///
/// Lines are taken in windows of a few hundred: each window is parsed and certified
/// on `jobs` threads, then handed in input order to a writer thread that prints it
/// while the next window is certified, so the output is byte-identical whatever
/// `jobs` is and at most two windows of results are held in memory.
struct CertBatch {
    let command: CertCommand
    let firmware: MeasuredFirmware
    /// Threads certifying at once (`--jobs`), at least 1.
    var jobs: Int = 1

    /// One line of the batch file.
    struct Entry: Decodable, Equatable {
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
                state.writer.finish()
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
        state.writer.finish()
        if state.failed > 0 { throw .batchIncomplete(failed: state.failed, total: state.total) }
        // Nothing to do is not an error, but an empty file is usually the wrong one.
        if state.total == 0 {
            printWarning("\(path == "-" ? "standard input" : escaped(path)) holds no devices (every line is blank): nothing was certified")
        }
    }

    private struct Line {
        let number: Int
        let text: ArraySlice<UInt8>
    }

    /// What carries over from one window to the next.
    private struct State {
        let path: String
        /// Registration ID → the line that first used it.
        var seen = SeenRegistrationIDs()
        var total = 0, failed = 0
        var warned = false
        /// Writes each window's standard output while the next window is certified.
        let writer = WindowWriter()
    }

    /// One certified line: its standard output, formatted on the worker thread.
    private struct Certified {
        var stdout: [UInt8]
        var warnings: [String]
    }

    /// Parses and certifies one window on `jobs` threads, then prints it in order.
    private func process(_ window: [Line], _ state: inout State) {
        guard !window.isEmpty else { return }
        // Parsing is independent per line; the duplicate check needs every earlier
        // line, so it runs in order between the two parallel steps.
        var parsed = parallelMap(window) { line -> Result<(UDS, RegistrationID), LineError> in
            Result { () throws(LineError) in try parse(line.text) }
        }
        for (i, line) in window.enumerated() {
            guard case .success(let (_, id)) = parsed[i] else { continue }
            if let first = state.seen.firstLine(of: id.value, recording: line.number) {
                parsed[i] = .failure(LineError("registration ID \(id.value) already appears on line \(first); each device needs its own ID"))
            }
        }
        // A few devices at a time: their keys' public points share one field
        // inversion (MeasuredFirmware.credentials of several devices), ~7 % of a
        // certificate; 16 devices (32 points) get nearly all of that saving.
        let groups = stride(from: 0, to: parsed.count, by: 16).map { $0..<min($0 + 16, parsed.count) }
        let certified = parallelMap(groups, perClaim: 1) { group -> [Result<Certified, LineError>] in
            let devices = group.compactMap { i -> (uds: UDS, registrationID: RegistrationID)? in try? parsed[i].get() }
            var credentials = firmware.credentials(devices).makeIterator()
            return group.map { i in
                switch parsed[i] {
                case .failure(let error): return .failure(error)
                case .success(let (_, id)):
                    do throws(CertError) {
                        return .success(format(try command.certify(credentials.next()!, id: id, sha256Thumbprint: command.json)))
                    } catch {
                        return .failure(LineError(error.userMessage))
                    }
                }
            }
        }.flatMap { $0 }
        var stdout: [UInt8] = []
        stdout.reserveCapacity(certified.reduce(0) { $0 + ((try? $1.get())?.stdout.count ?? 0) })
        for (i, line) in window.enumerated() {
            state.total += 1
            switch certified[i] {
            case .success(let result):
                for warning in result.warnings { printWarning("line \(line.number): \(warning)") }
                if !state.warned { printWarning(fixedNonceWarning); state.warned = true }
                stdout += result.stdout
            case .failure(let error):
                state.failed += 1
                printError("devkit: error: \(escaped(state.path)):\(line.number): \(error.message)")
                if command.json {
                    stdout += Array(try! JSONOutput.text(CertBatchLineFailure(error: error.message, line: line.number)).utf8)
                    stdout.append(0x0A)
                }
            }
        }
        state.writer.write(stdout)
    }

    /// What a certified line prints on standard output.
    private func format(_ result: CertResult) -> Certified {
        let stdout: [UInt8]
        if command.json {
            stdout = result.jsonLineBytes()
        } else if command.streamsOutput {
            stdout = Array(result.streamedPEM.utf8)
        } else {
            stdout = Array((escapedControlCharacters("\(result.registrationID)\t\(escaped(result.certificate ?? ""))\tSHA-1 \(result.sha1Thumbprint)") + "\n").utf8)
        }
        return Certified(stdout: stdout, warnings: result.warnings)
    }

    /// `transform` of every element, on `jobs` threads, results in input order.
    /// The threads take the next few elements from a shared counter rather than a
    /// fixed share each: on a loaded machine one thread is often descheduled, and with
    /// fixed shares the others then waited for it at the window's end (`--jobs 2`
    /// was no faster than `--jobs 1` while other builds ran).
    /// `perClaim`: the elements a thread takes at a time (8: a few certificates, so the
    /// counter is touched rarely and the tail stays short).
    private func parallelMap<T, R>(_ items: [T], perClaim chunk: Int = 8, _ transform: (T) -> R) -> [R] {
        let threads = min(jobs, items.count)
        if threads <= 1 { return items.map(transform) }
        let next = NextIndex()
        return [R](unsafeUninitializedCapacity: items.count) { buffer, count in
            let slots = UncheckedSendable(buffer.baseAddress!)
            withoutActuallyEscaping(transform) { transform in
                let work = UncheckedSendable(transform)
                items.withUnsafeBufferPointer { input in
                    let input = UncheckedSendable(input)
                    DispatchQueue.concurrentPerform(iterations: threads) { _ in
                        // Each index is taken, and its slot written, by exactly one thread.
                        while true {
                            let start = next.value.add(chunk, ordering: .relaxed).oldValue
                            guard start < input.value.count else { break }
                            for i in start..<min(start + chunk, input.value.count) {
                                (slots.value + i).initialize(to: work.value(input.value[i]))
                            }
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

    private func parse(_ line: ArraySlice<UInt8>) throws(LineError) -> (UDS, RegistrationID) {
        let entry: Entry
        if let plain = Entry(plainObject: line) {
            entry = plain
        } else {
            // Escapes, numbers, nesting, odd spacing: JSONDecoder (a decoder per line: it
            // makes no promise about concurrent use), for its rules and its refusals.
            do { entry = try JSONDecoder().decode(Entry.self, from: Data(line)) } catch {
                throw LineError(#"not a JSON object with "uds" and "registration_id" (or "mac" and "firmware_version")"#)
            }
        }
        let uds: UDS
        do { uds = try UDS(hex: entry.uds) } catch { throw LineError("\(error)") }
        do {
            switch (entry.registrationID, entry.mac, entry.firmwareVersion) {
            case (let id?, nil, nil):
                // A UDS pasted into the ID's column would become the certificate's CN,
                // a file name and output: the secret in clear everywhere.
                if (try? UDS(hex: id)) == uds {
                    throw LineError(#""registration_id" is the line's UDS (a shifted column?); it would be printed and enrolled"#)
                }
                return (uds, try RegistrationID(id))
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

extension CertBatch.Entry {
    /// The usual line without JSONDecoder: one object of string values, no escapes,
    /// no repeated key, spaces only between tokens. nil for anything else, which
    /// then goes to JSONDecoder, so both accept and refuse the same lines; unknown
    /// keys are skipped as the decoder skips them.
    init?(plainObject line: ArraySlice<UInt8>) {
        var fields: [String: String] = [:]
        var i = line.startIndex
        func skipSpaces() { while i < line.endIndex, line[i] == 0x20 || line[i] == 0x09 { i += 1 } }
        func take(_ byte: UInt8) -> Bool {
            skipSpaces()
            guard i < line.endIndex, line[i] == byte else { return false }
            i += 1
            return true
        }
        func string() -> String? {
            guard take(0x22) else { return nil }
            let start = i
            while i < line.endIndex, line[i] != 0x22 {
                // An escape or a control character: the decoder's business.
                if line[i] == 0x5C || line[i] < 0x20 { return nil }
                i += 1
            }
            guard i < line.endIndex else { return nil }
            defer { i += 1 }
            return String(validating: line[start..<i], as: UTF8.self)
        }
        guard take(0x7B) else { return nil }
        if !take(0x7D) {
            repeat {
                guard let key = string(), take(0x3A), let value = string(), fields.updateValue(value, forKey: key) == nil else {
                    return nil
                }
            } while take(0x2C)
            guard take(0x7D) else { return nil }
        }
        skipSpaces()
        guard i == line.endIndex, let uds = fields["uds"] else { return nil }
        self.init(
            uds: uds, registrationID: fields["registration_id"], mac: fields["mac"], firmwareVersion: fields["firmware_version"])
    }
}

/// Writes a batch's standard output on its own thread, one window at a time and in
/// order, so that the threads certifying the next window do not wait for the pipe
/// or the terminal. At most one window waits to be written (bounded memory).
private final class WindowWriter: @unchecked Sendable {
    private let queue = DispatchQueue(label: "devkit.cert-batch.stdout")
    private let room = DispatchSemaphore(value: 1)
    private var flushed = false

    /// Queues `bytes`; blocks while the previous window is still being written.
    func write(_ bytes: [UInt8]) {
        if !flushed { fflush(nil); flushed = true }  // anything print()ed before goes first (`stdout` is not concurrency-safe to name)
        guard !bytes.isEmpty else { return }
        room.wait()
        queue.async { [room] in
            writeAll(STDOUT_FILENO, bytes)
            room.signal()
        }
    }

    /// Returns once everything queued is written.
    func finish() { queue.sync {} }
}

/// The next unclaimed index of a window, shared by its threads.
private final class NextIndex: Sendable {
    let value = Atomic<Int>(0)
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
