/// What the interactive console knows about the board's commands and its own
/// `:` commands: names for completion, which arguments are secrets, and how a typed
/// line is classified. Pure logic, so it is tested without a terminal.
enum ReplCommands {
    /// The board's console commands, in the order its `help` lists them, with its help text.
    static let device: [(name: String, help: String)] = [
        ("help", "Help document"),
        ("version", "System version"),
        ("exit", "Exit and reboot"),
        ("scan", "Scan Wi-Fi AP"),
        ("set_wifissid", "Set Wi-Fi SSID"),
        ("set_wifipwd", "Set Wi-Fi password"),
        ("set_az_iothub", "Set IoT Hub device connection string"),
        ("set_az_iotdps", "Set DPS Symmetric Key connection string"),
        ("set_dps_uds", "Set DPS Unique Device Secret (UDS), 64 hex digits"),
        ("enable_secure", "Enable secure channel between AZ3166 and secure chip"),
    ]

    /// Local commands, handled by devkit itself.
    static let local: [(name: String, usage: String, help: String)] = [
        (":help", ":help", "This list"),
        (":info", ":info", "Firmware version and the other versions (runs `version`)"),
        (":cert", ":cert --elf F --uds-file F --mac M",
         "Alias certificate <id>.pem (firmware version read from the board; or --bin/--map, --registration-id, --output-dir)"),
        (":uds", ":uds generate FILE",
         "Make a fresh UDS, save it to FILE (mode 0600) first, then store it on the board"),
        (":quit", ":quit", "Leave the console (Ctrl-D does the same)"),
    ]

    /// Commands whose argument is a secret. Never echoed, logged or kept in history.
    /// (The board itself masks only the first two; connection strings carry keys too.)
    static let secretCommands: Set<String> = [
        "set_wifipwd", "set_dps_uds", "set_az_iothub", "set_az_iotdps",
    ]

    /// Every word Tab can complete at the start of a line.
    static var completionWords: [String] { device.map(\.name) + local.map(\.name) }

    /// Candidates for the word being completed, given the text left of the cursor.
    /// Only the first word completes; `:uds` completes its sub-command.
    static func completions(forLinePrefix prefix: String) -> [String] {
        let trimmed = prefix.drop(while: { $0 == " " })
        if let space = trimmed.firstIndex(of: " ") {
            let head = trimmed[..<space]
            let rest = trimmed[trimmed.index(after: space)...].drop(while: { $0 == " " })
            if head == ":uds", !rest.contains(" ") {
                return ["generate"].filter { $0.hasPrefix(rest) }
            }
            return []
        }
        return completionWords.filter { $0.hasPrefix(trimmed) }
    }

    /// The longest prefix shared by all candidates.
    static func commonPrefix(_ words: [String]) -> String {
        guard var prefix = words.first else { return "" }
        for word in words.dropFirst() {
            while !word.hasPrefix(prefix) { prefix.removeLast() }
        }
        return prefix
    }

    /// First word of a line and the rest (leading spaces dropped), as the board splits it.
    static func split(_ line: String) -> (command: String, argument: String) {
        let trimmed = line.drop(while: { $0 == " " || $0 == "\t" })
        guard let space = trimmed.firstIndex(where: { $0 == " " || $0 == "\t" }) else {
            return (String(trimmed), "")
        }
        return (String(trimmed[..<space]),
                String(trimmed[trimmed.index(after: space)...].drop(while: { $0 == " " || $0 == "\t" })))
    }

    /// True if the line carries a secret argument.
    static func carriesSecret(_ line: String) -> Bool {
        masked(line) != line
    }

    /// The line as it may be shown or logged: a secret argument becomes `****`
    /// (for `enable_secure <level> <key>`, the key).
    static func masked(_ line: String) -> String {
        let (command, argument) = split(line)
        if command == "enable_secure" {
            let (level, key) = split(argument)
            return key.isEmpty ? line : "\(command) \(level) ****"
        }
        guard secretCommands.contains(command), !argument.isEmpty else { return line }
        return command + " ****"
    }

    /// What goes into the history for a line: never a secret. A secret command keeps
    /// only its name, so recalling it asks for the secret again (with echo off); a
    /// masked copy would, when re-run, store `****` on the board.
    static func historyEntry(for line: String) -> String? {
        let trimmed = line.trimmingSpaces
        if trimmed.isEmpty { return nil }
        let (command, argument) = split(trimmed)
        if command == "enable_secure" { return "\(command) \(split(argument).command)".trimmingSpaces }
        return secretCommands.contains(command) ? command : trimmed
    }

    /// What to ask when a secret command is typed alone; nil if it takes no secret.
    static func secretPrompt(for command: String) -> String? {
        switch command {
        case "set_dps_uds": return "UDS (64 hex digits, not shown): "
        case "set_wifipwd": return "Wi-Fi password (not shown; empty clears it): "
        case "set_az_iothub": return "IoT Hub device connection string (not shown): "
        case "set_az_iotdps": return "DPS connection string (not shown): "
        default: return nil
        }
    }
}

extension StringProtocol {
    /// The text without leading and trailing spaces, tabs and line ends.
    var trimmingSpaces: String {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" }
        guard let first = firstIndex(where: { !isSpace($0) }),
              let last = lastIndex(where: { !isSpace($0) }) else { return "" }
        return String(self[first...last])
    }
}
