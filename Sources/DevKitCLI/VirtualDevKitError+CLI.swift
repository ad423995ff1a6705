import DevKitBoardCLI
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

    public var userMessage: String {
        switch self {
        case .linkInUse(let path, let target):
            "The link \(path) points at \(target), which is open: another virtual DevKit may be using it. "
                + "Stop that one or choose another --link (if the link is stale, remove it)."
        case .stateFile(let path, let reason):
            "The state file \(path) \(reason). Fix or remove it, or pass another --state path."
        case .pseudoTerminal, .link, .invalidConfiguration:
            description
        }
    }
}
