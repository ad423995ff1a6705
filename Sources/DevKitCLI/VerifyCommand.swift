import DevKitBoardCLI
import ArgumentParser
import DPSModel
import DevKitConsole
import DevKitModel
import DevKitRegistry
import DevKitSystem
import DevKitWorkflows
import Foundation
import SerialPort
import UserModeLog
#if canImport(Glibc)
import Glibc
#endif

/// `devkit verify`: boots the board's sketch and reads from its own log whether
/// it registered with DPS, and if not, why (issue 14 item 2).
struct VerifyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Boot the board's sketch and tell from its log whether it registered with DPS.",
        usage: """
            devkit verify [--port <path>] [--timeout <seconds>] [--registry <path>]
                [--registration-id <id>] [--connection-string-file <file>
                [--endpoint <url>] [--ca-file <file>]] [--json]
            """,
        discussion: """
            A board in configuration mode is sent `exit`, so it reboots into its \
            sketch; a board already in user mode is asked (on stderr) to press \
            its reset button. devkit then follows the sketch's log until it tells \
            how registering with DPS went, or until --timeout.

            Outcomes: assigned, hub_connected, unauthorized, disabled, no_uds, \
            uds_invalid, no_wifi, tls_failed, unreachable, timeout; each with what \
            to do. For unauthorized, the registry's row for the board (found by the \
            MAC it prints, or --registration-id) is compared with what it printed, \
            to name the input that differs (usually: the firmware was rebuilt since \
            it was measured). With --connection-string-file, the registration state \
            is also read from DPS (assigned hub, device ID). Secrets the sketch \
            prints are masked. The outcome is recorded in the board's registry row; \
            a timeout does not replace an earlier definitive outcome (assigned, \
            unauthorized, ...) there.

            Examples:
              devkit verify --port /dev/ttyACM0
              devkit verify --port /dev/ttyACM0 --timeout 60 --json
              devkit verify --port /dev/ttyACM0 --connection-string-file dps.cs

            Exit codes: 0 assigned or hub_connected, 1 another outcome, 64 invalid \
            input, 66 no such port, 69 the board was unplugged, 75 timeout, 77 \
            permission denied on the port.
            """)

    @OptionGroup var port: PortOptions

    @Option(help: ArgumentHelp("How long to follow the log for an outcome.", valueName: "seconds"))
    var timeout: Int = VerifySettings.defaultTimeout

    @Option(help: ArgumentHelp(
        "The board's registration ID, to find its registry row and DPS state.",
        discussion: "Default: the one the board prints, or the registry row of the MAC it prints.",
        valueName: "id"))
    var registrationID: String?

    @OptionGroup var registry: RegistryOptions

    @Option(
        name: .customLong("connection-string-file"),
        help: ArgumentHelp(
            "With it, also read the registration state from DPS: the DPS policy's connection string file.",
            valueName: "file"),
        completion: .file())
    var connectionStringFile: String?

    @Option(help: ArgumentHelp("With --connection-string-file: the service's base URL.", valueName: "url"))
    var endpoint: String?

    @Option(
        name: .customLong("ca-file"),
        help: ArgumentHelp("With --connection-string-file: PEM certificates to trust.", valueName: "file"),
        completion: .file(extensions: ["pem", "crt"]))
    var caFile: String?

    @Flag(help: "Print the result as one JSON object.")
    var json = false

    @OptionGroup var outputLevel: OutputLevelOptions

    struct Result: Encodable {
        let outcome: String
        @NullEncoded var registrationID: String?
        @NullEncoded var assignedHub: String?
        @NullEncoded var deviceID: String?
        let diagnosis: String
        let evidence: [String]
        /// Only when the verification itself failed (`outcome` `error`) or was stopped
        /// (`stopped`): what went wrong. Absent otherwise, so `verification: null`
        /// never hides a failed verification (it means not asked, or not enrolled).
        var error: String?
        enum CodingKeys: String, CodingKey {
            case outcome, diagnosis, evidence, error
            case registrationID = "registration_id"
            case assignedHub = "assigned_hub"
            case deviceID = "device_id"
        }
    }

    /// The DPS options as `dps status` takes them (parsed and checked by the same group).
    func dpsConnection() throws -> DPSConnectionOptions? {
        guard let connectionStringFile else {
            if endpoint != nil || caFile != nil {
                throw ValidationError("--endpoint and --ca-file take effect with --connection-string-file.")
            }
            return nil
        }
        var arguments = ["--connection-string-file", connectionStringFile]
        if let endpoint { arguments += ["--endpoint", endpoint] }
        if let caFile { arguments += ["--ca-file", caFile] }
        return try DPSConnectionOptions.parse(arguments)
    }

    func validate() throws {
        guard timeout >= 1 else { throw ValidationError("--timeout must be at least 1 second.") }
        if let registrationID {
            do { _ = try RegistrationID(registrationID) } catch { throw ValidationError("--registration-id: \(cliMessage(error))") }
        }
        _ = try dpsConnection()
    }

    func run() async throws {
        try await reportingErrors {
            let path = try port.resolvedPath()
            let deadline = ContinuousClock.now + .seconds(timeout)
            let (classifier, end) = try follow(path: path, deadline: deadline)
            switch end {
            case .gone:
                throw BoardGone(path: path)
            case .signal(let signal):
                printError("devkit: stopped by \(SignalRelay.name(of: signal)); the port's settings are restored.")
                SignalRelay.dieOf(signal)
            default: break
            }
            let outcome = classifier.outcome ?? .timeout
            try await report(outcome: outcome, classifier: classifier)
        }
    }

    /// Gets the sketch to boot, then follows its log into the classifier
    /// (``RegistrationCheck``, with this terminal's prompts and signals).
    func follow(path: String, deadline: ContinuousClock.Instant) throws -> (RegistrationClassifier, BoardLogFollower.End) {
        try RegistrationCheck.observe(
            path: path, baudRate: port.baud, deadline: deadline, hooks: .terminal(progress: progressReporter()))
    }

    func report(outcome: RegistrationOutcome, classifier: RegistrationClassifier) async throws {
        let db = try registry.openExisting()
        let subject = try RegistrationCheck.subject(classifier: classifier, registry: db, registrationID: registrationID)
        var state: DeviceRegistrationState?
        var enrollment: DPSEnrollmentFinding?
        if let connection = try dpsConnection(), let id = subject.registrationID {
            // The board's own log decided the outcome: DPS adds the device ID, and for a
            // refusal what it holds for the board, so a failure to ask it is said, and
            // the outcome is still reported and recorded.
            do {
                if case .unauthorized = outcome {
                    enrollment = DPSEnrollmentFinding(try await withDPSClient(connection) { try await $0.get(id) })
                } else {
                    state = try await withDPSClient(connection) { try await $0.registrationState(id) }
                }
            } catch {
                printWarning("DPS could not be asked about the registration: \(cliMessage(error))")
            }
        }
        // Recorded in the board's row when the registry has it (by ID or MAC).
        let dps = DPSSettings(connectionStringFile: connectionStringFile, endpoint: endpoint, caFile: caFile)
        let registryWords = registry.commandWords()
        let result = RegistrationCheck.report(
            outcome, classifier: classifier, subject: subject, dpsState: state, enrollment: enrollment,
            enrollCommand: { id, replace in finishEnrollmentCommand(boardID: id, dps: dps, registryWords: registryWords, replace: replace) },
            recordingIn: db, station: StationOptions.hostName)
        if let failure = result.recordingFailure { printWarning("the outcome is not recorded in the registry: \(failure)") }
        if json {
            try printJSON(Result(result))
        } else {
            print(verificationText(result))
        }
        if outcome.isSuccess { return }
        throw ExitCode(verificationExitStatus(outcome).rawValue)
    }
}

extension VerifyCommand.Result {
    init(_ r: RegistrationCheck.Report) {
        self.init(
            outcome: r.outcome.name, registrationID: r.registrationID, assignedHub: r.assignedHub, deviceID: r.deviceID,
            diagnosis: r.diagnosis, evidence: r.evidence)
    }

    /// A verification of the board on `port` that came to no outcome from the
    /// board: it failed (the port gone, the console, the registry) or a stop signal ended it.
    init(failure: any Error, port: String?) {
        let message = cliMessage(failure)
        var stoppedBy: Int32?
        if case RegistrationCheckError.stopped(let signal) = failure { stoppedBy = signal }
        self.init(
            outcome: stoppedBy == nil ? "error" : "stopped", registrationID: nil, assignedHub: nil, deviceID: nil,
            diagnosis: stoppedBy.map { RegistrationCheckError.notVerified(signal: $0, port: port) } ?? message,
            evidence: [], error: message)
    }
}

/// The exit status of a run whose verification came to `outcome`: 0 registered,
/// 75 no outcome in time, 1 any other outcome (the port gone is 69, thrown as ``BoardGone``).
func verificationExitStatus(_ outcome: RegistrationOutcome) -> ExitStatus {
    if outcome.isSuccess { return .success }
    return outcome == .timeout ? .tempFail : .partialFailure
}

/// A verification report for people: labelled lines, then the board's lines that
/// decided it (escaped: the board's own text cannot drive the terminal).
func verificationText(_ r: RegistrationCheck.Report, indent: String = "") -> String {
    var rows: [(label: String, value: String)] = [("Outcome", r.outcome.name)]
    if let id = r.registrationID { rows.append(("Registration ID", id)) }
    if let hub = r.assignedHub { rows.append(("Assigned hub", hub)) }
    if let deviceID = r.deviceID { rows.append(("Device ID", deviceID)) }
    rows.append(("Diagnosis", r.diagnosis))
    var text = labelledLines(rows, indent: indent)
    if !r.evidence.isEmpty, OutputLevel.current != .quiet {
        text += "\n\(indent)Evidence:\n" + r.evidence.map { indent + "  " + escapedControlCharacters($0) }.joined(separator: "\n")
    }
    return text
}

extension RegistrationCheck.Hooks {
    /// The CLI's: stop signals cancel the console part (and then kill the process
    /// once the port is restored), `--verbose` shows the exchange and the board's
    /// lines, and the person (or the log) is asked to press reset.
    static func terminal(progress: @escaping (String) -> Void, prefix: String = "") -> Self {
        var hooks = Self()
        let verbose = OutputLevel.current == .verbose
        hooks.transport = { VerboseTransport.ifVerbose($0) }
        hooks.whileConsole = { port in
            let signals = PortStopSignals(cancelling: port)
            return { signals.restore() }
        }
        hooks.afterConsole = { PortStopSignals.reraiseIfCaught() }
        hooks.exitSent = { progress("the board is in configuration mode: sending `exit` to boot its sketch") }
        hooks.inUserMode = { deadline in
            // Said without a terminal too: a log (CI, a unit) would otherwise show a
            // silent wait of up to --timeout before the timeout.
            if OutputLevel.current != .quiet {
                printError("devkit: \(prefix)the board is running its sketch: press its reset button (not button A) "
                    + "to make it register again; waiting up to \(RegistrationCheck.secondsLeft(until: deadline))…")
            }
        }
        hooks.line = { line in if verbose { printError("board: \(LogMasking.mask(line.text))") } }
        return hooks
    }
}

/// The board's port went away while devkit followed its log (unplugged, and not back in time).
struct BoardGone: CLIReportable {
    let path: String
    var exitStatus: ExitStatus { .unavailable }
    var userMessage: String {
        "the board's port \(escaped(path)) went away while devkit followed its log (unplugged?): "
            + "plug it back in and run `devkit verify --port \(escaped(path))` to see it register"
    }
}
