import DevKitWorkflows

extension ProvisionError: CLIReportable {
    public var exitStatus: ExitStatus {
        switch self {
        case .invalidInput, .serialUnknown, .cannotResume: .usage
        case .outputDirectory: .cannotCreate
        case .firmware, .macNotInBootLog: .dataError
        }
    }
    public var userMessage: String { description }
}

extension OutputFileError: CLIReportable {
    public var exitStatus: ExitStatus { .cannotCreate }
    public var userMessage: String { description }
}

extension RegistrationIDError: CLIReportable {
    public var exitStatus: ExitStatus { .usage }
    public var userMessage: String { description }
}
