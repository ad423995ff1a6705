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
            sketch; a board already in user mode is asked (on a terminal) to press \
            its reset button. devkit then follows the sketch's log until it tells \
            how registering with DPS went, or until --timeout.

            Outcomes: assigned, hub_connected, unauthorized, disabled, no_uds, \
            uds_invalid, no_wifi, tls_failed, unreachable, timeout; each with what \
            to do. For unauthorized, the registry's row for the board (found by the \
            MAC it prints, or --registration-id) is compared with what it printed, \
            to name the input that differs (usually: the firmware was rebuilt since \
            it was measured). With --connection-string-file, the registration state \
            is also read from DPS (assigned hub, device ID). Secrets the sketch \
            prints are masked.

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
    var timeout: Int = 180

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
        enum CodingKeys: String, CodingKey {
            case outcome, diagnosis, evidence
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

    /// Gets the sketch to boot, then follows its log into the classifier.
    func follow(path: String, deadline: ContinuousClock.Instant) throws -> (RegistrationClassifier, BoardLogFollower.End) {
        let serial = try SerialPort(path: path, baudRate: port.baud)
        var reader = UserModeLogReader()
        let verbose = OutputLevel.current == .verbose
        func take(_ lines: [LogLine]) {
            if verbose { for line in lines { printError("board: \(LogMasking.mask(line.text))") } }
        }
        // The console first: a board at its prompt is in configuration mode and is sent `exit`.
        let signals = PortStopSignals(cancelling: serial)
        let session = ConsoleSession(transport: VerboseTransport.ifVerbose(serial))
        // A board in user mode may be registering while devkit looks for a prompt:
        // what it printed then is its log too.
        nonisolated(unsafe) var seen: [UInt8] = []
        session.receiveObserver = { bytes in if seen.count < 1 << 20 { seen += bytes } }
        do {
            try session.synchronize()
            progressReporter()("the board is in configuration mode: sending `exit` to boot its sketch")
            _ = try session.execute(.exit)
            // What came after `Reboot`: the boot log's first lines.
            take(reader.feed(session.takeUnread()))
        } catch ConsoleError.wrongMode(.user), ConsoleError.noAnswer {
            take(reader.feed(seen))
            if isatty(STDERR_FILENO) == 1, OutputLevel.current != .quiet {
                printError("devkit: the board is running its sketch: press its reset button (not button A) "
                    + "to make it register again; waiting up to \(ConsoleError.format(deadline - .now))…")
            }
        } catch {
            signals.restore()
            serial.close()
            PortStopSignals.reraiseIfCaught()
            throw error
        }
        signals.restore()
        PortStopSignals.reraiseIfCaught()
        // The lines from here on come whole from the follower; a line cut at the
        // hand-over is completed by the follower's first line.
        var classifier = reader.classifier
        var carried = reader.splitter.pending
        // Decided already (while devkit looked for a prompt): nothing to follow.
        if classifier.outcome != nil {
            serial.close()
            return (classifier, .stopped)
        }
        // The follower takes the open port (and closes it), handling the stop signals itself.
        let end = try BoardLogFollower.follow(
            port: serial, .init(path: path, baudRate: port.baud, reconnectTimeout: .seconds(5)),
            deadline: deadline
        ) { event in
            if case .line(let text) = event {
                let line = LogLine(carried.isEmpty ? text : LogMasking.mask(String(decoding: carried, as: UTF8.self) + text))
                carried = []
                take([line])
                classifier.take(line)
            }
            return classifier.outcome == nil
        }
        return (classifier, end)
    }

    func report(outcome: RegistrationOutcome, classifier: RegistrationClassifier) async throws {
        let identity = classifier.identity
        // The registry's row: by --registration-id, the MAC the board printed, or the ID it used.
        var record: BoardRecord?
        if let db = try registry.openExisting() {
            if let id = registrationID ?? identity.registrationID { record = try db.board(byRegistrationID: id) }
            if record == nil, let mac = identity.mac { record = try db.board(byMAC: mac.hex) }
        }
        let settings = record.flatMap { try? ProvisionSettings.recorded(in: $0) }
        var id = registrationID ?? identity.registrationID ?? record?.registrationID
        if id == nil, let mac = identity.mac, let v = identity.firmwareVersion, let version = try? FirmwareVersion(v) {
            id = (try? RegistrationID(mac: mac, firmwareVersion: version))?.value
        }
        var hub = outcome.hub
        var deviceID: String?
        if let connection = try dpsConnection(), let id {
            let state = try await withDPSClient(connection) { try await $0.registrationState(id) }
            if let state {
                hub = state.assignedHub ?? hub
                deviceID = state.deviceId
            }
        }
        let diagnosis = RegistrationDiagnosis.explain(
            outcome, classifier: classifier, record: record, settings: settings)
        if json {
            try printJSON(Result(
                outcome: outcome.name, registrationID: id, assignedHub: hub, deviceID: deviceID,
                diagnosis: diagnosis, evidence: classifier.evidence))
        } else {
            var rows: [(label: String, value: String)] = [("Outcome", outcome.name)]
            if let id { rows.append(("Registration ID", id)) }
            if let hub { rows.append(("Assigned hub", hub)) }
            if let deviceID { rows.append(("Device ID", deviceID)) }
            rows.append(("Diagnosis", diagnosis))
            print(labelledLines(rows))
            if !classifier.evidence.isEmpty, OutputLevel.current != .quiet {
                // The board's own text: escaped, so it cannot drive the terminal.
                print("Evidence:\n" + classifier.evidence.map { "  " + escapedControlCharacters($0) }.joined(separator: "\n"))
            }
        }
        if outcome.isSuccess { return }
        throw ExitCode(outcome == .timeout ? ExitStatus.tempFail.rawValue : ExitStatus.partialFailure.rawValue)
    }
}

/// The board's port went away while devkit followed its log (unplugged, and not back in time).
struct BoardGone: CLIReportable {
    let path: String
    var exitStatus: ExitStatus { .unavailable }
    var userMessage: String {
        "the board's port \(escaped(path)) went away while devkit followed its log (unplugged?): plug it in and run again"
    }
}
