import DevKitModel

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

    /// Whether the ID needs the board's `mac`, `serial` or `version` (a placeholder
    /// name): the provisioning workflow computes the ID before the board is touched
    /// when everything it needs is known by then.
    public func uses(_ placeholder: String) -> Bool {
        switch self {
        case .derived: placeholder == "mac" || placeholder == "version"
        case .template(let template): template.contains("{\(placeholder)}")
        }
    }

    /// The registration ID for one board, validated.
    public func registrationID(
        mac: MACAddress?, usbSerial: String?, firmwareVersion: FirmwareVersion?
    ) throws(RegistrationIDError) -> RegistrationID {
        switch self {
        case .derived:
            guard let mac else { throw .missing("mac", scheme: description) }
            guard let firmwareVersion else { throw .missing("version", scheme: description) }
            do {
                return try RegistrationID(mac: mac, firmwareVersion: firmwareVersion)
            } catch {
                throw .invalidDerived(error)
            }
        case .template(let template):
            var result = template
            for (name, value) in [
                ("mac", mac?.hex), ("serial", usbSerial?.lowercased()),
                ("version", firmwareVersion?.registrationIDForm),
            ] where result.contains("{\(name)}") {
                guard let value else { throw .missing(name, scheme: description) }
                result = result.replacing("{\(name)}", with: value)
            }
            return try Self.validate(result)
        }
    }

    /// 1 to 126 characters of `a-z`, `0-9`, `-` (what the firmware's certificate encoder takes).
    public static func validate(_ id: String) throws(RegistrationIDError) -> RegistrationID {
        do { return try RegistrationID(id) } catch { throw .invalid(id, error) }
    }

    private static func isAllowed(_ c: UInt8) -> Bool { RegistrationID.isAllowed(c) }

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
    /// The ID and why it cannot be used.
    case invalid(String, InputError)
    /// The ID the firmware would derive (`az-<mac>v<version>`) breaks the rules.
    case invalidDerived(InputError)

    public var description: String {
        switch self {
        case .badTemplate(let t, let why):
            "registration ID template '\(t)': \(why)"
        case .missing(let name, let scheme):
            "registration ID scheme '\(scheme)' needs the board's \(name), which is not known"
        case .invalid(let id, _):
            "registration ID '\(escaped(id))' must be 1 to 126 characters of a-z, 0-9 and -"
        case .invalidDerived(let error):
            "the registration ID derived from the MAC and firmware version cannot be used: \(error)"
        }
    }
}
