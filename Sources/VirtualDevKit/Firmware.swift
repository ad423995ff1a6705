#if canImport(Glibc)
import Glibc
#endif

/// How the emulator thread unwinds out of the firmware: a reboot (the `exit`
/// command, or a reset from outside), an unplug, or the end of the emulation.
enum BoardEvent: Error, Equatable {
    case reboot(VirtualDevKitConfiguration.Mode)
    case unplug
    case stop
}

/// What the console firmware needs from the board around it.
protocol BoardHardware: AnyObject {
    /// Sends bytes out of the UART.
    func emit(_ bytes: [UInt8]) throws(BoardEvent)
    /// Marks the span in which a command runs: bytes that then arrive beyond the
    /// 256-byte receive ring are lost.
    func setCommandRunning(_ running: Bool)
    /// Writes `value` to a secure-element zone and reads it back, as the firmware's
    /// `write_eeprom` does.
    func writeSecureElement(zone: UInt8, value: [UInt8], store: (inout VirtualDevKitState) -> Void) throws(BoardEvent) -> SecureElementOutcome
    /// `EEPROMInterface::enableHostSecureChannel`: 0 done, 1 already enabled, -1 failed.
    func enableSecureChannel(level: Int) throws(BoardEvent) -> Int
}

enum SecureElementOutcome: Equatable {
    case ok
    case writeFailed
    case verifyFailed
}

/// The texts the firmware prints, byte for byte (Docs/console-protocol.md).
enum FirmwareText {
    static let banner = Array(
        "\r\n************************************************\r\n** MXChip - Microsoft IoT Developer Kit **\r\n************************************************\r\n"
            .utf8)
    static let prompt = Array("\r\n# ".utf8)

    /// (name, help, secret argument), in the firmware's table order.
    static let commands: [(name: String, help: String, secret: Bool)] = [
        ("help", "Help document", false),
        ("version", "System version", false),
        ("exit", "Exit and reboot", false),
        ("scan", "Scan Wi-Fi AP", false),
        ("set_wifissid", "Set Wi-Fi SSID", false),
        ("set_wifipwd", "Set Wi-Fi password", true),
        ("set_az_iothub", "Set IoT Hub device connection string", false),
        ("set_dps_uds", "Set DPS Unique Device Secret (UDS) for X.509 certificates.", true),
        (
            "set_az_iotdps",
            "Set DPS Symmetric Key. Format: \"DPSEndpoint=global.azure-devices-provisioning.net;IdScope=XXX;DeviceId=XXX;SymmetricKey=XXX\"",
            false
        ),
        ("enable_secure", "Enable secure channel between AZ3166 and secure chip", false),
    ]

    static var help: [UInt8] {
        var text = "Configuration console:\r\n"
        for command in commands { text += " - \(command.name): \(command.help).\r\n" }
        return Array(text.utf8)
    }

    static let userMode = Array(
        "You can 1. press Button A and reset to enter configuration mode.\r\n        2. press Button B and reset to enter AP mode.\r\n\r\n"
            .utf8)

    static func apMode(mac: String) -> [UInt8] {
        Array(
            ("Soft AP AZ-\(mac) is running...\r\n"
                + "Connect and visit \"http://192.168.0.1/\" to config the system settings.\r\n").utf8)
    }

    /// `<yyyy-mm-dd hh:mm:ss> INFO:  <text>\r\n`, the SDK's log line, in UTC
    /// (or `Info: <text>` in the SDK console logger's style).
    static func logInfo(
        _ text: String, at time: time_t = time(nil), style: VirtualDevKitConfiguration.LogStyle = .timestamped
    ) -> [UInt8] {
        switch style {
        case .timestamped: Array("\(stamp(time)) INFO:  \(text)\r\n".utf8)
        case .sdk: Array("Info: \(text)\r\n".utf8)
        }
    }

    /// `<stamp> ERROR: <file> (ln <n>): <text>` or
    /// `Error: Time:<ctime> File:<file> Func:<func> Line:<n> <text>`.
    static func logError(
        _ text: String, file: String, function: String, line: Int, at time: time_t = time(nil),
        style: VirtualDevKitConfiguration.LogStyle
    ) -> [UInt8] {
        switch style {
        case .timestamped:
            return Array("\(stamp(time)) ERROR: \(file) (ln \(line)): \(text)\r\n".utf8)
        case .sdk:
            var t = time
            var buffer = [CChar](repeating: 0, count: 32)
            ctime_r(&t, &buffer)
            let ctime = String(cString: buffer).trimmingCharacters(in: .newlines)
            return Array("Error: Time:\(ctime) File:\(file) Func:\(function) Line:\(line) \(text)\r\n".utf8)
        }
    }

    private static func stamp(_ time: time_t) -> String {
        var t = time
        var parts = tm()
        gmtime_r(&t, &parts)
        func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
        return "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday)) "
            + "\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec))"
    }

    static let enableSecureUsage = Array(
        ("Usage: enable_secure <secure level> <provided key>. 64-characters key is only needed for level 2. More detail:\r\n"
            + "        1.\"enable_secure 1\" to enable secure channel with pre set key.\r\n"
            + "        2.\"enable_secure 2 ([a-f]|[0-9]){64}\" to enable secure channel with provided key. (not implemented)\r\n"
            + "        3.\"enable_secure 3\" to enable secure channel with random key. (not implemented)\r\n").utf8)
}

/// Secure-element zones and sizes of the STSAFE-A100, as the SDK lays them out.
enum Zone {
    static let uds: UInt8 = 0x06
    static let wifiSSID: UInt8 = 0x03
    static let wifiPassword: UInt8 = 0x0a
    static let connectionString: UInt8 = 0x05

    /// Bytes a zone holds; a longer write fails like a bad write.
    static func size(_ zone: UInt8) -> Int {
        switch zone {
        case 0x03: return 120
        case 0x05: return 584
        case 0x06: return 680
        case 0x0a: return 88
        default: return 0
        }
    }
}

/// The configuration console of the DevKit firmware (`console_cli.cpp`), fed one
/// received byte at a time.
struct ConsoleFirmware {
    static let lineBufferSize = 1024
    static let maxArguments = 4

    let configuration: VirtualDevKitConfiguration
    private var line: [UInt8] = []

    init(configuration: VirtualDevKitConfiguration) {
        self.configuration = configuration
        line.reserveCapacity(Self.lineBufferSize)
    }

    /// What entering the console prints.
    func start(on board: BoardHardware) throws(BoardEvent) {
        try board.emit(FirmwareText.help + FirmwareText.prompt)
    }

    /// `get_input` for one byte, and `handle_input` when it ends a line.
    mutating func receive(_ received: UInt8, on board: BoardHardware) throws(BoardEvent) {
        var byte = received
        switch byte {
        case 0x0d:
            let finished = line
            line.removeAll(keepingCapacity: true)
            board.setCommandRunning(true)
            defer { board.setCommandRunning(false) }
            try run(finished, on: board)
            return
        case 0x09:
            byte = 0x20
        case 0x08, 0x7f:
            if !line.isEmpty {
                line.removeLast()
                try board.emit([0x08, 0x20, 0x08])
            }
            return
        case ..<0x20:
            return  // \n and other control bytes are dropped silently
        default:
            break
        }
        try board.emit([isSecretCommand(line) ? UInt8(ascii: "*") : byte])
        line.append(byte)
        if line.count >= Self.lineBufferSize {
            line.removeAll(keepingCapacity: true)
            try board.emit(Array("\r\nError: input buffer overflow\r\n".utf8) + FirmwareText.prompt)
        }
    }

    /// `is_privacy_cmd`: the word before the first space names a secret command.
    private func isSecretCommand(_ line: [UInt8]) -> Bool {
        guard let space = line.firstIndex(of: 0x20) else { return false }
        let name = String(decoding: line[..<space], as: UTF8.self)
        return FirmwareText.commands.first(where: { $0.name == name })?.secret ?? false
    }

    /// The result of the firmware's tokenizer.
    enum Tokens: Equatable {
        case syntaxError
        /// `argc` can be 5 when a fifth word starts (the firmware counts it, then stops);
        /// `argv` holds at most 4 words.
        case words(argc: Int, argv: [[UInt8]])
    }

    /// `handle_input`'s tokenizer, step for step: spaces separate words, a word that
    /// starts with `"` runs to the next `"`, `\"` and `\ ` inside a word drop the
    /// backslash, at most 4 words.
    static func tokenize(_ line: [UInt8]) -> Tokens {
        var buf = line + [0]
        var starts: [Int] = []
        var inArg = false, inQuote = false, done = false
        var argc = 0
        var i = 0
        repeat {
            switch buf[i] {
            case 0:
                if inQuote { return .syntaxError }
                done = true
            case UInt8(ascii: "\""):
                if i > 0 && buf[i - 1] == UInt8(ascii: "\\") && inArg {
                    buf.remove(at: i - 1)
                    i -= 1
                    break
                }
                if !inQuote && inArg { break }
                if inQuote && !inArg { return .syntaxError }
                if !inQuote && !inArg {
                    inArg = true
                    inQuote = true
                    argc += 1
                    starts.append(i + 1)
                } else if inQuote && inArg {
                    inArg = false
                    inQuote = false
                    buf[i] = 0
                }
            case UInt8(ascii: " "):
                if i > 0 && buf[i - 1] == UInt8(ascii: "\\") && inArg {
                    buf.remove(at: i - 1)
                    i -= 1
                    break
                }
                if !inQuote && inArg {
                    inArg = false
                    buf[i] = 0
                }
            default:
                if !inArg {
                    inArg = true
                    argc += 1
                    starts.append(i)
                }
            }
            if done { break }
            i += 1
        } while i < lineBufferSize && argc <= maxArguments
        if inQuote { return .syntaxError }
        let argv = starts.prefix(maxArguments).map { start in
            Array(buf[start...].prefix(while: { $0 != 0 }))
        }
        return .words(argc: argc, argv: argv)
    }

    private func run(_ line: [UInt8], on board: BoardHardware) throws(BoardEvent) {
        switch Self.tokenize(line) {
        case .syntaxError:
            try board.emit(Array("Error:Syntax error\r\n".utf8))
        case .words(let argc, let argv):
            if argc >= 1 {
                try board.emit([0x0d, 0x0a])
                try execute(argc: argc, argv: argv, on: board)
            }
        }
        // The command is over before the prompt goes out: a host may answer the
        // prompt at once, and those bytes must not count as arriving mid-command.
        board.setCommandRunning(false)
        try board.emit(FirmwareText.prompt)
    }

    private func say(_ text: String, on board: BoardHardware) throws(BoardEvent) {
        try board.emit(Array(text.utf8))
    }

    private func execute(argc: Int, argv: [[UInt8]], on board: BoardHardware) throws(BoardEvent) {
        let name = String(decoding: argv[0], as: UTF8.self)
        let argument: [UInt8]? = argc >= 2 && argv.count >= 2 ? argv[1] : nil
        if configuration.faults.echoSecretInErrors, let argument,
            ["set_dps_uds", "set_wifipwd", "set_az_iothub", "set_az_iotdps"].contains(name)
        {
            return try board.emit(Array("Invalid \(name) value: ".utf8) + argument + [0x0d, 0x0a])
        }
        switch name {
        case "help":
            try board.emit(FirmwareText.help)
        case "version":
            let c = configuration
            try say(
                "DevKitSDK version: \(c.firmwareVersion)\r\n"
                    + "Mico version: \(c.micoVersion)\r\n"
                    + "mbed-os version: \(c.mbedOSVersion)\r\n"
                    + "mbed TLS version: \(c.mbedTLSVersion)\r\n"
                    + "WIFI version: \(c.wifiVersion ?? "unknown")\r\n", on: board)
        case "exit":
            try say("Reboot\r\n", on: board)
            throw .reboot(.user)
        case "scan":
            if configuration.networks.isEmpty {
                try say("No available network.\r\n", on: board)
            } else {
                try say(
                    "Available networks:\r\n"
                        + configuration.networks.map { "  \($0)\r\n" }.joined(), on: board)
            }
        case "set_wifissid":
            guard let ssid = argument else {
                return try say("Usage: set_wifissid <SSID>. Please provide the SSID of the Wi-Fi.\r\n", on: board)
            }
            if ssid.count + 1 > 32 { return try say("Invalid Wi-Fi SSID.\r\n", on: board) }
            if try write(ssid, zone: Zone.wifiSSID, on: board, store: { $0.wifiSSID = text(ssid) }) {
                try say("INFO: Set Wi-Fi SSID successfully.\r\n", on: board)
            }
        case "set_wifipwd":
            // No argument clears the password; a long one is reported, then stored anyway.
            let password = argument ?? []
            if password.count + 1 > 64 { try say("Invalid Wi-Fi password.\r\n", on: board) }
            if try write(password, zone: Zone.wifiPassword, on: board, store: { $0.wifiPassword = text(password) }) {
                try say("INFO: Set Wi-Fi password successfully.\r\n", on: board)
            }
        case "set_az_iothub", "set_az_iotdps":
            // Both store into the same secure-element slot; only their texts differ.
            let (usage, invalid, success) = name == "set_az_iothub"
                ? ("Usage: set_az_iothub <connection string>. Please provide the connection string of the Azure IoT hub.\r\n",
                   "Invalid Azure IoT hub connection string.\r\n",
                   "INFO: Set Azure Iot hub connection string successfully.\r\n")
                : ("Usage: set_az_iotdps <connection string>. Please provide the connection string of DPS.\r\n",
                   "Invalid DPS connection string.\r\n",
                   "INFO: Set DPS connection string successfully.\r\n")
            guard let cs = argument else { return try say(usage, on: board) }
            if cs.count + 1 > 512 { return try say(invalid, on: board) }
            if try write(cs, zone: Zone.connectionString, on: board, store: { $0.connectionString = text(cs) }) {
                try say(success, on: board)
            }
        case "set_dps_uds":
            guard let uds = argument else {
                return try say("Usage: set_dps_uds [uds]. Please provide the UDS for DPS.\r\n", on: board)
            }
            // The firmware's quirk: it compares strlen + 1 with 64, so a correct
            // 64-digit UDS is reported invalid, then stored all the same.
            if uds.count + 1 != 64 { try say("Invalid UDS.\r\n", on: board) }
            if try write(uds, zone: Zone.uds, on: board, store: { $0.uds = text(uds) }) {
                try say("INFO: Set DPS UDS successfully.\r\n", on: board)
            }
        case "enable_secure":
            var result = -2  // -2: the arguments were not accepted, print the usage
            if argc > 1, let level = argument, level.count == 1 {
                if argc == 2 && (level[0] == UInt8(ascii: "1") || level[0] == UInt8(ascii: "3")) {
                    result = try board.enableSecureChannel(level: Int(level[0] - UInt8(ascii: "0")))
                } else if argc == 3, argv.count >= 3, argv[2].count == 64,
                    argv[2].allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x66).contains($0) })
                {
                    result = try board.enableSecureChannel(level: 2)
                }
            }
            switch result {
            case 0: try say("INFO: Enable secure channel successfully.\r\n", on: board)
            case -1: try say("INFO: Enable secure channel failed.\r\n", on: board)
            case 1: try say("INFO: Secure channel has already been enabled.\r\n", on: board)
            default: try board.emit(FirmwareText.enableSecureUsage)
            }
        default:
            try board.emit(Array("Error:Invalid command: ".utf8) + argv[0] + [0x0d, 0x0a])
        }
    }

    /// `write_eeprom`: true when written and verified; otherwise the error was printed.
    private func write(
        _ value: [UInt8], zone: UInt8, on board: BoardHardware,
        store: (inout VirtualDevKitState) -> Void
    ) throws(BoardEvent) -> Bool {
        switch try board.writeSecureElement(zone: zone, value: value, store: store) {
        case .ok:
            return true
        case .writeFailed:
            let hex = String(zone, radix: 16)
            try say("ERROR: Failed to write EEPROM: 0x\(hex.count < 2 ? "0" + hex : hex).\r\n", on: board)
            return false
        case .verifyFailed:
            try say("ERROR: Verify failed.\r\n", on: board)
            return false
        }
    }
}

private func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }
