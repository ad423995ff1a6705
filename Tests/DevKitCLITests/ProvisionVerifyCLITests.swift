import DevKitRegistry
import DevKitTestSupport
import Foundation
import Testing
import VirtualDevKit
import VirtualDevKitDPS

/// `provision --verify`, a profile's `[verify]` with `watch`, and the registry
/// recording each outcome (issue 14 item 3): the built `devkit`, virtual boards
/// running the DPS sample sketch, and the built `devkit emulate-dps` over TLS.
@Suite("provision and watch verify the board", .serialized)
struct ProvisionVerifyCLITests {
    typealias DPS = VirtualBoardDPSTests
    static let hub = "test-hub.azure-devices.net"

    /// `devkit provision` of `kit` with the firmware its sketch runs (Tiny) and the
    /// setup's UDS file, into `<dir>/out`, recorded in `<dir>/registry.sqlite`.
    static func provision(_ kit: VirtualDevKit, _ setup: DPS.Setup, _ extra: [String], timeout: Double = 150)
        throws -> ProcessResult
    {
        try TestProcess.run(
            [TestProcess.devkitBinary, "provision", "--port", kit.devicePath,
             "--bin", "\(DPS.firmware)/Tiny.ino.bin", "--map", "\(DPS.firmware)/Tiny.ino.map",
             "--uds-file", setup.directory + "/uds.hex", "--output-dir", setup.directory + "/out",
             "--registry", setup.directory + "/registry.sqlite"] + extra,
            timeout: timeout)
    }

    static func dpsOptions(_ dps: TestDPSEmulator) -> [String] {
        ["--dps-connection-string-file", dps.connectionStringFile, "--dps-endpoint", dps.url, "--dps-ca-file", dps.caFile]
    }

    static func jsonLines(_ stdout: String) -> [[String: Any]] {
        stdout.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    }

    static func registry(_ setup: DPS.Setup, _ arguments: [String]) throws -> ProcessResult {
        try TestProcess.run(
            [TestProcess.devkitBinary, "registry"] + arguments + ["--registry", setup.directory + "/registry.sqlite"],
            timeout: 120)
    }

    /// What a person at the bench does when a board's line asks for it: presses
    /// the (virtual) board's reset button once its certificate is enrolled, and
    /// again every 10 s until it is verified. Reading the MAC booted the sketch,
    /// which tried to register before the enrollment existed. `together`: no board
    /// is reset before all are enrolled, so no verification can end before all have
    /// begun. `once`: one press, as soon as the row says enrolled (checked every
    /// 0.1 s), never again. Returns the exit status and output of `devkit`.
    static func pressResetWhenEnrolled(
        _ kits: [(kit: VirtualDevKit, mac: String)], db: String, _ running: BackgroundDevkit, limit: Duration,
        together: Bool = false, once: Bool = false
    ) async throws -> (status: Int32?, stdout: String, stderr: String) {
        let end = ContinuousClock.now + limit
        var pressed: [String: ContinuousClock.Instant] = [:]
        while running.process.isRunning, ContinuousClock.now < end {
            blockingSleep(milliseconds: once ? 100 : 500)
            guard FileManager.default.fileExists(atPath: db) else { continue }
            // Read-only: a writing open racing devkit's creation of the file could make it fail.
            let rows = (try? Registry(path: db, readOnly: true).allBoards()) ?? []
            if together, !kits.allSatisfy({ kit in rows.contains { $0.mac == kit.mac && $0.isEnrolled } }) { continue }
            for (kit, mac) in kits {
                guard let row = rows.first(where: { $0.mac == mac }), row.isEnrolled, row.verification == nil else { continue }
                if let last = pressed[mac], once || ContinuousClock.now - last < .seconds(10) { continue }
                kit.reset(into: .user)
                pressed[mac] = .now
            }
        }
        let status = running.wait(timeout: .seconds(30))
        let out = String(decoding: running.stdout.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let err = String(decoding: running.stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        return (status, out, err)
    }

    /// `devkit provision --verify --json` of `kit`, enrolling in `setup`'s DPS, started
    /// in the background; its registry is `<directory>/registry.sqlite`.
    static func provisionVerifying(_ kit: VirtualDevKit, _ setup: DPS.Setup, timeout: Int) throws -> BackgroundDevkit {
        try BackgroundDevkit(
            ["provision", "--port", kit.devicePath, "--bin", "\(DPS.firmware)/Tiny.ino.bin",
             "--map", "\(DPS.firmware)/Tiny.ino.map", "--uds-file", setup.directory + "/uds.hex",
             "--output-dir", setup.directory + "/out", "--registry", setup.directory + "/registry.sqlite",
             "--verify", "--verify-timeout", String(timeout), "--json"] + Self.dpsOptions(setup.dps))
    }

    @Test("provision --verify enrolls, the board is reset and assigned: in the result and the registry")
    func assigned() async throws {
        let setup = try DPS.Setup(["--iot-hub", Self.hub])
        let kit = try VerifyCLITests.board(try setup.sketch(), directory: setup.directory)
        defer { kit.stop() }
        let db = setup.directory + "/registry.sqlite"
        let running = try Self.provisionVerifying(kit, setup, timeout: 90)
        let r = try await Self.pressResetWhenEnrolled([(kit, DPS.mac)], db: db, running, limit: .seconds(150))
        #expect(r.status == 0, "\(r.stdout) \(r.stderr)")
        let lines = Self.jsonLines(r.stdout)
        // The verify step comes last, after the enrollment in DPS.
        let stages = lines.compactMap { $0["stage"] as? String }
        #expect(stages.suffix(2) == ["verify", "verify"], "\(stages)")
        #expect(stages.firstIndex(of: "enroll")! < stages.firstIndex(of: "verify")!)
        let result = try #require(lines.last, "\(r.stdout)")
        #expect(result["event"] as? String == "result")
        let verification = try #require(result["verification"] as? [String: Any], "\(result)")
        #expect(verification["outcome"] as? String == "assigned")
        #expect(verification["assigned_hub"] as? String == Self.hub)
        // Asked from DPS with the connection string provisioning enrolled with.
        #expect(verification["device_id"] as? String == DPS.registrationID)
        #expect(verification["registration_id"] as? String == DPS.registrationID)
        #expect((verification["diagnosis"] as? String)?.contains("nothing to do") == true)

        // Recorded: the row says assigned, the hub, the device ID and when.
        let row = try #require(try Registry(path: setup.directory + "/registry.sqlite").allBoards().first)
        #expect(row.verification?.outcome == "assigned" && row.verification?.assignedHub == Self.hub)
        #expect(row.verification?.deviceID == DPS.registrationID)
        let listed = try Self.registry(setup, ["list", "--json"])
        let boards = try #require(try JSONSerialization.jsonObject(with: Data(listed.stdout.utf8)) as? [[String: Any]])
        let listedVerification = try #require(boards.first?["verification"] as? [String: Any], "\(listed.stdout)")
        #expect(listedVerification["outcome"] as? String == "assigned")
        #expect(listedVerification["assigned_hub"] as? String == Self.hub)
        #expect(listedVerification["at"] is String)
        let shown = try Self.registry(setup, ["show", "1", "--json"])
        let object = try #require(try JSONSerialization.jsonObject(with: Data(shown.stdout.utf8)) as? [String: Any])
        let shownVerification = try #require(object["verification"] as? [String: Any], "\(shown.stdout)")
        #expect(shownVerification["device_id"] as? String == DPS.registrationID)
        let table = try Self.registry(setup, ["list"])
        #expect(table.stdout.contains("VERIFIED") && table.stdout.contains("assigned \(Self.hub)"), "\(table.stdout)")
        let human = try Self.registry(setup, ["show", "1"])
        #expect(human.stdout.contains("Verified:") && human.stdout.contains("Device ID:"), "\(human.stdout)")
    }

    @Test("provision --verify: a reset pressed at once, while devkit still looks for a prompt, is the one it sees")
    func resetPressedAtOnce() async throws {
        let setup = try DPS.Setup(["--iot-hub", Self.hub])
        let kit = try VerifyCLITests.board(try setup.sketch(), directory: setup.directory)
        defer { kit.stop() }
        let db = setup.directory + "/registry.sqlite"
        // One press, within a fraction of a second of the enrollment: devkit spends its
        // first seconds looking for a configuration prompt, and the boot that press
        // starts (its MAC line first) must be followed, not thrown away with what the
        // board printed before. A press missed leaves only the timeout.
        let running = try Self.provisionVerifying(kit, setup, timeout: 20)
        let r = try await Self.pressResetWhenEnrolled([(kit, DPS.mac)], db: db, running, limit: .seconds(150), once: true)
        #expect(r.status == 0, "\(r.stdout) \(r.stderr)")
        let result = try #require(Self.jsonLines(r.stdout).last, "\(r.stdout)")
        let verification = try #require(result["verification"] as? [String: Any], "\(result)")
        #expect(verification["outcome"] as? String == "assigned", "\(r.stdout) \(r.stderr)")
        // The request to press says how long is left, not the whole timeout again.
        // Asked for, in whole seconds (unless the board's log decided it first).
        if let asked = Self.jsonLines(r.stdout).compactMap({ $0["message"] as? String }).first(where: { $0.contains("press its reset button") }) {
            #expect(asked.range(of: #"waiting up to \d+ s$"#, options: .regularExpression) != nil && !asked.hasSuffix("waiting up to 20 s"),
                    "\(asked)")
        }
    }

    @Test("provision --verify with no enrollment in DPS: unauthorized, exit 1, recorded; human output says why")
    func unauthorized() throws {
        let setup = try DPS.Setup()
        let kit = try VerifyCLITests.board(try setup.sketch(), directory: setup.directory)
        defer { kit.stop() }
        // Provisioned without a DPS connection string: nothing enrolled the certificate.
        // The MAC given: the board stays in configuration mode until verify sends `exit`.
        let r = try Self.provision(kit, setup, ["--mac", DPS.mac, "--verify", "--verify-timeout", "60"])
        #expect(r.status == 1, "\(r.stdout) \(r.stderr)")
        #expect(r.stdout.contains("provisioned") && r.stdout.contains("Verification:"), "\(r.stdout)")
        #expect(r.stdout.contains("Outcome:") && r.stdout.contains("unauthorized"), "\(r.stdout)")
        #expect(r.stdout.contains("Diagnosis:") && r.stdout.contains("refused"), "\(r.stdout)")
        #expect(r.stderr.contains("[ERR] verify: unauthorized"), "\(r.stderr)")
        let row = try #require(try Registry(path: setup.directory + "/registry.sqlite").allBoards().first)
        #expect(row.state == .done)
        #expect(row.verification?.outcome == "unauthorized" && row.verification?.assignedHub == nil)
        let shown = try Self.registry(setup, ["show", "1", "--json"])
        #expect(shown.stdout.contains(#""outcome" : "unauthorized""#) || shown.stdout.contains(#""outcome":"unauthorized""#),
                "\(shown.stdout)")
    }

    @Test("usage: --verify-timeout needs --verify and at least 1 s")
    func usage() throws {
        for extra in [["--verify-timeout", "30"], ["--verify", "--verify-timeout", "0"]] {
            let r = try TestProcess.run(
                [TestProcess.devkitBinary, "provision", "--port", "/dev/null", "--elf", "x.elf", "--generate-uds"] + extra,
                timeout: 120)
            #expect(r.status == 64, "\(extra): \(r.stderr)")
        }
    }

    @Test("watch with a profile's [verify]: two boards in parallel, each line ends with its outcome; `devkit verify` records too")
    func watchTwoBoards() async throws {
        let setup = try DPS.Setup(["--iot-hub", Self.hub])
        let first = try VerifyCLITests.board(try setup.sketch(), directory: setup.directory)
        defer { first.stop() }
        // A second board: another MAC (so another registration ID).
        let stateFile = setup.directory + "/kit-second.json"
        try VirtualDevKitState(uds: DPS.uds).save(to: stateFile)
        let second = try VirtualDevKit(
            configuration: VirtualDevKitConfiguration(
                mode: .configuration, macAddress: "a4cf120b9e32", firmwareVersion: DPS.version, stateFile: stateFile),
            sketch: try setup.sketch())
        second.start()
        defer { second.stop() }
        let db = setup.directory + "/registry.sqlite"
        try """
            output_dir = "out"
            [firmware]
            bin = "\(DPS.firmware)/Tiny.ino.bin"
            map = "\(DPS.firmware)/Tiny.ino.map"
            [uds]
            policy = "generate"
            [dps]
            connection_string_file = "\(setup.dps.connectionStringFile)"
            endpoint = "\(setup.dps.url)"
            ca_file = "\(setup.dps.caFile)"
            [verify]
            enabled = true
            timeout = 90
            """.write(toFile: setup.directory + "/p.toml", atomically: false, encoding: .utf8)
        let running = try BackgroundDevkit(
            ["watch", "--profile", setup.directory + "/p.toml", "--registry", db,
             "--port", first.devicePath, "--port", second.devicePath])
        let r = try await Self.pressResetWhenEnrolled(
            [(first, DPS.mac), (second, "a4cf120b9e32")], db: db, running, limit: .seconds(200), together: true)
        #expect(r.status == 0, "\(r.stderr)")
        let lines = r.stderr.split(separator: "\n")
        for (kit, id) in [(first, DPS.registrationID), (second, "az-a4cf120b9e32v1v6v2")] {
            let line = lines.first { $0.hasPrefix("[\(kit.devicePath)] provisioned \(id)") }
            #expect(line?.hasSuffix("enrolled in DPS (created) · assigned \(Self.hub)") == true, "\(r.stderr)")
        }
        // The verifications overlapped: each board's began (in the log's order)
        // before the other's ended, which needs both threads following at once.
        func index(_ kit: VirtualDevKit, _ step: String) -> Int? {
            lines.firstIndex { $0.hasPrefix("[\(kit.devicePath)] [\(step)] verify:") }
        }
        for (one, other) in [(first, second), (second, first)] {
            let began = try #require(index(one, "..."), "\(r.stderr)")
            let ended = try #require(index(other, "ok "), "\(r.stderr)")
            #expect(began < ended, "\(r.stderr)")
        }
        let rows = try Registry(path: db).allBoards()
        #expect(rows.count == 2 && rows.allSatisfy { $0.verification?.outcome == "assigned" }, "\(rows.map(\.verification))")

        // A later `devkit verify` that sees nothing (the board runs its sketch and
        // nobody presses reset) times out; inconclusive, it leaves the row's
        // definitive `assigned` as it was.
        let before = try #require(try Registry(path: db).board(byRegistrationID: DPS.registrationID)?.verification)
        let again = try VerifyCLITests.verify(first, setup, ["--json", "--registration-id", DPS.registrationID], timeout: 3)
        #expect(again.status == 75, "\(again.stdout) \(again.stderr)")
        #expect(try VerifyCLITests.json(again)["outcome"] as? String == "timeout")
        let row = try #require(try Registry(path: db).board(byRegistrationID: DPS.registrationID))
        #expect(row.verification == before && row.verification?.outcome == "assigned")
        let other = try #require(try Registry(path: db).board(byRegistrationID: "az-a4cf120b9e32v1v6v2"))
        #expect(other.verification?.outcome == "assigned")
    }
}

extension ProvisionVerifyCLITests {
    @Test("autoconfigure with a profile's [verify]: the JSON result holds the outcome, exit 0")
    func autoconfigure() async throws {
        let setup = try DPS.Setup(["--iot-hub", Self.hub])
        let kit = try VerifyCLITests.board(try setup.sketch(), directory: setup.directory)
        defer { kit.stop() }
        let db = setup.directory + "/registry.sqlite"
        try """
            output_dir = "out"
            [firmware]
            bin = "\(DPS.firmware)/Tiny.ino.bin"
            map = "\(DPS.firmware)/Tiny.ino.map"
            [uds]
            policy = "generate"
            [dps]
            connection_string_file = "\(setup.dps.connectionStringFile)"
            endpoint = "\(setup.dps.url)"
            ca_file = "\(setup.dps.caFile)"
            [verify]
            timeout = 90
            """.write(toFile: setup.directory + "/p.toml", atomically: false, encoding: .utf8)
        let running = try BackgroundDevkit(
            ["autoconfigure", "--port", kit.devicePath, "--profile", setup.directory + "/p.toml", "--registry", db, "--json"])
        let r = try await Self.pressResetWhenEnrolled([(kit, DPS.mac)], db: db, running, limit: .seconds(150))
        #expect(r.status == 0, "\(r.stdout) \(r.stderr)")
        let result = try #require(Self.jsonLines(r.stdout).last)
        let verification = try #require(result["verification"] as? [String: Any], "\(r.stdout)")
        #expect(verification["outcome"] as? String == "assigned" && verification["assigned_hub"] as? String == Self.hub)
        #expect(try Registry(path: db).allBoards().first?.verification?.outcome == "assigned")
    }
}

extension ProvisionVerifyCLITests {
    /// `provision` of `kit` as ``provision(_:_:_:timeout:)`` does, with `--json`, in the background.
    static func provisionInBackground(_ kit: VirtualDevKit, _ setup: DPS.Setup, _ extra: [String]) throws -> BackgroundDevkit {
        try BackgroundDevkit(
            ["provision", "--port", kit.devicePath,
             "--bin", "\(DPS.firmware)/Tiny.ino.bin", "--map", "\(DPS.firmware)/Tiny.ino.map",
             "--uds-file", setup.directory + "/uds.hex", "--output-dir", setup.directory + "/out",
             "--registry", setup.directory + "/registry.sqlite", "--json"] + extra)
    }

    @Test("provision --verify: a board whose log never says how registering went times out, exit 75, recorded")
    func verifyTimeoutExits75() throws {
        let setup = try DPS.Setup()
        // No sketch: the board boots after `exit` and never tries DPS, so nothing answers.
        let kit = try VerifyCLITests.board(nil, directory: setup.directory)
        defer { kit.stop() }
        let r = try Self.provision(kit, setup, ["--mac", DPS.mac, "--verify", "--verify-timeout", "3", "--json"])
        #expect(r.status == 75, "\(r.stdout) \(r.stderr)")
        let result = try #require(Self.jsonLines(r.stdout).last { $0["event"] as? String == "result" }, "\(r.stdout)")
        let verification = try #require(result["verification"] as? [String: Any], "\(r.stdout)")
        #expect(verification["outcome"] as? String == "timeout" && verification["error"] == nil, "\(r.stdout)")
        let row = try #require(try Registry(path: setup.directory + "/registry.sqlite").allBoards().first)
        #expect(row.state == .done && row.verification?.outcome == "timeout")
    }

    @Test("provision --verify: the board unplugged during verification, not back: exit 69, the JSON says why")
    func boardGoneDuringVerifyExits69() async throws {
        let setup = try DPS.Setup()
        let kit = try VerifyCLITests.board(nil, directory: setup.directory)
        defer { kit.stop() }
        let db = setup.directory + "/registry.sqlite"
        let running = try Self.provisionInBackground(kit, setup, ["--mac", DPS.mac, "--verify", "--verify-timeout", "120"])
        // Provisioned (its row done) and the port open again: verify's.
        let ready = ContinuousClock.now + .seconds(120)
        var verifying = false
        while !verifying, running.process.isRunning, ContinuousClock.now < ready {
            blockingSleep(milliseconds: 100)
            // Read-only, once the file is there: a writing open racing devkit's
            // creation of the registry could make devkit fail.
            guard FileManager.default.fileExists(atPath: db) else { continue }
            verifying = (try? Registry(path: db, readOnly: true).allBoards().first?.state) == .done
                && running.hasOpen(kit.devicePath)
        }
        if !verifying {
            running.process.terminate()
            _ = running.wait(timeout: .seconds(30))
            let err = String(decoding: running.stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            Issue.record("never verifying: \(err)")
            return
        }
        blockingSleep(milliseconds: 2000)
        kit.unplug()
        let status = running.wait(timeout: .seconds(100))
        let out = String(decoding: running.stdout.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let err = String(decoding: running.stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(status == 69, "\(out) \(err)")
        #expect(err.contains("went away"), "\(err)")
        // Asked and failed: not the `null` of "not asked".
        let result = try #require(Self.jsonLines(out).last { $0["event"] as? String == "result" }, "\(out)")
        let verification = try #require(result["verification"] as? [String: Any], "\(out)")
        #expect(verification["outcome"] as? String == "error", "\(out)")
        #expect((verification["error"] as? String)?.contains("went away") == true, "\(out)")
        let row = try #require(try Registry(path: db).allBoards().first)
        #expect(row.state == .done && row.verification == nil)
    }
}
