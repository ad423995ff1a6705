import DevKitModel
import Foundation
import Testing

@testable import DevKitRegistry

#if canImport(Glibc)
import Glibc
#endif

/// Kill -9 of a process in the middle of writing must leave only consistent rows.
///
/// The child is this test binary again, running `crashChild` (which does nothing
/// unless `DEVKIT_REGISTRY_CRASH_CHILD` names a database). It provisions boards in
/// a tight loop and reports each committed write on stderr; the parent kills it
/// with SIGKILL after a number of writes, i.e. at an arbitrary point of a
/// transaction, then checks every row.
@Suite(.serialized) struct CrashSafetyTests {
    static let childEnv = "DEVKIT_REGISTRY_CRASH_CHILD"

    /// The child's body, run by the test below in a process of its own; skipped (not
    /// passed) in a normal run. Runs until killed.
    @Test(.enabled(if: ProcessInfo.processInfo.environment[childEnv] != nil, "the crash test's child process"))
    func crashChild() throws {
        let dbPath = try #require(ProcessInfo.processInfo.environment[Self.childEnv])
        let registry = try Registry(path: dbPath)
        var n = 0
        while true {
            let uds = try UDS(hex: String(format: "%064x", n))
            let id = try registry.recordNewBoard(uds: uds).id!
            report("committed \(id) uds_recorded")
            for step in ProvisioningStep.allCases.dropFirst() {
                let update = step == .macRead
                    ? BoardUpdate(mac: try MACAddress(String(format: "%012x", n)), registrationID: try RegistrationID("board-\(n)"))
                    : BoardUpdate()
                try registry.markStep(step, boardID: id, update: update)
                report("committed \(id) \(step.rawValue)")
            }
            n += 1
        }
    }

    private func report(_ line: String) {
        let bytes = Array((line + "\n").utf8)
        _ = bytes.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
    }

    @Test(.timeLimit(.minutes(5)), arguments: [1, 9, 30, 77])
    func killMidWriteLeavesConsistentRows(afterWrites: Int) throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let dbPath = tmp.file("registry.sqlite")

        let child = Process()
        child.executableURL = URL(fileURLWithPath: CommandLine.arguments[0])
        child.arguments = ["--testing-library", "swift-testing", "--filter", "crashChild"]
        var env = ProcessInfo.processInfo.environment
        env[Self.childEnv] = dbPath
        child.environment = env
        let errPipe = Pipe()
        child.standardError = errPipe
        child.standardOutput = FileHandle.nullDevice
        child.standardInput = FileHandle.nullDevice
        try child.run()
        // Bound the test even if the child never reports: kill it after 30 s.
        let watchdog = DispatchWorkItem { kill(child.processIdentifier, SIGKILL) }
        DispatchQueue.global().asyncAfter(deadline: .now() + 30, execute: watchdog)
        defer {
            watchdog.cancel()
            kill(child.processIdentifier, SIGKILL)
            child.waitUntilExit()
        }

        // Read the child's reports until enough writes are committed, then kill -9.
        var committed: [(id: Int64, step: ProvisioningStep)] = []
        var buffer = Data()
        let reader = errPipe.fileHandleForReading
        while committed.count < afterWrites {
            let chunk = reader.availableData
            if chunk.isEmpty { break }  // child exited
            buffer.append(chunk)
            while let nl = buffer.firstIndex(of: 0x0A) {
                let line = String(decoding: buffer[buffer.startIndex..<nl], as: UTF8.self)
                buffer.removeSubrange(buffer.startIndex...nl)
                let parts = line.split(separator: " ")
                if parts.count == 3, parts[0] == "committed", let id = Int64(parts[1]),
                    let step = ProvisioningStep(rawValue: String(parts[2]))
                {
                    committed.append((id, step))
                }
            }
        }
        kill(child.processIdentifier, SIGKILL)
        child.waitUntilExit()
        #expect(child.terminationReason == .uncaughtSignal)
        try #require(committed.count >= afterWrites, "child stopped early")

        let registry = try Registry(path: dbPath)
        let boards = try registry.allBoards()
        // Every write the child saw committed is in the database.
        for (id, step) in committed {
            let board = try #require(boards.first { $0.id == id })
            #expect(board.completedAt(step) != nil, "board \(id) lost \(step)")
        }
        // Every row is consistent: a UDS, steps done as a prefix of the workflow,
        // a state that matches, the MAC with the step that set it.
        for board in boards {
            #expect(board.uds.hexString.utf8.count == 64)
            let done = board.completedSteps
            #expect(done == Array(ProvisioningStep.allCases.prefix(done.count)))
            #expect(done.first == .udsRecorded)
            #expect(board.state == (done.count == ProvisioningStep.allCases.count ? .done : .inProgress))
            #expect((board.mac != nil) == (board.macReadAt != nil))
        }
        // A board that was cut off can be found and finished.
        if let unfinished = try registry.unfinishedBoards().last, let next = unfinished.nextStep {
            let finished = try ProvisioningStep.allCases.filter { $0 >= next }.reduce(unfinished) {
                _, step in try registry.markStep(step, boardID: unfinished.id!)
            }
            #expect(finished.state == .done)
        }
    }
}
