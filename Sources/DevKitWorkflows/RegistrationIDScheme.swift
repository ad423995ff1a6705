import DevKitConsole
import Foundation

/// How a board's registration ID (the certificate CN, the DPS enrollment ID) is chosen.
public enum RegistrationIDScheme: Sendable, Equatable, CustomStringConvertible {
    /// What the firmware derives by itself: `az-<mac>v<version, '.'→'v'>`.
    case derived
    /// A template with placeholders `{mac}`, `{serial}` (USB serial, lower-cased) and
    /// `{version}` (firmware version, '.'→'v'), e.g. `bench-{mac}`. The sketch must
    /// then be configured with the same ID, or DPS refuses the device.
    case template(String)

    /// The placeholders a template may use.
    public static let placeholders = ["mac", "serial", "version"]

    /// Parses `derived` or a template; checks the template's literal characters and
    /// placeholders now, so a bad profile fails before any board is touched.
    public init(parsing text: String) throws(RegistrationIDError) {
        if text == "derived" {
            self = .derived
            return
        }
        var rest = Substring(text)
        // {version} alone is the same for every board of a bench: their files and
        // enrollments would overwrite each other.
        var namesTheBoard = false
        while let open = rest.firstIndex(of: "{") {
            try Self.checkLiteral(rest[..<open], in: text)
            guard let close = rest[open...].firstIndex(of: "}") else {
                throw .badTemplate(text, "a '{' is not closed")
            }
            let name = String(rest[rest.index(after: open)..<close])
            guard Self.placeholders.contains(name) else {
                throw .badTemplate(text, "unknown placeholder {\(name)}; allowed: {mac}, {serial}, {version}")
            }
            if name == "mac" || name == "serial" { namesTheBoard = true }
            rest = rest[rest.index(after: close)...]
        }
        try Self.checkLiteral(rest, in: text)
        guard namesTheBoard else {
            throw .badTemplate(
                text, "it has neither {mac} nor {serial}, so boards would get the same ID; use {mac} or {serial}")
        }
        self = .template(text)
    }

    public var description: String {
        switch self {
        case .derived: "derived"
        case .template(let t): t
        }
    }

    /// `az-<mac>v<version with '.'→'v'>`, e.g. `az-a4cf120b9e31v1v6v2`.
    public static func derivedID(mac: String, firmwareVersion: String) -> String {
        // The console's rule, not Foundation's `replacingOccurrences`, whose first use
        // (NSString bridging) takes 0.2 ms on a board's path to its certificate.
        "az-\(mac.lowercased())v\(registrationIDVersion(firmwareVersion))"
    }

    /// The registration ID for one board, validated.
    public func registrationID(
        mac: String?, usbSerial: String?, firmwareVersion: String?
    ) throws(RegistrationIDError) -> String {
        let id: String
        switch self {
        case .derived:
            guard let mac else { throw .missing("mac", scheme: description) }
            guard let firmwareVersion else { throw .missing("version", scheme: description) }
            id = Self.derivedID(mac: mac, firmwareVersion: firmwareVersion)
        case .template(let template):
            var result = template
            for (name, value) in [
                ("mac", mac?.lowercased()), ("serial", usbSerial?.lowercased()),
                ("version", firmwareVersion.map(registrationIDVersion)),
            ] where result.contains("{\(name)}") {
                guard let value else { throw .missing(name, scheme: description) }
                result = result.replacing("{\(name)}", with: value)
            }
            id = result
        }
        try Self.validate(id)
        return id
    }

    /// 1 to 126 characters of `a-z`, `0-9`, `-` (what the firmware's certificate encoder takes).
    public static func validate(_ id: String) throws(RegistrationIDError) {
        guard (1...126).contains(id.utf8.count), id.utf8.allSatisfy(isAllowed) else {
            throw .invalid(id)
        }
    }

    private static func isAllowed(_ c: UInt8) -> Bool {
        (c >= 0x61 && c <= 0x7A) || (c >= 0x30 && c <= 0x39) || c == 0x2D
    }

    private static func checkLiteral(_ s: Substring, in text: String) throws(RegistrationIDError) {
        if let bad = s.utf8.first(where: { !isAllowed($0) }) {
            throw .badTemplate(
                text, "'\(Character(Unicode.Scalar(bad)))' is not allowed; use a-z, 0-9, - and {mac}, {serial}, {version}")
        }
    }
}

/// A registration ID or scheme that cannot be used.
public enum RegistrationIDError: Error, Sendable, Equatable, CustomStringConvertible {
    case badTemplate(String, String)
    case missing(String, scheme: String)
    case invalid(String)

    public var description: String {
        switch self {
        case .badTemplate(let t, let why):
            "registration ID template '\(t)': \(why)"
        case .missing(let name, let scheme):
            "registration ID scheme '\(scheme)' needs the board's \(name), which is not known"
        case .invalid(let id):
            "registration ID '\(id)' must be 1 to 126 characters of a-z, 0-9 and -"
        }
    }
}
