/// A Unique Device Secret: 32 bytes, written as 64 hex digits.
///
/// `description` never shows the secret, so a UDS that ends up in a log or an
/// error message by accident reveals nothing.
public struct UDS: Sendable, Equatable, CustomStringConvertible {
    /// The 32 secret bytes; the first two hex digits are the first byte.
    public let bytes: [UInt8]

    /// Parses 64 hex digits (either case); surrounding whitespace is ignored.
    public init(hex text: some StringProtocol) throws(InputError) {
        let trimmed = text.utf8.drop(while: isSpace).reversed().drop(while: isSpace).reversed()
        guard trimmed.count == 64 else { throw .udsLength(trimmed.count) }
        var bytes = [UInt8]()
        bytes.reserveCapacity(32)
        var high: UInt8? = nil
        for (index, char) in trimmed.enumerated() {
            guard let nibble = hexValue(char) else { throw .udsCharacter(position: index + 1) }
            if let h = high { bytes.append(h << 4 | nibble); high = nil } else { high = nibble }
        }
        self.bytes = bytes
    }

    /// Wraps 32 raw bytes.
    public init(bytes: [UInt8]) throws(InputError) {
        guard bytes.count == 32 else { throw .udsLength(bytes.count * 2) }
        self.bytes = bytes
    }

    /// The 64 lower-case hex digits, for storing the secret (never for display).
    public var hexString: String { hex(bytes) }

    public var description: String { "UDS(<redacted>)" }
}

/// A DPS registration ID the firmware can encode: 1 to 126 of `a-z 0-9 -` (spec §1).
public struct RegistrationID: Sendable, Hashable, CustomStringConvertible {
    public let value: String

    /// The longest ID DPS documents for X.509 enrollments; longer ones work on the
    /// device but DPS may refuse them.
    public static let documentedDPSLimit = 64
    /// The firmware's DER encoder cannot encode a longer subject CN.
    public static let firmwareLimit = 126

    public init(_ value: String) throws(InputError) {
        let utf8 = value.utf8
        guard !utf8.isEmpty else { throw .registrationIDEmpty }
        guard utf8.count <= Self.firmwareLimit else { throw .registrationIDTooLong(utf8.count) }
        for (index, c) in utf8.enumerated() {
            let ok = (c >= 0x61 && c <= 0x7A) || (c >= 0x30 && c <= 0x39) || c == 0x2D
            guard ok else {
                let ch = value[value.utf8.index(value.utf8.startIndex, offsetBy: index)]
                throw .registrationIDCharacter(String(ch), position: index + 1)
            }
        }
        self.value = value
    }

    /// The ID the firmware derives by itself: `az-<mac>v<version, '.' → 'v'>`.
    public init(mac: MACAddress, firmwareVersion: FirmwareVersion) {
        self.value = "az-\(mac.compact)v\(String(firmwareVersion.text.map { $0 == "." ? "v" : $0 }))"
    }

    /// True when DPS documents it may refuse this ID (over 64 characters).
    public var exceedsDocumentedDPSLimit: Bool { value.utf8.count > Self.documentedDPSLimit }

    public var description: String { value }
}

/// A Wi-Fi MAC address: 12 hex digits, with or without `:` / `-` separators.
public struct MACAddress: Sendable, Hashable, CustomStringConvertible {
    /// 12 lower-case hex digits, no separators (as the firmware prints it).
    public let compact: String

    public init(_ text: String) throws(InputError) {
        let trimmed = text.trimmingWhitespace()
        var digits = [UInt8]()
        let utf8 = Array(trimmed.utf8)
        // Either no separators, or one separator kind between every pair.
        let separators: Set<UInt8> = [0x3A, 0x2D]
        if utf8.count == 17 {
            let sep = utf8[2]
            guard separators.contains(sep) else { throw .macFormat(trimmed) }
            for (i, c) in utf8.enumerated() {
                if i % 3 == 2 { guard c == sep else { throw .macFormat(trimmed) } } else { digits.append(c) }
            }
        } else if utf8.count == 12 {
            digits = utf8
        } else {
            throw .macFormat(trimmed)
        }
        guard digits.allSatisfy({ hexValue($0) != nil }) else { throw .macFormat(trimmed) }
        compact = String(decoding: digits, as: UTF8.self).lowercased()
    }

    public var description: String { compact }
}

/// A DevKit firmware version: three dot-separated decimal numbers, any length each.
public struct FirmwareVersion: Sendable, Hashable, CustomStringConvertible {
    public let text: String

    public init(_ text: String) throws(InputError) {
        let trimmed = text.trimmingWhitespace()
        let parts = trimmed.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3,
            parts.allSatisfy({ !$0.isEmpty && $0.utf8.allSatisfy { $0 >= 0x30 && $0 <= 0x39 } })
        else { throw .firmwareVersionFormat(trimmed) }
        self.text = trimmed
    }

    public var description: String { text }
}

/// Why an input value was refused. Messages say what is allowed and never echo a UDS.
public enum InputError: Error, Equatable, Sendable, CustomStringConvertible {
    case udsLength(Int)
    case udsCharacter(position: Int)
    case registrationIDEmpty
    case registrationIDTooLong(Int)
    case registrationIDCharacter(String, position: Int)
    case macFormat(String)
    case firmwareVersionFormat(String)

    public var description: String {
        switch self {
        case .udsLength(let n):
            return "the UDS has \(n) characters; it must be exactly 64 hex digits (0-9, a-f, either case)"
        case .udsCharacter(let position):
            return "the UDS has a non-hex character at position \(position); it must be exactly 64 hex digits (0-9, a-f, either case)"
        case .registrationIDEmpty:
            return "the registration ID is empty; use 1 to 126 characters from a-z, 0-9 and '-'"
        case .registrationIDTooLong(let n):
            return "the registration ID has \(n) characters; the DevKit firmware can encode at most 126 (a-z, 0-9, '-')"
        case .registrationIDCharacter(let c, let position):
            return "the registration ID has '\(c)' at position \(position); only a-z, 0-9 and '-' are allowed (lower case)"
        case .macFormat(let text):
            return "'\(text)' is not a MAC address; use 12 hex digits, e.g. a4cf120b9e31, A4:CF:12:0B:9E:31 or a4-cf-12-0b-9e-31"
        case .firmwareVersionFormat(let text):
            return "'\(text)' is not a firmware version; use three dot-separated numbers, e.g. 1.6.2"
        }
    }
}

@inline(__always)
func hexValue(_ c: UInt8) -> UInt8? {
    switch c {
    case 0x30...0x39: return c - 0x30
    case 0x41...0x46: return c - 0x41 + 10
    case 0x61...0x66: return c - 0x61 + 10
    default: return nil
    }
}

@inline(__always)
private func isSpace(_ c: UInt8) -> Bool { c == 0x20 || c == 0x09 || c == 0x0A || c == 0x0D }

private let hexDigits = Array("0123456789abcdef".utf8)

/// Lower-case hex of some bytes.
func hex(_ bytes: some Sequence<UInt8>, uppercase: Bool = false) -> String {
    var out = [UInt8]()
    let digits = uppercase ? Array("0123456789ABCDEF".utf8) : hexDigits
    for b in bytes {
        out.append(digits[Int(b >> 4)])
        out.append(digits[Int(b & 0xF)])
    }
    return String(decoding: out, as: UTF8.self)
}

extension String {
    func trimmingWhitespace() -> String {
        let scalars = unicodeScalars
        guard let start = scalars.firstIndex(where: { !$0.properties.isWhitespace }) else { return "" }
        let end = scalars.lastIndex(where: { !$0.properties.isWhitespace })!
        return String(scalars[start...end])
    }
}
