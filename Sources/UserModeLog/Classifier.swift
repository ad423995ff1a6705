import DevKitModel

/// How a board's registration with DPS went, as its user-mode log tells it.
public enum RegistrationOutcome: Sendable, Equatable {
    case assigned(hub: String)
    /// Assigned and connected to its hub (`hub` nil: the sketch skipped DPS).
    case hubConnected(hub: String?)
    case unauthorized
    case disabled
    case noUDS
    case udsInvalid
    case noWiFi
    case tlsFailed
    case unreachable
    case timeout

    /// The name used in JSON, the registry and on screen.
    public var name: String {
        switch self {
        case .assigned: "assigned"
        case .hubConnected: "hub_connected"
        case .unauthorized: "unauthorized"
        case .disabled: "disabled"
        case .noUDS: "no_uds"
        case .udsInvalid: "uds_invalid"
        case .noWiFi: "no_wifi"
        case .tlsFailed: "tls_failed"
        case .unreachable: "unreachable"
        case .timeout: "timeout"
        }
    }

    public var isSuccess: Bool {
        switch self {
        case .assigned, .hubConnected: true
        default: false
        }
    }

    public var hub: String? {
        switch self {
        case .assigned(let h): h
        case .hubConnected(let h): h
        default: nil
        }
    }
}

/// What the board said about itself before registering.
public struct BoardIdentity: Sendable, Equatable {
    public var mac: MACAddress?
    public var firmwareVersion: String?
    public var dpsVersion: String?
    /// The registration ID the board sent (HTTP trace), if traced.
    public var registrationID: String?
    public init() {}
}

/// Folds a board's lines into an outcome and the lines that decided it. Pure: the
/// caller reads the port and says when time is up.
public struct RegistrationClassifier: Sendable {
    public private(set) var identity = BoardIdentity()
    /// Set once the log has decided; `hubConnected` may still follow `assigned`.
    public private(set) var outcome: RegistrationOutcome?
    /// The lines that explain the outcome (masked), oldest first.
    public private(set) var evidence: [String] = []
    /// The last `PROV_DEVICE_REG_STATUS_*` seen (where a timeout stopped).
    public private(set) var lastStatus: String?
    /// The HTTP status DPS answered with, if traced.
    public private(set) var httpStatus: Int?
    /// The DPS error body's `errorCode`, if traced (401002: not the enrolled certificate).
    public private(set) var errorCode: Int?

    var sawUnauthorized = false
    var sawDisabled = false
    var sawTLS = false
    var sawConnectionError = false

    /// Evidence kept at most (a board retrying for minutes prints a lot).
    public static let maxEvidence = 24

    public init() {}

    /// Takes one line; returns the outcome if this line decided or changed it.
    @discardableResult
    public mutating func take(_ line: LogLine) -> RegistrationOutcome? {
        guard let event = line.event else { return nil }
        let before = outcome
        switch event {
        case .macAddress(let mac): identity.mac = mac; return nil
        case .firmwareVersion(let v): identity.firmwareVersion = v; return nil
        case .dpsVersion(let v): identity.dpsVersion = v; return nil
        case .registrationID(let id): identity.registrationID = id; note(line); return nil
        case .provisioningStatus(let s):
            lastStatus = s
            if s == "ERROR" { note(line) }
            return nil
        case .assigned(let hub):
            note(line)
            if outcome == nil || !(outcome!.isSuccess) { outcome = .assigned(hub: hub) }
        case .hubConnection(let state):
            note(line)
            if state == "connected" {
                switch outcome {
                case .assigned(let hub): outcome = .hubConnected(hub: hub)
                case nil: outcome = .hubConnected(hub: nil)
                default: break
                }
            }
        case .httpStatus(let code):
            httpStatus = code
            note(line)
            if code == 401 { sawUnauthorized = true }
        case .errorCode(let code):
            errorCode = code
            note(line)
            if code / 1000 == 401 { sawUnauthorized = true }
        case .unauthorized:
            sawUnauthorized = true
            note(line)
            decide(.unauthorized)
        case .disabled:
            sawDisabled = true
            note(line)
            decide(.disabled)
        case .noUDS: note(line); decide(.noUDS)
        case .udsInvalid, .diceInitFailed: note(line); decide(.udsInvalid)
        case .noWiFi: note(line); decide(.noWiFi)
        case .platformFailed: sawTLS = true; note(line); decide(.tlsFailed)
        case .tlsError: sawTLS = true; note(line)
        case .connectionError: sawConnectionError = true; note(line)
        case .registrationFailed:
            note(line)
            decide(
                sawDisabled ? .disabled
                    : sawUnauthorized ? .unauthorized
                    : sawTLS ? .tlsFailed
                    : .unreachable)
        }
        return outcome != before ? outcome : nil
    }

    /// The verdict when time is up: what the log decided, or `timeout`.
    public var outcomeAtTimeout: RegistrationOutcome { outcome ?? .timeout }

    /// A failure is decided once; success lines after a failure (a retry that
    /// worked) still win, handled in `.assigned`.
    mutating func decide(_ o: RegistrationOutcome) {
        if outcome == nil { outcome = o }
    }

    mutating func note(_ line: LogLine) {
        evidence.append(LogMasking.mask(line.text))
        if evidence.count > Self.maxEvidence { evidence.removeFirst(evidence.count - Self.maxEvidence) }
    }
}

/// Bytes in, lines and outcome out: the splitter and the classifier together.
public struct UserModeLogReader: Sendable {
    public private(set) var splitter = LineSplitter()
    public private(set) var classifier = RegistrationClassifier()

    public init() {}

    /// The lines `bytes` completed, each recognised and taken by the classifier.
    public mutating func feed(_ bytes: some Sequence<UInt8>) -> [LogLine] {
        let lines = splitter.feed(bytes).map(LogLine.init)
        for line in lines { classifier.take(line) }
        return lines
    }

    /// The unfinished last line, recognised too (end of the stream).
    public mutating func finish() -> LogLine? {
        guard let text = splitter.finish() else { return nil }
        let line = LogLine(text)
        classifier.take(line)
        return line
    }
}
