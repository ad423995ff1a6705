import DevKitModel
import DevKitRegistry
import DevKitTestSupport
import Foundation
import Testing
import VirtualDevKit

#if canImport(Glibc)
import Glibc
#endif

/// Two stations at once on one shared PostgreSQL registry (issue 16): the built
/// `devkit` as stations `line-1` and `line-2`, each with its own virtual DevKit,
/// plus one board both reach; and the commands that change recorded rows, each
/// claiming the rows it changes.
@Suite(.serialized, .timeLimit(.minutes(10)), .enabled(if: PostgresCluster.available, "PostgreSQL's binaries are not installed (and CI is not set)"))
struct SharedRegistryStationsCLITests {
    let postgres = PostgresRegistryCLITests()

    /// Whether process `pid` is stopped (SIGSTOP: `DEVKIT_TEST_PAUSE_AFTER_STEP`).
    static func stopped(_ pid: Int32) -> Bool { processState(pid) == "T" }

    static func output(_ pipe: Pipe) -> String {
        String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    }

    /// Station line-1 provisions its own board and the shared one, and is held
    /// (SIGSTOP right after the shared board's row and UDS are committed, before
    /// the UDS goes out) while station line-2 provisions its own board and tries
    /// the shared one: no timing decides the overlap. line-2 is refused at the
    /// claim stage, naming line-1, before it opens the port; line-1 then finishes.
    @Test("two stations at once, one board both reach: every board recorded once, the shared one provisioned by line-1 only")
    func twoStationsAtOnce() throws {
        let s = try postgres.shared()
        let v = try ProvisionCLITests.vector()
        defer { try? FileManager.default.removeItem(atPath: s.dir) }
        try (v.uds + "\n").write(toFile: s.dir + "/board.uds", atomically: false, encoding: .utf8)
        let sharedKit = try startedKit(.init(macAddress: v.mac, firmwareVersion: v.version))
        defer { sharedKit.stop() }
        let ownOne = try startedKit(.init(macAddress: "a4cf120b1001", firmwareVersion: v.version))
        defer { ownOne.stop() }
        let ownTwo = try startedKit(.init(macAddress: "a4cf120b2001", firmwareVersion: v.version))
        defer { ownTwo.stop() }

        func provision(_ station: String, _ kit: VirtualDevKit, _ extra: [String], environment: [String: String] = [:]) throws
            -> BackgroundDevkit
        {
            try BackgroundDevkit(
                ["provision", "--port", kit.devicePath, "--bin", v.bin, "--map", v.map, "--output-dir", s.dir + "/" + station,
                 "--station", station] + s.registryArguments + extra,
                environment: environment)
        }
        // line-1: its own board, and the shared one (given by MAC: claimed before its port is opened).
        let oneOwn = try provision("line-1", ownOne, ["--generate-uds"])
        let oneShared = try provision(
            "line-1", sharedKit, ["--mac", v.mac, "--uds-file", s.dir + "/board.uds"],
            environment: ["DEVKIT_TEST_PAUSE_AFTER_STEP": "uds_sent"])
        let pid = oneShared.process.processIdentifier
        let deadline = ContinuousClock.now + .seconds(120)
        while !Self.stopped(pid) && oneShared.process.isRunning && ContinuousClock.now < deadline { usleep(50_000) }
        try #require(Self.stopped(pid), "line-1 did not reach uds_sent on the shared board: \(Self.output(oneShared.stderr))")
        let recorded = try s.open().allBoards().filter { $0.mac == v.mac }
        #expect(recorded.count == 1 && recorded.first?.station == "line-1", "\(recorded)")
        let bytesBefore = sharedKit.receivedByteCount

        // line-2, while line-1 holds the shared board: its own board, and the shared one.
        let twoOwn = try provision("line-2", ownTwo, ["--generate-uds"])
        let twoShared = try provision("line-2", sharedKit, ["--mac", v.mac, "--generate-uds", "--json"])
        let refusedStatus = twoShared.wait(timeout: .seconds(180))
        let refusedOut = Self.output(twoShared.stdout)
        let refusedErr = Self.output(twoShared.stderr)
        #expect(refusedStatus == 75, "\(refusedErr)")
        #expect(refusedErr.contains("board with MAC \(v.mac) is being provisioned by station line-1"), "\(refusedErr)")
        // Reported at the claim stage (JSON for scripts), not as a connection failure.
        let events = refusedOut.split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
        #expect(events.contains { $0["stage"] as? String == "claim" && $0["status"] as? String == "failed" }, "\(refusedOut)")
        #expect(!events.contains { $0["stage"] as? String == "connect" }, "\(refusedOut)")
        #expect(sharedKit.receivedByteCount == bytesBefore, "line-2 wrote to the shared board")
        #expect(sharedKit.state.uds == nil, "a UDS reached the shared board while line-1 was held before sending it")
        #expect(twoOwn.wait(timeout: .seconds(180)) == 0, "line-2's own board: \(Self.output(twoOwn.stderr))")
        #expect(Self.stopped(pid), "line-1 was let go too early")

        // line-1 goes on and finishes the shared board.
        kill(pid, SIGCONT)
        #expect(oneShared.wait(timeout: .seconds(180)) == 0, "line-1's shared board: \(Self.output(oneShared.stderr))")
        #expect(oneOwn.wait(timeout: .seconds(180)) == 0, "line-1's own board: \(Self.output(oneOwn.stderr))")

        let rows = try s.open().allBoards()
        #expect(rows.count == 3, "\(rows.map { ($0.id, $0.mac, $0.station) })")
        #expect(Set(rows.compactMap(\.mac)) == [v.mac, "a4cf120b1001", "a4cf120b2001"], "a board recorded twice or not at all")
        #expect(rows.allSatisfy { $0.state == .done }, "\(rows.map(\.state))")
        let shared = try #require(rows.first { $0.mac == v.mac })
        #expect(shared.station == "line-1" && shared.uds.hexString == v.uds.lowercased())
        #expect(sharedKit.state.uds == v.uds.lowercased(), "the shared board does not hold line-1's UDS")
        #expect(rows.first { $0.mac == "a4cf120b1001" }?.station == "line-1")
        #expect(rows.first { $0.mac == "a4cf120b2001" }?.station == "line-2")
        #expect(ownOne.state.uds == rows.first { $0.mac == "a4cf120b1001" }?.uds.hexString)
        #expect(ownTwo.state.uds == rows.first { $0.mac == "a4cf120b2001" }?.uds.hexString)
        #expect(!FileManager.default.fileExists(atPath: s.dir + "/line-2/\(v.registrationID).pem"))
    }

    /// `provision --resume ID` claims the row before it reads it or opens the port:
    /// a row another station holds is refused naming it (75), with no word on the
    /// settings it would have needed (the Wi-Fi password once read from standard
    /// input) and no byte sent to the board.
    @Test("--resume of a row another station holds: 75 naming it, before the row's settings are checked or the port opened")
    func aResumeOfAHeldRowIsRefusedFirst() throws {
        let s = try postgres.shared()
        let v = try ProvisionCLITests.vector()
        defer { try? FileManager.default.removeItem(atPath: s.dir) }
        let kit = try startedKit(.init(macAddress: v.mac, firmwareVersion: v.version))
        defer { kit.stop() }
        try "secret-pass\n".write(toFile: s.dir + "/wifi.txt", atomically: false, encoding: .utf8)
        // Killed once its row is committed: the Wi-Fi password came from standard input (never stored).
        let killed = try TestProcess.run(
            [try TestProcess.devkitBinary, "provision", "--port", kit.devicePath, "--bin", v.bin, "--map", v.map,
             "--output-dir", s.dir + "/out", "--generate-uds", "--wifi-ssid", "lab", "--wifi-password-file", "-",
             "--station", "line-1"] + s.registryArguments,
            stdin: Array("secret-pass\n".utf8), environment: ["DEVKIT_TEST_KILL_AFTER_STEP": "uds_sent"], timeout: 120)
        #expect(killed.signal == SIGKILL, "\(killed.stderr)")
        let other = try s.open()
        let row = try #require(try other.allBoards().first)
        try other.claim(boards: ["row:\(row.id!)"], station: "line-1")
        kit.reset(into: .configuration)
        #expect(kit.waitUntilIdle())
        let bytesBefore = kit.receivedByteCount

        let resume = ["provision", "--port", kit.devicePath, "--resume", "\(row.id!)", "--station", "line-2"] + s.registryArguments
        let refused = try RegistryCLIProcess.run(resume)
        #expect(refused.status == 75, "\(refused.stderr)")
        #expect(refused.stderr.contains("board #\(row.id!) is being provisioned by station line-1"), "\(refused.stderr)")
        #expect(!refused.stderr.contains("standard input"), "the row's settings were read before it was claimed: \(refused.stderr)")
        #expect(kit.receivedByteCount == bytesBefore, "the port was used for a row another station holds")
        // Not even opened: a missing port is not what stops it.
        let missing = try RegistryCLIProcess.run(
            ["provision", "--port", s.dir + "/no-such-port", "--resume", "\(row.id!)", "--station", "line-2"] + s.registryArguments)
        #expect(missing.status == 75, "\(missing.stderr)")

        // Once line-1 lets go, the resume goes as far as the settings it needs.
        other.release(boards: ["row:\(row.id!)"])
        let free = try RegistryCLIProcess.run(resume)
        #expect(free.status != 75 && free.stderr.contains("standard input"), "\(free.status) \(free.stderr)")
        let finished = try RegistryCLIProcess.run(resume + ["--wifi-ssid", "lab", "--wifi-password-file", s.dir + "/wifi.txt"])
        #expect(finished.status == 0, "\(finished.stderr)")
        #expect(try other.board(id: row.id!)?.state == .done && kit.state.uds == row.uds.hexString)
    }

    /// Two boards provisioned into a new shared registry by station line-1.
    func twoProvisionedBoards(_ s: PostgresRegistryCLITests.Shared, _ v: ProvisionCLITests.Vector) throws -> [BoardRecord] {
        for mac in ["a4cf120b3001", "a4cf120b3002"] {
            let kit = try startedKit(.init(macAddress: mac, firmwareVersion: v.version))
            defer { kit.stop() }
            let run = try RegistryCLIProcess.run(
                ["provision", "--port", kit.devicePath, "--bin", v.bin, "--map", v.map, "--output-dir", s.dir + "/out",
                 "--generate-uds", "--station", "line-1"] + s.registryArguments)
            #expect(run.status == 0, "\(run.stderr)")
        }
        let rows = try s.open().allBoards()
        try #require(rows.count == 2 && rows.allSatisfy { $0.state == .done })
        return rows
    }

    /// `registry reissue` claims each row: one another station holds is not
    /// re-issued (named, 75 when it is the only failure), the others are.
    @Test("registry reissue leaves a row another station holds, names it, re-issues the others; 75")
    func reissueLeavesAHeldRow() throws {
        let s = try postgres.shared()
        let v = try ProvisionCLITests.vector()
        defer { try? FileManager.default.removeItem(atPath: s.dir) }
        let rows = try twoProvisionedBoards(s, v)
        let other = try s.open()
        // The first board is being finished (or changed) by station line-2 right now.
        try other.claim(boards: ["mac:" + rows[0].mac!], station: "line-2")
        let tiny = DiceVector.fixtures.appendingPathComponent("firmware/Tiny.ino.elf").path
        let reissue = ["registry", "reissue", "--elf", tiny, "--output-dir", s.dir + "/new"] + s.registryArguments
        let first = try RegistryCLIProcess.run(reissue)
        #expect(first.status == 75, "\(first.stdout) \(first.stderr)")
        #expect(first.stderr.contains("#\(rows[0].id!)") && first.stderr.contains("being provisioned by station line-2"),
                "\(first.stderr)")
        let after = try other.allBoards()
        #expect(after[0].certificatePath == rows[0].certificatePath, "a held row was re-issued")
        #expect(after[1].certificatePath?.hasPrefix(s.dir + "/new/") == true, "the other row was not re-issued")
        other.release(boards: ["mac:" + rows[0].mac!])
        let again = try RegistryCLIProcess.run(reissue)
        #expect(again.status == 0, "\(again.stderr)")
        #expect(try other.allBoards().allSatisfy { $0.certificatePath?.hasPrefix(s.dir + "/new/") == true })
    }

    /// `dps enroll --from-registry` claims each row until its outcome is recorded:
    /// one another station holds is reported not enrolled, naming it; the others
    /// are enrolled and recorded; 75 when the held ones are all that failed.
    @Test("dps enroll --from-registry leaves a row another station holds, names it, enrolls the others; 75")
    func dpsEnrollLeavesAHeldRow() throws {
        let s = try postgres.shared()
        let v = try ProvisionCLITests.vector()
        defer { try? FileManager.default.removeItem(atPath: s.dir) }
        let rows = try twoProvisionedBoards(s, v)
        let dps = try TestDPSEmulator(stateDirectory: s.dir + "/dps")
        defer { dps.stop() }
        let other = try s.open()
        try other.claim(boards: ["row:\(rows[1].id!)"], station: "line-2")
        let enroll = ["dps", "enroll", "--from-registry"] + s.registryArguments + dps.dpsArguments()
        let first = try RegistryCLIProcess.run(enroll)
        #expect(first.status == 75, "\(first.stdout) \(first.stderr)")
        #expect(first.stderr.contains("being provisioned by station line-2"), "\(first.stderr)")
        let after = try other.allBoards()
        #expect(after[0].isEnrolled && !after[1].isEnrolled, "\(after.map(\.enrollment))")
        other.release(boards: ["row:\(rows[1].id!)"])
        let again = try RegistryCLIProcess.run(enroll)
        #expect(again.status == 0, "\(again.stdout) \(again.stderr)")
        #expect(try other.allBoards().allSatisfy(\.isEnrolled))
    }
}
