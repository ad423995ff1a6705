import DevKitConsole
import DevKitModel
import SerialPort
import Testing
import VirtualDevKit

/// Runs `body` with a session on a started virtual DevKit; stops the kit afterwards.
func withEmulatedSession<T>(
    _ configuration: VirtualDevKitConfiguration = .init(), timeouts: ConsoleSession.Timeouts = .init(),
    _ body: (VirtualDevKit, ConsoleSession) throws -> T
) throws -> T {
    let kit = try VirtualDevKit(configuration: configuration)
    kit.start()
    defer { kit.stop() }
    let port = try SerialPort(path: kit.devicePath)
    defer { port.close() }
    return try body(kit, ConsoleSession(transport: port, timeouts: timeouts))
}

let sessionUDS = "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF"

@Suite("ConsoleSession against the virtual DevKit")
struct SessionEmulatorTests {
    @Test func everyCommand() throws {
        try withEmulatedSession(.init(networks: ["DevKitLab", "Guest Net"])) { kit, session in
            try session.synchronize()
            let help = try session.help()
            #expect(help.map(\.name) == ConsoleCommand.allNames)
            #expect(help.first { $0.name == "set_dps_uds" }?.help == "Set DPS Unique Device Secret (UDS) for X.509 certificates.")

            let versions = try session.version()
            #expect(versions.firmwareVersion.text == "1.6.2")
            #expect(versions.mbedOS == "5.4.3")
            #expect(versions.wifi == kit.configuration.wifiVersion)

            #expect(try session.scan() == ["DevKitLab", "Guest Net"])

            try session.setUDS(UDS(hex: sessionUDS))
            #expect(kit.state.uds == sessionUDS.lowercased())
            try session.setWiFiSSID("Lab \"5G\" Net")
            #expect(kit.state.wifiSSID == "Lab \"5G\" Net")
            try session.setWiFiPassword(WiFiPassword("pa ss\\word\""))
            #expect(kit.state.wifiPassword == "pa ss\\word\"")
            let hub = "HostName=h.azure-devices.net;DeviceId=d;SharedAccessKey=" + String(repeating: "k", count: 440)
            try session.setIoTHubConnectionString(ConnectionString(hub))
            #expect(kit.state.connectionString == hub)
            let dps = "DPSEndpoint=global.azure-devices-provisioning.net;IdScope=0ne00000000;DeviceId=d;SymmetricKey=abc="
            try session.setDPSConnectionString(ConnectionString(dps))
            #expect(kit.state.connectionString == dps)

            #expect(try session.enableSecureChannel(level: 1) == .enabled)
            #expect(try session.enableSecureChannel(level: 1) == .alreadyEnabled)
            #expect(throws: ConsoleError.self) { _ = try session.enableSecureChannel(level: 7) }

            #expect(try session.execute(line: "frobnicate now") == ["Error:Invalid command: frobnicate"])

            let log = try session.exitAndReadBootLog(timeout: .seconds(10))
            #expect(log.macAddress?.hex == "a4cf120b9e31")
            #expect(log.firmwareVersion?.text == "1.6.2")
            #expect(kit.mode == .user)
            #expect(kit.droppedByteCount == 0)
        }
    }

    @Test func scanFindsNothing() throws {
        try withEmulatedSession(.init(networks: [])) { _, session in
            try session.synchronize()
            #expect(try session.scan() == [])
        }
    }

    @Test("at 115200 pacing a 500-byte line goes through in pieces, nothing dropped")
    func pacedLongLine() throws {
        try withEmulatedSession(.init(pacingBaudRate: 115_200, faults: .init(secureElementWriteDelay: .milliseconds(30)))) { kit, session in
            try session.synchronize()
            let hub = "HostName=h.azure-devices.net;DeviceId=d;SharedAccessKey=" + String(repeating: "x", count: 450)
            try session.setIoTHubConnectionString(ConnectionString(hub))
            try session.setUDS(UDS(hex: sessionUDS))
            #expect(kit.state.connectionString == hub)
            #expect(kit.state.uds == sessionUDS.lowercased())
            #expect(kit.droppedByteCount == 0)
        }
    }

    @Test func eepromWriteFailure() throws {
        try withEmulatedSession(.init(faults: .init(eepromWriteFailure: true))) { kit, session in
            try session.synchronize()
            do {
                try session.setUDS(UDS(hex: sessionUDS))
                Issue.record("no error")
            } catch ConsoleError.commandFailed(let command, .eepromWriteFailed(let zone)) {
                #expect(command == "set_dps_uds")
                #expect(zone == 0x06)
            }
            #expect(kit.state.uds == nil)
            #expect(session.state == .atPrompt)
        }
    }

    @Test func verifyFailure() throws {
        try withEmulatedSession(.init(faults: .init(verifyFailure: true))) { _, session in
            try session.synchronize()
            #expect(throws: ConsoleError.commandFailed(command: "set_wifissid", .verifyFailed)) {
                try session.setWiFiSSID("Lab")
            }
        }
    }

    @Test("line noise before the banner is skipped")
    func lineNoise() throws {
        try withEmulatedSession(.init(faults: .init(lineNoiseBytes: 300))) { kit, session in
            // The boot's noise went to nobody before the port was open: reset the
            // board now, so the session reads the noise, the banner and the help.
            kit.reset(into: .configuration)
            try session.synchronize()
            #expect(try session.version().firmwareVersion.text == "1.6.2")
        }
    }

    @Test("slow secure-element writes: waited for, not a timeout, nothing lost")
    func slowSecureElement() throws {
        try withEmulatedSession(.init(faults: .init(secureElementWriteDelay: .milliseconds(400)))) { kit, session in
            try session.synchronize()
            try session.setUDS(UDS(hex: sessionUDS))
            try session.setWiFiSSID("Lab")
            #expect(kit.state.wifiSSID == "Lab")
            #expect(kit.droppedByteCount == 0)
        }
    }

    @Test("a write slower than the response timeout → timeout, bounded")
    func slowerThanTimeout() throws {
        var timeouts = ConsoleSession.Timeouts()
        timeouts.response = .milliseconds(300)
        try withEmulatedSession(.init(faults: .init(secureElementWriteDelay: .seconds(2))), timeouts: timeouts) { _, session in
            try session.synchronize()
            let start = ContinuousClock.now
            #expect(throws: ConsoleError.timeout(expected: "the prompt that ends the reply", after: .milliseconds(300), command: "set_dps_uds")) {
                try session.setUDS(UDS(hex: sessionUDS))
            }
            #expect(ContinuousClock.now - start < .seconds(2))
        }
    }

    @Test("unplugged mid-command → disconnected, no hang")
    func unplugMidCommand() throws {
        try withEmulatedSession(.init(faults: .init(unplugAfterReceivedBytes: 1 + 30))) { kit, session in
            try session.synchronize()
            let start = ContinuousClock.now
            #expect(throws: SerialPortError.disconnected(path: kit.devicePath)) {
                try session.setUDS(UDS(hex: sessionUDS))
            }
            #expect(ContinuousClock.now - start < .seconds(3))
        }
    }

    static let wrongModes: [(VirtualDevKitConfiguration.Mode, BoardMode)] = [
        (.user, .user(.banner)), (.ap, .accessPoint(mac: try! MACAddress("a4cf120b9e31"))),
    ]

    @Test("user and AP mode are told apart", arguments: wrongModes)
    func wrongMode(mode: VirtualDevKitConfiguration.Mode, expected: BoardMode) throws {
        var timeouts = ConsoleSession.Timeouts()
        timeouts.promptAttempt = .milliseconds(300)
        try withEmulatedSession(timeouts: timeouts) { kit, session in
            // The configuration console's first prompt may already sit in the port's
            // input; only what the board says after the reset counts.
            #expect(kit.waitUntilIdle())
            try (session.transport as! SerialPort).discardInput()
            // The port is open across the reset, so the boot text is heard.
            kit.reset(into: mode)
            #expect(kit.waitUntilIdle())
            #expect(throws: ConsoleError.wrongMode(expected)) { try session.synchronize() }
        }
    }

    @Test("after exit and a reset into configuration mode, the session synchronises again")
    func rebootIntoConfiguration() throws {
        try withEmulatedSession { kit, session in
            try session.synchronize()
            _ = try session.execute(.exit)
            kit.reset(into: .configuration)
            try session.synchronize()
            #expect(try session.version().firmwareVersion.text == "1.6.2")
        }
    }
}

/// Throws `cancelled` from the first receive after the `after`-th send (Ctrl-C, a
/// signal or a timeout while a long line is going out in pieces).
private final class InterruptingTransport: ConsoleTransport {
    struct Interrupted: Error {}
    let base: any ConsoleTransport
    let after: Int
    private(set) var sends: [[UInt8]] = []
    private var interrupted = false

    init(_ base: any ConsoleTransport, interruptAfterSend after: Int) {
        self.base = base
        self.after = after
    }

    func send(_ bytes: [UInt8], deadline: ContinuousClock.Instant) throws {
        sends.append(bytes)
        try base.send(bytes, deadline: deadline)
    }

    func receive(deadline: ContinuousClock.Instant) throws -> [UInt8] {
        if sends.count == after && !interrupted {
            interrupted = true
            throw Interrupted()
        }
        return try base.receive(deadline: deadline)
    }
}

@Suite("An interrupted long line")
struct InterruptedLineTests {
    /// Stopped after two of a connection string's three pieces: the board must not
    /// keep the 256 bytes, or the next `\r` (this session's or the next one's) would
    /// store half a connection string.
    @Test func isErasedFromTheConsole() throws {
        let kit = try VirtualDevKit(configuration: .init())
        kit.start()
        defer { kit.stop() }
        let port = try SerialPort(path: kit.devicePath)
        defer { port.close() }
        let transport = InterruptingTransport(port, interruptAfterSend: 3)  // `\r`, piece 1, piece 2
        let session = ConsoleSession(transport: transport)
        try session.synchronize()
        let hub = "HostName=h.azure-devices.net;DeviceId=d;SharedAccessKey=" + String(repeating: "k", count: 300)
        #expect(throws: InterruptingTransport.Interrupted.self) { try session.setIoTHubConnectionString(ConnectionString(hub)) }
        #expect(transport.sends.count == 5)  // then two pieces of DEL
        #expect(transport.sends.dropFirst(3).allSatisfy { $0.allSatisfy { $0 == 0x7F } })
        #expect(transport.sends.dropFirst(3).map(\.count).reduce(0, +) == 256)

        // A new session on the same board: the resync's `\r` finds an empty line.
        try session.synchronize()
        #expect(try session.version().firmwareVersion.text == "1.6.2")
        #expect(kit.state.connectionString == nil)
        #expect(kit.droppedByteCount == 0)
    }

    /// The same on a slow line: 256 erasures echo 768 bytes, 0.8 s at 9600 baud, longer
    /// than the 0.5 s echo timeout given here (as 3.2 s at 2400 baud is longer than the
    /// default 2 s). The erase goes on while the echoes come; one deadline for the whole
    /// erase stopped after the first piece and left 128 bytes for the next `\r` to run.
    @Test func isErasedOnASlowLineWhileItsEchoesArrive() throws {
        let kit = try VirtualDevKit(configuration: .init(pacingBaudRate: 9600))
        kit.start()
        defer { kit.stop() }
        let port = try SerialPort(path: kit.devicePath)
        defer { port.close() }
        let transport = InterruptingTransport(port, interruptAfterSend: 3)
        var timeouts = ConsoleSession.Timeouts()
        timeouts.echo = .milliseconds(500)
        let session = ConsoleSession(transport: transport, timeouts: timeouts)
        try session.synchronize()
        let hub = "HostName=h.azure-devices.net;DeviceId=d;SharedAccessKey=" + String(repeating: "k", count: 300)
        #expect(throws: InterruptingTransport.Interrupted.self) { try session.setIoTHubConnectionString(ConnectionString(hub)) }
        #expect(transport.sends.dropFirst(3).map(\.count).reduce(0, +) == 256)
        try session.synchronize()
        #expect(try session.version().firmwareVersion.text == "1.6.2")
        #expect(kit.state.connectionString == nil, "a truncated connection string was stored")
    }
}
