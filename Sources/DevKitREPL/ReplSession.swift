import DevKitBoard
import DevKitConsole
import DevKitModel
import DevKitSystem
import DevKitWorkflows
import SystemPackage
#if canImport(Glibc)
import Glibc
#endif

/// Ctrl-C while the console waited for the board.
struct ReplCancelled: Error {}

/// Lets a `ConsoleSession` talk through the console's device link, with every wait
/// cancellable by Ctrl-C (the SIGINT pipe is polled alongside the link).
final class ReplLinkTransport: ConsoleTransport {
    let link: ReplDeviceLink
    let interruptFD: Int32
    /// Set when Ctrl-C ended a wait, until the next command: what the board sends
    /// after that (the rest of an echo, the erasure of a half-sent line) is not shown.
    var wasCancelled = false

    init(link: ReplDeviceLink, interruptFD: Int32) {
        self.link = link
        self.interruptFD = interruptFD
    }

    func send(_ bytes: [UInt8], deadline: ContinuousClock.Instant) throws {
        try link.write(bytes, deadline: deadline)
    }

    /// Data from the link; an unplug (or a reconnect, which means the old
    /// conversation is gone) is left queued for the REPL to report and thrown as
    /// ``ReplLinkError/disconnected(path:)``.
    func receive(deadline: ContinuousClock.Instant) throws -> [UInt8] {
        while true {
            let events = link.takeEvents()
            var data: [UInt8] = []
            for (index, event) in events.enumerated() {
                if case .data(let bytes) = event {
                    data += bytes
                    continue
                }
                link.putBack(Array(events[index...]))
                if !data.isEmpty { return data }
                throw ReplLinkError.disconnected(path: link.path)
            }
            if !data.isEmpty { return data }

            let remaining = ContinuousClock.now.duration(to: deadline)
            if remaining <= .zero { return [] }
            let (seconds, attoseconds) = remaining.components
            let milliseconds = Int32(clamping: seconds * 1000 + attoseconds / 1_000_000_000_000_000 + 1)
            var fds = [pollfd(fd: link.eventFD, events: Int16(POLLIN), revents: 0)]
            if interruptFD >= 0 { fds.append(pollfd(fd: interruptFD, events: Int16(POLLIN), revents: 0)) }
            let ready = poll(&fds, nfds_t(fds.count), milliseconds)
            if ready < 0 && errno != EINTR { throw ReplLinkError.disconnected(path: link.path) }
            if fds.count > 1 && fds[1].revents != 0 {
                FileDescriptor(rawValue: interruptFD).drain()
                wasCancelled = true
                throw ReplCancelled()
            }
        }
    }
}

/// The interactive console: reads lines with libedit, runs the board's commands
/// through a `ConsoleSession` (showing the reply as it arrives), runs the local `:`
/// commands, shows what the board prints on its own, and follows unplug/replug.
public final class ReplSession {
    /// Runs `:cert`: given the words after it and a way to read the board's firmware
    /// version, returns what to tell the user. The front end supplies it (the CLI
    /// parses the words with the same options as `devkit cert`); nil: `:cert` is
    /// not offered.
    public typealias CertHandler = (_ words: [String], _ firmwareVersion: () -> FirmwareVersion?) -> String

    private let link: ReplDeviceLink
    private let describeError: (any Error) -> String
    private let certHandler: CertHandler?
    private let editor: LineEditor
    private let transcript: ReplTranscript?
    private let transport: ReplLinkTransport
    private var console: ConsoleSession
    private var unsolicited = ReplUnsolicitedOutput()
    /// What the board printed since it last answered its prompt, read for its mode:
    /// user-mode output (the sketch's banner and log lines) is shown like any other,
    /// with one note the first time it is recognised.
    private var bootLog = BootLog()
    private var userModeNoted = false

    /// - Parameter describeError: how an error reads for the user (the CLI's messages).
    public init(
        link: ReplDeviceLink, editor: LineEditor, transcript: ReplTranscript?, interruptFD: Int32,
        describeError: @escaping (any Error) -> String = { String(describing: $0) },
        certHandler: CertHandler? = nil
    ) {
        self.link = link
        self.describeError = describeError
        self.certHandler = certHandler
        self.editor = editor
        self.transcript = transcript
        transport = ReplLinkTransport(link: link, interruptFD: interruptFD)
        console = ConsoleSession(transport: transport)
        editor.interruptFD = interruptFD
        editor.watchFD = link.eventFD
        editor.completer = ReplCommands.completions(forLinePrefix:)
        editor.secretCommands = ReplCommands.secretCommands
        editor.secretPrompt = { ReplCommands.secretPrompt(for: $0) ?? "Secret (not shown): " }
        editor.onWatchReadable = { [unowned self] in showUnsolicited() }
        editor.onIdle = { [unowned self] in
            let rest = unsolicited.flush()
            if !rest.isEmpty { show(rest, above: true) }
            editor.idleTimeoutMilliseconds = -1
        }
    }

    /// Runs until Ctrl-D or `:quit`.
    public func run() {
        // Terminal echo stays off for the whole session (libedit draws what is typed
        // itself, and restores the settings it found after each line): a key typed
        // while a secret is about to be asked for is then never echoed by the tty.
        var original = termios()
        let isTerminal = isatty(STDIN_FILENO) == 1 && tcgetattr(STDIN_FILENO, &original) == 0
        if isTerminal {
            var quiet = original
            quiet.c_lflag &= ~tcflag_t(ECHO | ECHONL)
            _ = tcsetattr(STDIN_FILENO, TCSANOW, &quiet)
        }
        defer { if isTerminal { _ = tcsetattr(STDIN_FILENO, TCSANOW, &original) } }
        let banner = "Connected to \(link.path). Board commands: `help`; devkit's: `:help`. "
            + "Tab completes, Ctrl-C stops a wait, Ctrl-D quits."
        if isTerminal {
            say(banner)
        } else {
            // Piped (`echo version | devkit console`): stdout carries the board's
            // replies alone, so a script can parse them; the banner goes to stderr.
            transcript?.note(banner)
            writeAll(STDERR_FILENO, "[devkit] " + banner + "\n")
        }
        synchronize(reportSuccess: false)
        while true {
            updatePrompt()
            switch editor.readLine() {
            case .endOfFile:
                writeAll(STDOUT_FILENO, "\r\n")
                return
            case .interrupted:
                continue
            case .secretCancelled:
                say("cancelled; nothing was sent")
            case .line(let line):
                if !handle(line) { return }
            }
        }
    }

    private func updatePrompt() {
        editor.prompt = link.isConnected ? "devkit> " : "devkit (unplugged)> "
    }

    // MARK: Output

    private func say(_ text: String, above: Bool = false) {
        transcript?.note(text)
        show(Array(("[devkit] " + text + "\r\n").utf8), above: above)
    }

    private func show(_ bytes: [UInt8], above: Bool) {
        guard !bytes.isEmpty else { return }
        if above {
            editor.printAbove(String(decoding: bytes, as: UTF8.self))
        } else {
            writeAll(STDOUT_FILENO, bytes)
        }
    }

    /// Called when the link has news while the user is at the prompt.
    private func showUnsolicited() {
        for event in link.takeEvents() {
            switch event {
            case .data(let bytes):
                let lines = unsolicited.feed(bytes)
                transcript?.received(lines)
                show(lines, above: true)
                noteUserMode(in: lines, above: true)
                // A partial line is shown after a short pause if nothing completes it.
                editor.idleTimeoutMilliseconds = unsolicited.hasPartialLine ? 300 : -1
            case .disconnected(let reason):
                console = ConsoleSession(transport: transport)
                forgetMode()
                updatePrompt()
                say("board unplugged (\(reason)). Waiting for \(link.path) to come back; Ctrl-D quits.",
                    above: true)
            case .reconnected:
                console = ConsoleSession(transport: transport)
                forgetMode()
                updatePrompt()
                say("\(link.path) is back: reconnected. (A board that was power-cycled is in user mode: "
                    + "hold A and press reset for its console.)", above: true)
            }
        }
    }

    // MARK: Lines

    /// Handles one entered line; false to quit.
    private func handle(_ entered: String) -> Bool {
        let text = entered.trimmingSpaces
        if text.isEmpty { return true }
        if let entry = ReplCommands.historyEntry(for: text) { editor.addHistory(entry) }
        if ReplCommands.carriesSecret(text) {
            editor.overwriteEnteredLine(entered, with: ReplCommands.masked(entered))
        }
        let asksForSecret = ReplCommands.secretPrompt(for: text) != nil
        if !asksForSecret { transcript?.sent(text) }  // else logged masked once the secret is in
        if text.hasPrefix(":") { return runLocal(text) }
        runDevice(text)
        return true
    }

    private func runDevice(_ text: String) {
        let (name, argument) = ReplCommands.split(text)
        let command: ConsoleCommand
        if argument.isEmpty, let question = ReplCommands.secretPrompt(for: name) {
            guard let secret = editor.takePendingSecret() ?? editor.readSecret(prompt: question) else {
                say("cancelled; nothing was sent")
                return
            }
            let value = secret.trimmingSpaces
            transcript?.sent(ReplCommands.masked(name + " " + value))
            do throws(InputError) {
                switch name {
                case "set_dps_uds": command = .setDPSUDS(try UDS(hex: value))
                case "set_wifipwd": command = .setWiFiPassword(try WiFiPassword(value))
                case "set_az_iothub": command = .setIoTHubConnectionString(try ConnectionString(value))
                default: command = .setDPSConnectionString(try ConnectionString(value))
                }
            } catch {
                say(String(describing: ConsoleError.invalidArgument(command: name, reason: "\(error)")))
                return
            }
        } else {
            do {
                command = try ConsoleCommand(parsing: text)
            } catch {
                if case .invalidArgument(let badName, _) = error, !ConsoleCommand.allNames.contains(badName) {
                    // Not a command devkit knows: the board may (other firmware); let it answer.
                    let line = Array(text.utf8)
                    _ = onBoard(echo: ConsoleTokenizer.echo(of: line), isExit: false) {
                        try console.execute(line: text)
                    }
                    return
                }
                say(String(describing: error))
                return
            }
        }
        let line: [UInt8]
        do {
            line = try command.line()
        } catch {
            say(String(describing: error))
            return
        }
        let stores = command.name.hasPrefix("set_") || command.name == "enable_secure"
        let lines = onBoard(
            echo: ConsoleTokenizer.echo(of: line), isExit: command == .exit, secrets: command.secretArguments,
            cutOff: {
                stores ? "`\(command.name)` was cut off: the board may or may not have stored it; "
                    + "once it is back, run the command again." : nil
            }
        ) {
            try console.execute(command)
        }
        if case .setDPSUDS = command, let lines, Self.isUDSQuirk(lines) { say(Self.udsQuirkNote) }
        if command == .exit {
            say("the board is rebooting into user mode; hold A and press reset for its console again.")
        }
    }

    /// Synchronises when needed, runs `body` while showing the reply as it streams in,
    /// and reports every failure on one line. Nil when it failed.
    /// With `secrets`, what the board prints is shown and logged a line at a time,
    /// each masked (`maskingSecrets`): a board may quote the value it rejects.
    /// `cutOff`: what to say when the board goes in the middle (a command that stores
    /// something may or may not have stored it); nil says nothing more.
    private func onBoard<T>(
        echo: [UInt8]?, isExit: Bool, secrets: [String] = [], cutOff: () -> String? = { nil }, _ body: () throws -> T
    ) -> T? {
        // News from before the command (unplug, output) is shown first.
        showUnsolicited()
        let rest = unsolicited.flush()
        show(rest, above: false)
        guard link.isConnected else {
            say("the board is unplugged; waiting for \(link.path) to come back (Ctrl-D quits).")
            return nil
        }
        if console.state != .atPrompt {
            guard synchronize(reportSuccess: false) else { return nil }
        }
        var after: [UInt8] = []
        // Whether the reply shown so far ends mid-line.
        var lineOpen = false
        // Reply bytes held back until their line is complete (only with secrets).
        var held: [UInt8] = []
        func masked(_ bytes: [UInt8], flush: Bool) -> [UInt8] {
            guard !secrets.isEmpty else { return bytes }
            held += bytes
            let end = flush ? held.count : (held.lastIndex(of: 0x0A).map { $0 + 1 } ?? 0)
            let lines = Array(held[..<end])
            held.removeFirst(end)
            return Array(maskingSecrets(secrets, in: String(decoding: lines, as: UTF8.self)).utf8)
        }
        transport.wasCancelled = false
        if let echo {
            var framer = ConsoleFramer(echo: echo, untilReboot: isExit)
            console.receiveObserver = { [transcript, transport] bytes in
                // After Ctrl-C: the rest of the echo (a connection string comes back
                // in clear) and the erasure of the half-sent line stay off the screen.
                if transport.wasCancelled { return }
                var shown: [UInt8] = []
                for event in framer.feed(bytes) {
                    switch event {
                    case .reply(let text): shown += text
                    case .after(let extra): after += extra
                    case .echo, .prompt, .reboot: break
                    }
                }
                shown = masked(shown, flush: false)
                writeAll(STDOUT_FILENO, shown)
                if let last = shown.last { lineOpen = last != 0x0A }
                transcript?.received(shown)
            }
        }
        // The reply's last bytes held back (with secrets), shown once; a reply cut off
        // mid-line (`Invalid UDS.` as the board goes) then ends its line.
        // Whether it showed anything.
        func flushReply(endingLine: Bool) -> Bool {
            let rest = masked([], flush: true)
            writeAll(STDOUT_FILENO, rest)
            transcript?.received(rest)
            if let last = rest.last { lineOpen = last != 0x0A }
            if endingLine && lineOpen {
                writeAll(STDOUT_FILENO, "\r\n")
                transcript?.received([0x0A])
                lineOpen = false
            }
            return !rest.isEmpty
        }
        defer {
            console.receiveObserver = nil
            _ = flushReply(endingLine: false)
            let lines = masked(unsolicited.feed(after), flush: true)
            transcript?.received(lines)
            show(lines, above: false)
            noteUserMode(in: lines, above: false)
        }
        do {
            return try body()
        } catch {
            // The reply as far as it came, its line ended, before what is said (every path).
            console.receiveObserver = nil
            let flushed = flushReply(endingLine: true)
            switch error {
            case is ReplCancelled:
                if !flushed { writeAll(STDOUT_FILENO, "\r\n") }
                say("stopped waiting (Ctrl-C); the board may still be busy.")
            case is ReplLinkError:
                showUnsolicited()  // the queued unplug notice says it
                if let cutOff = cutOff() { say(cutOff) }
            case let error as ConsoleError:
                say(String(describing: error))
            default:
                say(describeError(error))
            }
        }
        return nil
    }

    /// Reads shown lines for the board's mode; says once that the board is in user mode.
    private func noteUserMode(in shown: [UInt8], above: Bool) {
        guard revealsUserMode(shown) else { return }
        userModeNoted = true
        say(Self.userModeNote, above: above)
    }

    /// True when `shown` makes it known that the board is in user mode, not said yet.
    private func revealsUserMode(_ shown: [UInt8]) -> Bool {
        guard !shown.isEmpty, !userModeNoted else { return false }
        for line in String(decoding: shown, as: UTF8.self).split(separator: "\r\n") {
            bootLog.consume(line: String(line))
        }
        bootLog.lines.removeAll()  // only the mode is needed; a chatty sketch must not grow it
        if case .user = bootLog.mode { return true }
        return false
    }

    /// The board answered its prompt, or is a new conversation: its mode is read afresh.
    private func forgetMode() {
        bootLog = BootLog()
        userModeNoted = false
    }

    /// `set_dps_uds` printed `Invalid UDS.` before its success line: the firmware's
    /// quirk, not a failure (the user would otherwise think the UDS was refused).
    static func isUDSQuirk(_ lines: [String]) -> Bool {
        guard let invalid = lines.firstIndex(of: "Invalid UDS."),
              let done = lines.firstIndex(where: { $0.hasSuffix("Set DPS UDS successfully.") })
        else { return false }
        return invalid < done
    }

    static let udsQuirkNote =
        "`Invalid UDS.` is the firmware's off-by-one length check; the UDS was stored."

    /// A command typed while the board runs its sketch, once that was said.
    static let noConsolePrompt =
        "no console prompt: the board runs its sketch (user mode); hold A and press reset for the configuration console."

    /// Said once the board showed it runs its sketch (user mode).
    static let userModeNote =
        "the board is in user mode (running its sketch): what it prints is shown as it comes; "
        + "for the configuration console hold A and press reset."

    /// Waits for the board's prompt; says what is wrong when it does not come.
    /// What the board prints meanwhile is held back (the banner and prompt of a board
    /// in configuration mode are noise) until it shows the board is in user mode:
    /// then it is shown, as a serial terminal would show it, with one note, and what
    /// follows is shown as it comes while the search for a prompt goes on.
    @discardableResult
    private func synchronize(reportSuccess: Bool) -> Bool {
        guard link.isConnected else { return false }
        var seen = ReplUnsolicitedOutput()
        var shownLines: [UInt8] = []
        console.receiveObserver = { [unowned self] bytes in
            let lines = seen.feed(bytes)
            guard !lines.isEmpty else { return }
            if userModeNoted {
                transcript?.received(lines)
                show(lines, above: false)
                return
            }
            shownLines += lines
            guard revealsUserMode(lines) else { return }
            transcript?.received(shownLines)
            show(shownLines, above: false)
            shownLines = []
            userModeNoted = true
            say(Self.userModeNote)
        }
        defer { console.receiveObserver = nil }
        // Said before this search began (after `exit`, or an earlier command): then a
        // command gets "no console prompt" rather than silence. Not when the note is
        // said during this search.
        let saidBefore = userModeNoted
        do {
            try console.synchronize()
            forgetMode()
            if reportSuccess { say("the board's console answered.") }
            return true
        } catch is ReplCancelled {
            say("stopped waiting for the board's prompt (Ctrl-C).")
        } catch ConsoleError.wrongMode(.user) {
            let lines = shownLines + seen.flush()
            transcript?.received(lines)
            show(lines, above: false)
            noteUserMode(in: lines, above: false)
            if !userModeNoted {
                userModeNoted = true
                say(Self.userModeNote)
            } else if saidBefore {
                say(Self.noConsolePrompt)
            }
        } catch ConsoleError.noAnswer where userModeNoted {
            // The sketch's output was shown already (at the prompt); it ignores the console.
            say(Self.noConsolePrompt)
        } catch let error as ConsoleError {
            say(String(describing: error))
        } catch is ReplLinkError {
            showUnsolicited()
        } catch {
            say(String(describing: error))
        }
        return false
    }

    // MARK: Local commands

    /// A local command's words as a shell would give them for the cases people
    /// type: `"a b"` and `a\\ b` keep a space (split as the board splits its lines),
    /// and a leading `~/` is the home directory. Nil for an unclosed quote.
    static func localWords(_ text: String) -> [String]? {
        guard case .success(let words) = ConsoleTokenizer.words(Array(text.utf8)) else { return nil }
        let home = getenv("HOME").map { String(cString: $0) } ?? ""
        return words.map { bytes in
            let word = String(decoding: bytes, as: UTF8.self)
            guard !home.isEmpty, word == "~" || word.hasPrefix("~/") else { return word }
            return home + word.dropFirst()
        }
    }

    private func runLocal(_ text: String) -> Bool {
        guard let words = Self.localWords(text), !words.isEmpty else {
            say("a quote is not closed (a word in \"...\" ends at the next \"); nothing was done.")
            return true
        }
        switch words[0] {
        case ":quit", ":q", ":exit":
            return false
        case ":help":
            var help = "Board commands (sent to the DevKit):\r\n"
            for (name, description) in ReplCommands.device {
                help += "  \(name.padding(toLength: 15, withPad: " ", startingAt: 0)) \(description)\r\n"
            }
            help += "  set_dps_uds, set_wifipwd, set_az_iothub, set_az_iotdps typed alone ask for the secret "
                + "without showing it; secrets never go into the history or the log.\r\n"
            help += "devkit commands:\r\n"
            let width = ReplCommands.local.map(\.usage.count).max() ?? 0
            for (_, usage, description) in ReplCommands.local {
                help += "  \(usage.padding(toLength: width, withPad: " ", startingAt: 0))  \(description)\r\n"
            }
            writeAll(STDOUT_FILENO, help)
        case ":info":
            let workflow = DevKitWorkflow(session: console)
            if let info = onBoard(echo: nil, isExit: false, { try workflow.info(reboot: false) }) {
                let v = info.versions
                var lines = "Firmware (DevKitSDK) version: \(v.firmwareVersion)\r\n"
                lines += "Mico version:     \(v.mico ?? "unknown")\r\n"
                lines += "mbed-os version:  \(v.mbedOS ?? "unknown")\r\n"
                lines += "mbed TLS version: \(v.mbedTLS ?? "unknown")\r\n"
                lines += "Wi-Fi version:    \(v.wifi ?? "unknown")\r\n"
                writeAll(STDOUT_FILENO, lines)
            }
        case ":uds":
            guard words.count == 3, words[1] == "generate" else {
                say("usage: :uds generate FILE (FILE must not exist; it gets the new UDS, mode 0600)")
                return true
            }
            let path = words[2]
            let workflow = DevKitWorkflow(session: console)
            let echo = ConsoleTokenizer.echo(of: Array(("set_dps_uds " + String(repeating: "0", count: 64)).utf8))
            // Cut off once the file is written: its UDS may be on the board or not.
            let cutOff = { () -> String? in
                guard access(path, F_OK) == 0 else { return "nothing was written or sent before the board went." }
                return "`:uds generate` was cut off: the board may or may not hold the UDS saved in \(path); once it "
                    + "is back, store that one (`set_dps_uds`, then paste it at the hidden prompt) or make a new one "
                    + "with `:uds generate` and a new path."
            }
            let saved = onBoard(echo: echo, isExit: false, cutOff: cutOff) { () throws -> Void in
                do {
                    try workflow.setGeneratedUDS(savingTo: path)
                } catch let error as WorkflowError {
                    // The CLI's message names set-uds's --save; here the file is the argument.
                    switch error {
                    case .cannotWriteSecret(let path, let reason, _):
                        throw ReplMessage("cannot write \(path): \(reason); give `:uds generate` a path you can write "
                            + "(quote one with spaces: \"...\"); nothing was sent to the board")
                    case .secretFileExists(let path):
                        throw ReplMessage("\(path) exists already and may hold another board's secret: give `:uds generate` "
                            + "a new path; nothing was sent to the board")
                    default: throw error
                    }
                }
            }
            if saved != nil {
                say("a new UDS was saved to \(path) (mode 0600) and stored on the board.")
            }
        case ":cert":
            guard let certHandler else {
                say("unknown local command :cert; `:help` lists them.")
                return true
            }
            say(certHandler(Array(words.dropFirst())) {
                let workflow = DevKitWorkflow(session: console)
                return onBoard(echo: nil, isExit: false, { try workflow.info(reboot: false) })?
                    .versions.firmwareVersion
            })
        default:
            say("unknown local command \(words[0]); `:help` lists them.")
        }
        return true
    }
}

/// A message the console says as it is (no CLI wording around it).
struct ReplMessage: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
