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

    public var userMessage: String {
        switch self {
        case .noBoardAttached:
            return description
                + " A virtual DevKit (`devkit emulate`) is not found by discovery: pass its pty path with --port."
        default:
            return description
        }
    }
}
