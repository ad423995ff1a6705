import DevKitBoardCLI
import DevKitWorkflows

/// The workflow says what happened; here each case gets the option that fixes it.
extension ProvisionError: CLIReportable {
    public var exitStatus: ExitStatus {
        switch self {
        case .invalidInput, .templateNeedsSerial, .serialUnknown, .resumeOnAnotherBoard, .resumeNeedsBoard,
             .cannotResume: .usage
        case .outputDirectory(_, _, let errno): errno.map(ExitStatus.init(fileErrno:)) ?? .cannotCreate
        case .filesOfAnotherBoard, .cannotMoveAside: .cannotCreate
        case .firmware, .macNotInBootLog, .firmwareChanged: .dataError
        case .recordedFirmwareMissing: .noInput
        }
    }

    public var userMessage: String {
        switch self {
        // Both come from a profile, at a new board (no row yet): what to change there,
        // or how `provision` takes the board instead.
        case .templateNeedsSerial:
            description + " (a port without one, such as a virtual DevKit's); in the profile set registration_id = "
                + "\"derived\" or a template without {serial}, or provision the board with `devkit provision ... "
                + "--registration-id ID`"
        case .serialUnknown:
            description + " (a port without one, such as a virtual DevKit's); in the profile use [uds] policy = "
                + "\"generate\", or provision the board with `devkit provision ... --uds-file FILE`"
        case .outputDirectory:
            description + "; create it, or choose another (--output-dir, or output_dir in a profile)"
        case .macNotInBootLog:
            description + "; give the MAC with --mac, read from the screen in configuration mode"
        case .resumeOnAnotherBoard(let id, _, _):
            description + "; plug in board #\(id), or provision this one without --resume"
        case .resumeNeedsBoard: description + "; connect it with --port"
        case .filesOfAnotherBoard(let id, let owner, _, _):
            description + "; to replace board #\(owner) (it is marked superseded and its files are kept as "
                + "<id>.row\(owner).pem and <id>.row\(owner).enrollment.json, or the first such names that are free; "
                + "devkit says which), run "
                + (id.map { "`devkit provision --resume \($0) --force`" } ?? "the same command with --force")
                + "; or " + (id.map { "`devkit provision --resume \($0)` with another --output-dir" }
                    ?? "use another --output-dir or --registration-id")
        case .firmwareChanged(let id, _), .recordedFirmwareMissing(let id, _):
            description + "; give the firmware board #\(id) is to run with --bin FILE --map FILE or --elf FILE"
        case .invalidInput, .firmware, .cannotResume, .cannotMoveAside: description
        }
    }
}

extension OutputFileError: CLIReportable {
    public var exitStatus: ExitStatus { errno.map(ExitStatus.init(fileErrno:)) ?? .cannotCreate }
    public var userMessage: String { description }
}

extension RegistrationIDError: CLIReportable {
    public var exitStatus: ExitStatus { .usage }
    public var userMessage: String { description }
}

extension DPSTargetError: CLIReportable {
    /// As `devkit dps` says the same things (a connection string that does not parse is 65).
    public var exitStatus: ExitStatus {
        switch self {
        case .connectionString: .dataError
        case .notConfigured, .endpoint, .proxy: .usage
        }
    }

    public var userMessage: String {
        switch self {
        case .connectionString:
            description + "; copy the policy's \"Primary connection string\" (DPS > Shared access policies) into "
                + "the file (--dps-connection-string-file, or connection_string_file in a profile's [dps])"
        case .endpoint:
            description + "; give e.g. https://my-dps.azure-devices-provisioning.net (--dps-endpoint, or endpoint in a "
                + "profile's [dps])"
        case .proxy: description + "; fix or unset HTTPS_PROXY"
        case .notConfigured: description + "; give --dps-connection-string-file"
        }
    }
}
