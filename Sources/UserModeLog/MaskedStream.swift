import DevKitModel

/// What a board prints, made safe to show as it arrives: complete lines masked
/// (``LogMasking/mask(_:)``), an unfinished line shown only up to where it can no
/// longer turn into a secret, control characters escaped (a board's bytes must not
/// drive the terminal), line ends passed through.
///
/// ```swift
/// var stream = MaskedStream()
/// let (shown, lines) = stream.feed(bytes)  // write `shown`; classify `lines`
/// let more = stream.flushPartial()         // after a quiet spell
/// ```
public struct MaskedStream: Sendable {
    /// The current line's bytes as received.
    private var raw: [UInt8] = []
    /// What of the current line has been handed out already (masked, escaped).
    private var shown: [UInt8] = []

    public init() {}

    /// True while part of the current line has not been shown.
    public var hasUnshownText: Bool { !raw.isEmpty }

    /// Feeds `bytes`; returns what to show now and the lines they complete (masked).
    public mutating func feed(_ bytes: some Sequence<UInt8>) -> (shown: [UInt8], lines: [String]) {
        var out: [UInt8] = []
        var lines: [String] = []
        for byte in bytes {
            if byte == 0x0D || byte == 0x0A {
                if let line = endLine(into: &out) { lines.append(line) }
                out.append(byte)
            } else {
                raw.append(byte)
                // A line without an end (binary noise) is cut like LineSplitter cuts it.
                if raw.count >= LineSplitter.maxLineLength, let line = endLine(into: &out) { lines.append(line) }
            }
        }
        return (out, lines)
    }

    /// The part of the unfinished line that cannot become a secret any more, not
    /// shown before: for a board that prints a prompt or a progress dot without a
    /// line end.
    public mutating func flushPartial() -> [UInt8] {
        let safe = LogMasking.safePrefixLength(of: raw)
        return reveal(Self.display(LogMasking.mask(String(decoding: raw[..<safe], as: UTF8.self))))
    }

    /// At the end of the stream (or the port gone): the unfinished line, masked.
    public mutating func finish() -> (shown: [UInt8], line: String?) {
        var out: [UInt8] = []
        let line = endLine(into: &out)
        return (out, line)
    }

    private mutating func endLine(into out: inout [UInt8]) -> String? {
        guard !raw.isEmpty else { return nil }
        let masked = LogMasking.mask(String(decoding: raw, as: UTF8.self))
        out += reveal(Self.display(masked))
        raw.removeAll(keepingCapacity: true)
        shown.removeAll(keepingCapacity: true)
        return masked
    }

    /// The bytes of `text` not shown yet. A masked line always begins with what its
    /// safe prefix showed (a secret starts after it), so only the rest is new.
    private mutating func reveal(_ text: [UInt8]) -> [UInt8] {
        guard text.count > shown.count, text.starts(with: shown) else { return [] }
        let new = Array(text[shown.count...])
        shown = text
        return new
    }

    /// Control characters escaped as DevKitModel escapes them in messages (`\u{1B}`),
    /// so a board's bytes cannot move the cursor, clear the screen or set a title.
    static func display(_ text: String) -> [UInt8] {
        Array(escapedControlCharacters(text).utf8)
    }
}
