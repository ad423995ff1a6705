import DevKitRegistry
import DevKitTestSupport
import Foundation
import Testing
import VirtualDevKit

#if canImport(Glibc)
import Glibc
#endif

/// Stopping `watch` while a board is being verified (issue 14 review): the
/// verification follows the board's log for up to its timeout, and systemd kills
/// a unit that takes longer than 90 s to stop.
@Suite struct WatchStopTests {
    /// `watch --port` with [verify] on a board that never registers (no DPS, nobody
    /// resets it): SIGTERM mid-verification ends it at once, not at the 120 s
    /// timeout; the board's line and JSON result say it was stopped (not a failed
    /// verification), its row stays provisioned without an outcome, and watch dies
    /// of SIGTERM as a one-shot command does.
    /// Checks `done` every 100 ms while `watch` runs, for at most 120 s.
    static func poll(while watch: BackgroundDevkit, _ done: () -> Bool) -> Bool {
        let deadline = ContinuousClock.now + .seconds(120)
        while watch.process.isRunning, ContinuousClock.now < deadline {
            blockingSleep(milliseconds: 100)
            if done() { return true }
        }
        return false
    }

    @Test func sigtermDuringVerificationStopsWatchPromptly() async throws {
        let dir = registryTestDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "[firmware]\nelf = \"\(WatchCommandTests.elf)\"\n[uds]\npolicy = \"generate\"\n[verify]\ntimeout = 120\n"
            .write(toFile: dir + "/p.toml", atomically: false, encoding: .utf8)
        let kit = try startedKit()
        defer { kit.stop() }
        let db = dir + "/r.sqlite"
        let watch = try BackgroundDevkit(
            ["watch", "--profile", dir + "/p.toml", "--registry", db, "--port", kit.devicePath, "--json"])
        // Provisioned (its row done), then the port open again: verify's.
        let provisioned = Self.poll(while: watch) {
            FileManager.default.fileExists(atPath: db)
                && (try? Registry(path: db, readOnly: true).allBoards().first?.state) == .done && watch.hasOpen(kit.devicePath)
        }
        try #require(provisioned, "\(watch.process.isRunning)")
        blockingSleep(milliseconds: 2000)  // into the following of the board's log
        #expect(watch.process.isRunning)
        let signalled = ContinuousClock.now
        #expect(kill(watch.process.processIdentifier, SIGTERM) == 0)
        let status = watch.wait(timeout: .seconds(100))
        // Well before the verify timeout (120 s), however loaded the machine.
        #expect(ContinuousClock.now - signalled < .seconds(30))
        #expect(status == SIGTERM && watch.process.terminationReason == .uncaughtSignal, "\(String(describing: status))")

        let out = String(decoding: watch.stdout.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let err = String(decoding: watch.stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(err.contains("stopped by SIGTERM"), "\(err)")
        let events = out.split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
        let line = try #require(events.last { $0["event"] as? String == "board" }, "\(out)")
        #expect(line["status"] as? String == "not_verified", "\(out)")
        #expect((line["message"] as? String)?.contains("not verified: stopped by SIGTERM") == true, "\(out)")
        let result = try #require(events.first { $0["event"] as? String == "result" }, "\(out)")
        let verification = try #require(result["verification"] as? [String: Any], "\(out)")
        #expect(verification["outcome"] as? String == "stopped" && verification["error"] is String, "\(out)")
        // The same wording as the board's line (one home), naming the port.
        #expect((verification["diagnosis"] as? String)?.contains(
            "not verified: stopped by SIGTERM; `devkit verify --port \(kit.devicePath)` verifies it") == true, "\(out)")
        let row = try #require(try Registry(path: db).allBoards().first)
        #expect(row.state == .done && row.verification == nil && row.error == nil)
    }

    /// `watch --port` on a board paused in the middle of storing its UDS (its
    /// secure-element writes take a minute; the reply would time out after 10 s):
    /// a first SIGINT lets provisioning go on, a second (Ctrl-C twice) cancels the
    /// port at once, so the board fails as stopped rather than on the timeout, its
    /// row says so (`--resume` finishes it), and watch dies of SIGINT (130 in a shell).
    /// `quickDoubleTap`: the second comes 0.3 s after the first, as a person's double
    /// Ctrl-C does; otherwise a copy of the first 50 ms after it (a wrapper forwarding
    /// it) is ignored, and a third, a second later, is the second stop.
    @Test(arguments: [false, true])
    func aSecondSIGINTEndsProvisioningInProgress(quickDoubleTap: Bool) async throws {
        let dir = registryTestDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "[firmware]\nelf = \"\(WatchCommandTests.elf)\"\n[uds]\npolicy = \"generate\"\n"
            .write(toFile: dir + "/p.toml", atomically: false, encoding: .utf8)
        let kit = try startedKit(VirtualDevKitConfiguration(faults: .init(secureElementWriteDelay: .seconds(60))))
        defer { kit.stop() }
        let db = dir + "/r.sqlite"
        let watch = try BackgroundDevkit(
            ["watch", "--profile", dir + "/p.toml", "--registry", db, "--port", kit.devicePath, "--json"])
        // The UDS is recorded just before it is sent: then the board pauses.
        let recorded = Self.poll(while: watch) {
            FileManager.default.fileExists(atPath: db) && (try? Registry(path: db, readOnly: true).allBoards().first) != nil
        }
        try #require(recorded, "\(watch.process.isRunning)")
        #expect(kill(watch.process.processIdentifier, SIGINT) == 0)
        if quickDoubleTap {
            blockingSleep(milliseconds: 300)
        } else {
            // A copy of the same signal within 150 ms is not a second stop.
            blockingSleep(milliseconds: 50)
            #expect(kill(watch.process.processIdentifier, SIGINT) == 0)
            blockingSleep(milliseconds: 1000)
            #expect(watch.process.isRunning, "a signal forwarded twice stopped the provisioning")
        }
        #expect(kill(watch.process.processIdentifier, SIGINT) == 0)
        let status = watch.wait(timeout: .seconds(100))
        #expect(status == SIGINT && watch.process.terminationReason == .uncaughtSignal, "\(String(describing: status))")

        let out = String(decoding: watch.stdout.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let err = String(decoding: watch.stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        // Under --json stderr carries errors only: no hint about a second stop.
        #expect(!err.contains("again stops them at once") && err.contains("stopped by SIGINT"), "\(err)")
        let events = out.split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
        let line = try #require(events.last { $0["event"] as? String == "board" }, "\(out)")
        let message = line["message"] as? String ?? ""
        #expect(line["status"] as? String == "failed", "\(out)")
        // Cancelled, not the 10 s timeout of the paused reply.
        #expect(message.contains("stopped by SIGINT while being provisioned") && message.contains("--resume")
            && !message.contains("timeout") && !message.contains("timed out"), "\(out)")
        let row = try #require(try Registry(path: db).allBoards().first)
        #expect(row.state == .failed, "\(row)")
        #expect(row.error?.contains("cancelled") == true, "the row's error is the cancelled wait's: \(row.error ?? "none")")
    }
}
