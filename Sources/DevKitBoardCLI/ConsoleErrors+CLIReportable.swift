import DevKitConsole
import DevKitModel
import DevKitBoard

extension ConsoleError: CLIReportable {
    public var exitStatus: ExitStatus {
        switch self {
        case .invalidArgument: return .usage
        case .wrongMode, .noAnswer, .invalidCommand, .notADevKit: return .unavailable
        // A sketch without the MAC line too: `info --reboot` said 75 before; provision
        // makes it ProvisionError.macNotInBootLog (65, give --mac).
        case .timeout, .bootLogWithoutMAC: return .tempFail
        case .echoMismatch, .inputBufferOverflow, .commandFailed, .unexpectedResponse: return .ioError
        case .syntaxError, .notSynchronized: return .software
        }
    }

    public var userMessage: String { description }
}

extension WorkflowError: CLIReportable {
    public var exitStatus: ExitStatus {
        switch self {
        case .cannotReadSecret: return .noInput
        case .invalidSecret, .unknownConnectionString: return .usage
        case .cannotWriteSecret(_, _, let errno): return errno.map(ExitStatus.init(fileErrno:)) ?? .cannotCreate
        case .secretFileExists: return .cannotCreate
        case .rebootedIntoConfigurationMode: return .unavailable
        }
    }

    public var userMessage: String {
        switch self {
        case .cannotWriteSecret(let path, let reason, _):
            "cannot write \(escaped(path)): \(reason); choose a writable path with --save (nothing was sent to the board)"
        case .secretFileExists(let path):
            "\(path) exists already and may hold another board's secret: choose a new path with --save (nothing was sent to the board)"
        case .unknownConnectionString:
            description + " (or pass --kind hub|dps)"
        case .cannotReadSecret, .invalidSecret, .rebootedIntoConfigurationMode:
            description
        }
    }
}
