import DevKitTestSupport
import DiceRIoT
import Foundation
import SerialPort
import Testing
import VirtualDevKit
import VirtualDevKitDPS

#if canImport(Glibc)
import Glibc
#endif

/// The virtual DevKit's DPS sample (user mode) against the built `devkit
/// emulate-dps`: real mutual TLS on loopback, the board on a real pty, the
/// certificate enrolled with the built `devkit cert` and `devkit dps enroll`.
@Suite("virtual DevKit registers with the local DPS", .serialized)
struct VirtualBoardDPSTests {
    static let uds = "19e25a259d0c2be03a02d416c05c48ccd0cc7d1743458aae1cb488b074993eae"
    static let mac = "a4cf120b9e31"
    static let version = "1.6.2"
    static let registrationID = "az-a4cf120b9e31v1v6v2"
    static let firmware = CertCommandTests.vectorsRoot.appendingPathComponent("firmware").path

    /// A scratch directory, a started emulator, and the UDS file.
    final class Setup {
        let directory: String
        let dps: TestDPSEmulator
        init(_ emulatorArguments: [String] = []) throws {
            directory = consoleTestDirectory()
            try (VirtualBoardDPSTests.uds + "\n").write(toFile: directory + "/uds.hex", atomically: false, encoding: .utf8)
            dps = try TestDPSEmulator(stateDirectory: directory + "/dps", arguments: emulatorArguments)
        }
        deinit {
            dps.stop()
            try? FileManager.default.removeItem(atPath: directory)
        }

        /// `devkit cert` for firmware `name` (a dice-vectors image), then `devkit dps enroll`.
        func enroll(firmware name: String, extra: [String] = []) throws {
            let out = directory + "/cert-\(name)"
            let cert = try TestProcess.run([
                TestProcess.devkitBinary, "cert", "--bin", "\(VirtualBoardDPSTests.firmware)/\(name).ino.bin",
                "--map", "\(VirtualBoardDPSTests.firmware)/\(name).ino.map", "--uds-file", directory + "/uds.hex",
                "--mac", VirtualBoardDPSTests.mac, "--firmware-version", VirtualBoardDPSTests.version, "--output-dir", out,
            ], timeout: 120)
            #expect(cert.status == 0, "\(cert.stderr)")
            let enroll = try TestProcess.run(
                [TestProcess.devkitBinary, "dps", "enroll", "--cert", "\(out)/\(VirtualBoardDPSTests.registrationID).pem"]
                    + dps.dpsArguments() + extra, timeout: 120)
            #expect(enroll.status == 0, "\(enroll.stderr)")
        }

        func sketch(firmware name: String = "Tiny", ca: Bool = true, endpoint: String? = nil, timeout: Duration = .seconds(20)) throws -> DPSSampleSketch {
            let image = try RIoTImage(
                bin: Array(try Data(contentsOf: URL(fileURLWithPath: "\(VirtualBoardDPSTests.firmware)/\(name).ino.bin"))),
                map: Array(try Data(contentsOf: URL(fileURLWithPath: "\(VirtualBoardDPSTests.firmware)/\(name).ino.map"))))
            let caPEM = ca ? try String(contentsOfFile: dps.caFile, encoding: .utf8) : nil
            return DPSSampleSketch(settings: .init(
                endpoint: URL(string: endpoint ?? dps.url)!, idScope: dps.idScope, trustedCAPEM: caPEM, image: image, timeout: timeout))
        }
    }

    /// Boots a board in user mode with `sketch` and returns what it printed on its
    /// pty until an outcome line (or 40 s).
    static func boardLog(
        _ sketch: DPSSampleSketch?, uds: String? = uds, faults: VirtualDevKitConfiguration.Faults = .init(),
        logStyle: VirtualDevKitConfiguration.LogStyle = .timestamped
    ) async throws -> String {
        // The secure element as `set_dps_uds` left it.
        let stateFile = consoleTestDirectory() + "/kit.json"
        defer { try? FileManager.default.removeItem(atPath: (stateFile as NSString).deletingLastPathComponent) }
        try VirtualDevKitState(uds: uds).save(to: stateFile)
        var configuration = VirtualDevKitConfiguration(
            mode: .user, macAddress: mac, firmwareVersion: version, stateFile: stateFile, faults: faults)
        configuration.logStyle = logStyle
        let kit = try VirtualDevKit(configuration: configuration, sketch: sketch)
        defer { kit.stop() }
        // Opened before the board boots: a user-mode log is not replayed to later hosts.
        let port = try SerialPort(path: kit.devicePath)
        defer { port.close() }
        kit.start()
        var text = ""
        let deadline = ContinuousClock.now + .seconds(40)
        let outcomes = ["Registration Information received from service", "registration failed!", ">>>No Wi-Fi."]
        // Short reads and sleeps: the test holds no concurrency-pool thread for long.
        func readSome() async {
            let bytes = (try? port.read(deadline: .now + .milliseconds(5))) ?? []
            text += String(decoding: bytes, as: UTF8.self)
            if bytes.isEmpty { blockingSleep(milliseconds: 50) }
        }
        while ContinuousClock.now < deadline, !outcomes.contains(where: { text.contains($0) }) { await readSome() }
        // The rest of the outcome's line(s).
        let rest = ContinuousClock.now + .milliseconds(300)
        while ContinuousClock.now < rest { await readSome() }
        return text
    }

    func status(_ setup: Setup) throws -> ProcessResult {
        try TestProcess.run([TestProcess.devkitBinary, "dps", "status", Self.registrationID] + setup.dps.dpsArguments(), timeout: 120)
    }

    @Test("enrolled from its firmware, the board is assigned; dps status shows the hub and device ID")
    func assigned() async throws {
        let setup = try Setup(["--iot-hub", "test-hub.azure-devices.net"])
        try setup.enroll(firmware: "Tiny")
        let log = try await Self.boardLog(try setup.sketch())
        #expect(log.contains("DevKit MAC Address: \(Self.mac)"), "\(log)")
        #expect(log.contains("The riot_core start address: 0x"), "\(log)")
        #expect(log.contains("   DPS Version: "), "\(log)")
        #expect(log.contains(">>>Provisioning Status: PROV_DEVICE_REG_STATUS_CONNECTED"), "\(log)")
        #expect(log.contains("\r\nRegistration status: REGISTERING\r\n"), "\(log)")
        #expect(log.contains("PUT /\(setup.dps.idScope)/registrations/\(Self.registrationID)/register?api-version=2018-09-01-preview"), "\(log)")
        #expect(log.contains("HTTP Status: 202"), "\(log)")
        #expect(log.contains("INFO:  Registration Information received from service: test-hub.azure-devices.net!\r\n"), "\(log)")
        #expect(!log.contains("registration failed!"), "\(log)")
        let r = try status(setup)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("assigned"), "\(r.stdout)")
        #expect(r.stdout.contains("test-hub.azure-devices.net"), "\(r.stdout)")
        #expect(r.stdout.contains("Device ID:") && r.stdout.contains(Self.registrationID), "\(r.stdout)")
    }

    @Test("firmware mismatch: enrolled for firmware A, running B is refused 401002; enrolling B's certificate fixes it")
    func firmwareMismatch() async throws {
        let setup = try Setup()
        try setup.enroll(firmware: "Tiny")
        let refused = try await Self.boardLog(try setup.sketch(firmware: "Pad55"))
        #expect(refused.contains("HTTP Status: 401"), "\(refused)")
        #expect(refused.contains(#""errorCode":401002"#) && refused.contains(#""message":"Invalid certificate""#), "\(refused)")
        #expect(refused.contains("The device is unauthorized with service"), "\(refused)")
        #expect(refused.contains("Failure encountered on registration!"), "\(refused)")
        #expect(refused.contains("\r\nregistration failed!\r\n"), "\(refused)")
        let failed = try status(setup)
        #expect(failed.stdout.contains("failed"), "\(failed.stdout)")

        try setup.enroll(firmware: "Pad55", extra: ["--replace"])
        let assigned = try await Self.boardLog(try setup.sketch(firmware: "Pad55"))
        #expect(assigned.contains("Registration Information received from service: "), "\(assigned)")
    }

    @Test("a disabled enrollment: the device has been disabled")
    func disabled() async throws {
        let setup = try Setup()
        try setup.enroll(firmware: "Tiny", extra: ["--disabled"])
        let log = try await Self.boardLog(try setup.sketch())
        #expect(log.contains("The device has been disabled by DPS service"), "\(log)")
        #expect(log.contains("registration failed!"), "\(log)")
        #expect(try status(setup).stdout.contains("disabled"))
    }

    @Test("the SDK console logger's prefixes, when chosen")
    func sdkLogStyle() async throws {
        let setup = try Setup()
        let log = try await Self.boardLog(try setup.sketch(firmware: "Pad55"), logStyle: .sdk)
        #expect(log.contains("Info: DevKit MAC Address: \(Self.mac)\r\n"), "\(log)")
        #expect(log.contains("Error: Time:") && log.contains("File:prov_device_ll_client.c Func:"), "\(log)")
        #expect(log.contains("Line:146 Failure encountered on registration!"), "\(log)")
        #expect(!log.contains(" INFO:  "), "\(log)")
    }

    @Test("no UDS stored, or unreadable: the EEPROM line, no DPS request")
    func noUDS() async throws {
        let setup = try Setup()
        for (uds, faults) in [(nil, VirtualDevKitConfiguration.Faults()), (Self.uds, .init(udsUnreadable: true))] {
            let log = try await Self.boardLog(try setup.sketch(), uds: uds, faults: faults)
            #expect(log.contains("Unable to get DPS UDS string from EEPROM. Please set the value in configuration mode."), "\(log)")
            #expect(log.contains("registration failed!") && !log.contains("PUT /"), "\(log)")
        }
    }

    @Test("a UDS of the wrong length, or DiceInit failing")
    func badUDS() async throws {
        let setup = try Setup()
        let short = try await Self.boardLog(try setup.sketch(), uds: "0123abcd")
        #expect(short.contains("The length of DPS UDS string must be 64."), "\(short)")
        #expect(short.contains("Please set the value with correct length in configuration mode."), "\(short)")
        let empty = try await Self.boardLog(try setup.sketch(), uds: "")
        #expect(empty.contains("The DPS UDS string is empty."), "\(empty)")
        let notHex = try await Self.boardLog(try setup.sketch(), uds: String(repeating: "z", count: 64))
        #expect(notHex.contains("DiceInit failed! Check UDS string provided or set on configuration mode"), "\(notHex)")
        let fault = try await Self.boardLog(try setup.sketch(), faults: .init(diceInitFailure: true))
        #expect(fault.contains("DiceInit failed!") && !fault.contains("PUT /"), "\(fault)")
    }

    @Test("no Wi-Fi")
    func noWiFi() async throws {
        let setup = try Setup()
        let log = try await Self.boardLog(try setup.sketch(), faults: .init(noWiFi: true))
        #expect(log.contains("\r\n>>>No Wi-Fi.\r\n") && !log.contains("DPS Version"), "\(log)")
    }

    @Test("no CA given: the stock roots do not trust the local DPS; a TLS error, then registration failed")
    func untrustedServer() async throws {
        let setup = try Setup()
        try setup.enroll(firmware: "Tiny")
        let log = try await Self.boardLog(try setup.sketch(ca: false))
        #expect(log.contains("TLS handshake with the provisioning service failed"), "\(log)")
        #expect(log.contains("registration failed!") && !log.contains("HTTP Status"), "\(log)")
    }

    @Test("DPS unreachable: the client gives up at its timeout")
    func unreachable() async throws {
        let setup = try Setup()
        let port = try closedLoopbackPort()
        let start = ContinuousClock.now
        let log = try await Self.boardLog(try setup.sketch(endpoint: "https://127.0.0.1:\(port)", timeout: .seconds(2)))
        #expect(log.contains("Timed out connecting to provisioning service"), "\(log)")
        #expect(log.contains("registration failed!"), "\(log)")
        #expect(ContinuousClock.now - start < .seconds(15))
    }

    @Test("DPS never answers (a listener that takes the connection and says nothing): timeout waiting for reply")
    func neverAnswers() async throws {
        let setup = try Setup()
        // Listening, never accepting: the kernel completes the TCP handshake, the TLS one never comes.
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        try withUnsafeMutablePointer(to: &address) { p in
            try p.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                guard bind(fd, $0, length) == 0, listen(fd, 8) == 0, getsockname(fd, $0, &length) == 0 else {
                    throw POSIXError(.EADDRINUSE)
                }
            }
        }
        let port = Int(UInt16(bigEndian: address.sin_port))
        let start = ContinuousClock.now
        let log = try await Self.boardLog(try setup.sketch(endpoint: "https://127.0.0.1:\(port)", timeout: .seconds(2)))
        #expect(log.contains("Timeout waiting for reply") || log.contains("Timed out connecting to provisioning service"), "\(log)")
        #expect(log.contains("registration failed!") && !log.contains("HTTP Status"), "\(log)")
        #expect(ContinuousClock.now - start < .seconds(15))
    }

    @Test("the bundled sample image measures (embedded in the code, no bundle)")
    func sampleImage() throws {
        let image = try DPSSampleSketch.sampleImage()
        let tiny = try RIoTImage(
            bin: Array(try Data(contentsOf: URL(fileURLWithPath: "\(Self.firmware)/Tiny.ino.bin"))),
            map: Array(try Data(contentsOf: URL(fileURLWithPath: "\(Self.firmware)/Tiny.ino.map"))))
        #expect(image == tiny)
        #expect(DPSSampleSketch.stockRootsPEM.components(separatedBy: "BEGIN CERTIFICATE").count == 3)
    }

    @Test("devkit emulate --dps-endpoint: the built board registers after a reset (SIGHUP) with a host listening")
    func emulateCommand() async throws {
        let setup = try Setup()
        try setup.enroll(firmware: "Tiny")
        let state = setup.directory + "/kit.json"
        try VirtualDevKitState(uds: Self.uds).save(to: state)
        let link = setup.directory + "/tty"
        let board = try BackgroundDevkit([
            "emulate", "--json", "--mode", "user", "--state", state, "--link", link,
            "--mac", Self.mac, "--firmware-version", Self.version,
            "--dps-endpoint", setup.dps.url, "--id-scope", setup.dps.idScope, "--ca-file", setup.dps.caFile,
            "--bin", "\(Self.firmware)/Tiny.ino.bin", "--map", "\(Self.firmware)/Tiny.ino.map",
        ])
        defer {
            kill(board.process.processIdentifier, SIGTERM)
            _ = board.wait()
        }
        _ = try #require(board.firstLine())
        let line = try EmulateCommandTests.Line(path: link)
        kill(board.process.processIdentifier, SIGHUP)
        // Short blocking reads between sleeps: no concurrency-pool thread held for long.
        var log: String?
        let deadline = ContinuousClock.now + .seconds(30)
        while log == nil, ContinuousClock.now < deadline {
            log = line.read(through: "received from service: ", timeout: .milliseconds(20))
            if log == nil { blockingSleep(milliseconds: 50) }
        }
        #expect(log?.contains("PUT /\(setup.dps.idScope)/registrations/\(Self.registrationID)/register") == true, "\(log ?? "nothing")")
        #expect(board.firstLine()?.contains(#""event":"reset""#) == true)
        let r = try status(setup)
        #expect(r.stdout.contains("assigned"), "\(r.stdout)")
    }

    @Test("devkit emulate: the DPS options go together; emulate-dps checks --id-scope and --iot-hub")
    func emulateOptions() throws {
        for (arguments, message) in [
            (["--dps-endpoint", "https://127.0.0.1:1"], "together"),
            (["--ca-file", "x.pem"], "take effect with --dps-endpoint"),
            (["--dps-endpoint", "http://127.0.0.1:1", "--id-scope", "0ne1"], "https"),
            (["--dps-endpoint", "https://127.0.0.1:1", "--id-scope", "0ne1", "--bin", "a.bin"], "--bin needs --map"),
        ] {
            let r = try TestProcess.run([TestProcess.devkitBinary, "emulate"] + arguments, timeout: 120)
            #expect(r.status == 64, "\(arguments): \(r.stderr)")
            #expect(r.stderr.contains(message), "\(arguments): \(r.stderr)")
        }
        for (arguments, message) in [(["--id-scope", "0ne/1"], "--id-scope"), (["--iot-hub", "a hub"], "--iot-hub")] {
            let r = try TestProcess.run([TestProcess.devkitBinary, "emulate-dps"] + arguments, timeout: 120)
            #expect(r.status == 64 && r.stderr.contains(message), "\(arguments): \(r.stderr)")
        }
        let r = try TestProcess.run([TestProcess.devkitBinary, "emulate", "--mode", "user", "--dps-endpoint", "https://127.0.0.1:1",
            "--id-scope", "0ne1", "--elf", "/nonexistent/a.elf"], timeout: 120)
        #expect(r.status != 0 && r.stderr.contains("/nonexistent/a.elf"), "\(r.stderr)")
    }
}
