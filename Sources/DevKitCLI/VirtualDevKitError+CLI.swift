import VirtualDevKit

extension VirtualDevKitError: CLIReportable {
    public var exitStatus: ExitStatus {
        switch self {
        case .pseudoTerminal: return .unavailable
        case .link, .linkInUse: return .cannotCreate
        case .stateFile(_, let reason): return reason.hasPrefix("cannot be written") ? .cannotCreate : .dataError
        case .invalidConfiguration: return .usage
        }
    }

    public var userMessage: String { description }
}
