import DevKitConsole
import DevKitModel

/// What `info` found out about a board.
public struct DeviceInfo: Sendable, Hashable {
    /// From `version`.
    public var versions: VersionInfo
    /// From the boot log after `exit` (nil without a reboot).
    public var macAddress: MACAddress?
    /// The version the sketch logged at boot, when it did.
    public var bootLogFirmwareVersion: FirmwareVersion?
    /// `az-<mac>v<version>`: the ID the firmware derives when the sketch sets none.
    public var registrationID: RegistrationID?

    public init(versions: VersionInfo, macAddress: MACAddress? = nil,
                bootLogFirmwareVersion: FirmwareVersion? = nil, registrationID: RegistrationID? = nil) {
        self.versions = versions
        self.macAddress = macAddress
        self.bootLogFirmwareVersion = bootLogFirmwareVersion
        self.registrationID = registrationID
    }
}

/// Which slot a connection string goes to.
public enum ConnectionStringKind: String, Sendable, CaseIterable {
    /// `set_az_iothub`: `HostName=…;DeviceId=…;SharedAccessKey=…`.
    case hub
    /// `set_az_iotdps`: `DPSEndpoint=…;IdScope=…;DeviceId=…;SymmetricKey=…`.
    case dps

    /// Guesses from the first key of the string.
    public static func detect(_ connectionString: ConnectionString) throws(WorkflowError) -> ConnectionStringKind {
        if connectionString.secretValue.hasPrefix("HostName=") { return .hub }
        if connectionString.secretValue.hasPrefix("DPSEndpoint=") { return .dps }
        throw .unknownConnectionString(reason: "it starts with neither `HostName=` nor `DPSEndpoint=`")
    }
}

/// The one-shot operations, each a short conversation with the console.
///
/// Every operation validates all of its input before it touches the board, then
/// synchronises with the prompt (when the session is not at one already).
public struct DevKitWorkflow {
    public let session: ConsoleSession
    /// Told each step as it starts (for progress lines); never given a secret.
    public var progress: (String) -> Void

    public init(session: ConsoleSession, progress: @escaping (String) -> Void = { _ in }) {
        self.session = session
        self.progress = progress
    }

    private func ensurePrompt() throws {
        guard session.state != .atPrompt else { return }
        progress("waiting for the configuration console prompt")
        try session.synchronize()
    }

    /// Before the first `set_` command: the board must show itself to be a DevKit
    /// (issue 12 item 11; another ST board shares the USB ID and the prompt bytes).
    private func ensureDevKit() throws {
        try ensurePrompt()
        // Once per session: the same board stays behind an open port.
        if session.identifiedVersions == nil { try session.identify() }
    }

    /// Stores a UDS in the board's secure element.
    public func setUDS(_ uds: UDS) throws {
        try ensureDevKit()
        progress("storing the UDS")
        try session.setUDS(uds)
    }

    /// Generates a fresh UDS, writes it to `path` (new file, mode 0600, synced to
    /// disk), and only then stores it on the board: the secret exists on the host
    /// before the board has it, so it cannot be lost. Returns the UDS.
    @discardableResult
    public func setGeneratedUDS(savingTo path: String) throws -> UDS {
        // Before the file is written: a board that is not a DevKit gets nothing, and
        // no file is left holding a UDS that no board has.
        try ensureDevKit()
        let uds = UDSGenerator.generate()
        progress("saving the new UDS to \(path)")
        try SecretFile.writeNew(Array((uds.hexString + "\n").utf8), to: path)
        progress("storing the UDS")
        try session.setUDS(uds)
        return uds
    }

    /// Versions; with `reboot`, also `exit` and the MAC address from the boot log,
    /// and the registration ID the device will derive. `bootLogTimeout` (default: the
    /// session's) bounds the wait for the MAC; `waitingForBootLog` is told when that
    /// wait starts and how long it may take (a sketch that never logs its MAC keeps
    /// it waiting to the end, so the user should know what for).
    public func info(
        reboot: Bool, bootLogTimeout: Duration? = nil, waitingForBootLog: (Duration) -> Void = { _ in }
    ) throws -> DeviceInfo {
        try ensurePrompt()
        progress("reading the versions")
        // Through identify: a board whose `version` names no DevKitSDK is "not a
        // DevKit" (69), as for every command that sets something, not an I/O error.
        var info = DeviceInfo(versions: try session.identifiedVersions ?? session.identify())
        guard reboot else { return info }
        progress("rebooting the board and reading its boot log")
        let wait = bootLogTimeout ?? session.timeouts.bootLog
        waitingForBootLog(wait)
        let log = try session.exitAndReadBootLog(timeout: wait)
        if log.mode == .configuration { throw WorkflowError.rebootedIntoConfigurationMode }
        info.macAddress = log.macAddress
        info.bootLogFirmwareVersion = log.firmwareVersion
        if let mac = log.macAddress {
            // The sketch derives the ID from the version it runs, as it logged it.
            let version = log.firmwareVersion ?? info.versions.firmwareVersion
            // nil when the version is too long for an ID the firmware can encode.
            info.registrationID = try? RegistrationID(mac: mac, firmwareVersion: version)
        }
        return info
    }

    /// Sets the Wi-Fi SSID and password (an empty password: an open network).
    public func setWiFi(ssid: String, password: WiFiPassword) throws {
        _ = try ConsoleCommand.setWiFiSSID(ssid).line()
        _ = try ConsoleCommand.setWiFiPassword(password).line()
        try ensureDevKit()
        progress("setting the Wi-Fi SSID")
        try session.setWiFiSSID(ssid)
        progress("setting the Wi-Fi password")
        try session.setWiFiPassword(password)
    }

    /// Stores an IoT Hub or DPS connection string (`kind` nil: from its first key).
    @discardableResult
    public func setConnectionString(_ connectionString: ConnectionString, kind: ConnectionStringKind? = nil) throws
        -> ConnectionStringKind
    {
        let kind = try kind ?? ConnectionStringKind.detect(connectionString)
        let command: ConsoleCommand =
            kind == .hub ? .setIoTHubConnectionString(connectionString) : .setDPSConnectionString(connectionString)
        _ = try command.line()
        try ensureDevKit()
        progress("storing the \(kind == .hub ? "IoT Hub" : "DPS") connection string")
        switch kind {
        case .hub: try session.setIoTHubConnectionString(connectionString)
        case .dps: try session.setDPSConnectionString(connectionString)
        }
        return kind
    }
}
