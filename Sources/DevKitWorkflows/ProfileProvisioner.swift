import DevKitConsole
import DevKitRegistry
import Foundation
import SerialPort

/// Provisions whatever board appears on a port according to a profile: what
/// `devkit autoconfigure` does for one port and `devkit watch` for every board
/// plugged in.
///
/// A board the registry already finished (same USB serial) is left alone, unless
/// its DPS enrollment is owed (`done, not enrolled`) and the profile has a DPS:
/// then it is enrolled, without opening its port. One the registry holds
/// unfinished is resumed with its recorded UDS; any other board is provisioned
/// from scratch.
public struct ProfileProvisioner: Sendable {
    public let profile: ProvisioningProfile
    public let registry: any RegistryStore
    public let measure: FirmwareMeasurer
    public var baudRate: Int
    /// Told each DPS request (`--verbose`).
    public var dpsLog: (@Sendable (String) -> Void)?
    /// The station recorded with each new board (`--station`, default the host name).
    public var station: String?
    /// The `dps enroll --from-registry` command a verification's diagnosis names
    /// (the CLI's, with its registry, key and DPS options).
    public var enrollCommand: (@Sendable (_ boardID: Int64, _ replace: Bool) -> String)?
    /// The `--registry`/`--key-file` words of commands the runs print.
    public var registryWords: [String] = []

    public init(profile: ProvisioningProfile, registry: any RegistryStore, measure: @escaping FirmwareMeasurer,
                baudRate: Int = SerialPort.defaultBaudRate) {
        self.profile = profile
        self.registry = registry
        self.measure = measure
        self.baudRate = baudRate
    }

    /// What happened to one board.
    public enum Outcome: Sendable {
        case provisioned(ProvisionResult, resumed: Bool)
        /// The registry holds a finished row for this USB serial.
        case alreadyProvisioned(BoardRecord)
        /// The registry holds a finished row for this USB serial whose enrollment
        /// was owed: enrolled now (or still not: see its outcome).
        case enrolled(BoardRecord, ProvisionEnrollment)
    }

    /// Measures the profile's firmware now, before any board appears: a bad image
    /// is reported at start-up rather than once per board, and boards plugged in
    /// together do not queue behind the first one's measurement (the measurer
    /// caches it while the files stay unchanged).
    public func prepare() throws {
        _ = try measure(profile.firmware)
    }

    /// Provisions the board on `path`. Blocking; run one per board on its own thread.
    ///
    /// - Parameter whilePortOpen: called with the port once it is open; what it
    ///   returns is called just before the port closes (`autoconfigure` turns stop
    ///   signals into a cancellation of the port for that span).
    /// - Parameter transport: what the console session talks through, given the
    ///   open port (the CLI's `--verbose` wraps it to show the exchange).
    public func provision(
        path: String, usbSerial: String?, report: @escaping (ProvisionEvent) -> Void,
        afterStep: @escaping @Sendable (ProvisioningStep, BoardRecord) -> Void = { _, _ in },
        whilePortOpen: ((SerialPort) -> () -> Void)? = nil,
        transport: (SerialPort) -> any ConsoleTransport = { $0 }
    ) throws -> Outcome {
        // Claimed before the registry is read (a shared registry): what is decided
        // below (new, resume, already done, enrollment owed) stays true while this
        // station holds the board. The workflow's own claims nest inside this one.
        let claimed = BoardClaimKeys.board(mac: nil, usbSerial: usbSerial)
        try registry.claim(claimed, station: station, reporting: report)
        defer { registry.release(boards: claimed) }
        var previous: BoardRecord?
        if let usbSerial {
            previous = try registry.board(byUSBSerial: usbSerial)
            if let previous, previous.state == .done {
                guard profile.dps.enrolls, previous.awaitsEnrollment else { return .alreadyProvisioned(previous) }
                var workflow = ProvisionWorkflow(registry: registry, measure: measure, report: report)
                workflow.dpsLog = dpsLog
                workflow.station = station
                return .enrolled(previous, try workflow.enrollRecorded(previous, dps: profile.dps))
            }
        }
        var workflow = ProvisionWorkflow(registry: registry, measure: measure, report: report)
        workflow.afterStep = afterStep
        workflow.dpsLog = dpsLog
        workflow.station = station
        workflow.registryWords = registryWords
        let request = ProvisionRequest(profile: profile, usbSerial: usbSerial)
        let port = try SerialPort(path: path, baudRate: baudRate)
        let release = whilePortOpen?(port)
        defer {
            release?()
            port.close()
        }
        let session = ConsoleSession(transport: transport(port))
        if let previous, let id = previous.id {
            return .provisioned(try workflow.resume(boardID: id, request: request, session: session), resumed: true)
        }
        return .provisioned(try workflow.run(request, session: session), resumed: false)
    }

    /// Verifies a board `provision` just provisioned when the profile's `[verify]`
    /// asks (nil otherwise, and for a board DPS did not enroll: it cannot
    /// register). Blocking, on the board's thread; the port is opened again.
    /// By default stop signals are left to the caller (`watch`: several boards
    /// follow their logs at once), which ends the check by cancelling `stop`;
    /// `hooks` replaces that (`autoconfigure`, one board).
    public func verify(
        _ result: ProvisionResult, path: String, report: @escaping (ProvisionEvent) -> Void,
        transport: @escaping (SerialPort) -> any ConsoleTransport = { $0 }, stop: FollowerStop? = nil,
        hooks given: RegistrationCheck.Hooks? = nil
    ) throws -> RegistrationCheck.Report? {
        guard result.enrollment?.isEnrolled ?? true else { return nil }
        return try verify(boardID: result.boardID, mac: result.mac, path: path, report: report, transport: transport,
                          stop: stop, hooks: given)
    }

    /// Verifies a board provisioned earlier whose owed enrollment `provision` just
    /// finished (``Outcome/enrolled(_:_:)``) when the profile's `[verify]` asks (nil
    /// otherwise, and when DPS still did not enroll it). As ``verify(_:path:report:transport:stop:hooks:)``.
    public func verify(
        _ board: BoardRecord, enrollment: ProvisionEnrollment, path: String, report: @escaping (ProvisionEvent) -> Void,
        transport: @escaping (SerialPort) -> any ConsoleTransport = { $0 }, stop: FollowerStop? = nil
    ) throws -> RegistrationCheck.Report? {
        guard enrollment.isEnrolled, let id = board.id, let mac = board.mac else { return nil }
        return try verify(boardID: id, mac: mac, path: path, report: report, transport: transport, stop: stop, hooks: nil)
    }

    private func verify(
        boardID: Int64, mac: String, path: String, report: @escaping (ProvisionEvent) -> Void,
        transport: @escaping (SerialPort) -> any ConsoleTransport, stop: FollowerStop?, hooks given: RegistrationCheck.Hooks?
    ) throws -> RegistrationCheck.Report? {
        guard let settings = profile.verify else { return nil }
        var hooks = RegistrationCheck.Hooks()
        hooks.transport = transport
        hooks.followerRelaysStopSignals = false
        hooks.stop = stop
        if let given { hooks = given }
        hooks.station = station
        hooks.enrollCommand = enrollCommand
        return try RegistrationCheck.afterProvisioning(
            boardID: boardID, mac: mac, path: path, baudRate: baudRate, settings: settings, dps: profile.dps, registry: registry,
            report: report, hooks: hooks)
    }
}
