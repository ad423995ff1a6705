/// A DevKit firmware (DevKitSDK) version, `<major>.<minor>.<patch>`, any number of digits each.
public struct FirmwareVersion: Sendable, Hashable, CustomStringConvertible {
    /// The version as printed, e.g. `1.6.2`.
    public let text: String

    /// Accepts exactly three dot-separated runs of ASCII digits; surrounding
    /// whitespace is ignored.
    public init(_ text: some StringProtocol) throws(InputError) {
        let trimmed = String(Substring(text.trimmingASCIIWhitespace))
        let parts = trimmed.utf8.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        guard parts.count == 3,
            parts.allSatisfy({ !$0.isEmpty && $0.allSatisfy { $0 >= 0x30 && $0 <= 0x39 } })
        else { throw .firmwareVersionFormat(trimmed) }
        self.text = trimmed
    }

    /// As the firmware writes it in a registration ID: `1.6.2` → `1v6v2`.
    public var registrationIDForm: String {
        String(decoding: text.utf8.map { $0 == UInt8(ascii: ".") ? UInt8(ascii: "v") : $0 }, as: UTF8.self)
    }

    public var description: String { text }
}
