import DevKitRegistry

extension RegistryError: CLIReportable {
    public var exitStatus: ExitStatus {
        switch self {
        case .cannotCreateDirectory(_, _, let errno): errno.map(ExitStatus.init(fileErrno:)) ?? .cannotCreate
        case .cannotOpen(_, _, let errno?): ExitStatus(fileErrno: errno)
        case .cannotOpen, .database: .ioError
        case .invalidStoredValue: .dataError
        case .invalidMAC: .usage
        case .boardNotFound: .noInput
        }
    }

    public var userMessage: String {
        switch self {
        case .cannotCreateDirectory:
            description + "; choose another place with --registry PATH"
        case .cannotOpen:
            description + " or choose another file with --registry PATH"
        case .boardNotFound:
            description + "; `devkit registry list` shows the recorded boards"
        case .database, .invalidStoredValue, .invalidMAC:
            description
        }
    }
}
