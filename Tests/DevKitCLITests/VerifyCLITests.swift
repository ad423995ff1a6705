import DevKitModel
import DevKitRegistry
import DevKitTestSupport
import DiceRIoT
import Foundation
import SerialPort
import Testing
import VirtualDevKit
import VirtualDevKitDPS

/// The built `devkit verify` against the virtual DevKit (its DPS sample sketch) and
/// the built `devkit emulate-dps`: real ptys, real mutual TLS on loopback.
@Suite("devkit verify", .serialized)
struct VerifyCLITests {
    typealias DPS = VirtualBoardDPSTests

    /// A virtual board (started) with the DPS sample sketch; `mode` is the mode it boots in.
    static func board(
        _ sketch: DPSSampleSketch?, mode: VirtualDevKitConfiguration.Mode = .configuration,
        faults: VirtualDevKitConfiguration.Faults = .init(), directory: String, linkPath: String? = nil
    ) throws -> VirtualDevKit {
        let stateFile = directory + "/kit-\(UUID().uuidString).json"
        try VirtualDevKitState(uds: DPS.uds).save(to: stateFile)
        let configuration = VirtualDevKitConfiguration(
            mode: mode, macAddress: DPS.mac, firmwareVersion: DPS.version, stateFile: stateFile, linkPath: linkPath, faults: faults)
        let kit = try VirtualDevKit(configuration: configuration, sketch: sketch)
        kit.start()
        return kit
    }

    /// `devkit verify` on `kit`'s port, no registry of the user's read.
    static func verify(_ kit: VirtualDevKit, _ setup: DPS.Setup, _ extra: [String] = [], timeout: Int = 40)
        throws -> ProcessResult
    {
        try TestProcess.run(
            [TestProcess.devkitBinary, "verify", "--port", kit.devicePath, "--timeout", String(timeout),
             "--registry", setup.directory + "/registry.sqlite"] + extra,
            timeout: Double(timeout + 20))
    }

    static func json(_ r: ProcessResult) throws -> [String: Any] {
        try #require(JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], "\(r.stdout) \(r.stderr)")
    }

    @Test("a board in configuration mode is sent exit, registers: assigned, exit 0, hub and device ID from DPS in JSON")
    func assigned() throws {
        let setup = try DPS.Setup(["--iot-hub", "test-hub.azure-devices.net"])
        try setup.enroll(firmware: "Tiny")
        let kit = try Self.board(try setup.sketch(), directory: setup.directory)
        defer { kit.stop() }
        let r = try Self.verify(kit, setup, ["--json"] + setup.dps.dpsArguments())
        #expect(r.status == 0, "\(r.stdout) \(r.stderr)")
        let object = try Self.json(r)
        #expect(object["outcome"] as? String == "assigned")
        #expect(object["assigned_hub"] as? String == "test-hub.azure-devices.net")
        #expect(object["registration_id"] as? String == DPS.registrationID)
        #expect(object["device_id"] as? String == DPS.registrationID)
        let evidence = try #require(object["evidence"] as? [String])
        #expect(evidence.contains { $0.contains("Registration Information received from service: test-hub") }, "\(evidence)")
        #expect(object["diagnosis"] as? String != nil)
    }

    @Test("firmware mismatch end to end: enrolled for A, running B is unauthorized and the diagnosis names the firmware; enrolling B's verifies")
    func firmwareMismatch() throws {
        let setup = try DPS.Setup()
        try setup.enroll(firmware: "Tiny")
        do {
            let kit = try Self.board(try setup.sketch(firmware: "Pad55"), directory: setup.directory)
            defer { kit.stop() }
            let r = try Self.verify(kit, setup)
            #expect(r.status == 1, "\(r.stdout) \(r.stderr)")
            #expect(r.stdout.contains("Outcome") && r.stdout.contains("unauthorized"), "\(r.stdout)")
            #expect(r.stdout.contains("401002") && r.stdout.contains("firmware"), "\(r.stdout)")
            #expect(r.stdout.contains("rebuilt or updated since it was measured"), "\(r.stdout)")
        }
        try setup.enroll(firmware: "Pad55", extra: ["--replace"])
        let kit = try Self.board(try setup.sketch(firmware: "Pad55"), directory: setup.directory)
        defer { kit.stop() }
        let r = try Self.verify(kit, setup, ["--json"])
        #expect(r.status == 0, "\(r.stdout) \(r.stderr)")
        #expect(try Self.json(r)["outcome"] as? String == "assigned")
    }

    @Test("unauthorized, DPS asked: its enrollment deleted after an assignment is named as the cause; no stale hub shown")
    func unauthorizedEnrollmentDeleted() throws {
        let setup = try DPS.Setup()
        try setup.enroll(firmware: "Tiny")
        let dpsOptions = setup.dps.dpsArguments()
        do {
            // Registered once: DPS keeps that registration's state (hub, device ID).
            let kit = try Self.board(try setup.sketch(), directory: setup.directory)
            defer { kit.stop() }
            let r = try Self.verify(kit, setup, ["--json"] + dpsOptions)
            #expect(try Self.json(r)["outcome"] as? String == "assigned", "\(r.stdout) \(r.stderr)")
        }
        let deleted = try TestProcess.run(
            [TestProcess.devkitBinary, "dps", "delete", DPS.registrationID] + setup.dps.dpsArguments(), timeout: 120)
        #expect(deleted.status == 0, "\(deleted.stderr)")
        let kit = try Self.board(try setup.sketch(), directory: setup.directory)
        defer { kit.stop() }
        let r = try Self.verify(kit, setup, ["--json"] + dpsOptions)
        #expect(r.status == 1, "\(r.stdout) \(r.stderr)")
        let object = try Self.json(r)
        #expect(object["outcome"] as? String == "unauthorized")
        #expect(object["assigned_hub"] == nil || object["assigned_hub"] is NSNull, "\(object)")
        #expect(object["device_id"] == nil || object["device_id"] is NSNull, "\(object)")
        let diagnosis = object["diagnosis"] as? String ?? ""
        #expect(diagnosis.contains("DPS has no enrollment for \(DPS.registrationID)") && !diagnosis.contains("firmware"),
                "\(diagnosis)")
    }

    @Test("no Wi-Fi, no UDS: their outcome, exit 1")
    func faults() throws {
        let setup = try DPS.Setup()
        for (faults, outcome) in [
            (VirtualDevKitConfiguration.Faults(noWiFi: true), "no_wifi"),
            (VirtualDevKitConfiguration.Faults(udsUnreadable: true), "no_uds"),
        ] {
            let kit = try Self.board(try setup.sketch(), faults: faults, directory: setup.directory)
            defer { kit.stop() }
            let r = try Self.verify(kit, setup, ["--json"])
            #expect(r.status == 1, "\(outcome): \(r.stdout) \(r.stderr)")
            #expect(try Self.json(r)["outcome"] as? String == outcome, "\(r.stdout)")
        }
    }

    @Test("a board in user mode that prints nothing relevant: timeout, exit 75")
    func timeout() throws {
        let setup = try DPS.Setup()
        let kit = try Self.board(nil, mode: .user, directory: setup.directory)
        defer { kit.stop() }
        let start = ContinuousClock.now
        let r = try Self.verify(kit, setup, ["--json"], timeout: 5)
        #expect(r.status == 75, "\(r.stdout) \(r.stderr)")
        #expect(try Self.json(r)["outcome"] as? String == "timeout")
        #expect(ContinuousClock.now - start < .seconds(15))
        // Said in a log too (stderr is no terminal here): the wait is not silent.
        #expect(r.stderr.contains("the board is running its sketch: press its reset button"), "\(r.stderr)")
    }

    @Test("usage: --timeout at least 1, --endpoint only with --connection-string-file")
    func usage() throws {
        for arguments in [["--timeout", "0"], ["--endpoint", "https://x.example"], ["--registration-id", "a b"]] {
            let r = try TestProcess.run([TestProcess.devkitBinary, "verify", "--port", "/dev/null"] + arguments, timeout: 120)
            #expect(r.status == 64, "\(arguments): \(r.stderr)")
        }
    }
}

extension VerifyCLITests {
    @Test("a board already in user mode (no terminal): verify just follows; the board reset meanwhile registers")
    func userModeFollows() async throws {
        let setup = try DPS.Setup()
        try setup.enroll(firmware: "Tiny")
        let kit = try Self.board(try setup.sketch(), mode: .user, directory: setup.directory)
        defer { kit.stop() }
        let verify = try BackgroundDevkit([
            "verify", "--port", kit.devicePath, "--timeout", "30", "--json",
            "--registry", setup.directory + "/registry.sqlite",
        ])
        // Once verify has the port open (it looks for a prompt first), the reset button.
        // The open is watched for in /proc: a fixed second was not always enough on a
        // loaded machine, and the board's registration then went by unread.
        let opened = ContinuousClock.now + .seconds(60)
        while !verify.hasOpen(kit.devicePath) && ContinuousClock.now < opened {
            blockingSleep(milliseconds: 50)
        }
        blockingSleep(milliseconds: 1000)
        kit.reset(into: .user)
        let status = verify.wait(timeout: .seconds(40))
        let out = String(decoding: verify.stdout.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(status == 0, "\(out)")
        #expect(out.contains(#""outcome":"assigned""#), "\(out)")
        #expect(out.contains(#""registration_id":"\#(DPS.registrationID)""#), "\(out)")
    }

    @Test("human output: the outcome, the diagnosis and the evidence, escaped")
    func humanOutput() throws {
        let setup = try DPS.Setup()
        try setup.enroll(firmware: "Tiny")
        let kit = try Self.board(try setup.sketch(firmware: "Pad55"), directory: setup.directory)
        defer { kit.stop() }
        let r = try Self.verify(kit, setup)
        #expect(r.status == 1)
        #expect(r.stdout.contains("Outcome:") && r.stdout.contains("Diagnosis:"), "\(r.stdout)")
        #expect(r.stdout.contains("Evidence:\n  ") && r.stdout.contains("HTTP Status: 401"), "\(r.stdout)")
        #expect(!r.stdout.contains("\u{1b}"))
    }
}

extension VerifyCLITests {
    /// A registry row as provisioning leaves it: the board's identity and the firmware
    /// measured (a copy of Tiny, with its SHA-256), the certificate made from it.
    static func recordBoard(_ setup: DPS.Setup, firmwareVersion: String = DPS.version) throws -> (db: String, bin: String) {
        let bin = setup.directory + "/app.ino.bin", map = setup.directory + "/app.ino.map"
        try FileManager.default.copyItem(atPath: "\(DPS.firmware)/Tiny.ino.bin", toPath: bin)
        try FileManager.default.copyItem(atPath: "\(DPS.firmware)/Tiny.ino.map", toPath: map)
        func sha(_ path: String) throws -> String {
            String(try TestProcess.run(["/usr/bin/sha256sum", path], timeout: 10).stdout.prefix(64))
        }
        let settings: [String: Any] = [
            "firmware_bin": bin, "firmware_map": map, "firmware_sha256": [bin: try sha(bin), map: try sha(map)],
            "output_directory": setup.directory, "registration_id_scheme": "mac-version",
        ]
        let json = String(decoding: try JSONSerialization.data(withJSONObject: settings), as: UTF8.self)
        let db = setup.directory + "/registry.sqlite"
        let mac = try MACAddress(DPS.mac), version = try FirmwareVersion(firmwareVersion)
        try Registry(path: db).recordNewBoard(
            uds: try UDS(hex: DPS.uds), mac: mac, registrationID: try RegistrationID(mac: mac, firmwareVersion: version),
            firmwareVersion: version, provisionSettings: json)
        return (db, bin)
    }

    @Test("unauthorized with a registry row: the firmware file measured was rebuilt since; or the version differs")
    func registryComparison() throws {
        let setup = try DPS.Setup()
        try setup.enroll(firmware: "Tiny")
        let (_, bin) = try Self.recordBoard(setup)
        // "Rebuilt": the measured file now holds another build, which the board runs.
        try FileManager.default.removeItem(atPath: bin)
        try FileManager.default.copyItem(atPath: "\(DPS.firmware)/Pad55.ino.bin", toPath: bin)
        let kit = try Self.board(try setup.sketch(firmware: "Pad55"), directory: setup.directory)
        defer { kit.stop() }
        let r = try Self.verify(kit, setup, ["--json"])
        #expect(r.status == 1, "\(r.stderr)")
        let diagnosis = try #require(try Self.json(r)["diagnosis"] as? String)
        #expect(diagnosis.contains("match the registry's row"), "\(diagnosis)")
        #expect(diagnosis.contains("\(bin), changed since: it was rebuilt"), "\(diagnosis)")

        // A row made for another firmware version than the board runs.
        let other = try DPS.Setup()
        try other.enroll(firmware: "Tiny")
        _ = try Self.recordBoard(other, firmwareVersion: "1.6.5")
        let kit2 = try Self.board(try other.sketch(firmware: "Pad55"), directory: other.directory)
        defer { kit2.stop() }
        let r2 = try Self.verify(kit2, other, ["--json", "--registration-id", "az-a4cf120b9e31v1v6v5"])
        let d2 = try #require(try Self.json(r2)["diagnosis"] as? String)
        #expect(d2.contains("the firmware version: the board runs 1.6.2, the certificate was made for 1.6.5"), "\(d2)")
    }
}

extension VerifyCLITests {
    @Test("the board unplugged while verify still looks for a prompt, back a second later: followed, it registers")
    func unpluggedDuringThePromptSearch() async throws {
        let setup = try DPS.Setup()
        try setup.enroll(firmware: "Tiny")
        // A link, as /dev/serial/by-id is: a port that can come back (a bare /dev/pts/N cannot).
        let link = setup.directory + "/ttyDevKit"
        let kit = try Self.board(try setup.sketch(), mode: .user, directory: setup.directory, linkPath: link)
        defer { kit.stop() }
        let verify = try BackgroundDevkit([
            "verify", "--port", link, "--timeout", "30", "--json",
            "--registry", setup.directory + "/registry.sqlite",
        ])
        let opened = ContinuousClock.now + .seconds(60)
        while !verify.hasOpen(kit.devicePath) && ContinuousClock.now < opened {
            blockingSleep(milliseconds: 50)
        }
        // Within the first seconds, which verify spends looking for a configuration prompt.
        blockingSleep(milliseconds: 300)
        kit.unplug()
        blockingSleep(milliseconds: 1000)
        try kit.replug()
        blockingSleep(milliseconds: 500)
        kit.reset(into: .user)
        let status = verify.wait(timeout: .seconds(40))
        let out = String(decoding: verify.stdout.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let err = String(decoding: verify.stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(status == 0, "\(out) \(err)")
        #expect(out.contains(#""outcome":"assigned""#), "\(out) \(err)")
    }

    @Test("the board unplugged while verify follows, and not back: exit 69")
    func unplugged() async throws {
        let setup = try DPS.Setup()
        let kit = try Self.board(nil, mode: .user, directory: setup.directory)
        defer { kit.stop() }
        let verify = try BackgroundDevkit([
            "verify", "--port", kit.devicePath, "--timeout", "60", "--registry", setup.directory + "/registry.sqlite",
        ])
        // Following the board first: its port open (watched in /proc; under load the
        // process took longer to start than the 4 s given after it).
        let opened = ContinuousClock.now + .seconds(60)
        while !verify.hasOpen(kit.devicePath) && ContinuousClock.now < opened {
            blockingSleep(milliseconds: 50)
        }
        blockingSleep(milliseconds: 4000)
        kit.unplug()
        let start = ContinuousClock.now
        let status = verify.wait(timeout: .seconds(30))
        let err = String(decoding: verify.stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(status == 69, "\(err)")
        #expect(err.contains("went away") || err.contains("unplugged"), "\(err)")
        #expect(ContinuousClock.now - start < .seconds(20))
    }
}

extension VerifyCLITests {
    @Test("stock roots against the local DPS: tls_failed, the diagnosis names the Baltimore root and DigiCert Global Root G2")
    func tlsFailed() throws {
        let setup = try DPS.Setup()
        try setup.enroll(firmware: "Tiny")
        let kit = try Self.board(try setup.sketch(ca: false), directory: setup.directory)
        defer { kit.stop() }
        let r = try Self.verify(kit, setup, ["--json"])
        #expect(r.status == 1, "\(r.stderr)")
        let object = try Self.json(r)
        #expect(object["outcome"] as? String == "tls_failed", "\(r.stdout)")
        let diagnosis = try #require(object["diagnosis"] as? String)
        #expect(diagnosis.contains("Baltimore") && diagnosis.contains("DigiCert Global Root G2"), "\(diagnosis)")
        #expect(object["assigned_hub"] is NSNull && object["device_id"] is NSNull, "\(r.stdout)")
    }
}

extension VerifyCLITests {
    @Test("the enrollment disabled in the local DPS: disabled, exit 1, the diagnosis says to enable it")
    func disabled() throws {
        let setup = try DPS.Setup()
        try setup.enroll(firmware: "Tiny", extra: ["--disabled"])
        let kit = try Self.board(try setup.sketch(), directory: setup.directory)
        defer { kit.stop() }
        let r = try Self.verify(kit, setup, ["--json"])
        #expect(r.status == 1, "\(r.stdout) \(r.stderr)")
        let object = try Self.json(r)
        #expect(object["outcome"] as? String == "disabled", "\(r.stdout)")
        #expect((object["diagnosis"] as? String)?.contains("enable the enrollment") == true, "\(r.stdout)")
    }

    @Test("DiceInit failing on the board: uds_invalid, exit 1")
    func udsInvalid() throws {
        let setup = try DPS.Setup()
        let kit = try Self.board(try setup.sketch(), faults: .init(diceInitFailure: true), directory: setup.directory)
        defer { kit.stop() }
        let r = try Self.verify(kit, setup, ["--json"])
        #expect(r.status == 1, "\(r.stdout) \(r.stderr)")
        #expect(try Self.json(r)["outcome"] as? String == "uds_invalid", "\(r.stdout)")
    }

    @Test("the DPS endpoint on a closed port: unreachable once the sketch gives up, exit 1")
    func unreachable() throws {
        let setup = try DPS.Setup()
        try setup.enroll(firmware: "Tiny")
        // A port just bound and closed again (DevKitTestSupport's): nothing listens there.
        let closed = try closedLoopbackPort()
        let sketch = try setup.sketch(endpoint: "https://127.0.0.1:\(closed)", timeout: .seconds(4))
        let kit = try Self.board(sketch, directory: setup.directory)
        defer { kit.stop() }
        let r = try Self.verify(kit, setup, ["--json"])
        #expect(r.status == 1, "\(r.stdout) \(r.stderr)")
        let object = try Self.json(r)
        #expect(object["outcome"] as? String == "unreachable", "\(r.stdout)")
        #expect((object["diagnosis"] as? String)?.contains("could not reach DPS") == true, "\(r.stdout)")
    }
}
