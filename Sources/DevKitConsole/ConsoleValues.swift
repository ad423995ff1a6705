/// A DevKit firmware (DevKitSDK) version, `<major>.<minor>.<patch>`, any number of digits each.
public struct FirmwareVersion: Sendable, Hashable, CustomStringConvertible {
    /// The version as printed, e.g. `1.6.2`.
    public let text: String

    /// Accepts exactly three dot-separated runs of ASCII digits.
    public init?(_ text: String) {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3,
            parts.allSatisfy({ !$0.isEmpty && $0.utf8.allSatisfy { $0 >= 0x30 && $0 <= 0x39 } })
        else { return nil }
        self.text = text
    }

    public var description: String { text }
}

/// A DevKit's Wi-Fi MAC address, normalised to 12 lower-case hex digits.
public struct MACAddress: Sendable, Hashable, CustomStringConvertible {
    /// 12 lower-case hex digits, no separators, as the firmware prints it.
    public let hex: String

    /// Accepts `a4cf120b9e31`, `A4:CF:12:0B:9E:31` or `a4-cf-12-0b-9e-31`.
    public init?(_ text: String) {
        var digits = text.lowercased()
        if digits.count == 17 {
            let separators = Set(digits.enumerated().filter { $0.offset % 3 == 2 }.map(\.element))
            guard separators == [":"] || separators == ["-"] else { return nil }
            digits.removeAll { $0 == ":" || $0 == "-" }
        }
        guard digits.utf8.count == 12, digits.utf8.allSatisfy(isHexDigit) else { return nil }
        hex = digits
    }

    public var description: String { hex }
}

/// The registration ID the firmware derives when the sketch gives none:
/// `az-<mac>v<firmware version with every '.' replaced by 'v'>`.
public func derivedRegistrationID(mac: MACAddress, firmwareVersion: FirmwareVersion) -> String {
    "az-\(mac.hex)v" + registrationIDVersion(firmwareVersion.text)
}

/// A firmware version as the firmware writes it in a registration ID: `1.6.2` → `1v6v2`.
public func registrationIDVersion(_ version: String) -> String {
    version.replacingAll(".", with: "v")
}

/// What `version` prints.
public struct VersionInfo: Sendable, Hashable {
    /// `DevKitSDK version`: the firmware version the certificate and registration ID depend on.
    public var firmwareVersion: FirmwareVersion
    /// `Mico version`.
    public var mico: String?
    /// `mbed-os version`.
    public var mbedOS: String?
    /// `mbed TLS version`.
    public var mbedTLS: String?
    /// `WIFI version`; nil when the board says `unknown`.
    public var wifi: String?

    public init(firmwareVersion: FirmwareVersion, mico: String? = nil, mbedOS: String? = nil,
                mbedTLS: String? = nil, wifi: String? = nil) {
        self.firmwareVersion = firmwareVersion
        self.mico = mico
        self.mbedOS = mbedOS
        self.mbedTLS = mbedTLS
        self.wifi = wifi
    }
}

/// One line of the `help` text: ` - <name>: <help>.`
public struct HelpEntry: Sendable, Hashable {
    public var name: String
    public var help: String
    public init(name: String, help: String) {
        self.name = name
        self.help = help
    }
}

/// The outcomes of `enable_secure` other than failure.
public enum SecureChannelResult: Sendable, Hashable {
    case enabled
    case alreadyEnabled
}

/// What the board printed after `exit` (or after any reset), as far as it was read.
public struct BootLog: Sendable, Hashable {
    /// The mode the board came up in, once known.
    public var mode: BoardMode?
    /// From `DevKit MAC Address: <mac>` (user mode) or `Soft AP AZ-<mac>` (AP mode).
    public var macAddress: MACAddress?
    /// From `DevKit Firmware Version: <x.y.z>` (user mode, DPS sample sketch).
    public var firmwareVersion: FirmwareVersion?
    /// Whether the MXChip banner was seen.
    public var sawBanner = false
    /// Complete lines read so far, without line ends.
    public var lines: [String] = []

    public init() {}

    /// Complete when the board told its MAC: both user-mode log lines, the AP-mode
    /// line, or it came back in configuration mode (where it never prints the MAC).
    public var isComplete: Bool {
        switch mode {
        case .accessPoint: return macAddress != nil
        case .configuration: return true
        default: return macAddress != nil && firmwareVersion != nil
        }
    }

    /// Feeds one complete line (without its line end).
    ///
    /// The markers are ASCII, so they are found in the line's UTF-8 bytes: String's
    /// Character-wise search, seven times per line of a boot log, was 5% of the
    /// watch daemon's CPU with 16 boards.
    public mutating func consume(line: String) {
        lines.append(line)
        let bytes = Array(line.utf8)
        func has(_ marker: [UInt8]) -> Bool { ConsoleSession.firstRange(of: marker, in: bytes) != nil }
        func after(_ marker: [UInt8]) -> ArraySlice<UInt8>? {
            ConsoleSession.firstRange(of: marker, in: bytes).map { bytes[$0.upperBound...] }
        }
        func text(_ slice: ArraySlice<UInt8>) -> String { String(decoding: slice, as: UTF8.self) }
        if has(Marker.banner) { sawBanner = true }
        if has(Marker.userModeHint) { mode = mode ?? .user(.banner) }
        if let rest = after(Marker.mac) {
            mode = mode ?? .user(.logLines)
            macAddress = MACAddress(text(rest).trimmingSpaces())
        } else if let rest = after(Marker.firmwareVersion) {
            mode = mode ?? .user(.logLines)
            firmwareVersion = FirmwareVersion(text(rest).trimmingSpaces())
        } else if let rest = after(Marker.softAP) {
            macAddress = MACAddress(text(rest.prefix { $0 != 0x20 }))
            mode = .accessPoint(mac: macAddress)
        } else if bytes.starts(with: Marker.configurationConsole) {
            mode = .configuration
        } else if mode == nil, has(Marker.info) || has(Marker.error) {
            mode = .user(.logLines)
        }
    }

    private enum Marker {
        static let banner = Array("MXChip - Microsoft IoT Developer Kit".utf8)
        static let userModeHint = Array("You can 1. press Button A".utf8)
        static let mac = Array("DevKit MAC Address:".utf8)
        static let firmwareVersion = Array("DevKit Firmware Version:".utf8)
        static let softAP = Array("Soft AP AZ-".utf8)
        static let configurationConsole = Array("Configuration console:".utf8)
        static let info = Array(" INFO: ".utf8)
        static let error = Array(" ERROR: ".utf8)
    }

    /// Parses a whole captured boot log (`\r\n` or `\n` line ends).
    public static func parse(_ text: String) -> BootLog {
        var log = BootLog()
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            log.consume(line: String(line.hasSuffix("\r") ? line.dropLast() : line))
        }
        return log
    }
}

func isHexDigit(_ byte: UInt8) -> Bool {
    (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x46) || (byte >= 0x61 && byte <= 0x66)
}

extension String {
    func trimmingSpaces() -> String {
        let bytes = Array(utf8)
        guard let first = bytes.firstIndex(where: { $0 != 0x20 && $0 != 0x09 && $0 != 0x0D }),
            let last = bytes.lastIndex(where: { $0 != 0x20 && $0 != 0x09 && $0 != 0x0D })
        else { return "" }
        return String(decoding: bytes[first...last], as: UTF8.self)
    }

    func replacingAll(_ target: Character, with replacement: Character) -> String {
        String(map { $0 == target ? replacement : $0 })
    }
}
