/// A Unique Device Secret: 32 bytes, written as 64 hex digits.
///
/// Parsed once, where it enters devkit (a file, the CSPRNG, the registry), and passed
/// as this type to the bytes on the wire. `description`, `debugDescription` and the
/// mirror never show it, so `print`, `dump`, string interpolation and error messages
/// reveal nothing; ``hexString`` is for storing and sending only.
public struct UDS: Sendable, Hashable, CustomStringConvertible, CustomDebugStringConvertible,
    CustomReflectable
{
    /// The number of secret bytes.
    public static let byteCount = 32
    /// The number of hex digits that spell it.
    public static let hexLength = 64

    /// The 32 secret bytes; the first two hex digits are the first byte.
    public let bytes: [UInt8]

    /// Parses 64 hex digits (either case); surrounding whitespace is ignored.
    public init(hex text: some StringProtocol) throws(InputError) {
        // The usual input, on its UTF-8 bytes without generic calls (a batch reads
        // one per line); anything else goes on to say what is wrong with it.
        var string = String(text)
        if let bytes = string.withUTF8({ Self.decode(utf8: $0) }) {
            self.bytes = bytes
            return
        }
        let trimmed = text.trimmingASCIIWhitespace
        guard trimmed.count == Self.hexLength else { throw .udsLength(trimmed.count) }
        if let position = trimmed.firstIndex(where: { !Hex.isHexDigit($0) }) {
            throw .udsCharacter(position: trimmed.distance(from: trimmed.startIndex, to: position) + 1)
        }
        bytes = Hex.decode(Substring(trimmed))!
    }

    /// The 32 bytes of 64 hex digits with optional ASCII whitespace around them, or nil.
    private static func decode(utf8 text: UnsafeBufferPointer<UInt8>) -> [UInt8]? {
        var start = 0, end = text.count
        while start < end, text[start].isASCIIWhitespace { start += 1 }
        while end > start, text[end - 1].isASCIIWhitespace { end -= 1 }
        guard end - start == hexLength else { return nil }
        var valid = true
        let bytes = [UInt8](unsafeUninitializedCapacity: byteCount) { out, count in
            for i in 0..<byteCount {
                guard let high = Hex.value(text[start + 2 * i]), let low = Hex.value(text[start + 2 * i + 1]) else {
                    valid = false
                    break
                }
                out[i] = high << 4 | low
            }
            count = valid ? byteCount : 0
        }
        return valid ? bytes : nil
    }

    /// Wraps 32 raw bytes (e.g. from the CSPRNG).
    public init(bytes: [UInt8]) throws(InputError) {
        guard bytes.count == Self.byteCount else { throw .udsLength(bytes.count * 2) }
        self.bytes = bytes
    }

    /// The 64 lower-case hex digits, for storing or sending the secret (never for display).
    public var hexString: String { Hex.encode(bytes) }

    public var description: String { "UDS(<redacted>)" }
    public var debugDescription: String { description }
    public var customMirror: Mirror { Mirror(self, children: [], displayStyle: .struct) }
}
