import DevKitSystem
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// `--log FILE`: a timestamped transcript of a console session, appended to FILE
/// (created with mode 0600). Lines typed are logged masked (`set_dps_uds ****`);
/// what the board printed is logged line by line as it arrives.
///
/// ```
/// 2026-11-28T08:50:01.123Z > version
/// 2026-11-28T08:50:01.140Z < DevKitSDK version: 1.6.2
/// 2026-11-28T08:50:09.002Z * board unplugged
/// ```
public final class ReplTranscript {
    private let fd: Int32
    private var partial: [UInt8] = []
    private let formatter: ISO8601DateFormatter = {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter
    }()

    /// Opens (or creates, mode 0600) the transcript for appending.
    public init(path: String) throws(ReplTranscriptError) {
        fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw .cannotOpen(path: path, reason: String(cString: strerror(errno))) }
    }

    deinit {
        flushPartial()
        close(fd)
    }

    /// A line the user entered. The caller passes it masked already; masking again is harmless.
    func sent(_ line: String) {
        append(">", ReplCommands.masked(line))
    }

    /// Bytes the board printed (shown to the user); complete lines are logged, with
    /// the secret of an echoed command line masked: the board masks its echo only
    /// for some commands (`set_az_iothub` comes back in clear), and in `--raw` mode
    /// every typed line comes back as echo.
    func received(_ bytes: [UInt8]) {
        for byte in bytes {
            if byte == 0x0A {
                append("<", Self.maskedBoardLine(partial))
                partial.removeAll()
            } else if byte != 0x0D {
                partial.append(byte)
            }
        }
    }

    /// A line the board printed, as it may be logged: an echoed secret command (after
    /// any prompts `# ` before it) keeps its name only.
    static func maskedBoardLine(_ bytes: [UInt8]) -> String {
        var text = Substring(String(decoding: bytes, as: UTF8.self))
        var prompts = ""
        while text.hasPrefix("# ") {
            prompts += "# "
            text = text.dropFirst(2)
        }
        return prompts + ReplCommands.masked(String(text))
    }

    /// Something devkit itself reported (unplugged, reconnected, errors).
    func note(_ text: String) {
        flushPartial()
        append("*", text)
    }

    private func flushPartial() {
        guard !partial.isEmpty else { return }
        append("<", Self.maskedBoardLine(partial))
        partial.removeAll()
    }

    private func append(_ marker: String, _ text: String) {
        writeAll(fd, "\(formatter.string(from: Date())) \(marker) \(text)\n")
    }
}

/// The transcript file could not be opened.
public enum ReplTranscriptError: Error, CustomStringConvertible {
    case cannotOpen(path: String, reason: String)

    public var description: String {
        switch self {
        case .cannotOpen(let path, let reason):
            return "cannot open the transcript \(path) (\(reason))"
        }
    }
}

/// Collects what the board prints while nobody waits for it (at the REPL prompt)
/// into whole lines, so they can be printed above the line being edited. The
/// board's own prompt (`# `) and blank lines are dropped: the REPL shows its own prompt.
struct ReplUnsolicitedOutput {
    private var partial: [UInt8] = []

    /// Complete lines (with `\r\n`) ready to show.
    mutating func feed(_ bytes: [UInt8]) -> [UInt8] {
        var ready: [UInt8] = []
        for byte in bytes {
            if byte == 0x0A {
                if partial.last == 0x0D { partial.removeLast() }
                // Blank lines are dropped: the board's prompt `\r\n# ` would leave one each time.
                if !partial.isEmpty { ready += partial + [0x0D, 0x0A] }
                partial.removeAll()
            } else {
                partial.append(byte)
            }
        }
        return ready
    }

    /// True when a partial line waits (the caller flushes it after a short pause).
    var hasPartialLine: Bool { !partial.isEmpty && !isPrompt }

    /// The partial line, ended; empty when there is none or it is only the prompt.
    mutating func flush() -> [UInt8] {
        defer { partial.removeAll() }
        if partial.isEmpty || isPrompt { return [] }
        return partial + [0x0D, 0x0A]
    }

    private var isPrompt: Bool { partial == [0x23, 0x20] || partial == [0x23] }
}
