import DevKitModel
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
            if e.status == .failed, let error = e.error {
                message = cliMessage(error) + (e.boardID.map { " (\(Self.resumeHint($0, after: error)))" } ?? "")
            }
            emitJSON(EventJSON(event: "step", stage: e.stage.rawValue, status: e.status.rawValue,
                               message: message, boardID: e.boardID, port: port))
            return
        }
        if e.status == .failed {
            // The error itself follows as `devkit: error: …` (or watch's status line):
            // here only where it stopped and, once recorded, how to finish the board.
            let line = "\(prefix)[ERR] \(e.stage.rawValue): \(e.boardID.map { Self.resumeHint($0, after: e.error) } ?? "stopped")"
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

    /// How to finish a board the registry holds (the workflow reports the facts only).
    /// A board stopped because its files hold another board's certificate is
    /// finished only with `--force` (or another output directory).
    static func resumeHint(_ boardID: Int64, after error: (any Error)? = nil) -> String {
        var force = false
        if case .filesOfAnotherBoard? = error as? ProvisionError { force = true }
        return "board #\(boardID) is recorded with its UDS; `devkit provision --resume \(boardID)\(force ? " --force" : "")` "
            + "finishes it"
    }

    func result(_ r: ProvisionResult) {
        if json {
            var line = ResultJSON(r)
            line.port = port
            emitJSON(line)
            return
        }
        print("Board #\(r.boardID) provisioned.")
        print(labelledLines([
            ("Registration ID", r.registrationID), ("MAC address", r.mac), ("Firmware version", r.firmwareVersion),
            ("Certificate", r.certificatePath), ("SHA-1 thumbprint", r.certificateSHA1),
            ("SHA-256 thumbprint", r.certificateSHA256), ("Enrollment file", r.enrollmentPath),
        ], indent: "  "))
        printOutput("Create the enrollment with:\n  \(r.azCommand)")
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
        init(_ r: ProvisionResult) {
            boardID = r.boardID; registrationID = r.registrationID; mac = r.mac
            firmwareVersion = r.firmwareVersion; certificatePath = r.certificatePath
            enrollmentPath = r.enrollmentPath; certificateSHA1 = r.certificateSHA1
            certificateSHA256 = r.certificateSHA256; azCommand = r.azCommand
        }
        enum CodingKeys: String, CodingKey {
            case event, boardID = "board_id", registrationID = "registration_id", mac
            case firmwareVersion = "firmware_version", certificatePath = "certificate_path"
            case enrollmentPath = "enrollment_path", certificateSHA1 = "certificate_sha1"
            case certificateSHA256 = "certificate_sha256", azCommand = "az_command", port
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

/// Prints one event line and flushes it: stdout is block-buffered when it is not a
/// terminal, and a script reading `--json` progress from a pipe must see each step
/// as it happens, not all of them when the process exits.
func printEvent(_ line: String) {
    print(line)
    fflush(nil)  // all streams: naming `stdout` is not concurrency-safe in Swift 6
}

/// Test hook for crash safety: with `DEVKIT_TEST_KILL_AFTER_STEP=<registry step>`
/// (e.g. `uds_sent`), the process kills itself with SIGKILL right after that step
/// is committed, exactly like a `kill -9` or a power cut at that point.
func crashHookFromEnvironment() -> @Sendable (String) -> Void {
    guard let step = ProcessInfo.processInfo.environment["DEVKIT_TEST_KILL_AFTER_STEP"] else { return { _ in } }
    return { committed in
        if committed == step { kill(getpid(), SIGKILL) }
    }
}
