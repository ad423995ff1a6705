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

/// The shortest run of a secret's characters that is masked where it shows up in
/// text (a board's reply quoting it, for instance). Shorter runs are left alone:
/// words such as `Invalid` would otherwise match parts of a long connection string.
public let secretFragmentLength = 8

/// `text` with every run of `secretFragmentLength` or more characters that also
/// occurs in one of `secrets`, and every whole occurrence of a shorter secret,
/// replaced by `***` (ASCII case ignored, as a board may
/// print hex in either case). The one masking function for what a board printed
/// in answer to a secret command: session errors, the console's screen and its
/// transcript all pass through it. Written here because no library masks
/// substrings of a secret; linear in the text for each secret.
public func maskingSecrets(_ secrets: [String], in text: String) -> String {
    let n = secretFragmentLength
    var bytes = Array(text.utf8)
    func folded(_ b: UInt8) -> UInt8 { (0x41...0x5A).contains(b) ? b | 0x20 : b }
    var covered = [Bool](repeating: false, count: bytes.count)
    for secret in secrets {
        let s = secret.utf8.map(folded)
        guard !s.isEmpty else { continue }
        // A secret shorter than n (a short Wi-Fi password) has no n-byte part, but
        // the secret itself must still never show: its whole occurrences are masked.
        let w = min(n, s.count)
        guard bytes.count >= w else { continue }
        // Every w-byte window of the secret; a text window found among them is part
        // of the secret, and overlapping windows cover every longer run.
        var windows = Set<ArraySlice<UInt8>>()
        for start in 0...(s.count - w) { windows.insert(s[start..<(start + w)]) }
        let t = bytes.map(folded)
        for start in 0...(t.count - w) where windows.contains(t[start..<(start + w)]) {
            for i in start..<(start + w) { covered[i] = true }
        }
    }
    guard covered.contains(true) else { return text }
    var result: [UInt8] = []
    var i = 0
    while i < bytes.count {
        if covered[i] {
            result += Array("***".utf8)
            while i < bytes.count && covered[i] { i += 1 }
        } else {
            result.append(bytes[i])
            i += 1
        }
    }
    bytes = result
    return String(decoding: bytes, as: UTF8.self)
}

/// `bytes` with every run of 64 or more hex digits (the shape of a UDS, or of a key
/// in hex) replaced by `***`; shorter runs (a MAC, a hash prefix) stay. For text
/// that may hold a secret devkit does not know as one: what a sketch prints unasked,
/// a value refused in the wrong place (a UDS in a batch line's `mac`).
public func maskingHexRuns(_ text: some StringProtocol) -> String {
    String(decoding: maskingHexRuns(Array(text.utf8)), as: UTF8.self)
}

/// The same, on bytes.
public func maskingHexRuns(_ bytes: [UInt8]) -> [UInt8] {
    var out: [UInt8] = []
    var i = 0
    while i < bytes.count {
        var j = i
        while j < bytes.count && Hex.isHexDigit(bytes[j]) { j += 1 }
        if j - i >= 64 {
            out += Array("***".utf8)
            i = j
        } else if j > i {
            out += bytes[i..<j]
            i = j
        } else {
            out.append(bytes[i])
            i += 1
        }
    }
    return out
}
