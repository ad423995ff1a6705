/// Splits the bytes a board prints into lines, whatever the chunking of the reads.
/// The firmware ends lines in `\r\n`, plain `printf`s put `\r\n` before and after,
/// and messages may hold `\r\n` themselves: a line ends at `\r` or `\n`, and the
/// empty lines between are dropped (they carry nothing and would depend on where
/// a read split a `\r\n`).
public struct LineSplitter: Sendable {
    /// Bytes of the line not yet ended.
    public private(set) var pending: [UInt8] = []

    /// A line longer than this is cut and handed on: a board printing binary
    /// garbage without line ends must not grow the buffer without bound.
    public static let maxLineLength = 4096

    public init() {}

    /// The lines `bytes` completes, in order.
    public mutating func feed(_ bytes: some Sequence<UInt8>) -> [String] {
        var lines: [String] = []
        for b in bytes {
            if b == 0x0D || b == 0x0A {
                if !pending.isEmpty { lines.append(String(decoding: pending, as: UTF8.self)) }
                pending.removeAll(keepingCapacity: true)
            } else {
                pending.append(b)
                if pending.count >= Self.maxLineLength {
                    lines.append(String(decoding: pending, as: UTF8.self))
                    pending.removeAll(keepingCapacity: true)
                }
            }
        }
        return lines
    }

    /// The unfinished last line, if any (at the end of the stream).
    public mutating func finish() -> String? {
        defer { pending.removeAll() }
        return pending.isEmpty ? nil : String(decoding: pending, as: UTF8.self)
    }
}
