/// A DevKit's Wi-Fi MAC address: 12 hex digits, with or without `:` / `-` separators,
/// kept as 12 lower-case hex digits (as the firmware prints it).
public struct MACAddress: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// 12 lower-case hex digits, no separators.
    public let hex: String

    /// Accepts `a4cf120b9e31`, `A4:CF:12:0B:9E:31` or `a4-cf-12-0b-9e-31` (one
    /// separator kind throughout); surrounding whitespace is ignored.
    public init(_ text: some StringProtocol) throws(InputError) {
        let trimmed = Array(text.trimmingASCIIWhitespace)
        let fail = InputError.macFormat(String(decoding: trimmed, as: UTF8.self))
        var digits = [UInt8]()
        if trimmed.count == 17 {
            let separator = trimmed[2]
            guard separator == UInt8(ascii: ":") || separator == UInt8(ascii: "-") else { throw fail }
            for (i, c) in trimmed.enumerated() {
                if i % 3 == 2 { guard c == separator else { throw fail } } else { digits.append(c) }
            }
        } else if trimmed.count == 12 {
            digits = trimmed
        } else {
            throw fail
        }
        guard digits.allSatisfy(Hex.isHexDigit) else { throw fail }
        hex = String(decoding: digits, as: UTF8.self).lowercased()
    }

    public var description: String { hex }

    public static func < (a: Self, b: Self) -> Bool { a.hex < b.hex }
}
