import DevKitRegistry

extension RegistryError: CLIReportable {
    public var exitStatus: ExitStatus {
        switch self {
        case .cannotCreateDirectory: .cannotCreate
        case .cannotOpen, .database: .ioError
        case .invalidStoredValue: .dataError
        case .invalidMAC: .usage
        case .boardNotFound: .noInput
        }
    }

    public var userMessage: String { description }
}
