/// An IoT Hub device or DPS connection string (`HostName=…;DeviceId=…;SharedAccessKey=…`
/// or `DPSEndpoint=…;IdScope=…;DeviceId=…;SymmetricKey=…`): it holds a key, so it
/// is never shown. 1 to 511 bytes without control characters (what the board stores).
public struct ConnectionString: Sendable, Hashable, CustomStringConvertible,
    CustomDebugStringConvertible, CustomReflectable
{
    /// The most bytes the board stores.
    public static let maxLength = 511

    /// The secret text, for sending only.
    public let secretValue: String

    public init(_ text: String) throws(InputError) {
        let count = text.utf8.count
        guard count >= 1 else { throw .connectionStringEmpty }
        guard count <= Self.maxLength else { throw .connectionStringTooLong(count) }
        guard !containsControlCharacter(text) else { throw .controlCharacter(in: "connection string") }
        secretValue = text
    }

    public var description: String { "ConnectionString(<redacted>)" }
    public var debugDescription: String { description }
    public var customMirror: Mirror { Mirror(self, children: [], displayStyle: .struct) }
}

/// A Wi-Fi password: 0 to 63 bytes without control characters (empty: an open
/// network). Never shown.
public struct WiFiPassword: Sendable, Hashable, CustomStringConvertible,
    CustomDebugStringConvertible, CustomReflectable
{
    /// WPA2 passphrases are at most 63 bytes.
    public static let maxLength = 63

    /// The secret text, for sending only.
    public let secretValue: String

    public init(_ text: String) throws(InputError) {
        let count = text.utf8.count
        guard count <= Self.maxLength else { throw .wifiPasswordTooLong(count) }
        guard !containsControlCharacter(text) else { throw .controlCharacter(in: "password") }
        secretValue = text
    }

    /// No password: an open network.
    public static let openNetwork = try! WiFiPassword("")

    public var isEmpty: Bool { secretValue.isEmpty }

    public var description: String { "WiFiPassword(<redacted>)" }
    public var debugDescription: String { description }
    public var customMirror: Mirror { Mirror(self, children: [], displayStyle: .struct) }
}

/// Whether `text` holds a byte the console cannot take (below 0x20, or DEL).
public func containsControlCharacter(_ text: some StringProtocol) -> Bool {
    text.utf8.contains { $0 < 0x20 || $0 == 0x7F }
}
