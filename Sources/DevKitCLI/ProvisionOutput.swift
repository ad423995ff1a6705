import DevKitWorkflows
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// How provisioning progress is shown: lines on stderr for people, JSON Lines on
/// stdout for scripts (`--json`).
struct ProvisionReporter {
    let json: Bool
    /// Prefix for each human line (the port, when several boards run at once).
    var prefix = ""
    /// The port, in each JSON event, when several boards run at once.
    var port: String?

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
            printError("\(prefix)[ERR] \(e.stage.rawValue): \(e.boardID.map { Self.resumeHint($0, after: e.error) } ?? "stopped")")
            return
        }
        guard OutputLevel.current != .quiet else { return }
        let mark = switch e.status {
        case .started: "..."
        case .done: "ok "
        case .skipped: "-- "
        case .failed: "ERR"
        }
        printError("\(prefix)[\(mark)] \(e.stage.rawValue): \(e.message)")
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
        print("""
            Board #\(r.boardID) provisioned.
              Registration ID:  \(r.registrationID)
              MAC:              \(r.mac)
              Firmware:         \(r.firmwareVersion)
              Certificate:      \(r.certificatePath)
              SHA-1:            \(r.certificateSHA1)
              SHA-256:          \(r.certificateSHA256)
              Enrollment file:  \(r.enrollmentPath)
            Create the enrollment with:
              \(r.azCommand)
            """)
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
