import DevKitModel

/// One thing a board's user-mode line says (devkit-user-mode-log.md, the
/// firmware's own words). Lines not listed here are the sketch's own: ignored.
public enum LogEvent: Sendable, Equatable {
    // Identity, printed before DPS.
    case macAddress(MACAddress)
    case firmwareVersion(String)
    case dpsVersion(String)
    /// From the HTTP trace's `PUT /<scope>/registrations/<id>/register`.
    case registrationID(String)
    // Progress.
    case provisioningStatus(String)
    // Outcome.
    case assigned(hub: String)
    case registrationFailed
    case httpStatus(Int)
    /// A DPS error body's `errorCode` (401002: the certificate is not the enrolled one).
    case errorCode(Int)
    case unauthorized
    case disabled
    // The board never contacts DPS.
    case noUDS
    case udsInvalid
    case diceInitFailed
    /// The TLS platform or its trusted roots could not be set up.
    case platformFailed
    /// A TLS handshake error the firmware names (text varies: binary libraries).
    case tlsError
    /// DPS could not be reached or did not answer.
    case connectionError
    case noWiFi
    /// `>>>Connection status: <s>` of the IoT Hub client, after DPS.
    case hubConnection(String)
}

/// A line as read: the text, the message without the logger's prefix, and what
/// it means, if we know.
public struct LogLine: Sendable, Equatable {
    public let text: String
    public let message: String
    public let event: LogEvent?

    public init(_ text: String) {
        self.text = text
        message = LogLine.strippingPrefix(text)
        event = LogLine.recognise(message)
    }

    /// The message without either logger's prefix: `Info: `, `Error: Time:… Line:<n> `,
    /// `YYYY-mm-dd HH:MM:SS INFO:  `, `YYYY-mm-dd HH:MM:SS ERROR: <file> (ln <n>): `.
    public static func strippingPrefix(_ line: String) -> String {
        if let m = line.prefixMatch(of: #/Info:\s+/#) { return String(line[m.range.upperBound...]) }
        if let m = line.prefixMatch(of: #/Error:\s+Time:.*?\bLine:\d+\s*/#) { return String(line[m.range.upperBound...]) }
        if let m = line.prefixMatch(of: #/\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (?:INFO|WARN|TRACE):\s+/#) {
            return String(line[m.range.upperBound...])
        }
        if let m = line.prefixMatch(of: #/\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ERROR: .*?\(ln \d+\):\s*/#) {
            return String(line[m.range.upperBound...])
        }
        return line
    }

    static func recognise(_ raw: String) -> LogEvent? {
        let m = raw.trimmingCharacters()
        if let r = m.firstMatch(of: #/DevKit MAC Address:\s*(\S+)/#), let mac = try? MACAddress(r.1) {
            return .macAddress(mac)
        }
        if let r = m.firstMatch(of: #/DevKit Firmware Version:\s*(\S+)/#) { return .firmwareVersion(String(r.1)) }
        if let r = m.firstMatch(of: #/^DPS Version:\s*(\S+)/#) { return .dpsVersion(String(r.1)) }
        if let r = m.firstMatch(of: #/PUT /[^/\s]+/registrations/([^/\s]+)/register/#) {
            return .registrationID(String(r.1))
        }
        if let r = m.firstMatch(of: #/>>>Provisioning Status: PROV_DEVICE_REG_STATUS_(\w+)/#) {
            return .provisioningStatus(String(r.1))
        }
        if let r = m.firstMatch(of: #/^Registration status: (\w+)/#) { return .provisioningStatus(String(r.1)) }
        if let r = m.firstMatch(of: #/Registration Information received from service: (.+?)!?$/#) {
            return .assigned(hub: String(r.1))
        }
        if m.contains("Failure encountered on registration!") || m == "registration failed!"
            || m.hasSuffix("registration failed!")
        {
            return .registrationFailed
        }
        if let r = m.firstMatch(of: #/HTTP Status:\s*(\d{3})/#), let code = Int(r.1) { return .httpStatus(code) }
        if let r = m.firstMatch(of: #/"errorCode"\s*:\s*(\d+)/#), let code = Int(r.1) { return .errorCode(code) }
        if m.contains("has been disabled by DPS service") || m.contains("provisioning result is disabled") {
            return .disabled
        }
        if m.contains("is unauthorized with service") || m.contains("provisioning result is unauthorized") {
            return .unauthorized
        }
        if m.contains("Unable to get DPS UDS string from EEPROM") || m.contains("The DPS UDS string is empty") {
            return .noUDS
        }
        if m.contains("The length of DPS UDS string must be 64") { return .udsInvalid }
        if m.contains("DiceInit failed!") { return .diceInitFailed }
        if m.contains("Failed to initialize the platform") || m.contains("Failed to set option \"TrustedCerts\"") {
            return .platformFailed
        }
        let lower = m.lowercased()
        if lower.contains("certificate verify failed") || lower.contains("x509 - certificate verification failed")
            || lower.contains("ssl - ") || lower.contains("tls handshake") || lower.contains("tlsio")
        {
            return .tlsError
        }
        if m.contains("Failure retrieving data from the provisioning service")
            || m.contains("Timeout waiting for reply") || m.contains("Timed out connecting to provisioning service")
            || m.contains("Failure sending data") || m.contains("Failed opening connection")
        {
            return .connectionError
        }
        if m.hasPrefix(">>>No Wi-Fi.") { return .noWiFi }
        if let r = m.firstMatch(of: #/>>>Connection status: (\w+)/#) { return .hubConnection(String(r.1)) }
        return nil
    }
}

extension String {
    /// Without leading and trailing blanks (the firmware indents some lines).
    func trimmingCharacters() -> String {
        let u = Array(utf8)
        var s = 0, e = u.count
        while s < e && (u[s] == 0x20 || u[s] == 0x09) { s += 1 }
        while e > s && (u[e - 1] == 0x20 || u[e - 1] == 0x09) { e -= 1 }
        return String(decoding: u[s..<e], as: UTF8.self)
    }
}
