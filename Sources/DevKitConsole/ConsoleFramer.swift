/// The console's reply framing, in one place: a push decoder over received bytes.
///
/// After a command line the board echoes it (secret arguments as `*`), prints `\r\n`,
/// the command's output, and the prompt `\r\n# `; after `exit` it prints `Reboot\r\n`
/// and resets (no prompt). Feed the bytes as they arrive, in any chunking; the events
/// come out the same for every split. `ConsoleSession` and the REPL both read it.
///
/// Why by hand: the terminators must be found while the bytes stream in (the REPL shows
/// a reply live; a flooding board must not cost quadratic time). Each pattern is a
/// `BytePattern` (Knuth-Morris-Pratt): every byte is looked at once, a mismatch falls
/// back through a precomputed table, so the work is linear in the bytes fed and
/// earlier bytes are never scanned again. The only bytes held back are a partial
/// terminator, which is by construction a prefix of the terminator itself: the
/// framer keeps `retainedByteCount` ≤ 7 bytes (a partial `Reboot\r\n`) whatever the stream.
///
/// ```swift
/// var framer = ConsoleFramer(echo: ConsoleTokenizer.echo(of: line), untilReboot: false)
/// for event in framer.feed(chunk) { … }   // .echo, .reply (streamed), .prompt, .after
/// ```
public struct ConsoleFramer: Sendable {
    /// The bytes the console prints as its prompt.
    public static let prompt: [UInt8] = Array("\r\n# ".utf8)
    /// The line `exit` prints before the board resets.
    public static let reboot: [UInt8] = Array("Reboot\r\n".utf8)

    public enum Event: Sendable, Hashable {
        /// Bytes of the echoed line (or anything before it, e.g. a stale prompt), with
        /// the `\r\n` that ends it.
        case echo([UInt8])
        /// Reply text, as soon as it cannot be part of the terminator. After `exit` the
        /// reply ends with the `Reboot\r\n` line itself.
        case reply([UInt8])
        /// The prompt ended the reply (or, when awaiting a prompt, one prompt was seen).
        case prompt
        /// `Reboot\r\n` ended the reply: the board resets, no prompt follows.
        case reboot
        /// Bytes that came after the reply was framed (unsolicited output, or the start
        /// of what follows the reboot), or, when awaiting a prompt, bytes that are no
        /// part of a prompt.
        case after([UInt8])
    }

    public enum State: Sendable, Hashable {
        /// Waiting for the echoed line and its `\r\n`.
        case echo
        /// Reading the reply up to its terminator.
        case reply
        /// The terminator came; everything else is `.after`.
        case done
        /// Only looking for prompts (synchronising): each one is a `.prompt` event,
        /// everything else `.after`. Never ends by itself.
        case awaitingPrompt
    }

    public private(set) var state: State
    private var echoEnd: BytePattern
    private var terminator: BytePattern
    private let untilReboot: Bool

    /// Frames the reply to one line.
    /// - Parameters:
    ///   - echo: what the board echoes for the line (`ConsoleTokenizer.echo(of:)`);
    ///     bytes before it (stale prompts) are `.echo` too. Empty when the echo was
    ///     already consumed, or for an empty line (the board prints the prompt only).
    ///   - untilReboot: the line is `exit`: the reply ends at `Reboot\r\n`.
    public init(echo: [UInt8], untilReboot: Bool) {
        state = echo.isEmpty ? .reply : .echo
        echoEnd = BytePattern(echo + [0x0D, 0x0A])
        self.untilReboot = untilReboot
        terminator = BytePattern(untilReboot ? Self.reboot : Self.prompt)
    }

    /// Looks for prompts only (`State.awaitingPrompt`).
    public static func awaitingPrompt() -> ConsoleFramer {
        var framer = ConsoleFramer(echo: [], untilReboot: false)
        framer.state = .awaitingPrompt
        return framer
    }

    /// Bytes the framer holds back because they may begin a terminator: a prefix of
    /// the prompt or of `Reboot\r\n`, so at most 7 bytes.
    public var retainedByteCount: Int {
        state == .reply || state == .awaitingPrompt ? terminator.matched : 0
    }

    /// The held-back bytes themselves (a partial prompt at the end of what was fed).
    public var heldBack: [UInt8] { Array(terminator.bytes.prefix(retainedByteCount)) }

    /// Feeds received bytes; returns the events they complete, in order. Adjacent bytes
    /// of one kind come as one event.
    public mutating func feed(_ bytes: some Collection<UInt8>) -> [Event] {
        var events: [Event] = []
        var run: [UInt8] = []  // bytes of the current kind not yet emitted
        func flush(_ make: ([UInt8]) -> Event) {
            if !run.isEmpty { events.append(make(run)); run.removeAll(keepingCapacity: true) }
        }
        for byte in bytes {
            switch state {
            case .echo:
                run.append(byte)
                if echoEnd.advance(byte) {
                    flush(Event.echo)
                    state = .reply
                }
            case .reply, .awaitingPrompt:
                let before = terminator.matched
                if terminator.advance(byte) {
                    // The held prefix plus this byte is the terminator.
                    if untilReboot { run += terminator.bytes }
                    if state == .awaitingPrompt {
                        flush(Event.after)
                        events.append(.prompt)
                        terminator.reset()  // the next prompt starts afresh
                    } else {
                        flush(Event.reply)
                        events.append(untilReboot ? .reboot : .prompt)
                        state = .done
                    }
                } else {
                    // Held (terminator[..<before]) + byte = released + terminator[..<matched].
                    let released = before + 1 - terminator.matched
                    if released > 0 {
                        let held = terminator.bytes[..<before]
                        if released <= before {
                            run += held.prefix(released)
                        } else {
                            run += held
                            run.append(byte)
                        }
                    }
                }
            case .done:
                run.append(byte)
            }
        }
        switch state {
        case .echo: flush(Event.echo)
        case .reply: flush(Event.reply)
        case .done, .awaitingPrompt: flush(Event.after)
        }
        return events
    }
}

/// Incremental exact matching of one byte string (Knuth-Morris-Pratt): `advance` costs
/// amortised O(1) per byte, and matching never looks back at earlier input.
public struct BytePattern: Sendable, Hashable {
    public let bytes: [UInt8]
    /// How many bytes of the pattern the input currently ends with.
    public private(set) var matched = 0
    /// failure[i]: the longest proper border of bytes[...i].
    private let failure: [Int]

    public init(_ bytes: [UInt8]) {
        precondition(!bytes.isEmpty)
        self.bytes = bytes
        var failure = [Int](repeating: 0, count: bytes.count)
        var k = 0
        for i in 1..<bytes.count {
            while k > 0 && bytes[i] != bytes[k] { k = failure[k - 1] }
            if bytes[i] == bytes[k] { k += 1 }
            failure[i] = k
        }
        self.failure = failure
    }

    /// Takes one byte; true when the input now ends with the whole pattern (matching
    /// then goes on, overlapping matches included).
    public mutating func advance(_ byte: UInt8) -> Bool {
        if matched == bytes.count { matched = failure[matched - 1] }
        while matched > 0 && bytes[matched] != byte { matched = failure[matched - 1] }
        if bytes[matched] == byte { matched += 1 }
        return matched == bytes.count
    }

    /// Forgets the input seen so far.
    public mutating func reset() { matched = 0 }
}

/// Splits received bytes into lines (`\n`, an `\r` before it dropped) as they arrive,
/// looking at each byte once. A line longer than `maxLineLength` keeps its first
/// `maxLineLength` bytes (the rest is dropped), so a flood without newlines holds at
/// most that much.
public struct ConsoleLineSplitter: Sendable {
    /// 64 KiB: far beyond any line the firmware or a sketch prints.
    public static let defaultMaxLineLength = 64 * 1024
    public let maxLineLength: Int
    /// The unfinished last line (bytes after the last `\n`).
    public private(set) var partial: [UInt8] = []

    public init(maxLineLength: Int = ConsoleLineSplitter.defaultMaxLineLength) {
        self.maxLineLength = maxLineLength
    }

    /// Bytes of the unfinished last line held.
    public var retainedByteCount: Int { partial.count }

    public mutating func feed(_ bytes: some Collection<UInt8>) -> [String] {
        var lines: [String] = []
        for byte in bytes {
            if byte == 0x0A {
                if partial.last == 0x0D { partial.removeLast() }
                lines.append(String(decoding: partial, as: UTF8.self))
                partial.removeAll(keepingCapacity: true)
            } else if partial.count < maxLineLength {
                partial.append(byte)
            }
        }
        return lines
    }
}
