import DevKitBoardCLI
import DPSModel
import DPSService
import DevKitModel
import DevKitSystem
import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// `dps enroll`'s results as they come: a line per board on stdout (ID, action,
/// SHA-1 thumbprint; the reason on stderr for a failure or conflict) or, with
/// `--json`, one object per board. For a fleet on a terminal, a progress bar on
/// stderr, cleared before each result line and redrawn after it; nothing extra
/// when stderr is not a terminal.
final class EnrollmentReporter: Sendable {
    private struct State {
        var done = 0
        /// Boards a bulk request created, before their outcomes are known.
        var written = 0
        var barShown = false
    }
    private let json: Bool
    private let total: Int
    private let bar: Bool
    private let state = Mutex(State())
    /// The registry row of each registration ID (key form), for `--from-registry`.
    private let boardIDs: [String: Int64]

    init(json: Bool, total: Int, boardIDs: [String: Int64] = [:], terminal: Bool = isatty(STDERR_FILENO) == 1) {
        self.json = json
        self.total = total
        self.boardIDs = boardIDs
        bar = terminal && total > 1 && OutputLevel.current == .normal
    }

    struct ResultJSON: Encodable {
        let registrationID: String
        let action: String
        @NullEncoded var etag: String?
        @NullEncoded var sha1Thumbprint: String?
        @NullEncoded var sha256Thumbprint: String?
        let time: String
        var boardID: Int64?
        var errorCode: Int?
        var httpStatus: Int?
        var message: String?
        var trackingID: String?
        enum CodingKeys: String, CodingKey {
            case registrationID = "registration_id", action, etag, sha1Thumbprint = "sha1_thumbprint"
            case sha256Thumbprint = "sha256_thumbprint", time, boardID = "board_id", errorCode = "error_code"
            case httpStatus = "http_status", message, trackingID = "tracking_id"
        }
    }

    /// Prints one board's outcome; `board` names its row where its registration ID
    /// alone does not (a second row with the same ID, refused before sending).
    func report(_ o: EnrollmentOutcome, board: Int64? = nil) {
        let boardID = board ?? boardIDs[DPSRegistrationIDRules.key(o.registrationId)]
        state.withLock { s in
            s.done += 1
            if s.barShown { writeAll(STDERR_FILENO, "\r\u{1B}[2K") }
            if json {
                // The output's one timestamp format; an ISO8601DateFormatter made per
                // line was a quarter of a 1,000-board run's CPU (Scripts/bench-enroll.sh).
                var line = ResultJSON(
                    registrationID: o.registrationId, action: o.action.rawValue, etag: o.etag,
                    sha1Thumbprint: o.sha1Thumbprint, sha256Thumbprint: o.sha256Thumbprint, time: timestamp(o.time))
                line.boardID = boardID
                // An unchanged enrollment whose settings are not the ones asked for says so too.
                if o.action == .unchanged { line.message = o.message }
                if o.action == .failed || o.action == .conflict {
                    line.errorCode = o.error?.errorCode
                    line.httpStatus = o.error?.status
                    line.message = o.error.map { cliMessage($0) } ?? o.message
                    line.trackingID = o.error?.trackingId
                }
                if let text = try? JSONOutput.text(line) { writeAll(STDOUT_FILENO, text + "\n") }
            } else {
                let board = boardID.map { "#\($0) " } ?? ""
                let thumb = o.sha1Thumbprint.map { "  SHA-1 \($0)" } ?? ""
                writeAll(STDOUT_FILENO, escapedControlCharacters("\(board)\(o.registrationId)  \(o.action.rawValue)\(thumb)") + "\n")
                if o.action == .conflict {
                    printError("devkit: \(board)\(o.registrationId): \(o.message ?? "conflict"); --replace updates it with this certificate")
                } else if o.action == .unchanged, let message = o.message {
                    printError("devkit: warning: \(board)\(message); --replace writes the settings given (left as it is)")
                } else if o.action == .failed {
                    printError("devkit: error: \(board)\(o.registrationId): \(o.error.map { cliMessage($0) } ?? o.message ?? "failed")")
                }
            }
            if bar && s.done < total {
                drawBar(max(s.done, s.written))
                s.barShown = true
            } else {
                s.barShown = false
            }
        }
    }

    /// `count` more boards written by a bulk request.
    func written(_ count: Int) {
        guard bar else { return }
        state.withLock { s in
            s.written += count
            drawBar(max(s.done, s.written))
            s.barShown = true
        }
    }

    /// Shows the bar before the first result arrives.
    func start() {
        guard bar else { return }
        state.withLock { s in
            drawBar(0)
            s.barShown = true
        }
    }

    private func drawBar(_ done: Int) {
        let done = min(done, total)
        let width = max(10, min(40, terminalColumns(STDERR_FILENO) - 30))
        let filled = total == 0 ? width : width * done / total
        let line = "[" + String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
            + "] \(done)/\(total) enrollments"
        writeAll(STDERR_FILENO, "\r\u{1B}[2K" + line)
    }
}
