import DevKitModel
import Testing
#if canImport(Glibc)
import Glibc
#endif
@testable import DevKitConsole

/// Runs `body` on a session over a scripted board and checks the script was followed.
@discardableResult
func play<T>(
    _ steps: [ScriptedTransport.Step], splitAt: Set<Int> = [], maxRead: Int = .max,
    readsEverything: Bool = true, sourceLocation: SourceLocation = #_sourceLocation,
    _ body: (ConsoleSession) throws -> T
) throws -> T {
    let transport = ScriptedTransport(steps)
    transport.splitPoints = splitAt
    transport.maxRead = maxRead
    let session = ConsoleSession(transport: transport)
    let result = try body(session)
    #expect(transport.violations == [], sourceLocation: sourceLocation)
    if readsEverything {
        #expect(transport.finished, "script not played to the end", sourceLocation: sourceLocation)
    }
    return result
}

/// Total bytes the board says in a script.
func replyLength(_ steps: [ScriptedTransport.Step]) -> Int {
    steps.reduce(0) { if case .reply(let b) = $1 { return $0 + b.count } else { return $0 } }
}

/// Asserts that `body` throws exactly `expected`, that its message holds none of `secrets`.
func expectError(
    _ expected: ConsoleError, hiding secrets: [String] = [], sourceLocation: SourceLocation = #_sourceLocation,
    _ body: () throws -> Void
) {
    do {
        try body()
        Issue.record("no error, expected \(expected)", sourceLocation: sourceLocation)
    } catch let error as ConsoleError {
        #expect(error == expected, sourceLocation: sourceLocation)
        for secret in secrets { #expect(!error.description.contains(secret), sourceLocation: sourceLocation) }
    } catch {
        Issue.record("unexpected \(error)", sourceLocation: sourceLocation)
    }
}

@Suite("Session: synchronisation and modes")
struct SynchronisationTests {
    @Test func promptAfterCarriageReturn() throws {
        try play(Board.sync()) { session in
            try session.synchronize()
            #expect(session.state == .atPrompt)
        }
    }

    @Test func noiseAndHelpTextBeforeThePrompt() throws {
        let noise = "\u{00}\u{ff}\u{1b}[0m garbage\r\n" + Board.banner + "Configuration console:\r\n - help: Help document.\r\n"
        try play(Board.sync(before: noise) + Board.exchange("version", output: Board.versionOutput)) { session in
            try session.synchronize()
            #expect(try session.version().firmwareVersion.text == "1.6.2")
        }
    }

    @Test("a second, late prompt (boot prompt + ours) is skipped before the echo")
    func latePromptSkipped() throws {
        var steps = Board.sync()
        steps += [.expectSend(Array("version\r".utf8), requireDrained: true),
                  .reply(Board.bytes(Board.prompt + "version\r\n" + Board.versionOutput + Board.prompt))]
        for split in 0...replyLength(steps) {
            try play(steps, splitAt: [split]) { session in
                try session.synchronize()
                #expect(try session.version().firmwareVersion.text == "1.6.2")
            }
        }
    }

    @Test("a lost first \\r: the second one gets the prompt")
    func retriesCarriageReturn() throws {
        let steps: [ScriptedTransport.Step] = [
            .expectSend([0x0D], requireDrained: false),
            .expectSend([0x0D], requireDrained: true), .reply(Board.bytes(Board.prompt)),
        ]
        try play(steps) { try $0.synchronize() }
    }

    static let userModeCases: [(String, BoardMode)] = [
        (Board.banner + Board.userModeText, .user(.banner)),
        ("2026-11-28 09:00:01 INFO:  IoT Hub connecting...\r\n", .user(.logLines)),
        ("2026-11-28 09:00:01 ERROR: iothub.c (ln 12): failed\r\n", .user(.logLines)),
        ("Soft AP AZ-a4cf120b9e31 is running...\r\nConnect and visit \"http://192.168.0.1/\" to config the system settings.\r\n",
         .accessPoint(mac: try! MACAddress("a4cf120b9e31"))),
    ]

    @Test("not in configuration mode → wrongMode saying which", arguments: userModeCases)
    func wrongMode(output: String, mode: BoardMode) throws {
        let steps: [ScriptedTransport.Step] = [
            .reply(Board.bytes(output)),
            .expectSend([0x0D], requireDrained: false), .expectSend([0x0D], requireDrained: false),
            .expectSend([0x0D], requireDrained: false),
        ]
        try play(steps) { session in
            expectError(.wrongMode(mode)) { try session.synchronize() }
            #expect(session.state == .unsynchronized)
        }
        let message = ConsoleError.wrongMode(mode).description
        if case .user = mode {
            #expect(message.hasPrefix("board is in user mode: hold button A, press reset, try again"))
        } else {
            #expect(message.hasPrefix("board is in AP mode (Soft AP AZ-a4cf120b9e31): release button B, hold button A"))
        }
    }

    @Test func commandsNeedAPrompt() throws {
        try play([]) { session in
            expectError(.notSynchronized) { _ = try session.version() }
        }
    }
}

@Suite("Session: commands and replies")
struct CommandTests {
    static let versionScript = Board.sync() + Board.exchange("version", output: Board.versionOutput)

    @Test("version, split at every byte boundary of the stream")
    func versionAtEverySplit() throws {
        let expected = VersionInfo(
            firmwareVersion: try FirmwareVersion("1.6.2"), mico: "31.1.3", mbedOS: "5.4.3", mbedTLS: "2.4.2",
            wifi: "wl0: Nov  7 2016 16:16:58 version 7.15.168.81 (r661235) FWID 01-19f3caf0")
        let total = replyLength(Self.versionScript)
        for split in 0...total {
            let info = try play(Self.versionScript, splitAt: [split]) { session in
                try session.synchronize()
                return try session.version()
            }
            #expect(info == expected, "split at \(split)")
        }
        let byteByByte = try play(Self.versionScript, maxRead: 1) { session in
            try session.synchronize()
            return try session.version()
        }
        #expect(byteByByte == expected)
    }

    @Test func wifiVersionUnknown() throws {
        let output = "DevKitSDK version: 1.10.0\r\nMico version: x\r\nmbed-os version: 5.4.3\r\nmbed TLS version: 2.4.2\r\nWIFI version: unknown\r\n"
        let info = try play(Board.sync() + Board.exchange("version", output: output)) { session in
            try session.synchronize()
            return try session.version()
        }
        #expect(info.firmwareVersion.text == "1.10.0")
        #expect(info.wifi == nil)
    }

    @Test("the UDS quirk: Invalid UDS. then the success line is success, at every split")
    func udsQuirkAtEverySplit() throws {
        let steps = Board.sync() + Board.exchange(
            "set_dps_uds " + Board.uds.lowercased(), output: "Invalid UDS.\r\nINFO: Set DPS UDS successfully.\r\n")
        if case .reply(let echo) = steps[4] {
            #expect(echo.starts(with: Array("set_dps_uds ".utf8) + Array(repeating: 0x2A, count: 64)))
        }
        for split in 0...replyLength(steps) {
            try play(steps, splitAt: [split]) { session in
                try session.synchronize()
                try session.setUDS(UDS(hex: Board.uds))
                #expect(session.state == .atPrompt)
            }
        }
    }

    @Test("a long line goes out in 128-byte pieces, each after its echo")
    func longLineInPieces() throws {
        let cs = "HostName=hub.azure-devices.net;DeviceId=dev;SharedAccessKey=" + String(repeating: "k", count: 440)
        let steps = Board.sync() + Board.exchange(
            "set_az_iothub " + cs, output: "INFO: Set Azure Iot hub connection string successfully.\r\n")
        let transport = ScriptedTransport(steps)
        let session = ConsoleSession(transport: transport)
        try session.synchronize()
        try session.setIoTHubConnectionString(ConnectionString(cs))
        #expect(transport.violations == [])
        #expect(transport.finished)
        let pieces = transport.sends.dropFirst()
        #expect(pieces.count == 5)
        #expect(pieces.allSatisfy { $0.count <= 128 })
        #expect(pieces.reduce([], +) == Array(("set_az_iothub " + cs + "\r").utf8))
    }

    @Test("pieces keep their order when echoes arrive byte by byte")
    func piecesByteByByte() throws {
        let ssidPassword = String(repeating: "p", count: 63)
        let steps = Board.sync() + Board.exchange(
            "set_wifipwd " + ssidPassword, output: "INFO: Set Wi-Fi password successfully.\r\n", pieceLength: 16)
        let transport = ScriptedTransport(steps)
        transport.maxRead = 1
        let session = ConsoleSession(transport: transport, maxPieceLength: 16)
        try session.synchronize()
        try session.setWiFiPassword(WiFiPassword(ssidPassword))
        #expect(transport.violations == [])
        #expect(transport.sends.count == 1 + 5)
    }

    @Test func settingsSucceed() throws {
        let steps = Board.sync()
            + Board.exchange("set_wifissid My\\ Net", output: "INFO: Set Wi-Fi SSID successfully.\r\n")
            + Board.exchange("set_wifipwd s3cret\\ pass", output: "INFO: Set Wi-Fi password successfully.\r\n")
            + Board.exchange("set_wifipwd", output: "INFO: Set Wi-Fi password successfully.\r\n")
            + Board.exchange("set_az_iotdps DPSEndpoint=global.azure-devices-provisioning.net;IdScope=0ne;DeviceId=d;SymmetricKey=k",
                             output: "INFO: Set DPS connection string successfully.\r\n")
            + Board.exchange("enable_secure 2", output: "INFO: Enable secure channel successfully.\r\n")
            + Board.exchange("enable_secure 2", output: "INFO: Secure channel has already been enabled.\r\n")
        try play(steps) { session in
            try session.synchronize()
            try session.setWiFiSSID("My Net")
            try session.setWiFiPassword(WiFiPassword("s3cret pass"))
            try session.setWiFiPassword(WiFiPassword(""))
            try session.setDPSConnectionString(ConnectionString("DPSEndpoint=global.azure-devices-provisioning.net;IdScope=0ne;DeviceId=d;SymmetricKey=k"))
            #expect(try session.enableSecureChannel(level: 2) == .enabled)
            #expect(try session.enableSecureChannel(level: 2) == .alreadyEnabled)
        }
    }

    static let noAnswerCases: [(String, Int)] = [("", 0), ("\r\n", 2), ("\u{fe}\u{80}\u{f0}~~x\u{13}", 10)]

    /// Issue 12: a silent port (or noise) is not evidence of user mode.
    @Test("silence or unrecognised bytes → noAnswer listing the causes, never 'user mode'", arguments: noAnswerCases)
    func noAnswer(output: String, received: Int) throws {
        let steps: [ScriptedTransport.Step] = [
            .reply(Board.bytes(output)),
            .expectSend([0x0D], requireDrained: false), .expectSend([0x0D], requireDrained: false),
            .expectSend([0x0D], requireDrained: false),
        ]
        try play(steps) { session in
            expectError(.noAnswer(receivedBytes: received)) { try session.synchronize() }
            #expect(session.state == .unsynchronized)
        }
        let message = ConsoleError.noAnswer(receivedBytes: received).description
        #expect(message.hasPrefix("no answer from the board"))
        #expect(!message.contains("user mode"))
        for cause in ["hold button A and press reset", "wrong port", "another program holds the board", "ModemManager"] {
            #expect(message.contains(cause), "\(cause)")
        }
    }

    /// Issue 4: a board that quotes the rejected secret in its error.
    @Test("a rejected secret quoted back by the board is masked in the error", arguments: [
        ConsoleCommand.setDPSUDS(try! UDS(hex: Board.uds)),
        .setWiFiPassword(try! WiFiPassword("correct horse battery staple")),
        .setIoTHubConnectionString(try! ConnectionString("HostName=h.azure-devices.net;DeviceId=d;SharedAccessKey=c2VjcmV0a2V5MTIzNA==")),
        .setDPSConnectionString(try! ConnectionString("DPSEndpoint=global.azure-devices-provisioning.net;IdScope=0ne;DeviceId=d;SymmetricKey=c2VjcmV0a2V5MTIzNA==")),
    ])
    func echoedSecretIsMasked(command: ConsoleCommand) throws {
        let secret = try #require(command.secretArguments.first)
        for reply in ["Invalid \(command.name) value: \(secret)", "Invalid value \(secret.uppercased()).", "Usage: \(secret.prefix(10))"] {
            do {
                try ConsoleSession.checkSetting([reply], command: command, success: "INFO: never printed")
                Issue.record("no error for \(reply)")
            } catch let error as ConsoleError {
                let text = error.description.lowercased()
                #expect(text.contains("***"), "\(error)")
                let s = Array(secret.lowercased())
                for start in 0...(s.count - 8) {
                    #expect(!text.contains(String(s[start..<(start + 8)])), "\(error)")
                }
            }
        }
    }

    static let failureCases: [(String, ConsoleError)] = [
        ("ERROR: Failed to write EEPROM: 0x07.\r\n", .commandFailed(command: "set_dps_uds", .eepromWriteFailed(zone: 7))),
        ("Invalid UDS.\r\nERROR: Failed to write EEPROM: 0x0a.\r\n", .commandFailed(command: "set_dps_uds", .eepromWriteFailed(zone: 10))),
        ("Invalid UDS.\r\nERROR: Verify failed.\r\n", .commandFailed(command: "set_dps_uds", .verifyFailed)),
        ("Invalid UDS.\r\n", .commandFailed(command: "set_dps_uds", .invalidArgument(message: "Invalid UDS."))),
        ("Usage: set_dps_uds [uds]. Please provide the UDS for DPS.\r\n",
         .commandFailed(command: "set_dps_uds", .usage(message: "Usage: set_dps_uds [uds]. Please provide the UDS for DPS."))),
        ("Error:Invalid command: set_dps_uds\r\n", .invalidCommand(name: "set_dps_uds")),
        ("Error:Syntax error\r\n", .syntaxError(command: "set_dps_uds")),
        ("INFO: something else\r\n", .unexpectedResponse(command: "set_dps_uds", response: "")),
    ]

    @Test("every failure line of set_dps_uds, at every split", arguments: failureCases)
    func udsFailures(output: String, expected: ConsoleError) throws {
        let steps = Board.sync() + Board.exchange("set_dps_uds " + Board.uds.lowercased(), output: output)
        for split in 0...replyLength(steps) {
            try play(steps, splitAt: [split]) { session in
                try session.synchronize()
                expectError(expected, hiding: [Board.uds, Board.uds.lowercased()]) { try session.setUDS(UDS(hex: Board.uds)) }
                #expect(session.state == .atPrompt, "the reply was framed: the next command can go")
            }
        }
    }

    @Test("Syntax error printed without the line-ending CRLF is still framed")
    func syntaxErrorWithoutCRLF() throws {
        let steps = Board.sync() + [
            .expectSend(Array("version\r".utf8), requireDrained: true),
            .reply(Board.bytes("versionError:Syntax error\r\n" + Board.prompt)),
        ]
        try play(steps) { session in
            try session.synchronize()
            expectError(.syntaxError(command: "version")) { _ = try session.version() }
        }
    }

    @Test func otherSettingFailures() throws {
        let password = "hunter2-very-secret"
        let steps = Board.sync()
            + Board.exchange("set_wifissid x", output: "Invalid Wi-Fi SSID.\r\n")
            + Board.exchange("set_wifissid x", output: "Usage: set_wifissid <SSID>. Please provide the SSID of the Wi-Fi.\r\n")
            + Board.exchange("set_wifipwd " + password, output: "Invalid Wi-Fi password.\r\nINFO: Set Wi-Fi password successfully.\r\n")
            + Board.exchange("set_az_iothub HostName=h;SharedAccessKey=sek", output: "Invalid Azure IoT hub connection string.\r\n")
            + Board.exchange("set_wifipwd " + password, output: "ERROR: Verify failed.\r\n")
            + Board.exchange("enable_secure 1", output: "INFO: Enable secure channel failed.\r\n")
            + Board.exchange("enable_secure 9", output: "Usage: enable_secure <level> [key]\r\n  level: 1, 2\r\n")
            + Board.exchange("help", output: "Error:Invalid command: help\r\n")
        try play(steps) { session in
            try session.synchronize()
            expectError(.commandFailed(command: "set_wifissid", .invalidArgument(message: "Invalid Wi-Fi SSID."))) {
                try session.setWiFiSSID("x")
            }
            expectError(.commandFailed(command: "set_wifissid", .usage(message: "Usage: set_wifissid <SSID>. Please provide the SSID of the Wi-Fi."))) {
                try session.setWiFiSSID("x")
            }
            expectError(.commandFailed(command: "set_wifipwd", .invalidArgument(message: "Invalid Wi-Fi password.")), hiding: [password]) {
                try session.setWiFiPassword(WiFiPassword(password))
            }
            expectError(.commandFailed(command: "set_az_iothub", .invalidArgument(message: "Invalid Azure IoT hub connection string.")), hiding: ["sek"]) {
                try session.setIoTHubConnectionString(ConnectionString("HostName=h;SharedAccessKey=sek"))
            }
            expectError(.commandFailed(command: "set_wifipwd", .verifyFailed), hiding: [password]) { try session.setWiFiPassword(WiFiPassword(password)) }
            expectError(.commandFailed(command: "enable_secure", .secureChannelFailed)) { _ = try session.enableSecureChannel(level: 1) }
            expectError(.commandFailed(command: "enable_secure", .usage(message: "Usage: enable_secure <level> [key]"))) {
                _ = try session.enableSecureChannel(level: 9)
            }
            expectError(.invalidCommand(name: "help")) { _ = try session.help() }
        }
    }

    @Test func helpAndScan() throws {
        let help = "Configuration console:\r\n - help: Help document.\r\n - version: System version.\r\n"
            + " - set_dps_uds: Set DPS Unique Device Secret (UDS) for X.509 certificates..\r\n"
        let steps = Board.sync()
            + Board.exchange("help", output: help)
            + Board.exchange("scan", output: "Available networks:\r\n  home\r\n  Guest Net\r\n")
            + Board.exchange("scan", output: "No available network.\r\n")
            + Board.exchange("version", output: "garbage\r\n")
        try play(steps) { session in
            try session.synchronize()
            let entries = try session.help()
            #expect(entries.map(\.name) == ["help", "version", "set_dps_uds"])
            #expect(entries[2].help == "Set DPS Unique Device Secret (UDS) for X.509 certificates.")
            #expect(try session.scan() == ["home", "Guest Net"])
            #expect(try session.scan() == [])
            expectError(.unexpectedResponse(command: "version", response: "garbage")) { _ = try session.version() }
        }
    }

    @Test("raw lines (REPL) are framed the same way")
    func rawLine() throws {
        let steps = Board.sync() + Board.exchange("frob x", output: "Error:Invalid command: frob\r\n")
        let lines = try play(steps) { session in
            try session.synchronize()
            return try session.execute(line: "frob x")
        }
        #expect(lines == ["Error:Invalid command: frob"])
    }

    /// A raw line the firmware would split into more than 4 words (the fifth goes
    /// past its argument array) or with an unclosed quote (only `Error:Syntax
    /// error`) is refused here; four words, quoted spaces included, go out.
    @Test("raw lines: more than 4 words or an open quote are refused before anything is sent")
    func rawLineWordLimit() throws {
        let steps = Board.sync() + Board.exchange("frob \"a b\" c d", output: "Error:Invalid command: frob\r\n")
        try play(steps) { session in
            try session.synchronize()
            #expect(throws: ConsoleError.self) { try session.execute(line: "foo 1 2 3 4 5") }
            #expect(throws: ConsoleError.self) { try session.execute(line: "foo 1 2 3 4") }
            #expect(throws: ConsoleError.self) { try session.execute(line: "set_wifissid \"unterminated") }
            #expect(session.state == .atPrompt)
            #expect(try session.execute(line: "frob \"a b\" c d") == ["Error:Invalid command: frob"])
        }
    }

    @Test("validation fails before anything is sent")
    func nothingSentOnInvalidArgument() throws {
        try play(Board.sync()) { session in
            try session.synchronize()
            // A bad UDS cannot reach the session: it is refused when parsed.
            #expect(throws: InputError.self) { try session.setUDS(UDS(hex: "00")) }
            #expect(throws: ConsoleError.self) { try session.setWiFiSSID(String(repeating: "s", count: 40)) }
            #expect(session.state == .atPrompt)
        }
    }
}

@Suite("Session: echo problems and timeouts")
struct EchoAndTimeoutTests {
    @Test("a wrong echo byte → echoMismatch at its offset, no secret in the message")
    func echoMismatch() throws {
        var echo = ConsoleTokenizer.echo(of: Array(("set_dps_uds " + Board.uds.lowercased()).utf8))
        echo[20] = 0x21
        let steps = Board.sync() + Board.exchange(
            "set_dps_uds " + Board.uds.lowercased(), output: "INFO: Set DPS UDS successfully.\r\n", echo: echo)
        for split in [0, 5, 20, 21, 24] {
            try play(steps, splitAt: [split]) { session in
                try session.synchronize()
                expectError(.echoMismatch(command: "set_dps_uds", offset: 20), hiding: [Board.uds.lowercased()]) {
                    try session.setUDS(UDS(hex: Board.uds))
                }
                #expect(session.state == .unsynchronized)
            }
        }
    }

    @Test("lost bytes (ring overflow) show up as an echo mismatch")
    func lostBytes() throws {
        let line = "set_wifissid abcdefgh"
        var echo = Array(line.utf8)
        echo.remove(at: 15)
        let steps = Board.sync() + Board.exchange(line, output: "INFO: Set Wi-Fi SSID successfully.\r\n", echo: echo)
        try play(steps) { session in
            try session.synchronize()
            expectError(.echoMismatch(command: "set_wifissid", offset: 15)) { try session.setWiFiSSID("abcdefgh") }
        }
    }

    @Test func inputBufferOverflow() throws {
        let steps = Board.sync() + [
            .expectSend(Array("version\r".utf8), requireDrained: true),
            .reply(Board.bytes("ver\r\nError: input buffer overflow\r\n" + Board.prompt)),
        ]
        try play(steps) { session in
            try session.synchronize()
            expectError(.inputBufferOverflow(command: "version")) { _ = try session.version() }
        }
    }

    @Test("no echo → timeout naming the echo")
    func noEcho() throws {
        let steps = Board.sync() + [.expectSend(Array("version\r".utf8), requireDrained: true)]
        try play(steps) { session in
            expectError(.timeout(expected: "the echo of the `version` line", after: .seconds(2), command: nil)) {
                try session.synchronize()
                _ = try session.version()
            }
        }
    }

    @Test("reply without a prompt → timeout naming the prompt")
    func noPrompt() throws {
        let steps = Board.sync() + Board.exchange("set_dps_uds " + Board.uds.lowercased(), output: "Invalid UDS.\r\n", after: "")
        try play(steps) { session in
            try session.synchronize()
            expectError(.timeout(expected: "the prompt that ends the reply", after: .seconds(10), command: "set_dps_uds")) {
                try session.setUDS(UDS(hex: Board.uds))
            }
            #expect(session.state == .unsynchronized)
            expectError(.notSynchronized) { _ = try session.version() }
        }
    }

    /// A board that never answers, honouring deadlines with real time.
    final class SilentBoard: ConsoleTransport {
        var sent = 0
        func send(_ bytes: [UInt8], deadline: ContinuousClock.Instant) throws { sent += 1 }
        func receive(deadline: ContinuousClock.Instant) throws -> [UInt8] {
            // The fake's "no bytes until the deadline": block until it passes.
            let remaining = ContinuousClock().now.duration(to: deadline)
            if remaining > .zero {
                let (s, atto) = remaining.components
                var ts = timespec(tv_sec: Int(s), tv_nsec: Int(atto / 1_000_000_000))
                var rest = timespec()
                while nanosleep(&ts, &rest) != 0 && errno == EINTR { ts = rest }
            }
            return []
        }
    }

    @Test("every wait ends at its deadline (real clock)")
    func boundedWaits() throws {
        let board = SilentBoard()
        let session = ConsoleSession(transport: board, timeouts: .short)
        let clock = ContinuousClock()
        let elapsed = clock.measure {
            expectError(.noAnswer(receivedBytes: 0)) { try session.synchronize() }
        }
        #expect(board.sent == 3)
        #expect(elapsed >= .milliseconds(120) && elapsed < .seconds(2))
    }
}

@Suite("Session: exit and the boot log")
struct BootLogTests {
    @Test("exit → user-mode boot log gives MAC and version, at every split")
    func userModeBootLog() throws {
        let steps = Board.sync() + Board.exchange("exit", output: "Reboot\r\n" + Board.userBootLog, after: "")
        for split in 0...replyLength(steps) {
            // The session stops reading once it has both lines: the sketch's later
            // log line stays unread.
            let log = try play(steps, splitAt: [split], readsEverything: false) { session in
                try session.synchronize()
                let log = try session.exitAndReadBootLog()
                #expect(session.state == .rebooted)
                return log
            }
            #expect(log.macAddress?.hex == "a4cf120b9e31", "split \(split)")
            #expect(log.firmwareVersion?.text == "1.6.2")
            #expect(log.mode == .user(.banner))
            #expect(log.sawBanner)
        }
    }

    @Test func apModeBootLog() throws {
        let boot = Board.banner + "Soft AP AZ-a4cf120b9e31 is running...\r\n"
        let log = try play(Board.sync() + Board.exchange("exit", output: "Reboot\r\n" + boot, after: "")) { session in
            try session.synchronize()
            return try session.exitAndReadBootLog()
        }
        #expect(log.mode == .accessPoint(mac: try! MACAddress("a4cf120b9e31")))
        #expect(log.macAddress?.hex == "a4cf120b9e31")
    }

    @Test("button A still held: back in configuration mode, no MAC")
    func configurationAgain() throws {
        let boot = Board.banner + "Configuration console:\r\n - help: Help document.\r\n" + Board.prompt
        let log = try play(Board.sync() + Board.exchange("exit", output: "Reboot\r\n" + boot, after: "")) { session in
            try session.synchronize()
            return try session.exitAndReadBootLog()
        }
        #expect(log.mode == .configuration)
        #expect(log.macAddress == nil)
    }

    @Test("a sketch that never prints the MAC → an error of its own that says what to do")
    func noMACLine() throws {
        let boot = Board.banner + Board.userModeText + "Hello from my sketch\r\n"
        try play(Board.sync() + Board.exchange("exit", output: "Reboot\r\n" + boot, after: "")) { session in
            try session.synchronize()
            do {
                _ = try session.exitAndReadBootLog()
                Issue.record("no error")
            } catch let ConsoleError.bootLogWithoutMAC(after) {
                #expect(after == session.timeouts.bootLog)
                #expect(ConsoleError.bootLogWithoutMAC(after: after).description.contains("DevKit MAC Address:"))
            }
        }
    }

    @Test("MAC without the version line is returned at the deadline")
    func macOnly() throws {
        let boot = Board.banner + "2026-11-28 09:00:01 INFO:  DevKit MAC Address: A4CF120B9E31\r\n"
        let log = try play(Board.sync() + Board.exchange("exit", output: "Reboot\r\n" + boot, after: "")) { session in
            try session.synchronize()
            return try session.exitAndReadBootLog()
        }
        #expect(log.macAddress?.hex == "a4cf120b9e31")
        #expect(log.firmwareVersion == nil)
    }

    @Test("nothing after Reboot → timeout saying the board did not reboot")
    func silentAfterReboot() throws {
        try play(Board.sync() + Board.exchange("exit", output: "Reboot\r\n", after: "")) { session in
            try session.synchronize()
            expectError(.timeout(expected: "the board to reboot after `Reboot` (nothing came back)", after: .seconds(30), command: "exit")) {
                _ = try session.exitAndReadBootLog()
            }
        }
    }

    @Test func parseCapturedLog() {
        let log = BootLog.parse(Board.userBootLog.replacingOccurrencesOfCRLF())
        #expect(log.macAddress?.hex == "a4cf120b9e31")
        #expect(log.firmwareVersion?.text == "1.6.2")
        #expect(log.isComplete)
    }
}

extension String {
    func replacingOccurrencesOfCRLF() -> String {
        String(decoding: Array(utf8).filter { $0 != 0x0D }, as: UTF8.self)
    }
}

@Suite("CountingTransport")
struct CountingTransportTests {
    @Test func countsBothDirections() throws {
        let steps = Board.sync() + Board.exchange("version", output: Board.versionOutput)
        let scripted = ScriptedTransport(steps)
        let counter = CountingTransport(scripted)
        let session = ConsoleSession(transport: counter)
        try session.synchronize()
        _ = try session.version()
        #expect(counter.sentBytes == 1 + 8)
        #expect(counter.receivedBytes == replyLength(steps))
    }
}
