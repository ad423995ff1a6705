import ArgumentParser
import DevKitConsole
import DevKitModel
import DevKitSystem
#if canImport(Glibc)
import Glibc
#endif

/// How much devkit says on stderr besides errors, the same on every command.
package enum OutputLevel: Sendable {
    /// `--quiet`: errors only (no progress, no warnings); results still go to stdout.
    case quiet
    case normal
    /// `--verbose`: also each console exchange with the board, secrets masked.
    case verbose

    /// Set once, while the command line is parsed (``OutputLevelOptions/validate()``,
    /// on the main thread before any command runs); read-only afterwards.
    nonisolated(unsafe) package static var current = OutputLevel.normal
}

/// `--quiet` / `--verbose`: an option group on every command.
package struct OutputLevelOptions: ParsableArguments {
    package init() {}

    @Flag(help: "Errors only on stderr: no progress, no warnings.")
    package var quiet = false

    @Flag(help: "Also show each exchange with the board or DPS on stderr (secrets masked).")
    package var verbose = false

    package func validate() throws {
        if quiet && verbose { throw ValidationError("Give at most one of --quiet and --verbose.") }
        OutputLevel.current = quiet ? .quiet : verbose ? .verbose : .normal
    }
}

/// `devkit: warning: …` on stderr, unless `--quiet`.
package func printWarning(_ message: String) {
    guard OutputLevel.current != .quiet else { return }
    printError("devkit: warning: \(message)")
}

/// The console exchange as `--verbose` shows it: each line typed (`>`) and each
/// line the board printed (`<`) on stderr. A secret command's arguments are shown
/// as `***`, and any part of them (8+ characters) in the replies that follow is
/// masked (`maskingSecrets`). Replies are shown by whole lines so that a secret
/// split across two reads is still seen, and masked, whole.
package final class VerboseTransport: ConsoleTransport {
    package let base: any ConsoleTransport
    private var typed: [UInt8] = []
    private var printed: [UInt8] = []
    private var secrets: [String] = []
    /// Where each exchange line goes: stderr, or `watch`'s output, named by the port.
    private let emit: (String) -> Void

    package init(_ base: any ConsoleTransport, emit: @escaping (String) -> Void = { printError($0) }) {
        self.base = base
        self.emit = emit
    }

    /// `port` wrapped when `--verbose` asked for the exchange, else `port` itself.
    package static func ifVerbose(
        _ port: any ConsoleTransport, emit: @escaping (String) -> Void = { printError($0) }
    ) -> any ConsoleTransport {
        OutputLevel.current == .verbose ? VerboseTransport(port, emit: emit) : port
    }

    deinit { flushPrinted() }

    package func send(_ bytes: [UInt8], deadline: ContinuousClock.Instant) throws {
        try base.send(bytes, deadline: deadline)
        typed += bytes
        while let end = typed.firstIndex(where: { $0 == 0x0D || $0 == 0x0A }) {
            let line = String(decoding: typed[..<end], as: UTF8.self)
            typed.removeSubrange(...end)
            if !line.isEmpty { showTyped(line) }
        }
    }

    package func receive(deadline: ContinuousClock.Instant) throws -> [UInt8] {
        let bytes = try base.receive(deadline: deadline)
        printed += bytes
        while let end = printed.firstIndex(of: 0x0A) {
            let line = String(decoding: printed[..<end], as: UTF8.self)
            printed.removeSubrange(...end)
            show("<", line)
        }
        // A board flooding output without line ends: shown in bounded pieces.
        if printed.count > 4096 { flushPrinted() }
        return bytes
    }

    private func showTyped(_ line: String) {
        let words = line.split(separator: " ", maxSplits: 1)
        let name = words.first.map(String.init) ?? ""
        let isSecret = Self.secretCommandNames.contains(name) && words.count == 2
        if isSecret {
            // Set before its echo is shown: the echo's line ends only after this.
            let argument = String(words[1])
            // Also without the quotes around it (Foundation's trimming, without Foundation).
            var unquoted = Substring(argument)
            while unquoted.first == "\"" { unquoted.removeFirst() }
            while unquoted.last == "\"" { unquoted.removeLast() }
            secrets = [argument, String(unquoted)]
        }
        show(">", isSecret ? "\(name) ***" : line)
    }

    private func flushPrinted() {
        guard !printed.isEmpty else { return }
        show("<", String(decoding: printed, as: UTF8.self))
        printed = []
    }

    private func show(_ direction: String, _ line: String) {
        let text = line.hasSuffix("\r") ? String(line.dropLast()) : line
        emit("devkit: \(direction) \(Self.fixedLengthMask(maskingSecrets(secrets, in: text)))")
    }

    /// The board echoes a password or UDS as one `*` per character: shown as `***`,
    /// as devkit's own side shows it, so the line does not give the secret's length.
    package static func fixedLengthMask(_ line: String) -> String {
        var prompts = Substring(line)
        while prompts.hasPrefix("# ") { prompts = prompts.dropFirst(2) }
        let words = prompts.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: false)
        guard words.count == 2, secretCommandNames.contains(String(words[0])), !words[1].isEmpty,
            words[1].allSatisfy({ $0 == "*" })
        else { return line }
        return String(line.dropLast(words[1].count)) + "***"
    }

    /// Commands whose argument is a secret (ConsoleCommand.hasSecretArgument's cases).
    package static let secretCommandNames: Set<String> = ["set_wifipwd", "set_dps_uds", "set_az_iothub", "set_az_iotdps", "enable_secure"]
}
