import DevKitBoardCLI
import DPSService
import DevKitModel
import DevKitRegistry
import DevKitSystem
import DevKitWorkflows
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// How provisioning progress is shown: lines on stderr for people, JSON Lines on
/// stdout for scripts (`--json`). On a terminal each step has one line, rewritten
/// in place from start to outcome with its elapsed time; piped (a log, a script)
/// each event has a line of its own.
struct ProvisionReporter {
    let json: Bool
    /// Prefix for each human line (the port, when several boards run at once).
    var prefix = ""
    /// The port, in each JSON event, when several boards run at once.
    var port: String?
    /// The command that finishes a board's DPS enrollment (`devkit dps enroll
    /// --from-registry --id N ...`, with the DPS options the run was given).
    var enrollCommand: @Sendable (Int64, _ replace: Bool) -> String = { id, replace in
        finishEnrollmentCommand(boardID: id, dps: DPSSettings(), registryWords: [], replace: replace)
    }
    /// What a printed `devkit provision --resume N` needs besides the board: the
    /// registry and key (``RegistryOptions/commandWords(profile:)``) and the port.
    var resumeWords: [String] = []
    /// For the board with this row id, the words for secrets that came from standard
    /// input and must be given again (`--wifi-password-file -`, ...); after ``resumeWords``.
    var standardInputWords: @Sendable (Int64) -> [String] = { _ in [] }
    /// The step line redrawn in place: stderr a terminal, no --json, and neither
    /// --quiet (no progress) nor --verbose (whose exchange lines would land inside it).
    private let live: LiveStepLine?

    init(json: Bool, live: Bool = isatty(STDERR_FILENO) == 1) {
        self.json = json
        self.live = !json && live && OutputLevel.current == .normal ? LiveStepLine() : nil
    }

    func event(_ e: ProvisionEvent) {
        if json {
            var message = e.message
            if e.status == .failed, e.stage != .verify, let error = e.error {
                // A busy board is the other station's to finish: no resume hint.
                message = cliMessage(error) + (e.isHeldElsewhere ? "" : e.boardID.map { " (\(hint($0, after: error)))" } ?? "")
            }
            emitJSON(EventJSON(event: "step", stage: e.stage.rawValue, status: e.status.rawValue,
                               message: message, boardID: e.boardID, port: port))
            return
        }
        if e.status == .failed, e.stage == .verify {
            // The board is provisioned; the outcome and its diagnosis are the message.
            let line = "\(prefix)[ERR] verify: \(e.message)"
            if let live { live.show(stage: e.stage.rawValue, line, final: true) } else { printError(line) }
            return
        }
        if e.status == .failed {
            // The error itself follows as `devkit: error: …` (or watch's status line):
            // here only where it stopped and, once recorded, how to finish the board.
            // Not recorded means no UDS went out (it is recorded before it is sent).
            let outcome = e.isHeldElsewhere ? "left to the station that holds it"
                : e.boardID.map { hint($0, after: e.error) } ?? "nothing recorded, nothing stored on the board"
            let line = "\(prefix)[ERR] \(e.stage.rawValue): \(outcome)"
            if let live { live.show(stage: e.stage.rawValue, line, final: true) } else { printError(line) }
            return
        }
        guard OutputLevel.current != .quiet else { return }
        let mark = switch e.status {
        case .started: "..."
        case .done: "ok "
        case .skipped: "-- "
        case .failed: "ERR"
        }
        let line = "\(prefix)[\(mark)] \(e.stage.rawValue): \(e.message)"
        if let live { live.show(stage: e.stage.rawValue, line, final: e.status != .started) } else { printError(line) }
    }

    /// How to finish a board after `error`: its DPS enrollment when that is what
    /// failed (the board is provisioned), else the resume.
    func hint(_ boardID: Int64, after error: (any Error)?) -> String {
        guard let notEnrolled = error as? NotEnrolled else { return resumeHint(boardID, after: error) }
        if !json {
            // The command that finishes it follows, with the result and the error line.
            return "board #\(boardID) is provisioned, not enrolled: \(notEnrolled)"
        }
        return "board #\(boardID) is done, not enrolled; `\(enrollCommand(boardID, notEnrolled.needsReplace))` finishes it"
    }

    /// How to finish a board the registry holds (the workflow reports the facts only).
    /// A board stopped because its files hold another board's certificate is
    /// finished only with `--force` (or another output directory).
    func resumeHint(_ boardID: Int64, after error: (any Error)? = nil) -> String {
        var force = false
        if case .filesOfAnotherBoard? = error as? ProvisionError { force = true }
        // A sketch that does not print its MAC: the resume needs it given.
        var mac = false
        if case .macNotInBootLog? = error as? ProvisionError { mac = true }
        let words = resumeWords + standardInputWords(boardID) + (force ? ["--force"] : [])
        return "board #\(boardID) is recorded with its UDS; `\(resumeCommand(boardID: boardID, words))"
            + (mac ? " --mac MAC` (the MAC off the board's screen in configuration mode)" : "`") + " finishes it"
    }

    /// The result; `verification` when the board's registration was verified,
    /// `verificationError` when verifying it failed or was stopped (in JSON, an
    /// `error` or `stopped` outcome: `verification: null` means not asked, or the
    /// board was left not enrolled, so not verified).
    func result(_ r: ProvisionResult, verification: RegistrationCheck.Report? = nil, verificationError: (any Error)? = nil) {
        if json {
            var line = ResultJSON(r, enrollCommand: enrollCommand)
            line.port = port
            line.verification = verification.map { VerifyCommand.Result($0) }
                ?? verificationError.map { VerifyCommand.Result(failure: $0, port: port) }
            emitJSON(line)
            return
        }
        printResult(r)
        if let verification {
            print("Verification:")
            print(verificationText(verification, indent: "  "))
        }
    }

    private func printResult(_ r: ProvisionResult) {
        var lines: [(label: String, value: String)] = [
            ("Registration ID", r.registrationID), ("MAC address", r.mac), ("Firmware version", r.firmwareVersion),
            ("Certificate", r.certificatePath), ("SHA-1 thumbprint", r.certificateSHA1),
            ("SHA-256 thumbprint", r.certificateSHA256), ("Enrollment file", r.enrollmentPath),
        ]
        guard let e = r.enrollment else {
            print("Board #\(r.boardID) provisioned.")
            print(labelledLines(lines, indent: "  "))
            printOutput("Create the enrollment with:\n  \(r.azCommand)")
            return
        }
        if e.isEnrolled {
            print("Board #\(r.boardID) provisioned and enrolled in DPS.")
            lines.append(("DPS enrollment", "\(e.outcome.action.rawValue) in \(e.dpsHost)"))
            if let failure = e.recordingFailure { lines.append(("Registry", "the enrollment is not recorded: \(failure)")) }
            print(labelledLines(lines, indent: "  "))
            return
        }
        // The error itself follows (`devkit: error:`), with its exit code.
        print("Board #\(r.boardID) provisioned; not enrolled in DPS (done, not enrolled).")
        lines.append(("DPS enrollment", "\(e.outcome.action == .conflict ? "conflict" : "not enrolled") (\(e.dpsHost))"))
        print(labelledLines(lines, indent: "  "))
        printOutput("Finish the enrollment with:\n  \(enrollCommand(r.boardID, e.outcome.action == .conflict))")
    }

    private func emitJSON<T: Encodable>(_ value: T) {
        if let line = try? JSONOutput.text(value) { printEvent(line) }
    }

    struct EventJSON: Encodable {
        let event: String, stage: String, status: String, message: String
        /// Always present (null before the board has a row); `port` only with `watch`.
        @NullEncoded var boardID: Int64?
        let port: String?
        enum CodingKeys: String, CodingKey { case event, stage, status, message, boardID = "board_id", port }
    }

    struct ResultJSON: Encodable {
        let event = "result"
        let boardID: Int64, registrationID: String, mac: String, firmwareVersion: String
        let certificatePath: String, enrollmentPath: String, certificateSHA1: String
        let certificateSHA256: String, azCommand: String
        /// The board's port, when several boards run at once (`watch`).
        var port: String?
        /// `done`, or `done, not enrolled` when DPS was configured and did not enroll it.
        let state: String
        /// Null when DPS was not configured.
        @NullEncoded var enrollment: EnrollmentJSON?
        /// `devkit verify --json`'s object, when verification was asked (outcome
        /// `error` or `stopped`, with `error`, when it came to none); else null.
        @NullEncoded var verification: VerifyCommand.Result? = nil
        init(_ r: ProvisionResult, enrollCommand: (Int64, Bool) -> String) {
            boardID = r.boardID; registrationID = r.registrationID; mac = r.mac
            firmwareVersion = r.firmwareVersion; certificatePath = r.certificatePath
            enrollmentPath = r.enrollmentPath; certificateSHA1 = r.certificateSHA1
            certificateSHA256 = r.certificateSHA256; azCommand = r.azCommand
            state = r.enrollment.map { $0.isEnrolled ? "done" : "done, not enrolled" } ?? "done"
            enrollment = r.enrollment.map { EnrollmentJSON($0, boardID: r.boardID, enrollCommand: enrollCommand) }
        }
        enum CodingKeys: String, CodingKey {
            case event, boardID = "board_id", registrationID = "registration_id", mac
            case firmwareVersion = "firmware_version", certificatePath = "certificate_path"
            case enrollmentPath = "enrollment_path", certificateSHA1 = "certificate_sha1"
            case certificateSHA256 = "certificate_sha256", azCommand = "az_command", port, state, enrollment
            case verification
        }
    }

    /// The enroll step's outcome, with the keys of `dps enroll --json`.
    struct EnrollmentJSON: Encodable {
        let action: String, dpsHost: String, enrolled: Bool
        @NullEncoded var etag: String?
        @NullEncoded var sha1Thumbprint: String?
        @NullEncoded var sha256Thumbprint: String?
        var errorCode: Int?, httpStatus: Int?, message: String?, trackingID: String?
        /// How to finish it, when it is not enrolled.
        var finishCommand: String?
        /// Why the registry does not hold the outcome, if it does not.
        var registryError: String?
        init(_ e: ProvisionEnrollment, boardID: Int64, enrollCommand: (Int64, Bool) -> String) {
            let o = e.outcome
            action = o.action.rawValue; dpsHost = e.dpsHost; enrolled = e.isEnrolled
            etag = o.etag; sha1Thumbprint = o.sha1Thumbprint; sha256Thumbprint = o.sha256Thumbprint
            if !e.isEnrolled {
                errorCode = o.error?.errorCode; httpStatus = o.error?.status; trackingID = o.error?.trackingId
                message = o.error.map { cliMessage($0) } ?? o.message
                finishCommand = enrollCommand(boardID, o.action == .conflict)
            }
            registryError = e.recordingFailure
        }
        enum CodingKeys: String, CodingKey {
            case action, dpsHost = "dps_host", enrolled, etag, sha1Thumbprint = "sha1_thumbprint"
            case sha256Thumbprint = "sha256_thumbprint", errorCode = "error_code", httpStatus = "http_status"
            case message, trackingID = "tracking_id", finishCommand = "finish_command", registryError = "registry_error"
        }
    }
}

/// One provisioning step's line on a terminal (stderr), rewritten in place (carriage
/// return, clear line) from its start to its outcome, with the time the step has
/// taken; a ticker redraws it each second while the step runs (reading the MAC from
/// the boot log can take 30 s). A finished step's line stays, ended by its newline.
final class LiveStepLine: @unchecked Sendable {
    private let lock = NSLock()
    /// The step whose line is open (drawn, no newline yet), and that line.
    private var open: (stage: String, line: String)?
    private var started = ContinuousClock.now
    private var ticking = false

    /// Draws the line of `stage`: its start (`final` false) or its outcome. Another
    /// step's open line is ended first.
    func show(stage: String, _ line: String, final: Bool) {
        lock.withLock {
            let timed = open?.stage == stage
            if let previous = open, !timed { draw(previous.line, elapsed: true, newline: true) }
            if !final { started = .now }
            // The time is shown from the ticker's first redraw, and with the outcome.
            draw(line, elapsed: timed, newline: final)
            open = final ? nil : (stage, line)
            if !final && !ticking { startTicker() }
        }
    }

    /// Lock held. The step's time, when it was timed from its start.
    private func draw(_ line: String, elapsed: Bool, newline: Bool) {
        var text = escapedControlCharacters(line)
        if elapsed {
            let (seconds, attoseconds) = (ContinuousClock.now - started).components
            text += String(format: " (%.1f s)", Double(seconds) + Double(attoseconds) / 1e18)
        }
        // A line still to be redrawn must fit the terminal: a wrapped one would
        // leave its first row behind at each redraw. A final line may wrap.
        if !newline { text = String(text.prefix(max(1, terminalColumns(STDERR_FILENO) - 1))) }
        writeAll(STDERR_FILENO, "\r\u{1B}[2K" + text + (newline ? "\n" : ""))
    }

    private func startTicker() {
        ticking = true
        let thread = Thread { [self] in
            while true {
                Thread.sleep(forTimeInterval: 1)
                lock.withLock { if let open { draw(open.line, elapsed: true, newline: false) } }
            }
        }
        thread.name = "devkit progress"
        thread.start()
    }
}

/// `devkit dps enroll --from-registry --id N` with the DPS options a run was given
/// and its registry's (``RegistryOptions/commandWords(profile:)``), shell-quoted: what
/// finishes a board left `done, not enrolled`. `replace` when DPS holds another
/// certificate for it (a conflict is never replaced unasked).
func finishEnrollmentCommand(boardID: Int64, dps: DPSSettings, registryWords: [String], replace: Bool = false) -> String {
    var words = ["devkit", "dps", "enroll", "--from-registry", "--id", "\(boardID)"] + registryWords
    words += ["--connection-string-file", dps.connectionStringFile ?? "FILE"]
    if let endpoint = dps.endpoint { words += ["--endpoint", endpoint] }
    if let caFile = dps.caFile { words += ["--ca-file", caFile] }
    if let hub = dps.iotHubHostName { words += ["--iot-hub", hub] }
    if !dps.provisioningEnabled { words.append("--disabled") }
    if replace { words.append("--replace") }
    return commandLine(words)
}

/// `devkit provision --resume N` followed by `words` (the registry's, the port),
/// shell-quoted: what finishes a board the registry holds.
func resumeCommand(boardID: Int64, _ words: [String]) -> String {
    commandLine(["devkit", "provision", "--resume", "\(boardID)"] + words)
}

extension NotEnrolled {
    /// DPS holds another certificate: only `--replace` enrolls this one.
    var needsReplace: Bool { enrollment.outcome.action == .conflict }
}

/// A provisioned board left `done, not enrolled`, as the command's last word: the
/// exit code is the one `devkit dps enroll` gives for the same failure (69 DPS
/// unreachable, 75 timeouts or throttling, 77 credentials refused, 65 data
/// refused, 1 a conflict), so a script does not go on as if the board could
/// register; the message says the board is provisioned and how to finish it.
struct NotEnrolledReport: CLIReportable {
    let notEnrolled: NotEnrolled
    let command: String
    /// The result just printed the command on the terminal this error goes to.
    var commandShownAbove = false
    var exitStatus: ExitStatus { notEnrolled.enrollment.outcome.error?.exitStatus ?? .partialFailure }
    var userMessage: String {
        let id = notEnrolled.boardID
        let why = notEnrolled.enrollment.outcome.error.map { cliMessage($0) } ?? notEnrolled.description
        return "board #\(id) is provisioned (its files are written) but not enrolled in DPS: \(why); "
            + (commandShownAbove ? "the command above finishes it" : "`\(command)` finishes it")
            + (notEnrolled.needsReplace ? " (--replace puts this board's certificate in place of the one DPS holds)" : "")
    }
}

/// Prints one event line and flushes it: stdout is block-buffered when it is not a
/// terminal, and a script reading `--json` progress from a pipe must see each step
/// as it happens, not all of them when the process exits.
func printEvent(_ line: String) {
    print(line)
    fflush(nil)  // all streams: naming `stdout` is not concurrency-safe in Swift 6
}

/// Test hook for crash safety: with `DEVKIT_TEST_KILL_AFTER_STEP=<registry step>`
/// (e.g. `uds_sent`), the process kills itself with SIGKILL right after that step
/// is committed, exactly like a `kill -9` or a power cut at that point. With
/// `DEVKIT_TEST_PAUSE_AFTER_STEP=<step>` it stops itself (SIGSTOP) there instead, so
/// that a test can change the world at that point (stop the database server) and
/// let it carry on (SIGCONT).
func crashHookFromEnvironment() -> @Sendable (String) -> Void {
    let environment = ProcessInfo.processInfo.environment
    let killAt = environment["DEVKIT_TEST_KILL_AFTER_STEP"]
    let pauseAt = environment["DEVKIT_TEST_PAUSE_AFTER_STEP"]
    if killAt == nil && pauseAt == nil { return { _ in } }
    return { committed in
        if committed == killAt { kill(getpid(), SIGKILL) }
        if committed == pauseAt { raise(SIGSTOP) }
    }
}

extension ProvisionEvent {
    /// A claim refused because another station (or run) holds the board: that
    /// station's to finish, so no resume hint. Other claim failures (the server
    /// away) are stops like any other.
    var isHeldElsewhere: Bool {
        guard stage == .claim, case .boardBusy? = error as? RegistryError else { return false }
        return true
    }
}
