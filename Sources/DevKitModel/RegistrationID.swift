/// A DPS registration ID (the certificate's subject CN) that the DevKit firmware can
/// encode: 1 to 126 characters of `a-z 0-9 -`.
public struct RegistrationID: Sendable, Hashable, Comparable, CustomStringConvertible {
    public let value: String

    /// The longest ID DPS documents for X.509 enrollments; longer ones work on the
    /// device but DPS may refuse them.
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

    /// True when DPS documents it may refuse this ID (over 64 characters).
    public var exceedsDocumentedDPSLimit: Bool { value.utf8.count > Self.documentedDPSLimit }

    public var description: String { value }

    public static func < (a: Self, b: Self) -> Bool { a.value < b.value }
}
