import DevKitModel
import DevKitSystem
import Foundation
import SystemPackage
import UserModeLog
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
        do {
            fd = try FileDescriptor.openPrivateLog(path).rawValue
        } catch {
            throw .cannotOpen(path: path, reason: error.description)
        }
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
    /// any prompts `# ` before it) keeps its name only; a board quoting a secret
    /// command's value in an error (`Invalid set_wifipwd value: ...`) keeps the
    /// error; what a sketch prints is masked by its shape (a key, a UDS, a password
    /// after a label: `LogMasking`), and control characters are escaped. In `--raw`
    /// mode nothing else knows the secrets typed.
    static func maskedBoardLine(_ bytes: [UInt8]) -> String {
        var text = Substring(String(decoding: bytes, as: UTF8.self))
        var prompts = ""
        while text.hasPrefix("# ") {
            prompts += "# "
            text = text.dropFirst(2)
        }
        var line = ReplCommands.masked(String(text))
        for command in ReplCommands.secretCommands {
            if let quoted = line.range(of: command + " value: "), quoted.upperBound < line.endIndex {
                line = line[..<quoted.upperBound] + "***"
            }
        }
        return escapedControlCharacters(prompts + LogMasking.mask(line))
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

    /// Complete lines (with `\r\n`) ready to show: masked and escaped (``safe(_:)``).
    mutating func feed(_ bytes: [UInt8]) -> [UInt8] {
        var ready: [UInt8] = []
        for byte in bytes {
            if byte == 0x0A {
                if partial.last == 0x0D { partial.removeLast() }
                // Blank lines are dropped: the board's prompt `\r\n# ` would leave one each time.
                if !partial.isEmpty { ready += Self.safe(partial) + [0x0D, 0x0A] }
                partial.removeAll()
            } else {
                partial.append(byte)
            }
        }
        return ready
    }

    /// A line a board printed unasked (a sketch's log), as it may reach the screen
    /// and the transcript: secrets masked by their shape, as `devkit monitor` masks
    /// them, and control characters escaped, so the board's bytes cannot drive the terminal.
    static func safe(_ line: [UInt8]) -> [UInt8] {
        Array(escapedControlCharacters(LogMasking.mask(String(decoding: line, as: UTF8.self))).utf8)
    }

    /// True when a partial line waits (the caller flushes it after a short pause).
    var hasPartialLine: Bool { !partial.isEmpty && !isPrompt }

    /// The partial line, ended; empty when there is none or it is only the prompt.
    mutating func flush() -> [UInt8] {
        defer { partial.removeAll() }
        if partial.isEmpty || isPrompt { return [] }
        return Self.safe(partial) + [0x0D, 0x0A]
    }

    private var isPrompt: Bool { partial == [0x23, 0x20] || partial == [0x23] }
}
