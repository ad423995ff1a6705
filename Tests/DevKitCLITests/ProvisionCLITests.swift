import DevKitModel
import DevKitRegistry
import DevKitTestSupport
import Foundation
import Testing
import VirtualDevKit

@testable import DevKitCLI

/// `devkit provision` end to end: the built binary against the in-process virtual
/// DevKit, the certificate compared byte for byte with the reference vector.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct ProvisionCLITests {
    struct Vector {
        let uds, mac, version, registrationID, bin, map, elf, certificate: String
    }

    /// The `devkit-size-image` vector: a derived ID, so MAC and version come from the board.
    static func vector() throws -> Vector {
        let v = try #require(DiceVector.named("devkit-size-image"))
        func fixture(_ path: String) -> String { DiceVector.fixtures.appendingPathComponent(path).path }
        return Vector(
            uds: v.uds, mac: try #require(v.mac).replacingOccurrences(of: ":", with: ""),
            version: try #require(v.firmwareVersion), registrationID: v.registrationID,
            bin: fixture(v.bin), map: fixture(v.map), elf: fixture(v.elf), certificate: v.aliasCertificate)
    }

    func setup() throws -> (v: Vector, dir: String, kit: VirtualDevKit) {
        let v = try Self.vector()
        let dir = registryTestDirectory()
        try (v.uds + "\n").write(toFile: dir + "/board.uds", atomically: false, encoding: .utf8)
        let kit = try startedKit(.init(macAddress: v.mac, firmwareVersion: v.version))
        return (v, dir, kit)
    }

    func provisionArgs(_ v: Vector, _ dir: String, _ kit: VirtualDevKit) -> [String] {
        ["provision", "--port", kit.devicePath, "--bin", v.bin, "--map", v.map,
         "--output-dir", dir, "--registry", dir + "/registry.sqlite"]
    }

    @Test func provisionsTheVirtualDevKitWithTheReferenceCertificate() throws {
        let (v, dir, kit) = try setup()
        defer { kit.stop(); try? FileManager.default.removeItem(atPath: dir) }
        let r = try RegistryCLIProcess.run(provisionArgs(v, dir, kit) + ["--uds-file", dir + "/board.uds", "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(kit.state.uds == v.uds.lowercased())
        let pem = try String(contentsOfFile: dir + "/\(v.registrationID).pem", encoding: .utf8)
        #expect(pem == v.certificate)
        let enrollment = try #require(FileManager.default.contents(atPath: dir + "/\(v.registrationID).enrollment.json"))
        let body = try #require(try JSONSerialization.jsonObject(with: enrollment) as? [String: Any])
        #expect(body["registrationId"] as? String == v.registrationID)

        let lines = r.stdout.split(separator: "\n").map { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        #expect(lines.allSatisfy { $0 != nil }, "every stdout line is JSON")
        let result = try #require(lines.last??["event"] as? String == "result" ? lines.last! : nil)
        #expect(result["registration_id"] as? String == v.registrationID)
        #expect((result["az_command"] as? String)?.hasPrefix("az iot dps enrollment create --enrollment-id \(v.registrationID)") == true)
        #expect(!r.stdout.contains(v.uds) && !r.stderr.contains(v.uds) && !r.stdout.contains(v.uds.lowercased()))

        let registry = try Registry(path: dir + "/registry.sqlite")
        let row = try #require(try registry.allBoards().first)
        #expect(row.state == .done)
        #expect(row.mac == v.mac && row.firmwareVersion == v.version)
        #expect(row.station == StationOptions.hostName, "--station defaults to the host name")
    }

    /// An output directory that cannot be created says which and why (the errno's
    /// meaning, never Foundation's "The operation could not be completed"), exit 73,
    /// before the board is touched.
    @Test(arguments: ["/proc/nope", "blocker/out"])
    func anOutputDirectoryThatCannotBeCreated(outputDir: String) throws {
        let (v, dir, kit) = try setup()
        defer { kit.stop(); try? FileManager.default.removeItem(atPath: dir) }
        try "x".write(toFile: dir + "/blocker", atomically: false, encoding: .utf8)
        let out = outputDir.hasPrefix("/") ? outputDir : dir + "/" + outputDir
        let r = try RegistryCLIProcess.run(
            ["provision", "--port", kit.devicePath, "--bin", v.bin, "--map", v.map, "--output-dir", out,
             "--registry", dir + "/registry.sqlite", "--uds-file", dir + "/board.uds"])
        #expect(r.status == 73, "\(r.stderr)")
        #expect(r.stderr.contains("output directory \(out)"), "\(r.stderr)")
        let reason = outputDir.hasPrefix("/") ? "No such file or directory" : "Not a directory"
        #expect(r.stderr.contains(reason), "\(r.stderr)")
        #expect(!r.stderr.contains("could not be completed"), "\(r.stderr)")
        #expect(kit.state.uds != v.uds.lowercased())
    }

    /// The registry is read later from anywhere: a relative --output-dir is recorded
    /// resolved against the directory provision ran in.
    @Test func theRegistryRecordsAbsolutePaths() throws {
        let (v, dir, kit) = try setup()
        defer { kit.stop(); try? FileManager.default.removeItem(atPath: dir) }
        let r = try TestProcess.run(
            ["/bin/sh", "-c", "cd \"$0\" && exec \"$@\"", dir, TestProcess.devkitBinary,
             "provision", "--port", kit.devicePath, "--bin", v.bin, "--map", v.map, "--output-dir", "out",
             "--registry", "registry.sqlite", "--uds-file", "board.uds"], timeout: 120)
        #expect(r.status == 0, "\(r.stderr)")
        let row = try #require(try Registry(path: dir + "/registry.sqlite").allBoards().first)
        #expect(row.certificatePath == dir + "/out/\(v.registrationID).pem")
        #expect(row.enrollmentPath == dir + "/out/\(v.registrationID).enrollment.json")
    }

    /// A failure reaches a script on stdout too: the last JSON line is the failed
    /// step, with the board's row and how to finish it; the UDS appears nowhere.
    @Test func aFailureIsAJSONEventWithTheWayToFinish() throws {
        let v = try Self.vector()
        let dir = registryTestDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try (v.uds + "\n").write(toFile: dir + "/board.uds", atomically: false, encoding: .utf8)
        let kit = try startedKit(.init(macAddress: v.mac, firmwareVersion: v.version, faults: .init(eepromWriteFailure: true)))
        defer { kit.stop() }
        #expect(try RegistryCLIProcess.run(["registry", "keygen", dir + "/k.key"]).status == 0)
        let r = try RegistryCLIProcess.run(
            provisionArgs(v, dir, kit) + ["--uds-file", dir + "/board.uds", "--key-file", dir + "/k.key", "--json"])
        #expect(r.status == 74, "\(r.stderr)")
        let last = try #require(r.stdout.split(separator: "\n").last.map {
            try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        } ?? nil)
        #expect(last["status"] as? String == "failed")
        #expect(last["stage"] as? String == "uds")
        #expect(last["board_id"] as? Int == 1)
        // The way to finish, as it pastes: this run's registry, key and port.
        let resume = "devkit provision --resume 1 --registry \(dir)/registry.sqlite --key-file \(dir)/k.key --port \(kit.devicePath)"
        #expect((last["message"] as? String)?.contains(resume) == true, "\(last)")
        #expect(!r.stdout.lowercased().contains(v.uds.lowercased()) && !r.stderr.lowercased().contains(v.uds.lowercased()))
    }

    /// A Wi-Fi password read from standard input is not kept: the --resume printed
    /// after a failure gives it again the same way while Wi-Fi is not set
    /// (`--wifi-ssid=S --wifi-password-file -`, one word even for an SSID that starts
    /// with '-'; it used to print a command that then failed with 64), and that
    /// command, the password piped in, finishes the board. A board that failed after
    /// its Wi-Fi was set gets a --resume that asks for no password.
    @Test func theResumePrintedAfterAFailureTakesAPasswordFromStandardInputAgain() throws {
        let v = try Self.vector()
        let dir = registryTestDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try (v.uds + "\n").write(toFile: dir + "/board.uds", atomically: false, encoding: .utf8)
        #expect(try RegistryCLIProcess.run(["registry", "keygen", dir + "/k.key"]).status == 0)
        let failing = try startedKit(.init(macAddress: v.mac, firmwareVersion: v.version, faults: .init(eepromWriteFailure: true)))
        let r = try TestProcess.run(
            [TestProcess.devkitBinary] + provisionArgs(v, dir, failing)
                + ["--uds-file", dir + "/board.uds", "--key-file", dir + "/k.key", "--wifi-ssid=-lab",
                   "--wifi-password-file", "-"],
            stdin: Array("piped-pass-1\n".utf8), timeout: 120)
        failing.stop()
        #expect(r.status == 74, "\(r.stderr)")
        let printed = "devkit provision --resume 1 --registry \(dir)/registry.sqlite --key-file \(dir)/k.key --port "
            + "\(failing.devicePath) --wifi-ssid=-lab --wifi-password-file -"
        #expect(r.stderr.contains(printed), "\(r.stderr)")
        #expect(!r.stderr.contains("piped-pass-1"))

        let kit = try startedKit(.init(macAddress: v.mac, firmwareVersion: v.version))
        defer { kit.stop() }
        let resumed = try TestProcess.run(
            [TestProcess.devkitBinary, "provision", "--resume", "1", "--registry", dir + "/registry.sqlite", "--key-file",
             dir + "/k.key", "--port", kit.devicePath, "--wifi-ssid=-lab", "--wifi-password-file", "-"],
            stdin: Array("piped-pass-1\n".utf8), timeout: 120)
        #expect(resumed.status == 0, "\(resumed.stderr)")
        #expect(kit.state.wifiSSID == "-lab" && kit.state.wifiPassword == "piped-pass-1")

        // Stopped at the certificate (a directory where its file goes): Wi-Fi is set,
        // so the printed --resume reads no password.
        let other = try startedKit(.init(macAddress: "a4cf120b9e32", firmwareVersion: v.version))
        defer { other.stop() }
        try FileManager.default.createDirectory(
            atPath: dir + "/out2/az-a4cf120b9e32v\(v.version.replacingOccurrences(of: ".", with: "v")).pem",
            withIntermediateDirectories: true)
        let late = try TestProcess.run(
            [TestProcess.devkitBinary, "provision", "--port", other.devicePath, "--bin", v.bin, "--map", v.map,
             "--output-dir", dir + "/out2", "--registry", dir + "/registry.sqlite", "--key-file", dir + "/k.key",
             "--generate-uds", "--wifi-ssid", "lab", "--wifi-password-file", "-"],
            stdin: Array("piped-pass-2\n".utf8), timeout: 120)
        #expect(late.status != 0 && late.stderr.contains("--resume 2 "), "\(late.stderr)")
        #expect(other.state.wifiSSID == "lab")
        #expect(!late.stderr.contains("--wifi-password-file"), "\(late.stderr)")
    }

    /// kill -9 right after each commit; the row says how far it got and `provision
    /// --resume` finishes the board with the recorded UDS. (A new board is recorded
    /// and marked sent by one commit; the certificate and the enrollment file are
    /// marked by one commit, which finishes the board.)
    @Test(arguments: ["uds_sent", "uds_confirmed", "version_read", "mac_read"])
    func killNineAtEachStepThenResume(_ step: String) throws {
        let (v, dir, kit) = try setup()
        defer { kit.stop(); try? FileManager.default.removeItem(atPath: dir) }
        var env = ProcessInfo.processInfo.environment
        env["DEVKIT_TEST_KILL_AFTER_STEP"] = step
        let killed = try RegistryCLIProcess.run(
            provisionArgs(v, dir, kit) + ["--uds-file", dir + "/board.uds"], environment: env)
        #expect(killed.status == SIGKILL, "expected death by SIGKILL: \(killed.stderr)")

        let registry = try Registry(path: dir + "/registry.sqlite")
        let row = try #require(try registry.allBoards().first)
        #expect(row.uds.hexString == v.uds.lowercased(), "the UDS is never lost")
        // At least that far: marks committed in the background may have shared the
        // killing commit with the next one.
        let killedAt = try #require(ProvisioningStep(rawValue: step))
        #expect(row.lastStep.map { $0 >= killedAt } == true, "\(String(describing: row.lastStep))")
        // mac_read is marked in the background: its commit can be the one that also
        // finishes the board (the final mark waits for it), and the kill then comes
        // after a done row. Either way the state matches the steps.
        #expect(row.state == (row.lastStep == .enrollmentWritten ? .done : .inProgress), "\(row.state)")

        // The board may have rebooted into user mode after `exit`: put it back the
        // way an operator would (hold A, reset) when board steps remain.
        if row.macReadAt == nil { kit.reset(into: .configuration) }
        let resumed = try RegistryCLIProcess.run(provisionArgs(v, dir, kit) + ["--resume", "\(row.id!)"])
        #expect(resumed.status == 0, "\(resumed.stderr)")
        #expect(kit.state.uds == v.uds.lowercased())
        #expect(try String(contentsOfFile: dir + "/\(v.registrationID).pem", encoding: .utf8) == v.certificate)
        let finished = try #require(try registry.board(id: row.id!))
        #expect(finished.state == .done)
        #expect(try registry.allBoards().count == 1)
    }

    /// `--resume` of a board that finished: nothing to do, exit 0, the recorded result;
    /// its files and row are not written again (walkthrough helper-95: a resume of a
    /// finished board rewrote its files and recorded a failed enrollment over one
    /// `dps enroll` had finished).
    @Test func resumingAFinishedBoardDoesNothing() throws {
        let (v, dir, kit) = try setup()
        defer { kit.stop(); try? FileManager.default.removeItem(atPath: dir) }
        let first = try RegistryCLIProcess.run(provisionArgs(v, dir, kit) + ["--uds-file", dir + "/board.uds"])
        #expect(first.status == 0, "\(first.stderr)")
        let pem = dir + "/\(v.registrationID).pem"
        let before = try FileManager.default.attributesOfItem(atPath: pem)
        let registry = try Registry(path: dir + "/registry.sqlite")
        let row = try #require(try registry.allBoards().first)

        let resumed = try RegistryCLIProcess.run(provisionArgs(v, dir, kit) + ["--resume", "\(row.id!)", "--json"])
        #expect(resumed.status == 0, "\(resumed.stderr)")
        #expect(resumed.stdout.contains("nothing to resume"), "\(resumed.stdout)")
        // The firmware and output options given have no effect, and it says so.
        #expect(resumed.stderr.contains("--output-dir, the firmware options have no effect"), "\(resumed.stderr)")
        let verify = try RegistryCLIProcess.run(["provision", "--registry", dir + "/registry.sqlite", "--resume", "\(row.id!)", "--verify"])
        #expect(verify.status == 64 && verify.stderr.contains("devkit verify --port PORT --registry \(dir)/registry.sqlite"),
                "\(verify.stderr)")
        let result = try #require(resumed.stdout.split(separator: "\n").last.flatMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] })
        #expect(result["event"] as? String == "result" && result["registration_id"] as? String == v.registrationID, "\(result)")
        #expect(result["certificate_sha1"] as? String == row.certificateSHA1, "\(result)")
        let after = try FileManager.default.attributesOfItem(atPath: pem)
        #expect(after[.systemFileNumber] as? Int == before[.systemFileNumber] as? Int, "the certificate was not written again")
        let again = try #require(try registry.board(id: row.id!))
        #expect(again.updatedAt == row.updatedAt && again.certificateWrittenAt == row.certificateWrittenAt)

        // Without firmware options, after the firmware file was rebuilt: still nothing
        // to do (the file is not read), not "firmware changed" (walkthrough review).
        let bin = dir + "/fw.bin", map = dir + "/fw.map"
        try FileManager.default.copyItem(atPath: v.bin, toPath: bin)
        try FileManager.default.copyItem(atPath: v.map, toPath: map)
        kit.reset(into: .configuration)
        let second = try RegistryCLIProcess.run(
            ["provision", "--port", kit.devicePath, "--bin", bin, "--map", map, "--output-dir", dir + "/two",
             "--registry", dir + "/registry.sqlite", "--generate-uds", "--force"])
        #expect(second.status == 0, "\(second.stderr)")
        let secondRow = try #require(try registry.allBoards().last)
        #expect(secondRow.id != row.id)
        let handle = try #require(FileHandle(forWritingAtPath: bin))
        try handle.seekToEnd()
        try handle.write(contentsOf: Data([0x00]))
        try handle.close()
        let bare = try RegistryCLIProcess.run(["provision", "--registry", dir + "/registry.sqlite", "--resume", "\(secondRow.id!)"])
        #expect(bare.status == 0 && bare.stderr.contains("nothing to resume"), "\(bare.stderr)")
        // The older row, superseded by the board's new one, is not the board's record.
        let old = try RegistryCLIProcess.run(["provision", "--registry", dir + "/registry.sqlite", "--resume", "\(row.id!)"])
        #expect(old.status == 64 && old.stderr.contains("board #\(row.id!) is an older record")
            && old.stderr.contains("`devkit registry show \(secondRow.id!) --registry \(dir)/registry.sqlite`"), "\(old.stderr)")
        // DPS given for a board provisioned without it: refused, pointing to dps enroll.
        try "HostName=x.azure-devices-provisioning.net;SharedAccessKeyName=p;SharedAccessKey=a2V5\n"
            .write(toFile: dir + "/cs", atomically: false, encoding: .utf8)
        let withDPS = try RegistryCLIProcess.run(
            ["provision", "--registry", dir + "/registry.sqlite", "--resume", "\(secondRow.id!)", "--dps-connection-string-file", dir + "/cs"])
        #expect(withDPS.status == 64 && withDPS.stderr.contains("devkit dps enroll --from-registry --id \(secondRow.id!)"),
                "\(withDPS.stderr)")
    }

    /// A board known by --mac that the registry has finished is provisioned again into
    /// another directory (files do not clash): allowed, but said before its new UDS,
    /// naming the earlier row and station; a board never seen is not warned about.
    @Test func provisioningAFinishedBoardAgainIsSaid() throws {
        let (v, dir, kit) = try setup()
        defer { kit.stop(); try? FileManager.default.removeItem(atPath: dir) }
        let first = try RegistryCLIProcess.run(
            provisionArgs(v, dir, kit) + ["--mac", v.mac, "--uds-file", dir + "/board.uds", "--station", "bench-a"])
        #expect(first.status == 0 && !first.stderr.contains("warning: board"), "\(first.stderr)")
        try FileManager.default.createDirectory(atPath: dir + "/again", withIntermediateDirectories: true)
        let again = try RegistryCLIProcess.run(
            ["provision", "--port", kit.devicePath, "--bin", v.bin, "--map", v.map, "--output-dir", dir + "/again",
             "--registry", dir + "/registry.sqlite", "--mac", v.mac, "--generate-uds", "--station", "bench-b"])
        #expect(again.status == 0, "\(again.stderr)")
        #expect(again.stderr.contains("board \(v.mac) finished provisioning before, as #1, station bench-a: this run gives it a UDS of its own"),
                "\(again.stderr)")
        // No DPS was configured: no enrollment is said to be lost; the show command names the registry.
        #expect(again.stderr.contains("#1's certificate would no longer match it")
            && again.stderr.contains("`devkit registry show 1 --registry \(dir)/registry.sqlite` shows it"), "\(again.stderr)")
    }

    /// Two devkit processes on one SQLite file (an `autoconfigure` per plugged node, a
    /// `provision` beside a `watch`) provision a board one at a time: the second is
    /// refused before anything is recorded or sent, naming the first's station and PID.
    @Test func aBoardAnotherProcessHoldsIsRefusedOnOneSQLiteFile() throws {
        let (v, dir, kit) = try setup()
        defer { kit.stop(); try? FileManager.default.removeItem(atPath: dir) }
        try Self.expectRefusedWhileHeld(
            provisionArgs(v, dir, kit) + ["--mac", v.mac, "--uds-file", dir + "/board.uds", "--station", "bench-b"],
            by: try Registry(path: dir + "/registry.sqlite"), holder: "bench-a", named: "bench-a (devkit process \(getpid()))",
            station: "bench-b", v, kit)
    }

    /// `provision` (`arguments`, for `station`) while `registry` holds the board's MAC
    /// for station `holder`: exit 75 naming the holder as `named`, nothing recorded or
    /// sent; once the holder lets go, the same command provisions it for `station`.
    /// (SQLite here, PostgreSQL in PostgresRegistryCLITests.)
    static func expectRefusedWhileHeld(
        _ arguments: [String], by registry: any RegistryStore, holder: String, named: String, station: String,
        _ v: Vector, _ kit: VirtualDevKit
    ) throws {
        try registry.claim(boards: ["mac:" + v.mac], station: holder)
        let refused = try RegistryCLIProcess.run(arguments)
        #expect(refused.status == 75, "\(refused.stderr)")
        #expect(refused.stderr.contains("is being provisioned by station \(named)"), "\(refused.stderr)")
        #expect(try registry.allBoards().isEmpty && kit.state.uds != v.uds.lowercased())
        registry.release(boards: ["mac:" + v.mac])
        let provisioned = try RegistryCLIProcess.run(arguments)
        #expect(provisioned.status == 0, "\(provisioned.stderr)")
        #expect(try registry.allBoards().map(\.station) == [station] && kit.state.uds == v.uds.lowercased())
    }

    /// Issue 12 item 8: the same board provisioned again into the same directory must
    /// not overwrite the files row 1 records (row 1 would still say `done` with
    /// thumbprint A while `<id>.pem` holds certificate B). Refused with 73 naming the
    /// row and --force; with --force the old row is marked superseded and its files
    /// are kept under `<id>.row1.*`.
    @Test func provisioningTheSameBoardAgainRefusesThenSupersedesWithForce() throws {
        let (v, dir, kit) = try setup()
        defer { kit.stop(); try? FileManager.default.removeItem(atPath: dir) }
        let first = try RegistryCLIProcess.run(provisionArgs(v, dir, kit) + ["--uds-file", dir + "/board.uds"])
        #expect(first.status == 0, "\(first.stderr)")
        let pemPath = dir + "/\(v.registrationID).pem"
        let enrollmentPath = dir + "/\(v.registrationID).enrollment.json"
        let enrollmentA = try String(contentsOfFile: enrollmentPath, encoding: .utf8)

        kit.reset(into: .configuration)
        let again = try RegistryCLIProcess.run(provisionArgs(v, dir, kit) + ["--generate-uds"])
        #expect(again.status == 73, "\(again.stderr)")
        #expect(again.stderr.contains("board #1") && again.stderr.contains("--force"), "\(again.stderr)")
        #expect(try String(contentsOfFile: pemPath, encoding: .utf8) == v.certificate, "row 1's certificate is intact")
        let registry = try Registry(path: dir + "/registry.sqlite")
        let row1 = try #require(try registry.board(id: 1))
        #expect(row1.state == .done && row1.supersededBy == nil)
        // The MAC came from the boot log, so the board got row 2's UDS before the clash
        // could be known: row 2 is left unfinished, and the user is told so and how to finish.
        #expect(try registry.board(id: 2)?.state == .failed)
        #expect(again.stderr.contains("already holds board #2's new UDS"), "\(again.stderr)")
        #expect(again.stderr.contains("devkit provision --resume 2 --force"), "\(again.stderr)")
        #expect(!again.stderr.contains("`devkit provision --resume 2` finishes"), "a hint that would fail again: \(again.stderr)")

        let forced = try RegistryCLIProcess.run(provisionArgs(v, dir, kit) + ["--resume", "2", "--force"])
        #expect(forced.status == 0, "\(forced.stderr)")
        let old = try #require(try registry.board(id: 1))
        let new = try #require(try registry.board(id: 2))
        #expect(old.supersededBy == 2)
        #expect(new.state == .done && new.certificateSHA1 != old.certificateSHA1)
        let keptPEM = dir + "/\(v.registrationID).row1.pem"
        let keptEnrollment = dir + "/\(v.registrationID).row1.enrollment.json"
        #expect(old.certificatePath == keptPEM && old.enrollmentPath == keptEnrollment)
        #expect(try String(contentsOfFile: keptPEM, encoding: .utf8) == v.certificate)
        #expect(try String(contentsOfFile: keptEnrollment, encoding: .utf8) == enrollmentA)
        #expect(try String(contentsOfFile: pemPath, encoding: .utf8) != v.certificate)
        #expect(new.certificatePath == pemPath)

        let list = try RegistryCLIProcess.run(["registry", "list", "--registry", dir + "/registry.sqlite"])
        #expect(list.status == 0 && list.stdout.contains("superseded by #2"), "\(list.stdout)")
    }

    /// Issue 12 item 9: the printed resume hint works as printed. The board is
    /// killed mid-way; `provision --resume N` with no firmware or output options
    /// finishes it from what the registry recorded (firmware paths, their SHA-256,
    /// output directory), and refuses (65) when the firmware file changed since.
    @Test(arguments: [false, true])
    func resumeWithoutFirmwareFlagsUsesTheRecordedSettings(firmwareChanged: Bool) throws {
        let (v, dir, kit) = try setup()
        defer { kit.stop(); try? FileManager.default.removeItem(atPath: dir) }
        // The firmware as the user's own copies, so the test can change one.
        let bin = dir + "/fw.bin", map = dir + "/fw.map"
        try FileManager.default.copyItem(atPath: v.bin, toPath: bin)
        try FileManager.default.copyItem(atPath: v.map, toPath: map)
        let out = dir + "/enrollments"
        var env = ProcessInfo.processInfo.environment
        env["DEVKIT_TEST_KILL_AFTER_STEP"] = "version_read"
        let killed = try RegistryCLIProcess.run(
            ["provision", "--port", kit.devicePath, "--bin", bin, "--map", map, "--output-dir", out,
             "--registry", dir + "/registry.sqlite", "--uds-file", dir + "/board.uds"], environment: env)
        #expect(killed.status == SIGKILL, "\(killed.stderr)")
        let registry = try Registry(path: dir + "/registry.sqlite")
        let row = try #require(try registry.allBoards().first)
        let settings = try #require(row.provisionSettings)
        #expect(settings.contains(bin) && settings.contains("firmware_sha256") && settings.contains(out), "\(settings)")
        // Step marks after the UDS is sent are committed in the background, so the kill
        // "after version_read" can land later, once the files are written: what the
        // refused resume must do is leave whatever is there untouched.
        let pem = out + "/\(v.registrationID).pem"
        let pemBefore = try? String(contentsOfFile: pem, encoding: .utf8)
        if firmwareChanged {
            let handle = try #require(FileHandle(forWritingAtPath: bin))
            try handle.seekToEnd()
            try handle.write(contentsOf: Data([0x00]))
            try handle.close()
        }

        if row.macReadAt == nil { kit.reset(into: .configuration) }
        let resumed = try RegistryCLIProcess.run(
            ["provision", "--port", kit.devicePath, "--registry", dir + "/registry.sqlite", "--resume", "\(row.id!)"])
        if row.state == .done {
            // The kill came after the board finished: nothing to resume, whatever the
            // firmware file became since (nothing is certified again).
            #expect(resumed.status == 0 && resumed.stderr.contains("nothing to resume"), "\(resumed.stderr)")
            #expect((try? String(contentsOfFile: pem, encoding: .utf8)) == pemBefore)
        } else if firmwareChanged {
            #expect(resumed.status == 65, "\(resumed.stderr)")
            #expect(resumed.stderr.contains("\(bin) changed since board #\(row.id!)"), "\(resumed.stderr)")
            #expect((try? String(contentsOfFile: pem, encoding: .utf8)) == pemBefore)
        } else {
            #expect(resumed.status == 0, "\(resumed.stderr)")
            #expect(try String(contentsOfFile: out + "/\(v.registrationID).pem", encoding: .utf8) == v.certificate)
            #expect(try registry.board(id: row.id!)?.state == .done)
        }
    }

    /// `--resume` reuses the DPS name and resource group of the printed `az` command
    /// (they were not recorded), and says that a Wi-Fi password read from standard
    /// input must be given again while Wi-Fi is not set (it is never stored; the
    /// resume used to finish the board without Wi-Fi, exit 0).
    @Test func resumeKeepsTheDPSNamesAndAsksForAWiFiPasswordFromStandardInput() throws {
        let (v, dir, kit) = try setup()
        defer { kit.stop(); try? FileManager.default.removeItem(atPath: dir) }
        var env = ProcessInfo.processInfo.environment
        env["DEVKIT_TEST_KILL_AFTER_STEP"] = "uds_sent"
        let killed = try TestProcess.run(
            [TestProcess.devkitBinary] + provisionArgs(v, dir, kit)
                + ["--uds-file", dir + "/board.uds", "--wifi-ssid", "bench lab", "--wifi-password-file", "-",
                   "--dps-name", "dps-one", "--resource-group", "rg-one"],
            stdin: Array("not-stored-123\n".utf8), environment: env, timeout: 120)
        #expect(killed.signal == SIGKILL && !killed.timedOut, "\(killed.stderr)")
        let registry = try Registry(path: dir + "/registry.sqlite")
        #expect(try registry.board(id: 1)?.provisionSettings?.contains("not-stored-123") == false)

        let resumeArgs = ["provision", "--port", kit.devicePath, "--registry", dir + "/registry.sqlite", "--resume", "1"]
        let refused = try RegistryCLIProcess.run(resumeArgs)
        #expect(refused.status == 64, "\(refused.stderr)")
        #expect(refused.stderr.contains("standard input") && refused.stderr.contains("--wifi-password-file -"),
                "\(refused.stderr)")
        #expect(kit.state.wifiSSID == nil)

        try "from-a-file-456\n".write(toFile: dir + "/wifi.secret", atomically: false, encoding: .utf8)
        let resumed = try RegistryCLIProcess.run(
            resumeArgs + ["--wifi-ssid", "bench lab", "--wifi-password-file", dir + "/wifi.secret"])
        #expect(resumed.status == 0, "\(resumed.stderr)")
        #expect(kit.state.wifiSSID == "bench lab" && kit.state.wifiPassword == "from-a-file-456")
        #expect(resumed.stdout.contains("--dps-name dps-one --resource-group rg-one"), "\(resumed.stdout)")
    }
}
