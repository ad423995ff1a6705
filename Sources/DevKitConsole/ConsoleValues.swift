import DevKitModel

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
            macAddress = try? MACAddress(text(rest))
        } else if let rest = after(Marker.firmwareVersion) {
            mode = mode ?? .user(.logLines)
            firmwareVersion = try? FirmwareVersion(text(rest))
        } else if let rest = after(Marker.softAP) {
            macAddress = try? MACAddress(text(rest.prefix { $0 != 0x20 }))
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

extension String {
    func trimmingSpaces() -> String {
        let bytes = Array(utf8)
        guard let first = bytes.firstIndex(where: { $0 != 0x20 && $0 != 0x09 && $0 != 0x0D }),
            let last = bytes.lastIndex(where: { $0 != 0x20 && $0 != 0x09 && $0 != 0x0D })
        else { return "" }
        return String(decoding: bytes[first...last], as: UTF8.self)
    }
}
