import VirtualDevKit

extension VirtualDevKitError: CLIReportable {
    public var exitStatus: ExitStatus {
        switch self {
        case .pseudoTerminal: return .unavailable
        case .link: return .cannotCreate
        case .stateFile: return .dataError
        case .invalidConfiguration: return .usage
        }
    }

    public var userMessage: String { description }
}
