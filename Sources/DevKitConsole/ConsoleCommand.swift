import DevKitModel

/// A configuration-console command as a typed value.
///
/// `line()` validates the arguments locally (nothing invalid ever reaches the board,
/// which stores whatever it is given) and quotes them for the console's tokenizer.
public enum ConsoleCommand: Sendable, Hashable {
    case help
    case version
    /// Reboots the board (into user mode once button A is released).
    case exit
    case scan
    /// 1 to 31 bytes.
    case setWiFiSSID(String)
    /// Empty clears the password. Secret: echoed as `*`.
    case setWiFiPassword(WiFiPassword)
    /// `HostName=…;DeviceId=…;SharedAccessKey=…`. Contains a key.
    case setIoTHubConnectionString(ConnectionString)
    /// `DPSEndpoint=…;IdScope=…;DeviceId=…;SymmetricKey=…`. Contains a key.
    case setDPSConnectionString(ConnectionString)
    /// Sent as 64 lower-case hex digits. Secret: echoed as `*`.
    case setDPSUDS(UDS)
    /// `enable_secure <level> [key]`.
    case enableSecure(level: Int, key: String?)

    /// Most bytes a console line may hold (its buffer is 1024 bytes and overflows on the 1024th).
    public static let maxLineLength = 1023
    /// Most words the console's tokenizer splits a line into.
    public static let maxWords = 4

    /// The command's name on the console.
    public var name: String {
        switch self {
        case .help: return "help"
        case .version: return "version"
        case .exit: return "exit"
        case .scan: return "scan"
        case .setWiFiSSID: return "set_wifissid"
        case .setWiFiPassword: return "set_wifipwd"
        case .setIoTHubConnectionString: return "set_az_iothub"
        case .setDPSConnectionString: return "set_az_iotdps"
        case .setDPSUDS: return "set_dps_uds"
        case .enableSecure: return "enable_secure"
        }
    }

    /// Names whose arguments the console echoes as `*`.
    public static let maskedCommandNames: Set<String> = ["set_wifipwd", "set_dps_uds"]

    /// Every command name the firmware knows, in its help order (for completion).
    public static let allNames = [
        "help", "version", "exit", "scan", "set_wifissid", "set_wifipwd", "set_az_iothub",
        "set_dps_uds", "set_az_iotdps", "enable_secure",
    ]

    /// Whether the argument is a secret (password, UDS, a connection string's key):
    /// never shown in messages, logs or history.
    public var hasSecretArgument: Bool {
        switch self {
        case .setWiFiPassword, .setIoTHubConnectionString, .setDPSConnectionString, .setDPSUDS:
            return true
        case .enableSecure(_, let key): return key != nil
        default: return false
        }
    }

    /// The secret values this command carries (none for most): what a reply must
    /// never show (see `maskingSecrets`).
    public var secretArguments: [String] {
        switch self {
        case .setWiFiPassword(let password): return password.isEmpty ? [] : [password.secretValue]
        case .setIoTHubConnectionString(let value), .setDPSConnectionString(let value): return [value.secretValue]
        case .setDPSUDS(let uds): return [uds.hexString]
        case .enableSecure(_, let key): return key.map { [$0] } ?? []
        default: return []
        }
    }

    /// Reply text as it may be shown or logged: any part of a secret argument masked.
    public func masking(_ reply: String) -> String {
        maskingSecrets(secretArguments, in: reply)
    }

    /// The arguments, validated, unquoted.
    public func arguments() throws(ConsoleError) -> [String] {
        func fail(_ reason: String) -> ConsoleError { .invalidArgument(command: name, reason: reason) }
        func checkPrintable(_ value: String, _ what: String) throws(ConsoleError) {
            if containsControlCharacter(value) { throw fail("\(InputError.controlCharacter(in: what))") }
        }
        switch self {
        case .help, .version, .exit, .scan:
            return []
        case .setWiFiSSID(let ssid):
            let count = ssid.utf8.count
            guard count >= 1 else { throw fail("the SSID is empty; give the Wi-Fi network's name") }
            guard count <= 31 else { throw fail("the SSID is \(count) bytes; the board stores at most 31") }
            try checkPrintable(ssid, "SSID")
            return [ssid]
        case .setWiFiPassword(let password):
            return password.isEmpty ? [] : [password.secretValue]
        case .setIoTHubConnectionString(let value), .setDPSConnectionString(let value):
            return [value.secretValue]
        case .setDPSUDS(let uds):
            return [uds.hexString]
        case .enableSecure(let level, let key):
            guard level >= 0 else { throw fail("the level must be a non-negative number") }
            guard let key else { return [String(level)] }
            guard !key.isEmpty else { throw fail("the key is empty") }
            try checkPrintable(key, "key")
            return [String(level), key]
        }
    }

    /// The line to type, without the final `\r`: validated and quoted.
    public func line() throws(ConsoleError) -> [UInt8] {
        let arguments = try arguments()
        guard 1 + arguments.count <= Self.maxWords else {
            throw .invalidArgument(command: name, reason: "the console takes at most \(Self.maxWords) words")
        }
        var line = Array(name.utf8)
        for (index, argument) in arguments.enumerated() {
            if argument.utf8.last == 0x5C, index < arguments.count - 1 {
                // `\ ` would escape the separating space; the tokenizer has no `\\`.
                throw .invalidArgument(command: name, reason: "an argument before the last may not end in a backslash")
            }
            line.append(0x20)
            line += ConsoleTokenizer.quote(argument)
        }
        guard line.count <= Self.maxLineLength else {
            throw .invalidArgument(
                command: name,
                reason: "the line would be \(line.count) bytes; the console's line buffer holds \(Self.maxLineLength)")
        }
        return line
    }

    /// How the command appears in messages and logs: secret arguments replaced by `***`.
    public var redactedDescription: String {
        switch self {
        case .setWiFiSSID(let ssid): return "set_wifissid \(ssid)"
        case .enableSecure(let level, let key): return "enable_secure \(level)" + (key == nil ? "" : " ***")
        case .setWiFiPassword(let p) where p.isEmpty: return "set_wifipwd"
        default: return hasSecretArgument ? "\(name) ***" : name
        }
    }
}

extension ConsoleCommand {
    /// Parses a line as a user would type it at the console (the REPL's input),
    /// with the console's own tokenizer, and validates it.
    public init(parsing text: String) throws(ConsoleError) {
        let words: [String]
        switch ConsoleTokenizer.words(Array(text.utf8)) {
        case .success(let w): words = w.map { String(decoding: $0, as: UTF8.self) }
        // The user's own line: their quote, not a devkit bug (`.syntaxError` is for
        // lines devkit built).
        case .failure: throw .invalidArgument(command: "line", reason: "a quote is not closed (\" … \" or ' … ')")
        }
        guard let name = words.first else { throw .invalidArgument(command: "line", reason: "the line is empty") }
        let args = Array(words.dropFirst())
        func one() throws(ConsoleError) -> String {
            guard args.count == 1 else {
                throw .invalidArgument(command: name, reason: "takes exactly one argument, got \(args.count)")
            }
            return args[0]
        }
        func none() throws(ConsoleError) {
            guard args.isEmpty else { throw .invalidArgument(command: name, reason: "takes no argument") }
        }
        // Secrets are parsed into their types here, where the user's line enters.
        func parsed<T>(_ parse: () throws(InputError) -> T) throws(ConsoleError) -> T {
            do { return try parse() } catch { throw .invalidArgument(command: name, reason: "\(error)") }
        }
        switch name {
        case "help": try none(); self = .help
        case "version": try none(); self = .version
        case "exit": try none(); self = .exit
        case "scan": try none(); self = .scan
        case "set_wifissid": self = .setWiFiSSID(try one())
        case "set_wifipwd":
            guard args.count <= 1 else { throw .invalidArgument(command: name, reason: "takes at most one argument") }
            self = .setWiFiPassword(try parsed { () throws(InputError) in try WiFiPassword(args.first ?? "") })
        case "set_az_iothub":
            let text = try one()
            self = .setIoTHubConnectionString(try parsed { () throws(InputError) in try ConnectionString(text) })
        case "set_az_iotdps":
            let text = try one()
            self = .setDPSConnectionString(try parsed { () throws(InputError) in try ConnectionString(text) })
        case "set_dps_uds":
            let text = try one()
            self = .setDPSUDS(try parsed { () throws(InputError) in try UDS(hex: text) })
        case "enable_secure":
            guard (1...2).contains(args.count), let level = Int(args[0]) else {
                throw .invalidArgument(command: name, reason: "usage: enable_secure <level> [key]")
            }
            self = .enableSecure(level: level, key: args.count == 2 ? args[1] : nil)
        default:
            throw .invalidArgument(command: name, reason: "unknown command; known: " + Self.allNames.joined(separator: ", "))
        }
        _ = try line()
    }
}

/// The console's line tokenizer (Docs/console-protocol.md, "5. Running a line"), and its inverse.
///
/// Spaces separate words; a word that starts with `"` runs to the next `"`;
/// `\"` and `\ ` stand for a quote or a space; any other backslash is literal.
public enum ConsoleTokenizer {
    /// An unterminated quote.
    public struct SyntaxError: Error, Hashable {}

    /// Splits a line into words exactly as the firmware does.
    public static func words(_ line: [UInt8]) -> Result<[[UInt8]], SyntaxError> {
        var words: [[UInt8]] = []
        var i = 0
        let n = line.count
        func escaped(_ i: Int) -> Bool {
            line[i] == 0x5C && i + 1 < n && (line[i + 1] == 0x22 || line[i + 1] == 0x20)
        }
        while i < n {
            while i < n && line[i] == 0x20 { i += 1 }
            guard i < n else { break }
            var word: [UInt8] = []
            if line[i] == 0x22 {
                i += 1
                while true {
                    guard i < n else { return .failure(SyntaxError()) }
                    if escaped(i) { word.append(line[i + 1]); i += 2; continue }
                    if line[i] == 0x22 { i += 1; break }
                    word.append(line[i]); i += 1
                }
            } else {
                while i < n && line[i] != 0x20 {
                    if escaped(i) { word.append(line[i + 1]); i += 2; continue }
                    word.append(line[i]); i += 1
                }
            }
            words.append(word)
        }
        return .success(words)
    }

    /// Quotes one word so that `words` gives it back: `"` → `\"`, space → `\ `,
    /// the empty word → `""`. (A trailing backslash is literal only at the end of the line.)
    public static func quote(_ word: String) -> [UInt8] {
        if word.isEmpty { return [0x22, 0x22] }
        var out: [UInt8] = []
        out.reserveCapacity(word.utf8.count)
        for byte in word.utf8 {
            if byte == 0x22 || byte == 0x20 { out.append(0x5C) }
            out.append(byte)
        }
        return out
    }

    /// What the console echoes while `line` is typed: bytes as typed, except that
    /// after the first space of a line whose first word is a masked command, `*`.
    public static func echo(of line: [UInt8]) -> [UInt8] {
        guard let space = line.firstIndex(of: 0x20),
            ConsoleCommand.maskedCommandNames.contains(String(decoding: line[..<space], as: UTF8.self))
        else { return line }
        return Array(line[...space]) + Array(repeating: 0x2A, count: line.count - space - 1)
    }
}
