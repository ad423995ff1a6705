import DevKitBoardCLI
import ArgumentParser
import DevKitModel
import DevKitSystem
import DevKitWorkflows
import SerialPort
import SystemPackage
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// `devkit monitor`: a read-only serial monitor for a board in user mode.
struct MonitorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "monitor",
        abstract: "Show what the board prints in user mode, as it arrives (read-only).",
        usage: """
            devkit monitor [--port <path>] [--timestamps] [--log <file>]
                [--until <regex> [--timeout <seconds>]] [--reconnect-timeout <seconds>]
            """,
        discussion: """
            Like a serial terminal that never types: every byte the board prints is \
            shown as it arrives, nothing is sent. Secrets a sketch prints (a \
            connection string's SharedAccessKey=..., a 64-hex-digit UDS, a Wi-Fi \
            password after `password:`) are masked on the screen and in the log; an \
            unfinished line is shown after 100 ms of quiet, up to where it could \
            still become a secret. Control characters the board sends are shown \
            escaped (\\u{1B}), so they cannot drive your terminal.

            When the board is unplugged or reset over USB, the monitor says so on \
            standard error and waits for the same path to come back (use a \
            /dev/serial/by-id link to follow one board), then goes on; a bare \
            /dev/pts/N is not waited for, its number goes to the next terminal \
            opened. Ctrl-C stops it.

            For scripts: --until REGEX exits 0 at the first line that matches (the \
            line as shown, masked); --timeout ends the run after that many seconds: \
            exit 75 if --until was given and nothing matched, else 0.

            Examples:
              devkit monitor --port /dev/ttyACM0 --timestamps
              devkit monitor --port /dev/serial/by-id/usb-STMicroelectronics_*-if02 \\
                  --log board.log
              devkit monitor --until 'Registration Information received' --timeout 120

            Exit codes: 0 done (stopped by --until, or --timeout without --until), \
            66 no such port, 69 the board did not come back within \
            --reconnect-timeout, 73/74 the log file cannot be written, 75 --until \
            did not match in time, 77 permission denied; Ctrl-C ends it as the \
            signal does.
            """)

    @OptionGroup var port: PortOptions

    @Flag(help: "Start each line with the time it arrived (HH:MM:SS.mmm, local time).")
    var timestamps = false

    @Option(help: ArgumentHelp(
        "Append every line, time-stamped and masked, to this file (created 0600).", valueName: "file"),
        completion: .file())
    var log: String?

    @Option(help: ArgumentHelp("Stop (exit 0) at the first line that matches this regular expression.", valueName: "regex"))
    var until: String?

    @Option(help: ArgumentHelp("Stop after this many seconds (exit 75 when --until has not matched).", valueName: "seconds"))
    var timeout: Double?

    @Option(
        name: .customLong("reconnect-timeout"),
        help: ArgumentHelp("After an unplug, give up (exit 69) if the board is not back within this many seconds (default: wait).", valueName: "seconds"))
    var reconnectTimeout: Double?

    func validate() throws {
        if let timeout, !(timeout > 0) { throw ValidationError("--timeout must be more than 0 seconds.") }
        if let reconnectTimeout, !(reconnectTimeout > 0) { throw ValidationError("--reconnect-timeout must be more than 0 seconds.") }
        if let until {
            do { _ = try Regex(until) } catch {
                throw ValidationError("--until '\(until)' is not a regular expression: \(error)")
            }
        }
    }

    func run() throws {
        let pattern = try until.map { try Regex($0) }
        let (end, path) = try reportingErrors { () throws -> (BoardLogFollower.End, String) in
            let path = try port.resolvedPath()
            let logFile = try log.map { try MonitorLog(path: $0) }
            var screen = MonitorScreen(timestamps: timestamps)
            let settings = BoardLogFollower.Settings(
                path: path, baudRate: port.baud, reconnectTimeout: reconnectTimeout.map { .milliseconds(Int($0 * 1000)) })
            let deadline = timeout.map { ContinuousClock.now + .milliseconds(Int($0 * 1000)) }
            let end = try BoardLogFollower.follow(settings, deadline: deadline) { event in
                switch event {
                case .shown(let bytes):
                    screen.write(bytes)
                case .line(let line):
                    logFile?.append("<", line)
                    if let pattern, (try? pattern.firstMatch(in: line)) != nil { return false }
                case .disconnected:
                    screen.endLine()
                    logFile?.append("*", "\(path) disconnected")
                    printError(SerialPort.canComeBack(path: path)
                        ? "devkit: \(path) disconnected; waiting for it to come back (Ctrl-C to stop)"
                        : "devkit: \(path) disconnected")
                case .reconnected:
                    logFile?.append("*", "\(path) is back")
                    printError("devkit: \(path) is back; following it again")
                }
                return true
            }
            screen.endLine()
            logFile?.close()
            return (end, path)
        }
        switch end {
        case .stopped:
            return
        case .deadline:
            if let until {
                printError("devkit: no line matched --until '\(until)' within \(Self.seconds(timeout ?? 0)).")
                throw ExitCode(ExitStatus.tempFail.rawValue)
            }
        case .gone where !SerialPort.canComeBack(path: path):
            printError("devkit: error: \(path) hung up. A pseudo-terminal's number is not the board's: "
                + "it is not waited for. Follow a stable link to it (as /dev/serial/by-id/ is) to survive a replug.")
            throw ExitCode(ExitStatus.unavailable.rawValue)
        case .gone:
            printError("devkit: error: \(path) did not come back within \(Self.seconds(reconnectTimeout ?? 0)). "
                + "Plug the board back in and run devkit monitor again.")
            throw ExitCode(ExitStatus.unavailable.rawValue)
        case .signal(let signal):
            SignalRelay.dieOf(signal)
        }
    }

    static func seconds(_ value: Double) -> String {
        value == value.rounded() ? "\(Int(value)) s" : "\(value) s"
    }
}

/// Standard output for the monitor: bytes as they come, a time stamp at the start of
/// each line when asked.
struct MonitorScreen {
    let timestamps: Bool
    private var atLineStart = true
    private var column = 0

    init(timestamps: Bool) { self.timestamps = timestamps }

    mutating func write(_ bytes: [UInt8]) {
        guard timestamps else {
            writeAll(STDOUT_FILENO, bytes)
            track(bytes)
            return
        }
        var out: [UInt8] = []
        for byte in bytes {
            let lineEnd = byte == 0x0A || byte == 0x0D
            if atLineStart && !lineEnd { out += Array(Self.stamp().utf8) }
            out.append(byte)
            atLineStart = lineEnd
        }
        writeAll(STDOUT_FILENO, out)
        track(bytes)
    }

    /// Ends an unfinished line before a notice (so the prompt or notice starts clean).
    mutating func endLine() {
        if column > 0 { writeAll(STDOUT_FILENO, "\r\n") }
        column = 0
        atLineStart = true
    }

    private mutating func track(_ bytes: [UInt8]) {
        for byte in bytes { column = (byte == 0x0A || byte == 0x0D) ? 0 : column + 1 }
    }

    static func stamp() -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var seconds = now.tv_sec
        var parts = tm()
        localtime_r(&seconds, &parts)
        return String(format: "[%02d:%02d:%02d.%03d] ", parts.tm_hour, parts.tm_min, parts.tm_sec, Int(now.tv_nsec / 1_000_000))
    }
}

/// `--log FILE`: one line per board line, `<time> < text`, and devkit's own notes,
/// `<time> * text`, as `devkit console --log` writes them; masked before they get here.
final class MonitorLog {
    private let path: String
    private var fd: Int32

    init(path: String) throws(MonitorLogError) {
        self.path = path
        do {
            fd = try FileDescriptor.openPrivateLog(path).rawValue
        } catch {
            throw MonitorLogError(path: path, errno: error.rawValue)
        }
    }

    deinit { close() }

    func append(_ marker: String, _ text: String) {
        guard fd >= 0 else { return }
        writeAll(fd, "\(timestamp(Date())) \(marker) \(escapedControlCharacters(text))\n")
    }

    /// Flushes to the disk and closes: a log is kept for after a crash or an outage.
    func close() {
        guard fd >= 0 else { return }
        _ = fsync(fd)
        _ = Glibc.close(fd)
        fd = -1
    }
}

struct MonitorLogError: Error, CLIReportable {
    let path: String
    let errno: Int32
    var exitStatus: ExitStatus { ExitStatus(fileErrno: errno) }
    var userMessage: String {
        "cannot open the log \(path): \(String(cString: strerror(errno))). Name a file in a directory you can write."
    }
}
