import CLibEdit
import DevKitSystem
import SystemPackage
#if canImport(Glibc)
import Glibc
#endif

/// A line editor on libedit: prompt, emacs-style editing, history (kept in a file of
/// mode 0600), Tab completion, and a key reader that also watches other descriptors
/// so output that arrives while the user types is shown above the line being edited.
///
/// libedit is used through its native API (histedit.h) rather than its readline
/// emulation because only the native API lets us replace the character reader
/// (EL_GETCFN) and redraw the line after printing over it (EL_REFRESH).
public final class LineEditor {
    /// What one call to ``readLine()`` produced.
    enum Input: Equatable {
        case line(String)
        /// Ctrl-C: the line being edited was dropped.
        case interrupted
        /// Ctrl-C or Ctrl-D at the hidden prompt a secret command's space opened:
        /// nothing was sent (the caller says so).
        case secretCancelled
        /// Ctrl-D on an empty line, or the end of standard input.
        case endOfFile
    }

    private let editLine: OpaquePointer
    private let history: OpaquePointer
    private var promptCString: UnsafeMutablePointer<CChar>
    private var interruptedFlag = false
    /// The hidden prompt of a secret command's space was cancelled (with `interruptedFlag`).
    private var secretCancelled = false
    private var isReading = false
    private let historyFile: String?
    /// The terminal settings before libedit touched them, put back in deinit
    /// (el_end leaves the echo-less settings of `devkit_el_cooked_mode_without_echo`).
    private var originalTerminal = termios()
    private let restoresTerminal: Bool

    /// True when standard input is a terminal (editing, completion, hidden secrets).
    let isInteractive: Bool

    /// Readable descriptor of interrupt requests (SIGINT self-pipe); -1 for none.
    var interruptFD: Int32 = -1
    /// Another descriptor to watch while waiting for a key; when it is readable,
    /// ``onWatchReadable`` runs (and may call ``printAbove(_:)``).
    var watchFD: Int32 = -1
    var onWatchReadable: (() -> Void)?
    /// If set, the key reader waits at most this long, then calls ``onIdle``.
    var idleTimeoutMilliseconds: Int32 = -1
    var onIdle: (() -> Void)?
    /// Completion candidates for the text left of the cursor.
    var completer: (String) -> [String] = { _ in [] }
    /// Commands whose argument is a secret: a space typed right after one of them
    /// ends the line at once, so the caller can ask for the secret with echo off
    /// and it is never drawn (typed or pasted).
    var secretCommands: Set<String> = []
    /// The question to ask for a secret command's hidden value.
    var secretPrompt: (String) -> String = { _ in "Secret (not shown): " }
    /// The secret read right after a secret command's space (see ``takePendingSecret()``).
    private var pendingSecret: String?

    /// The prompt shown before the line; takes effect at the next redraw.
    var prompt: String {
        didSet {
            free(promptCString)
            promptCString = strdup(prompt)!
        }
    }

    /// - Parameters:
    ///   - program: Name used to select settings in ~/.editrc.
    ///   - historyFile: Where history is loaded from and saved to; nil keeps it in memory.
    public init(program: String, prompt: String, historyFile: String?, historySize: Int32 = 1000) {
        isInteractive = isatty(STDIN_FILENO) == 1
        var original = termios()
        restoresTerminal = isInteractive && tcgetattr(STDIN_FILENO, &original) == 0
        originalTerminal = original
        if restoresTerminal { ReplInterrupts.restoreTerminalOnTermination(original) }
        self.prompt = prompt
        promptCString = strdup(prompt)!
        self.historyFile = historyFile
        // libedit converts its wide characters to the line it returns, and to what it
        // draws, in the C library's locale, which a Swift program leaves at "C": a
        // typed `ü` was dropped from the line (and drawn as `\U+00FC`). Lines are
        // UTF-8 here whatever the environment says.
        if setlocale(LC_CTYPE, "C.UTF-8") == nil { _ = setlocale(LC_CTYPE, "") }
        guard let el = devkit_el_init(program), let h = history_init() else {
            // Only fails when out of memory.
            fatalError("libedit could not allocate its editor state")
        }
        editLine = el
        history = h
        _ = devkit_history_set_size(h, historySize)
        _ = devkit_history_set_unique(h, 1)
        if let historyFile { _ = devkit_history_load(h, historyFile) }

        _ = devkit_el_set_editor(el, "emacs")
        // We handle SIGINT ourselves (it cancels, it does not kill).
        _ = devkit_el_set_signal(el, 0)
        _ = devkit_el_set_history(el, h)
        _ = devkit_el_set_clientdata(el, Unmanaged.passUnretained(self).toOpaque())
        _ = devkit_el_set_prompt(el) { el in
            LineEditor.instance(el)?.promptCString
        }
        _ = devkit_el_set_getc(el) { el, character in
            guard let editor = LineEditor.instance(el), let character else { return -1 }
            return editor.readCharacter(character)
        }
        _ = devkit_el_add_function(el, "devkit-complete", "Complete a command name") { el, _ in
            LineEditor.instance(el)?.complete() ?? UInt8(CC_ERROR)
        }
        _ = devkit_el_add_function(el, "devkit-interrupt", "Drop the line (Ctrl-C)") { el, _ in
            LineEditor.instance(el)?.interruptedFlag = true
            return UInt8(CC_NEWLINE)
        }
        _ = devkit_el_add_function(el, "devkit-space", "Space; after a secret command, ask for it hidden") { el, _ in
            LineEditor.instance(el)?.space() ?? UInt8(CC_ERROR)
        }
        _ = devkit_el_bind(el, "^I", "devkit-complete")
        _ = devkit_el_bind(el, " ", "devkit-space")
        _ = devkit_el_bind(el, "^C", "devkit-interrupt")
        // The user's ~/.editrc may rebind keys, as with every libedit program.
        _ = el_source(el, nil)
        // Between lines (while the board is answering, or a secret is about to be
        // asked for) keys typed ahead are not echoed by the tty; libedit draws them
        // at the next prompt.
        _ = devkit_el_cooked_mode_without_echo(el)
    }

    private var closed = false

    /// Ends editing: libedit's state goes and the terminal settings found at init come
    /// back (el_end alone would leave echo off). Called explicitly: a deinit may run
    /// later than the process's exit.
    public func finish() {
        guard !closed else { return }
        closed = true
        el_end(editLine)
        history_end(history)
        if restoresTerminal { _ = tcsetattr(STDIN_FILENO, TCSANOW, &originalTerminal) }
    }

    deinit {
        finish()
        free(promptCString)
    }

    private static func instance(_ el: OpaquePointer?) -> LineEditor? {
        guard let el, let data = devkit_el_get_clientdata(el) else { return nil }
        return Unmanaged<LineEditor>.fromOpaque(data).takeUnretainedValue()
    }

    /// Reads one line with editing. The line has no trailing newline.
    func readLine() -> Input {
        interruptedFlag = false
        secretCancelled = false
        pendingSecret = nil
        isReading = true
        defer { isReading = false }
        var count: Int32 = 0
        let text = el_gets(editLine, &count)
        if interruptedFlag {
            if secretCancelled {
                // The hidden prompt's line ends; no `^C` for a Ctrl-D.
                writeAll(STDOUT_FILENO, "\r\n")
                return .secretCancelled
            }
            if isInteractive { writeAll(STDOUT_FILENO, "^C\r\n") }
            return .interrupted
        }
        guard let text, count > 0 else { return .endOfFile }
        // `count` bytes, not up to a NUL: a line ended by the secret-command space
        // handler (CC_NEWLINE) is not NUL-terminated, and the buffer still holds the
        // tail of a longer previous line after it.
        var line = String(decoding: UnsafeRawBufferPointer(start: text, count: Int(count)), as: UTF8.self)
        while line.hasSuffix("\n") || line.hasSuffix("\r") { line.removeLast() }
        return .line(line)
    }

    /// The hidden value typed after a secret command's space, once; nil when the line
    /// was ended by Enter instead (then ask with ``readSecret(prompt:)``).
    func takePendingSecret() -> String? {
        defer { pendingSecret = nil }
        return pendingSecret
    }

    /// Adds a line to the history and saves the history file. The caller decides
    /// what may be stored: never pass a secret.
    func addHistory(_ entry: String) {
        _ = devkit_history_enter(history, entry)
        saveHistory()
    }

    /// Writes the history file atomically (temporary file of mode 0600, then rename),
    /// creating its directory (mode 0700) if needed. Not DevKitSystem's DurableFile:
    /// libedit writes the history to a FILE* and chmods its descriptor, so it needs
    /// a real file.
    private func saveHistory() {
        guard let historyFile else { return }
        let directory = String(historyFile[..<(historyFile.lastIndex(of: "/") ?? historyFile.startIndex)])
        if !directory.isEmpty { makeDirectories(directory, mode: 0o700) }
        let temporary = historyFile + ".tmp.\(getpid())"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return }
        _ = fchmod(fd, 0o600)
        guard let file = fdopen(fd, "w") else { close(fd); unlink(temporary); return }
        let saved = devkit_history_save_fp(history, file)
        let flushed = fflush(file) == 0 && fsync(fd) == 0
        fclose(file)
        if saved >= 0 && flushed && rename(temporary, historyFile) == 0 { return }
        unlink(temporary)
    }

    /// Prints text while a line may be being edited: clears the edit line, prints,
    /// and redraws the prompt and the user's partial input below it.
    func printAbove(_ text: String) {
        if isReading && isInteractive {
            writeAll(STDOUT_FILENO, "\r\u{1B}[K" + text)
            _ = devkit_el_refresh(editLine)
        } else {
            writeAll(STDOUT_FILENO, text)
        }
    }

    /// Replaces the line just entered on screen (e.g. with a masked copy), so a
    /// secret typed inline does not stay in the terminal's scrollback.
    func overwriteEnteredLine(_ original: String, with replacement: String) {
        guard isInteractive else { return }
        var size = winsize()
        let columns = ioctl(STDOUT_FILENO, UInt(TIOCGWINSZ), &size) == 0 && size.ws_col > 0
            ? Int(size.ws_col) : 80
        let rows = (prompt.count + original.count) / columns + 1
        var text = ""
        for _ in 0..<rows { text += "\u{1B}[1A\r\u{1B}[K" }
        writeAll(STDOUT_FILENO, text + prompt + replacement + "\r\n")
    }

    /// Reads a secret with terminal echo off. Returns nil on Ctrl-C or end of input.
    func readSecret(prompt: String) -> String? {
        writeAll(STDOUT_FILENO, prompt)
        var saved = termios()
        let isTerminal = isatty(STDIN_FILENO) == 1 && tcgetattr(STDIN_FILENO, &saved) == 0
        if isTerminal {
            var quiet = saved
            // No ECHONL: keys typed ahead (while libedit had the terminal) would miss
            // it; the line end is written below instead, always.
            quiet.c_lflag &= ~tcflag_t(ECHO | ECHONL)
            quiet.c_lflag |= tcflag_t(ICANON)
            _ = tcsetattr(STDIN_FILENO, TCSANOW, &quiet)
        }
        defer {
            if isTerminal { _ = tcsetattr(STDIN_FILENO, TCSANOW, &saved) }
        }
        var bytes: [UInt8] = []
        // Zeroed however the read ends (a cancelled secret is as secret).
        defer { for i in bytes.indices { bytes[i] = 0 } }
        while true {
            switch waitForInput() {
            case .again: continue
            case .failed: return nil
            case .interrupted:
                writeAll(STDOUT_FILENO, "^C\r\n")
                return nil
            case .input: break
            }
            var byte: UInt8 = 0
            let n = read(STDIN_FILENO, &byte, 1)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 {
                if !isTerminal && !bytes.isEmpty { break }
                // Ctrl-D: the prompt's line ends, so what is said next starts on its own.
                if isTerminal { writeAll(STDOUT_FILENO, "\r\n") }
                return nil
            }
            if byte == 0x0A || byte == 0x0D { break }
            bytes.append(byte)
        }
        writeAll(STDOUT_FILENO, "\r\n")
        return String(decoding: bytes, as: UTF8.self)
    }

    // MARK: libedit callbacks

    /// EL_GETCFN: waits for a key while also serving the interrupt pipe and the
    /// watched descriptor. Decodes UTF-8 into one wide character.
    private func readCharacter(_ out: UnsafeMutablePointer<wchar_t>) -> Int32 {
        while true {
            var fds = [pollfd(fd: STDIN_FILENO, events: Int16(POLLIN), revents: 0)]
            let interruptIndex = interruptFD >= 0 ? fds.count : -1
            if interruptFD >= 0 { fds.append(pollfd(fd: interruptFD, events: Int16(POLLIN), revents: 0)) }
            let watchIndex = watchFD >= 0 ? fds.count : -1
            if watchFD >= 0 { fds.append(pollfd(fd: watchFD, events: Int16(POLLIN), revents: 0)) }
            let ready = poll(&fds, nfds_t(fds.count), idleTimeoutMilliseconds)
            if ReplInterrupts.takeResize() { el_resize(editLine) }
            if ready < 0 {
                if errno == EINTR { continue }
                return -1
            }
            if ready == 0 {
                onIdle?()
                continue
            }
            if interruptIndex >= 0 && fds[interruptIndex].revents != 0 {
                FileDescriptor(rawValue: interruptFD).drain()
                out.pointee = 3  // Ctrl-C, bound to devkit-interrupt
                return 1
            }
            if watchIndex >= 0 && fds[watchIndex].revents != 0 {
                onWatchReadable?()
                if fds[0].revents == 0 { continue }
            }
            if fds[0].revents != 0 {
                var first: UInt8 = 0
                let n = read(STDIN_FILENO, &first, 1)
                if n < 0 {
                    if errno == EINTR || errno == EAGAIN { continue }
                    return -1
                }
                if n == 0 { return 0 }
                out.pointee = wchar_t(decodeUTF8(startingWith: first))
                return 1
            }
        }
    }

    /// Reads the continuation bytes of a UTF-8 sequence; invalid input becomes U+FFFD.
    private func decodeUTF8(startingWith first: UInt8) -> UInt32 {
        let length = first < 0x80 ? 1 : first >= 0xF0 ? 4 : first >= 0xE0 ? 3 : first >= 0xC0 ? 2 : 0
        if length == 1 { return UInt32(first) }
        if length == 0 { return 0xFFFD }
        var bytes = [first]
        while bytes.count < length {
            var next: UInt8 = 0
            let n = read(STDIN_FILENO, &next, 1)
            if n < 0 && errno == EINTR { continue }
            if n != 1 { return 0xFFFD }
            bytes.append(next)
        }
        return String(decoding: bytes, as: UTF8.self).unicodeScalars.first?.value ?? 0xFFFD
    }

    /// True when the cursor is at the end of the line being edited.
    private var cursorAtEnd: Bool {
        guard let info = el_line(editLine)?.pointee, let cursor = info.cursor else { return false }
        return cursor == info.lastchar
    }

    /// Space: inserts a space, except right after a secret command at the end of the
    /// line: there it asks for the secret at once, still in libedit's raw mode (echo
    /// off), so no key typed or pasted after the space is ever drawn, then ends the line.
    private func space() -> UInt8 {
        if let info = el_line(editLine)?.pointee, let buffer = info.buffer, let cursor = info.cursor,
           cursor == info.lastchar
        {
            let bytes = UnsafeBufferPointer(
                start: UnsafeRawPointer(buffer).assumingMemoryBound(to: UInt8.self), count: cursor - buffer)
            let text = String(decoding: bytes, as: UTF8.self).trimmingSpaces
            if secretCommands.contains(text) {
                writeAll(STDOUT_FILENO, "\r\n" + secretPrompt(text))
                if let secret = readHiddenLineRaw() {
                    pendingSecret = secret
                } else {
                    interruptedFlag = true
                    secretCancelled = true
                }
                return UInt8(CC_NEWLINE)
            }
        }
        _ = el_insertstr(editLine, " ")
        return UInt8(CC_REFRESH)
    }

    private enum Wait { case input, interrupted, failed, again }

    /// Waits until standard input is readable or the interrupt descriptor fired
    /// (drained); `again` when a signal cut the wait short.
    private func waitForInput() -> Wait {
        var fds = [pollfd(fd: STDIN_FILENO, events: Int16(POLLIN), revents: 0)]
        if interruptFD >= 0 { fds.append(pollfd(fd: interruptFD, events: Int16(POLLIN), revents: 0)) }
        if poll(&fds, nfds_t(fds.count), -1) < 0 { return errno == EINTR ? .again : .failed }
        if fds.count > 1 && fds[1].revents != 0 {
            FileDescriptor(rawValue: interruptFD).drain()
            return .interrupted
        }
        return .input
    }

    /// Reads a line while the terminal is raw and silent: Enter ends it, Backspace
    /// and Ctrl-U edit it, Ctrl-C (or SIGINT) and Ctrl-D on an empty line cancel (nil).
    private func readHiddenLineRaw() -> String? {
        var bytes: [UInt8] = []
        defer { for i in bytes.indices { bytes[i] = 0 } }
        while true {
            switch waitForInput() {
            case .again: continue
            case .failed, .interrupted: return nil
            case .input: break
            }
            var byte: UInt8 = 0
            let n = read(STDIN_FILENO, &byte, 1)
            if n < 0 && (errno == EINTR || errno == EAGAIN) { continue }
            if n <= 0 { return nil }
            switch byte {
            case 0x0D, 0x0A:
                writeAll(STDOUT_FILENO, "\r\n")
                return String(decoding: bytes, as: UTF8.self)
            case 0x03:
                return nil
            case 0x04 where bytes.isEmpty:
                return nil
            case 0x08, 0x7F:
                if !bytes.isEmpty { bytes.removeLast() }
            case 0x15:
                bytes.removeAll()
            case 0x20...:
                bytes.append(byte)
            default:
                break
            }
        }
    }

    /// Tab: completes the word left of the cursor, or lists the candidates.
    private func complete() -> UInt8 {
        guard let info = el_line(editLine)?.pointee, let buffer = info.buffer, let cursor = info.cursor
        else { return UInt8(CC_ERROR) }
        let prefixBytes = UnsafeBufferPointer(start: UnsafeRawPointer(buffer).assumingMemoryBound(to: UInt8.self),
                                              count: cursor - buffer)
        let prefix = String(decoding: prefixBytes, as: UTF8.self)
        let word = String(prefix[(prefix.lastIndex(of: " ").map { prefix.index(after: $0) } ?? prefix.startIndex)...])
        let candidates = completer(prefix)
        if candidates.isEmpty {
            el_beep(editLine)
            return UInt8(CC_REFRESH)
        }
        if candidates.count == 1 {
            let rest = String(candidates[0].dropFirst(word.count))
            _ = el_insertstr(editLine, rest)
            // The space after a secret command asks for the secret, hidden, as a
            // typed space does (inserted as text, it left the secret typed next on
            // screen). The completed name is drawn first: the prompt follows at once.
            if secretCommands.contains(candidates[0]), cursorAtEnd { writeAll(STDOUT_FILENO, rest) }
            return space()
        }
        let common = ReplCommands.commonPrefix(candidates)
        if common.count > word.count {
            _ = el_insertstr(editLine, String(common.dropFirst(word.count)))
            return UInt8(CC_REFRESH)
        }
        writeAll(STDOUT_FILENO, "\r\n" + candidates.joined(separator: "  ") + "\r\n")
        return UInt8(CC_REDISPLAY)
    }
}

/// `mkdir -p` with the given mode for the directories it creates.
func makeDirectories(_ path: String, mode: mode_t) {
    var current = path.hasPrefix("/") ? "" : "."
    for component in path.split(separator: "/") {
        current += "/" + component
        if mkdir(current, mode) != 0 && errno != EEXIST { return }
    }
}
