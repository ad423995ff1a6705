/// A DPS registration ID (the certificate's subject CN) that the DevKit firmware can
/// encode: 1 to 126 characters of `a-z 0-9 -`.
public struct RegistrationID: Sendable, Hashable, Comparable, CustomStringConvertible {
    public let value: String

    /// The longest ID DPS documents for X.509 enrollments (the certificate's CN);
    /// longer ones work on the device but DPS refuses them for X.509.
    public static let documentedDPSLimit = 64
    /// The firmware's DER encoder cannot encode a longer subject CN.
    public static let firmwareLimit = 126

    public init(_ value: some StringProtocol) throws(InputError) {
        let value = String(value)
        let utf8 = value.utf8
        guard !utf8.isEmpty else { throw .registrationIDEmpty }
        guard utf8.count <= Self.firmwareLimit else { throw .registrationIDTooLong(utf8.count) }
        if let bad = utf8.firstIndex(where: { !Self.isAllowed($0) }) {
            let position = utf8.distance(from: utf8.startIndex, to: bad) + 1
            // The whole character (a multi-byte one too), for the message.
            let index = bad.samePosition(in: value) ?? value.index(before: value.index(after: bad))
            throw .registrationIDCharacter(String(value[index]), position: position)
        }
        self.value = value
    }

    /// The ID the firmware derives by itself when the sketch sets none:
    /// `az-<mac>v<version, '.' → 'v'>`. Subject to the same length rule as any ID,
    /// so a long firmware version is refused here, whichever command derives it.
    public init(mac: MACAddress, firmwareVersion: FirmwareVersion) throws(InputError) {
        try self.init("az-\(mac.hex)v\(firmwareVersion.registrationIDForm)")
    }

    /// Whether `c` may appear in an ID: `a-z`, `0-9`, `-`.
    public static func isAllowed(_ c: UInt8) -> Bool {
        (c >= 0x61 && c <= 0x7A) || (c >= 0x30 && c <= 0x39) || c == 0x2D
    }

    /// True when DPS refuses this ID for an X.509 enrollment (over 64 characters).
    public var exceedsDocumentedDPSLimit: Bool { value.utf8.count > Self.documentedDPSLimit }

    /// Why DPS would refuse this ID for an X.509 enrollment (longer than 64, or a
    /// `-` at either end: the firmware takes both), or nil.
    public var dpsRefusal: DPSRegistrationIDError? {
        do { try DPSRegistrationIDRules.check(value, x509: true) } catch { return error }
        return nil
    }

    public var description: String { value }

    public static func < (a: Self, b: Self) -> Bool { a.value < b.value }
}

/// The registration ID rules of the DPS service itself (not the firmware's
/// narrower `a-z 0-9 -`): up to 128 characters of ASCII letters, digits and
/// `- . _ :`, neither starting nor ending with one of `- . _ :`; an X.509
/// enrollment's ID is its certificate's subject CN, which limits it to 64. IDs are
/// case-insensitive: compare them through ``key(_:)``. The client checks an ID
/// before sending it (a clear message instead of DPS's 400) and the local DPS
/// (`emulate-dps`) refuses what the service refuses, from this one rule.
public enum DPSRegistrationIDRules {
    public static let maxLength = 128
    /// The subject CN of an X.509 certificate is at most 64 characters (RFC 5280 ub-common-name).
    public static let maxX509Length = 64

    /// Throws when DPS would refuse `id`; `x509` applies the 64-character limit.
    public static func check(_ id: String, x509: Bool = true) throws(DPSRegistrationIDError) {
        let bytes = Array(id.utf8)
        guard let first = bytes.first, let last = bytes.last else { throw .empty }
        let limit = x509 ? maxX509Length : maxLength
        // Counted in bytes: every allowed character is one byte, and a multi-byte one
        // is refused below anyway.
        guard bytes.count <= limit else { throw .tooLong(bytes.count, limit: limit, x509: x509) }
        if let bad = id.unicodeScalars.enumerated().first(where: { !isAllowed($0.element) }) {
            throw .character(String(bad.element), position: bad.offset + 1)
        }
        if isSpecial(first) || isSpecial(last) { throw .specialAtEnd }
    }

    /// The form two IDs are compared in (DPS treats them case-insensitively).
    public static func key(_ id: String) -> String { id.lowercased() }

    static func isAllowed(_ s: Unicode.Scalar) -> Bool {
        s.isASCII && (("a"..."z").contains(s) || ("A"..."Z").contains(s) || ("0"..."9").contains(s)
            || s == "-" || s == "." || s == "_" || s == ":")
    }

    static func isSpecial(_ b: UInt8) -> Bool { b == 0x2D || b == 0x2E || b == 0x5F || b == 0x3A }
}

/// Why DPS would refuse a registration ID, in the domain's words.
public enum DPSRegistrationIDError: Error, Equatable, Sendable, CustomStringConvertible {
    case empty
    case tooLong(Int, limit: Int, x509: Bool)
    case character(String, position: Int)
    case specialAtEnd

    public var description: String {
        switch self {
        case .empty: return "the registration ID is empty"
        case .tooLong(let n, let limit, let x509):
            return "the registration ID has \(n) characters; DPS allows at most \(limit)"
                + (x509 ? " for an X.509 enrollment (its certificate's subject CN)" : "")
        case .character(let c, let position):
            return "the registration ID has '\(escaped(c))' at position \(position); DPS allows only letters, digits and '-', '.', '_', ':'"
        case .specialAtEnd:
            return "the registration ID starts or ends with '-', '.', '_' or ':', which DPS does not allow"
        }
    }
}
