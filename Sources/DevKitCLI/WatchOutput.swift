import DevKitBoardCLI
import DevKitModel
import DevKitSystem
import DevKitWorkflows
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// What `devkit watch` prints. With `--json`, JSON Lines on stdout: every step
/// event, a `board` event per milestone (with a `status`) and each result. For
/// people, on stderr: on a terminal, one status line per board, redrawn in place
/// as its steps go by; in a log (systemd's journal, a pipe), every step and
/// milestone on a line of its own, named by the port.
final class WatchOutput: @unchecked Sendable {
    let json: Bool
    private let lock = NSLock()
    private let live: Bool
    /// Boards in the order they appeared, each with its current line.
    private var order: [String] = []
    private var lines: [String: String] = [:]
    private var finished: Set<String> = []
    /// How many board lines are on the screen below the last note (terminal only).
    private var drawn = 0
    /// Finished boards kept on the redrawn part of the screen; older ones stay
    /// above it as printed, so a long session does not redraw hundreds of lines.
    private let keptFinished = 32

    /// The command that finishes a board left `done, not enrolled`.
    let enrollCommand: @Sendable (Int64, Bool) -> String
    /// The registry's words for a printed resume (``RegistryOptions/commandWords(profile:)``).
    let registryWords: [String]

    init(
        json: Bool, live: Bool = isatty(STDERR_FILENO) == 1, registryWords: [String] = [],
        enrollCommand: @escaping @Sendable (Int64, Bool) -> String = { id, replace in
            finishEnrollmentCommand(boardID: id, dps: DPSSettings(), registryWords: [], replace: replace)
        }
    ) {
        self.json = json
        self.live = !json && live
        self.registryWords = registryWords
        self.enrollCommand = enrollCommand
    }

    /// A board's milestone; the raw value is the JSON event's `status`.
    enum Milestone: String {
        case appeared, provisioned, finished, already, unplugged, failed
        /// Provisioned (files written, row done) but DPS did not enroll it.
        case notEnrolled = "not_enrolled"
        /// Provisioned earlier, its owed enrollment done now.
        case enrolled
        /// Provisioned, and verified: it did not register (or could not be verified).
        case notRegistered = "not_registered"
        /// Provisioned; its verification was cut short by a stop signal.
        case notVerified = "not_verified"

        /// The board's line will not change any more.
        var isFinal: Bool { self != .appeared && self != .unplugged }
    }

    /// A milestone of the board on `port`, said in `text`.
    func board(_ port: String, _ milestone: Milestone, _ text: String) {
        if json {
            let fields = ["event": "board", "port": port, "status": milestone.rawValue, "message": text]
            if let line = try? JSONOutput.text(fields) { printEvent(line) }
            return
        }
        lock.withLock {
            guard live else {
                printError("[\(port)] \(text)")
                return
            }
            if lines[port] == nil { order.append(port) }
            lines[port] = text
            if milestone.isFinal { finished.insert(port) } else { finished.remove(port) }
            redraw()
        }
    }

    /// The step handler for the board on `port`: JSON step events, or (on a
    /// terminal) the board's line showing the step in progress.
    func steps(for port: String) -> (ProvisionEvent) -> Void {
        if json { return reporter(for: port).event }
        guard live else {
            // A log keeps every step, each on its own line named by the port.
            var reporter = reporter(for: port)
            reporter.prefix = "[\(port)] "
            return reporter.event
        }
        return { [self] event in
            guard event.status != .failed else { return }  // the failure line follows
            lock.withLock {
                guard lines[port] != nil, !finished.contains(port) else { return }
                lines[port] = "\(event.stage.rawValue): \(event.message)"
                redraw()
            }
        }
    }

    /// The whole result of a provisioned board (JSON only: people get its line).
    func result(
        _ port: String, _ result: ProvisionResult, verification: RegistrationCheck.Report? = nil,
        verificationError: (any Error)? = nil
    ) {
        guard json else { return }
        reporter(for: port).result(result, verification: verification, verificationError: verificationError)
    }

    /// The board on `port`'s reporter: JSON (with the port in each event), or lines
    /// for a log; the commands it prints name this registry, key and port.
    private func reporter(for port: String) -> ProvisionReporter {
        var reporter = ProvisionReporter(json: json, live: false)
        if json { reporter.port = port }
        reporter.enrollCommand = enrollCommand
        reporter.resumeWords = registryWords + ["--port", port]
        return reporter
    }

    /// A line about the daemon, not a board: printed above the boards' lines.
    func note(_ text: String) {
        if json { return }
        lock.withLock {
            guard live, drawn > 0 else {
                printError(text)
                return
            }
            // Up to the first board line, clear to the end of the screen, the note,
            // then the boards again.
            writeAll(STDERR_FILENO, "\u{1B}[\(drawn)A\r\u{1B}[J" + escapedControlCharacters(text) + "\n")
            drawn = 0
            redraw()
        }
    }

    /// A line of `--verbose`'s console exchange with the board on `port`: on stderr,
    /// named by the port (above the boards' lines on a terminal; with `--json`
    /// too, as stdout carries only the events).
    func exchange(_ port: String, _ text: String) {
        let line = "[\(port)] \(text)"
        if json {
            printError(line)
        } else {
            note(line)
        }
    }

    /// Redraws the boards' lines in place (lock held). Each line is cut to the
    /// terminal's width: a wrapped line would throw the cursor arithmetic off.
    private func redraw() {
        // Finished boards beyond the kept number leave the redrawn region: they are
        // already on the screen, above it.
        while order.count > keptFinished, let first = order.first, finished.contains(first) {
            order.removeFirst()
            lines[first] = nil
            finished.remove(first)
            drawn = max(0, drawn - 1)
        }
        let width = terminalColumns(STDERR_FILENO)
        var out = drawn > 0 ? "\u{1B}[\(drawn)A" : ""
        for port in order {
            // Escaped, as printError does: the line's own control characters
            // (from a path or a board's reply) would throw the cursor arithmetic off.
            let line = escapedControlCharacters("[\(port)] \(lines[port] ?? "")")
            out += "\r\u{1B}[2K" + String(line.prefix(max(1, width - 1))) + "\n"
        }
        drawn = order.count
        writeAll(STDERR_FILENO, out)
    }
}
