import DevKitBoardCLI
import DPSEmulator

extension EmulatorSetupError: CLIReportable {
    public var exitStatus: ExitStatus {
        switch self {
        case .file(let error): ExitStatus(fileErrno: error.errno.rawValue)
        case .directory(_, let errno, _): ExitStatus(fileErrno: errno)
        // Files in the state directory that are not what the emulator wrote.
        case .certificate, .state: .dataError
        case .bind: .unavailable
        case .inUse: .tempFail
        }
    }

    public var userMessage: String {
        switch self {
        case .file, .directory:
            description + "; choose another place with --state-dir DIR"
        case .certificate, .state:
            description
        case .inUse:
            description + " (two would overwrite each other's enrollments); stop it, or give this one another --state-dir DIR"
        case .bind(let port, _):
            description + (port == 0 ? "" : "; choose another --port, or 0 for a free one")
        }
    }
}
