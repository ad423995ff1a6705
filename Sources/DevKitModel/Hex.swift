/// Hex digits, the one place devkit reads and writes them.
///
/// By hand because the standard library has no hex codec and Foundation's would be
/// a dependency for four small loops.
public enum Hex {
    /// `0-9`, `a-f` or `A-F`.
    @inlinable
    public static func isHexDigit(_ c: UInt8) -> Bool { value(c) != nil }

    /// The digit's value, or nil when `c` is not a hex digit.
    @inlinable
    public static func value(_ c: UInt8) -> UInt8? {
        switch c {
        case 0x30...0x39: return c - 0x30
        case 0x41...0x46: return c - 0x41 + 10
        case 0x61...0x66: return c - 0x61 + 10
        default: return nil
        }
    }

    /// Two hex digits per byte, lower case unless `uppercase`.
    public static func encode(_ bytes: some Sequence<UInt8>, uppercase: Bool = false) -> String {
        let digits = uppercase ? upperDigits : lowerDigits
        var out = [UInt8]()
        out.reserveCapacity(bytes.underestimatedCount * 2)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0xF)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The same for bytes in memory, written straight into the string (one allocation):
    /// the generic one is not specialised across modules, and a batch hex-encodes
    /// two thumbprints per device.
    public static func encode(_ bytes: UnsafeRawBufferPointer, uppercase: Bool = false) -> String {
        let digits: StaticString = uppercase ? "0123456789ABCDEF" : "0123456789abcdef"
        return digits.withUTF8Buffer { digits in
            String(unsafeUninitializedCapacity: bytes.count * 2) { out in
                for (i, b) in bytes.enumerated() {
                    out[2 * i] = digits[Int(b >> 4)]
                    out[2 * i + 1] = digits[Int(b & 0xF)]
                }
                return bytes.count * 2
            }
        }
    }

    /// The bytes of an even number of hex digits (either case), or nil.
    public static func decode(_ text: some StringProtocol) -> [UInt8]? {
        var bytes = [UInt8]()
        bytes.reserveCapacity(text.utf8.count / 2)
        var high: UInt8? = nil
        for c in text.utf8 {
            guard let nibble = value(c) else { return nil }
            if let h = high { bytes.append(h << 4 | nibble); high = nil } else { high = nibble }
        }
        return high == nil ? bytes : nil
    }

    private static let lowerDigits = Array("0123456789abcdef".utf8)
    private static let upperDigits = Array("0123456789ABCDEF".utf8)
}

extension StringProtocol {
    /// Without surrounding ASCII whitespace (space, tab, CR, LF), as devkit reads values.
    var trimmingASCIIWhitespace: Substring.UTF8View.SubSequence {
        let utf8 = Substring(self).utf8
        guard let first = utf8.firstIndex(where: { !$0.isASCIIWhitespace }) else { return utf8[utf8.endIndex...] }
        let last = utf8.lastIndex(where: { !$0.isASCIIWhitespace })!
        return utf8[first...last]
    }
}

extension UInt8 {
    /// Space, tab, CR or LF: the whitespace devkit trims around values.
    var isASCIIWhitespace: Bool { self == 0x20 || self == 0x09 || self == 0x0A || self == 0x0D }
}
