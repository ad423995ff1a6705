import SerialPort

extension SerialPortError: CLIReportable {
    /// sysexits(3) codes a script can act on: 77 fix permissions, 75 try again later,
    /// 69 plug the board (back) in, 66 wrong path.
    public var exitStatus: ExitStatus {
        switch self {
        case .notFound: return .noInput
        case .permissionDenied: return .noPermission
        case .inUse: return .tempFail
        case .notATerminal: return .usage
        case .disconnected: return .unavailable
        case .cancelled: return .tempFail
        case .unsupportedBaudRate: return .usage
        case .writeTimedOut: return .tempFail
        case .system: return .ioError
        }
    }

    public var userMessage: String { description }
}
