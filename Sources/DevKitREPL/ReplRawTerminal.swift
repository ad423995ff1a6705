import DevKitSystem
#if canImport(Glibc)
import Glibc
#endif

/// `devkit console --raw`: a plain terminal on the board, like tio or picocom.
/// Standard input goes raw (no line editing, Ctrl-C goes to the board), bytes flow
/// both ways unchanged, Ctrl-] quits, and the terminal settings are restored on the
/// way out (also on SIGTERM/SIGHUP, which end the loop instead of the process).
public struct ReplRawTerminal {
    static let quitByte: UInt8 = 0x1D  // Ctrl-]

    let link: ReplDeviceLink
    let transcript: ReplTranscript?

    public init(link: ReplDeviceLink, transcript: ReplTranscript?) {
        self.link = link
        self.transcript = transcript
    }

    /// Runs until Ctrl-] (nil) or a stop signal, which it returns once the terminal
    /// is restored: the caller dies of it after its own clean-up (130, 143), as
    /// every board command does.
    @discardableResult
    public func run() -> Int32? {
        var saved = termios()
        let isTerminal = isatty(STDIN_FILENO) == 1 && tcgetattr(STDIN_FILENO, &saved) == 0
        if isTerminal {
            var raw = saved
            cfmakeraw(&raw)
            _ = tcsetattr(STDIN_FILENO, TCSANOW, &raw)
        }
        // SIGTERM, SIGHUP and SIGINT (only from kill(1): the raw terminal sends
        // Ctrl-C to the board) end the loop, so the terminal is restored first.
        let stop = try? SignalRelay([SIGTERM, SIGHUP, SIGINT])
        defer { stop?.restore() }  // after the terminal's settings are back
        defer {
            if isTerminal { _ = tcsetattr(STDIN_FILENO, TCSANOW, &saved) }
            writeAll(STDOUT_FILENO, "\r\n")
        }
        note("raw terminal on \(link.path); Ctrl-] quits.")
        var typed: [UInt8] = []
        var stdinOpen = true
        while true {
            var fds = [pollfd(fd: link.eventFD, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: stop?.fd ?? -1, events: Int16(POLLIN), revents: 0)]
            if stdinOpen { fds.append(pollfd(fd: STDIN_FILENO, events: Int16(POLLIN), revents: 0)) }
            let ready = poll(&fds, nfds_t(fds.count), -1)
            if ready < 0 {
                if errno == EINTR { continue }
                return nil
            }
            if fds[1].revents != 0 { return stop?.takeSignals().first }
            if fds[0].revents != 0 {
                for event in link.takeEvents() {
                    switch event {
                    case .data(let bytes):
                        writeAll(STDOUT_FILENO, bytes)
                        transcript?.received(bytes)
                    case .disconnected(let reason):
                        note("board unplugged (\(reason)); waiting for \(link.path) to come back. Ctrl-] quits.")
                    case .reconnected:
                        note("\(link.path) is back: reconnected.")
                    }
                }
            }
            if stdinOpen && fds[2].revents != 0 {
                var buffer = [UInt8](repeating: 0, count: 256)
                let n = read(STDIN_FILENO, &buffer, buffer.count)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 {
                    // End of input (not a terminal): keep showing the board until stopped.
                    stdinOpen = false
                    continue
                }
                var bytes = Array(buffer[..<n])
                var quit = false
                if let index = bytes.firstIndex(of: Self.quitByte) {
                    bytes = Array(bytes[..<index])
                    quit = true
                }
                logTyped(bytes, into: &typed)
                if !bytes.isEmpty {
                    do {
                        try link.write(bytes, deadline: .now + .seconds(2))
                    } catch {
                        note("not sent: the board is unplugged.")
                    }
                }
                if quit { return nil }
            }
        }
    }

    private func note(_ text: String) {
        transcript?.note(text)
        writeAll(STDOUT_FILENO, "\r\n[devkit] \(text)\r\n")
    }

    /// Logs typed lines (masked) when they end with Enter.
    private func logTyped(_ bytes: [UInt8], into typed: inout [UInt8]) {
        guard let transcript else { return }
        for byte in bytes {
            if byte == 0x0D || byte == 0x0A {
                if !typed.isEmpty { transcript.sent(String(decoding: typed, as: UTF8.self)) }
                typed.removeAll()
            } else if byte == 0x08 || byte == 0x7F {
                if !typed.isEmpty { typed.removeLast() }
            } else if byte >= 0x20 {
                typed.append(byte)
            }
        }
    }
}
