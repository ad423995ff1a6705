/// Splits what the board sends after a command line into its echo, the response
/// and the next prompt, byte by byte as it arrives, so the response can be shown
/// while it streams in.
///
/// The board echoes the line as typed (secrets as `*`), prints `\r\n`, runs the
/// command, and prints the prompt `\r\n# `. The response is what lies between.
struct ReplResponseFramer {
    /// The console's prompt.
    static let prompt: [UInt8] = Array("\r\n# ".utf8)

    enum State: Equatable { case echo, response, done }

    private(set) var state: State
    /// The whole response so far (for callers that parse it).
    private(set) var response: [UInt8] = []
    /// Bytes that may be the start of the prompt, held back until that is decided.
    private var held: [UInt8] = []
    /// The last bytes seen while waiting for the echo.
    private var recent: [UInt8] = []
    private let echoEnd: [UInt8]
    private let terminator: [UInt8]

    /// - Parameters:
    ///   - echo: what the board echoes for the line (`ConsoleTokenizer.echo(of:)`);
    ///     empty for an empty line, which the board answers with the prompt only.
    ///     Anything before the echo (a stale prompt) is skipped.
    ///   - terminator: ends the response instead of the prompt (`exit` prints
    ///     `Reboot\r\n` and resets, no prompt follows); it is shown, the prompt is not.
    init(echo: [UInt8], terminator: [UInt8] = ReplResponseFramer.prompt) {
        state = echo.isEmpty ? .response : .echo
        echoEnd = echo + [0x0D, 0x0A]
        self.terminator = terminator
    }

    /// Feeds received bytes. Returns the response bytes that can be shown now, and
    /// any bytes that came after the prompt (unsolicited output).
    mutating func feed(_ bytes: [UInt8]) -> (show: [UInt8], after: [UInt8]) {
        var show: [UInt8] = []
        var index = bytes.startIndex
        while index < bytes.endIndex {
            let byte = bytes[index]
            index += 1
            switch state {
            case .echo:
                recent.append(byte)
                if recent.count > echoEnd.count { recent.removeFirst(recent.count - echoEnd.count) }
                if recent == echoEnd { state = .response }
            case .response:
                held.append(byte)
                if held.count >= terminator.count, Array(held.suffix(terminator.count)) == terminator {
                    let body = Array(held.dropLast(terminator.count))
                    show += body
                    response += body
                    if terminator != Self.prompt { response += terminator; show += terminator }
                    held = []
                    state = .done
                } else {
                    // Keep only the longest tail that could still begin the terminator.
                    let keep = Self.longestTerminatorPrefix(in: held, terminator: terminator)
                    let release = held.dropLast(keep)
                    show += release
                    response += release
                    held = Array(held.suffix(keep))
                }
            case .done:
                return (show, Array(bytes[(index - 1)...]))
            }
        }
        return (show, [])
    }

    private static func longestTerminatorPrefix(in bytes: [UInt8], terminator: [UInt8]) -> Int {
        var length = min(bytes.count, terminator.count - 1)
        while length > 0 {
            if Array(bytes.suffix(length)) == Array(terminator.prefix(length)) { return length }
            length -= 1
        }
        return 0
    }
}
