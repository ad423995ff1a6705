import DevKitBoardCLI
import DevKitModel
import DevKitSystem
import DiceRIoT
import Dispatch
import Foundation
import Synchronization
import SystemPackage

/// `devkit cert --batch`: many devices, one measured firmware.
///
/// `jobs` threads each take the next group of lines (read, parsed and checked for a
/// repeated registration ID in input order, under one lock), certify the group, and
/// hand it back; groups are printed in input order by whichever thread finishes the
/// next one to print. So the output is byte-identical whatever `jobs` is, and no
/// thread waits for the others at a window's end: the previous design (windows of
/// 512 lines, parsed then certified in two parallel steps, printed by a writer
/// thread) left a core idle at each window's two barriers and ran the duplicate
/// check and the output's assembly on one thread (`--jobs 2` gave 1.84× on 50,000
/// devices where the start-up's share allows ~1.97×; now 1.94×). At most 16 groups
/// per thread are taken and not yet printed (a slow reader of stdout holds the
/// threads back, not the memory).
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

    /// Lines per group: their keys' public points share one field inversion
    /// (MeasuredFirmware.credentials of several devices), ~7 % of a certificate, and
    /// 16 devices (32 points) get nearly all of that saving; a group is also what a
    /// thread takes at once, ~0.5 ms of work.
    static let groupSize = 16

    /// Groups each thread may have taken and not yet printed: enough that a thread
    /// rarely waits for the printer, few enough to bound memory (512 lines of JSON
    /// output, under 1 MB, at --jobs 2).
    static let groupsPerThread = 16

    /// Certifies every line; a failing line is reported with its number and the
    /// others go on. Throws `.batchIncomplete` when any failed.
    func run(path: String) throws(CertError) {
        let lines: InputLines
        do { lines = try InputLines(path, lineLimit: .certBatchLine) } catch {
            throw .unreadable(path: path, reason: error.reason)
        }
        fflush(nil)  // anything print()ed before goes first: the threads write to the descriptor
        let threads = max(jobs, 1)
        let run = BatchRun(lines: lines, groupsInFlight: Self.groupsPerThread * threads)
        // Each thread loops until the input is read: a share is not fixed in advance,
        // so a thread that the machine's other work slows down just takes fewer groups.
        // The threads share `self` (read only) and `run` (through its locks).
        let shared = UncheckedSendable((self, run))
        runOnThreads(threads) { _ in shared.value.0.work(shared.value.1, path: path) }
        let outputFailure = run.outputFailure.load(ordering: .relaxed)
        if outputFailure != 0 { exitStandardOutputFailed(outputFailure) }
        if let (line, error) = run.readFailure {
            // What was read is certified and printed; the rest of the file is not.
            throw .unreadable(path: path, reason: "line \(line): \(error.reason)")
        }
        if run.failed > 0 { throw .batchIncomplete(failed: run.failed, total: run.total) }
        // Nothing to do is not an error, but an empty file is usually the wrong one.
        if run.total == 0 {
            printWarning("\(path == "-" ? "standard input" : escaped(path)) holds no devices (every line is blank): nothing was certified")
        }
    }

    /// A line read, parsed and checked, or why it cannot be certified.
    fileprivate typealias Parsed = (line: Int, device: Result<(UDS, RegistrationID), LineError>)
    /// A line certified (what it prints on stdout, formatted on the worker thread), or why not.
    fileprivate typealias Outcome = (line: Int, result: Result<Certified, LineError>)

    /// One certified line's output.
    fileprivate struct Certified {
        var stdout: [UInt8]
        var warnings: [String]
    }

    /// One thread's loop: the next group, certified, handed back to be printed.
    private func work(_ run: BatchRun, path: String) {
        while let (index, group) = run.nextGroup(parse: parse) {
            let outcomes = certify(group)
            run.finish(index, outcomes) { printGroup($0, run, path: path) }
        }
    }

    /// Certifies a group's parsed lines; their public keys are computed together.
    private func certify(_ group: [Parsed]) -> [Outcome] {
        let devices = group.compactMap { line -> (uds: UDS, registrationID: RegistrationID)? in try? line.device.get() }
        var credentials = firmware.credentials(devices).makeIterator()
        return group.map { line in
            switch line.device {
            case .failure(let error): return (line.line, .failure(error))
            case .success(let (_, id)):
                do throws(CertError) {
                    return (line.line, .success(format(try command.certify(credentials.next()!, id: id, sha256Thumbprint: command.json))))
                } catch {
                    return (line.line, .failure(LineError(error.userMessage)))
                }
            }
        }
    }

    /// Prints a group: its warnings and errors on stderr, its lines on stdout. Runs
    /// on one thread at a time, groups in input order (`BatchRun.finish`).
    private func printGroup(_ outcomes: [Outcome], _ run: BatchRun, path: String) {
        var stdout: [UInt8] = []
        stdout.reserveCapacity(outcomes.reduce(0) { $0 + ((try? $1.result.get())?.stdout.count ?? 0) })
        for (line, result) in outcomes {
            run.total += 1
            switch result {
            case .success(let result):
                for warning in result.warnings { printWarning("line \(line): \(warning)") }
                if !run.warned { printWarning(fixedNonceWarning); run.warned = true }
                stdout += result.stdout
            case .failure(let error):
                run.failed += 1
                printError("devkit: error: \(escaped(path)):\(line): \(error.message)")
                if command.json {
                    stdout += Array(try! JSONOutput.text(CertBatchLineFailure(error: error.message, line: line)).utf8)
                    stdout.append(0x0A)
                }
            }
        }
        // A lost write is not ignored: the batch stops taking lines and exits 74.
        guard !stdout.isEmpty, run.outputFailure.load(ordering: .relaxed) == 0 else { return }
        do throws(Errno) { try FileDescriptor(rawValue: STDOUT_FILENO).writeAll(bytes: stdout) } catch {
            run.outputFailure.store(error.rawValue == 0 ? EIO : error.rawValue, ordering: .relaxed)
        }
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

    fileprivate struct LineError: Error {
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

/// What a batch's threads share: the input and its duplicate check (read in order
/// under `readLock`), the groups certified and not yet printed (under `printLock`),
/// and the counts the printing thread keeps.
private final class BatchRun: @unchecked Sendable {
    private let readLock = NSLock()
    private let lines: InputLines
    private var lineNumber = 0
    private var groupsTaken = 0
    private var exhausted = false
    private var seen = SeenRegistrationIDs()
    /// The line that could not be read, and why; nothing after it is read.
    private(set) var readFailure: (line: Int, error: InputFileError)?

    private let printLock = NSLock()
    private var finished: [Int: [CertBatch.Outcome]] = [:]
    private var nextToPrint = 0
    private var printing = false
    /// Free places for groups taken and not yet printed.
    private let room: DispatchSemaphore

    /// Kept by the printing thread only (one at a time, handed over under `printLock`).
    var total = 0, failed = 0, warned = false
    /// The errno of a failed write to standard output (0: none): no group is taken after it.
    let outputFailure = Atomic<Int32>(0)

    init(lines: InputLines, groupsInFlight: Int) {
        self.lines = lines
        room = DispatchSemaphore(value: groupsInFlight)
    }

    /// The next group of up to `CertBatch.groupSize` lines that are not blank, each
    /// parsed and checked against every earlier line's ID, with its index in input
    /// order; nil once the input is read (or could not be). Parsing is done under the
    /// lock too (~1 µs a line against ~35 µs to certify it): the duplicate check needs
    /// the lines in order, and this keeps it simple.
    func nextGroup(parse: (ArraySlice<UInt8>) throws(CertBatch.LineError) -> (UDS, RegistrationID)) -> (Int, [CertBatch.Parsed])? {
        room.wait()
        guard outputFailure.load(ordering: .relaxed) == 0 else {
            room.signal()
            return nil
        }
        readLock.lock()
        var group: [CertBatch.Parsed] = []
        group.reserveCapacity(CertBatch.groupSize)
        while !exhausted && group.count < CertBatch.groupSize {
            let next: ArraySlice<UInt8>?
            do { next = try lines.next() } catch {
                readFailure = (lineNumber + 1, error)
                exhausted = true
                break
            }
            guard var line = next else { exhausted = true; break }
            lineNumber += 1
            if line.last == 0x0D { line = line.dropLast() }
            if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) { continue }
            var device = Result { () throws(CertBatch.LineError) in try parse(line) }
            if case .success(let (_, id)) = device, let first = seen.firstLine(of: id.value, recording: lineNumber) {
                device = .failure(CertBatch.LineError("registration ID \(id.value) already appears on line \(first); each device needs its own ID"))
            }
            group.append((lineNumber, device))
        }
        let index = groupsTaken
        if !group.isEmpty { groupsTaken += 1 }
        readLock.unlock()
        if group.isEmpty {
            room.signal()
            return nil
        }
        return (index, group)
    }

    /// Hands back group `index`; prints it, and every group after it already
    /// handed back, if it is the next to print and no other thread is printing.
    /// The thread printing re-checks under the lock before it stops, so a group
    /// handed back meanwhile is never left behind.
    func finish(_ index: Int, _ outcomes: [CertBatch.Outcome], print: ([CertBatch.Outcome]) -> Void) {
        printLock.lock()
        finished[index] = outcomes
        guard !printing else { printLock.unlock(); return }
        printing = true
        while let group = finished.removeValue(forKey: nextToPrint) {
            nextToPrint += 1
            printLock.unlock()
            print(group)
            room.signal()
            printLock.lock()
        }
        printing = false
        printLock.unlock()
    }
}

/// What the batch's threads share (see `run`): the compiler cannot see that they
/// only read the command and the firmware and reach `BatchRun` through its locks.
private struct UncheckedSendable<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}

/// The JSON line for a batch line that failed: `{"error":"…","line":N}`.
struct CertBatchLineFailure: Encodable {
    let error: String
    let line: Int
}
