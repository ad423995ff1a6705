import DeviceDiscovery

extension DiscoveryError: CLIReportable {
    public var exitStatus: ExitStatus {
        switch self {
        case .noBoardAttached, .udevFailed: return .unavailable
        // The user must choose: a usage problem, like a missing argument.
        case .multipleBoards: return .usage
        case .monitorFailed: return .ioError
        }
    }

    /// The library's sentences, with `--port` where the user can name the board instead.
    public var userMessage: String {
        // For these two, `description` ends in a sentence whose "." gives way to the option.
        let said = description.hasSuffix(".") ? String(description.dropLast()) : description
        switch self {
        case .udevFailed:
            return said + "; name the board's serial device with --port instead."
        case .noBoardAttached:
            return said + ", or name its port with --port."
                + " A virtual DevKit (`devkit emulate`) is not found by discovery: pass its pty path with --port."
        case .multipleBoards(let boards):
            let list = boards.map(\.description).joined(separator: "; ")
            let example = boards.first?.preferredPath ?? "/dev/ttyACM0"
            return "\(boards.count) DevKits are attached: \(list). Choose one with --port, e.g. --port \(example)."
        case .monitorFailed:
            return description
        }
    }
}
