import DevKitBoard
import DPSModel
import DPSService
import DevKitConsole
import DevKitModel
import DevKitRegistry
import DevKitSystem
import Dispatch
import Foundation
import Synchronization

/// An Alias certificate computed for one board.
public struct AliasCertificate: Sendable, Equatable {
    /// The certificate, PEM, byte-identical to what the device presents.
    public var pem: String
    /// SHA-1 of the DER, upper-case hex (what DPS shows).
    public var sha1: String
    /// SHA-256 of the DER, upper-case hex.
    public var sha256: String

    public init(pem: String, sha1: String, sha256: String) {
        self.pem = pem
        self.sha1 = sha1
        self.sha256 = sha256
    }
}

/// Computes certificates for one firmware image: made once per image (the
/// firmware is parsed and measured when it is made, so a bad image fails before
/// any board is touched), then called once per board with its UDS and registration ID.
public typealias CertificateFactory = @Sendable (_ uds: UDS, _ registrationID: RegistrationID) throws -> AliasCertificate

/// Parses and measures a firmware image, returning its certificate factory.
/// The DiceRIoT generator provides the real one; tests may pass their own.
public typealias FirmwareMeasurer = @Sendable (FirmwareSource) throws -> CertificateFactory

/// Where the UDS for `devkit provision` comes from.
public enum UDSSource: Sendable, Equatable {
    /// A file with 64 hex digits (`-`: standard input).
    case file(String)
    /// A fresh UDS from the system CSPRNG.
    case generate
    /// `<directory>/<USB serial>.uds` (the profile's from-file policy).
    case directory(String)
}

/// Everything `devkit provision` needs for one board.
public struct ProvisionRequest: Sendable {
    public var firmware: FirmwareSource
    public var uds: UDSSource
    /// An explicit registration ID; nil: from `scheme`.
    public var registrationID: RegistrationID?
    public var scheme: RegistrationIDScheme
    /// The MAC, when the user gives it: then the board is not rebooted to read it.
    public var mac: MACAddress?
    public var usbSerial: String?
    public var wifi: WiFiSettings?
    public var outputDirectory: String
    public var dps: DPSSettings
    /// Take over the certificate and enrollment file names when another board's row
    /// has them: that row is marked superseded and its files are moved aside
    /// (`<id>.row<N>.pem`). Without it such a board is refused.
    public var force = false

    public init(
        firmware: FirmwareSource, uds: UDSSource, registrationID: RegistrationID? = nil,
        scheme: RegistrationIDScheme = .derived, mac: MACAddress? = nil, usbSerial: String? = nil,
        wifi: WiFiSettings? = nil, outputDirectory: String = ".", dps: DPSSettings = DPSSettings()
    ) {
        self.firmware = firmware
        self.uds = uds
        self.registrationID = registrationID
        self.scheme = scheme
        self.mac = mac
        self.usbSerial = usbSerial
        self.wifi = wifi
        self.outputDirectory = outputDirectory
        self.dps = dps
    }

    /// The request for a board of a profile.
    public init(profile: ProvisioningProfile, usbSerial: String?) {
        let uds: UDSSource = switch profile.uds {
        case .generate: .generate
        case .fromDirectory(let dir): .directory(dir)
        }
        self.init(
            firmware: profile.firmware, uds: uds, scheme: profile.registrationID, usbSerial: usbSerial,
            wifi: profile.wifi, outputDirectory: profile.outputDirectory, dps: profile.dps)
    }
}

/// One step of `devkit provision`, reported as it starts and ends.
public enum ProvisionStage: String, Sendable, CaseIterable, Codable {
    /// `claim`: taking the board (or row) on a shared registry, reported only when
    /// another station holds it; `enrollment`: the enrollment file; `enroll`: the
    /// enrollment in DPS (when configured); `verify`: watching the board register
    /// (last, when asked).
    case validate, claim, connect, record, uds, wifi, version, mac, certificate, enrollment, enroll, verify
}

/// A progress event. Never carries a secret.
public struct ProvisionEvent: Sendable, Equatable {
    public enum Status: String, Sendable, Codable { case started, done, skipped, failed }
    public var stage: ProvisionStage
    public var status: Status
    /// A human sentence: what is happening or what was found.
    public var message: String
    /// The registry row, once there is one.
    public var boardID: Int64?
    /// For a `failed` event, the error (its description is `message`), so a front end
    /// can say it in its own terms.
    public var error: (any Error)?

    public init(stage: ProvisionStage, status: Status, message: String, boardID: Int64? = nil,
                error: (any Error)? = nil) {
        self.stage = stage
        self.status = status
        self.message = message
        self.boardID = boardID
        self.error = error
    }

    /// Equal when they say the same; the error is compared through `message`.
    public static func == (a: Self, b: Self) -> Bool {
        a.stage == b.stage && a.status == b.status && a.message == b.message && a.boardID == b.boardID
    }
}

/// What `devkit provision` produced.
public struct ProvisionResult: Sendable, Equatable {
    public var boardID: Int64
    public var registrationID: String
    public var mac: String
    public var firmwareVersion: String
    public var certificatePath: String
    public var enrollmentPath: String
    public var certificateSHA1: String
    public var certificateSHA256: String
    /// The `az iot dps enrollment create` command line.
    public var azCommand: String
    /// The DPS enrollment, when DPS was configured: the board is `done` either
    /// way; not enrolled, it is `done, not enrolled`.
    public var enrollment: ProvisionEnrollment?
}

/// What enrolling a provisioned board in DPS came to.
public struct ProvisionEnrollment: Sendable, Equatable {
    public var outcome: EnrollmentOutcome
    /// The DPS (its HostName).
    public var dpsHost: String
    /// Why the outcome could not be recorded in the registry, if it could not.
    public var recordingFailure: String?

    public init(outcome: EnrollmentOutcome, dpsHost: String, recordingFailure: String? = nil) {
        self.outcome = outcome
        self.dpsHost = dpsHost
        self.recordingFailure = recordingFailure
    }

    /// DPS holds the board's certificate.
    public var isEnrolled: Bool { outcome.isEnrolled }
}

/// A provisioned board DPS did not enroll: its files are written and the registry
/// row is `done`; the enrollment is owed (`done, not enrolled`).
public struct NotEnrolled: Error, Sendable, Equatable, CustomStringConvertible {
    public var boardID: Int64
    public var enrollment: ProvisionEnrollment

    public init(boardID: Int64, enrollment: ProvisionEnrollment) {
        self.boardID = boardID
        self.enrollment = enrollment
    }

    /// DPS's words (error code and tracking ID included), or the conflict.
    public var description: String {
        let o = enrollment.outcome
        if o.action == .conflict { return o.message ?? "DPS holds another certificate for \(o.registrationId)" }
        return o.error?.description ?? o.message ?? "not enrolled"
    }
}

/// Errors of the provisioning workflow that are not the console's or the registry's.
/// Each says what happened; the CLI adds which option to give.
public enum ProvisionError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Something given is unusable; nothing was sent to the board.
    case invalidInput(String)
    /// The registration ID template names `{serial}` but the board's USB serial is unknown.
    case templateNeedsSerial(template: String)
    /// The UDS policy reads `<dir>/<serial>.uds` but the board's USB serial is unknown.
    case serialUnknown(directory: String)
    /// The output directory cannot take the files; `errno` when a system call said why.
    case outputDirectory(path: String, reason: String, errno: Int32? = nil)
    /// The firmware image could not be measured.
    case firmware(String)
    /// The board did not print its MAC after `exit`.
    case macNotInBootLog
    /// The board on the port is not the one the recorded row belongs to.
    case resumeOnAnotherBoard(boardID: Int64, recordedSerial: String, attachedSerial: String)
    /// The recorded row still needs steps on the board, and no board was given.
    case resumeNeedsBoard(boardID: Int64, nextStep: String)
    /// The registry row cannot be resumed.
    case cannotResume(String)
    /// The certificate or enrollment file this board would write holds board
    /// `owner`'s certificate (the same board provisioned again, or a registration ID
    /// clash); nothing was written. `boardID` is nil when it was found before the
    /// board was recorded; `udsSent` says whether the board may already hold this
    /// row's new UDS (then the owner's certificate no longer matches it).
    case filesOfAnotherBoard(boardID: Int64?, owner: Int64, path: String, udsSent: Bool = false)
    /// A firmware file recorded for `--resume` changed since the board was recorded.
    case firmwareChanged(boardID: Int64, path: String)
    /// A firmware file recorded for `--resume` is gone or unreadable.
    case recordedFirmwareMissing(boardID: Int64, path: String)
    /// Moving an older board's files aside failed.
    case cannotMoveAside(path: String, reason: String)

    public var description: String {
        switch self {
        case .invalidInput(let s): s
        case .templateNeedsSerial(let t):
            "the registration ID template '\(t)' needs the board's USB serial, which is unknown"
        case .serialUnknown(let dir):
            "the UDS policy reads \(dir)/<USB serial>.uds, but this board's USB serial is unknown"
        case .outputDirectory(let path, let reason, _):
            "output directory \(escaped(path)): \(reason)"
        case .firmware(let s): s
        case .macNotInBootLog:
            "the board rebooted but its boot log showed no `DevKit MAC Address:` line (is the DPS sample sketch flashed?)"
        case .resumeOnAnotherBoard(let id, let recorded, let attached):
            "board #\(id) is the board with USB serial \(recorded), but the board on the port has \(attached)"
        case .resumeNeedsBoard(let id, let step):
            "board #\(id) still needs \(step) on the board itself"
        case .cannotResume(let s): s
        case .filesOfAnotherBoard(let id, let owner, let path, let udsSent):
            if let id, udsSent {
                "\(path) holds the certificate of board #\(owner) in the registry, so board #\(id)'s files were not "
                    + "written and nothing was overwritten; but the board already holds board #\(id)'s new UDS, so "
                    + "board #\(owner)'s certificate no longer matches it, and board #\(id) is unfinished"
            } else {
                "\(path) holds the certificate of board #\(owner) in the registry; nothing was sent to the board "
                    + "and nothing was written"
            }
        case .cannotMoveAside(let path, let reason): "cannot move \(path) aside: \(reason)"
        case .firmwareChanged(let id, let path):
            "\(path) changed since board #\(id) was recorded (its SHA-256 differs), so its certificate would not match the firmware it was recorded with"
        case .recordedFirmwareMissing(let id, let path):
            "\(path), recorded as board #\(id)'s firmware, cannot be read"
        }
    }
}

/// The first certificate a process computes pays for one-time set-up: BoringSSL's
/// P-256 group, the signer's constants, Swift type metadata and protocol
/// conformances of the crypto and ASN.1 code: 0.6-2 ms measured, against under
/// 0.1 ms for the next certificate, and 16 boards reaching their certificates
/// together all waited for it. ``start(_:)`` pays it
/// once per process on a background thread, with a throwaway input, while the
/// first board spends tens of milliseconds on the serial line; the board's own
/// certificate then costs what every later one does.
enum CertificateWarmUp {
    private static let started = Atomic<Bool>(false)

    static func start(_ factory: @escaping CertificateFactory) {
        guard !started.exchange(true, ordering: .relaxed) else { return }
        DispatchQueue.global(qos: .utility).async {
            // Not a secret: a fixed value, and the result is dropped.
            _ = try? factory(UDS(bytes: Array(repeating: 0x5A, count: UDS.byteCount)), RegistrationID("warm-up"))
        }
    }
}

/// Provisions one board end to end, recording each step in the registry.
///
/// Order and durability: everything is validated first (firmware measured, UDS and
/// Wi-Fi password read, registration ID and output directory checked); then the UDS
/// is committed to the registry — synced to disk — and only then sent to the board.
/// Each later step updates the same row in its own transaction, so a crash at any
/// point leaves a row that ``resume(boardID:request:session:)`` can finish. The
/// board's own steps (UDS confirmed, version, MAC) are committed in the background
/// while the next command is on the wire; the last commit, which marks the board
/// done, waits for them, and a crash before they land only makes a resume repeat
/// those steps.
public struct ProvisionWorkflow {
    public let registry: any RegistryStore
    public let measure: FirmwareMeasurer
    /// Told each step as it starts and ends.
    public let report: (ProvisionEvent) -> Void
    /// The last stage reported as started: where a failure stopped when the
    /// registry cannot say (its server gone, the row not readable).
    private let lastStarted: LastStartedStage
    /// Called after each registry step is committed (tests use it to crash there);
    /// for marks committed in the background, on the committing thread.
    public var afterStep: @Sendable (ProvisioningStep, BoardRecord) -> Void = { _, _ in }
    /// Told each DPS request (method, path, status, time; never a header): `--verbose`.
    public var dpsLog: (@Sendable (String) -> Void)?
    /// The station recorded with each new board (`--station`, default the host name).
    public var station: String?
    /// The `--registry`/`--key-file` words of commands this run prints (the CLI's
    /// ``RegistryOptions``-made words; empty for the defaults).
    public var registryWords: [String] = []

    public init(registry: any RegistryStore, measure: @escaping FirmwareMeasurer,
                report: @escaping (ProvisionEvent) -> Void = { _ in }) {
        self.registry = registry
        self.measure = measure
        let lastStarted = LastStartedStage()
        self.lastStarted = lastStarted
        self.report = { event in
            if event.status == .started { lastStarted.stage.withLock { $0 = event.stage } }
            report(event)
        }
    }

    /// Everything checked before the board is touched.
    struct Validated {
        var uds: UDS
        var wifiPassword: WiFiPassword?
        var factory: CertificateFactory
        /// What `--resume` needs, when asked for (a new board), or why it cannot be recorded.
        var settings: Result<ProvisionSettings, ProvisionError>?
        /// The DPS to enroll the board in, when configured; ``DPSEnrollmentTarget/close()`` it.
        var dps: DPSEnrollmentTarget?
    }

    /// A registration ID DPS would refuse, refused before the board gets its UDS when
    /// the board is to be enrolled (the enroll step at the end would refuse it, with
    /// no command that could ever finish it): a given ID, or what a template gives
    /// with the shortest values its placeholders take (real ones only make it
    /// longer). The derived `az-<mac>v<version>` always passes.
    public static func checkForDPS(_ request: ProvisionRequest) throws(ProvisionError) {
        if let id = request.registrationID {
            if let refusal = id.dpsRefusal {
                throw .invalidInput("\(refusal), so the board could not be enrolled: choose another --registration-id")
            }
        } else if case .template(let template) = request.scheme {
            let refusal: String?
            do {
                // Filled in by the scheme itself, with the shortest values.
                let shortest = try request.scheme.registrationID(
                    mac: try MACAddress("000000000000"), usbSerial: request.usbSerial ?? "0",
                    firmwareVersion: try FirmwareVersion("0.0.0"))
                refusal = shortest.dpsRefusal.map { "\($0)" }
            } catch {
                refusal = "\(error)"
            }
            if let refusal {
                throw .invalidInput(
                    "the registration ID template \(template) gives IDs DPS refuses (\(refusal)), so no board could be "
                        + "enrolled: change the template")
            }
        }
    }

    /// Checks all inputs without touching the board or the registry.
    func validate(_ request: ProvisionRequest, recordSettings: Bool = false) throws -> Validated {
        report(ProvisionEvent(stage: .validate, status: .started, message: "checking the inputs"))
        if request.registrationID == nil, case .template(let t) = request.scheme, t.contains("{serial}"),
            request.usbSerial == nil
        {
            throw ProvisionError.templateNeedsSerial(template: t)
        }
        if request.dps.enrolls { try Self.checkForDPS(request) }
        if let wifi = request.wifi {
            _ = try ConsoleCommand.setWiFiSSID(wifi.ssid).line()
        }
        let wifiPassword = try request.wifi.map { w throws(WorkflowError) in try SecretFile.readWiFiPassword(w.passwordFile) }
        try Self.checkOutputDirectory(request.outputDirectory)
        // Parse and measure the firmware now: a bad image must fail before the board is touched.
        let stamps = request.firmware.paths.map { FileStamp(path: $0) }
        let factory = try measure(request.firmware)
        // What --resume needs, so the hint printed on a failure works as printed; the
        // firmware's SHA-256 of the files as they were measured.
        var settings: Result<ProvisionSettings, ProvisionError>?
        if recordSettings {
            settings = Result { () throws(ProvisionError) in try ProvisionSettings(request, measured: stamps) }
        }
        let uds: UDS
        switch request.uds {
        case .file(let path): uds = try SecretFile.readUDS(path)
        case .generate: uds = UDSGenerator.generate()
        case .directory(let dir):
            guard let serial = request.usbSerial else { throw ProvisionError.serialUnknown(directory: dir) }
            uds = try SecretFile.readUDS((dir as NSString).appendingPathComponent("\(serial).uds"))
        }
        // Last, as nothing after it may throw: the client it makes must be closed.
        let dps = try request.dps.enrolls ? DPSEnrollmentTarget(request.dps, log: dpsLog) : nil
        report(ProvisionEvent(stage: .validate, status: .done, message: "inputs are valid"))
        return Validated(uds: uds, wifiPassword: wifiPassword, factory: factory, settings: settings, dps: dps)
    }

    /// Provisions the board behind `session` (synchronised here if it is not).
    public func run(_ request: ProvisionRequest, session: ConsoleSession) throws -> ProvisionResult {
        let v: Validated
        do {
            v = try validate(request, recordSettings: true)
        } catch {
            report(ProvisionEvent(stage: .validate, status: .failed, message: "\(error)", error: error))
            throw error
        }
        defer { v.dps?.close() }
        // One station at a time per board (a shared registry): claimed before the
        // board is touched, held until this run ends. Its MAC, when not given, is
        // claimed once read (``finish``).
        let claimed = BoardClaimKeys.board(mac: request.mac?.hex, usbSerial: request.usbSerial)
        try claim(claimed)
        defer { registry.release(boards: claimed) }
        CertificateWarmUp.start(v.factory)
        do {
            try connect(session)
        } catch {
            report(ProvisionEvent(stage: .connect, status: .failed, message: "\(error)", error: error))
            throw error
        }

        // The files this board will write must not be another row's: refused now,
        // before its new UDS goes out, whenever the registration ID is known already.
        let versionRead: VersionInfo?
        do {
            versionRead = try checkFilesBeforeSending(request, boardID: nil, recordedVersion: nil, session: session)
        } catch {
            report(ProvisionEvent(stage: .validate, status: .failed, message: "\(error)", error: error))
            throw error
        }

        if case .failure(let problem)? = v.settings {
            // Not fatal (the certificate comes from what was measured), but said: a
            // resume of this board will need the firmware options again.
            report(ProvisionEvent(
                stage: .record, status: .skipped,
                message: "the firmware is not recorded for --resume (\(problem)); a resume will need "
                    + "--bin FILE --map FILE or --elf FILE"))
        }
        report(ProvisionEvent(stage: .record, status: .started, message: "recording the UDS in the registry"))
        // Also marked sent: the line goes out next, and "sent" means the board may
        // have it. One synced commit, before anything leaves for the board.
        let settings: String? = if case .success(let recorded)? = v.settings { recorded.json() } else { nil }
        let board = try registry.recordNewBoard(
            uds: v.uds, mac: request.mac, usbSerial: request.usbSerial, registrationID: request.registrationID, firmwareVersion: nil,
            provisionSettings: settings, station: station, alsoMark: [.udsSent])
        let id = board.id!
        // The row too, before its UDS goes out: a `--resume` of it from another
        // station (which claims the row first) must not finish it meanwhile.
        let row = [BoardClaimKeys.row(id)]
        do {
            try registry.claim(boards: row, station: station ?? "unnamed")
        } catch {
            reportFailure(error, boardID: id)
            throw error
        }
        defer { registry.release(boards: row) }
        report(ProvisionEvent(stage: .record, status: .done, message: "board #\(id) recorded in \(registry.path)", boardID: id))
        afterStep(.udsSent, board)

        do {
            return try finish(board: board, request: request, validated: v, session: session, versionRead: versionRead)
        } catch {
            reportFailure(error, boardID: id)
            throw error
        }
    }

    /// Records a recorded board's failure and reports it (the `failed` event, with
    /// the step it stopped at and how to finish it).
    private func reportFailure(_ error: any Error, boardID: Int64) {
        let row = try? registry.markFailed(boardID: boardID, error: "\(error)")
        let stage: ProvisionStage = switch row.map(\.nextStep) {
        case .udsRecorded??, .udsSent??, .udsConfirmed??: .uds
        case .versionRead??: .version
        case .macRead??: .mac
        case .certificateWritten??: .certificate
        case .some: .enrollment
        // Not recorded (the server went away, a rekey stopped the run): the stage
        // that was running, not a later one that never started.
        case nil: lastStarted.stage.withLock { $0 } ?? .enrollment
        }
        report(ProvisionEvent(
            stage: stage, status: .failed,
            message: "\(error) (board #\(boardID) is recorded with its UDS)", boardID: boardID, error: error))
    }

    /// Whether a resume of `board` still has steps on the board itself (its UDS
    /// confirmed, its version, its MAC unless `givenMAC`): then it needs the port.
    public static func resumeNeedsBoard(_ board: BoardRecord, givenMAC: MACAddress?) -> Bool {
        board.udsConfirmedAt == nil || board.versionReadAt == nil || (board.mac == nil && givenMAC == nil)
    }

    /// Finishes a board recorded earlier (after a crash, unplug or error) with the
    /// UDS the registry holds, doing only the steps not yet done. `session` is needed
    /// only when board steps remain; `request` gives the firmware and output options
    /// (its UDS source is ignored).
    public func resume(boardID: Int64, request: ProvisionRequest, session: ConsoleSession?) throws -> ProvisionResult {
        // The row first, then what it says: a row another station is finishing is
        // left to it, whatever board this one is connected to.
        let row = [BoardClaimKeys.row(boardID)]
        try claim(row, boardID: boardID)
        defer { registry.release(boards: row) }
        guard let board = try registry.board(id: boardID) else { throw RegistryError.boardNotFound("\(boardID)") }
        let claimed = BoardClaimKeys.board(mac: board.mac ?? request.mac?.hex, usbSerial: board.usbSerial ?? request.usbSerial)
        try claim(claimed, boardID: boardID)
        defer { registry.release(boards: claimed) }
        // Under the board's claim, so that the answer holds (see ``RegistryStore/supersedingRow(of:)``).
        try Self.refuseSuperseded(board, in: registry, registryWords: registryWords)
        // A finished board has nothing to resume: its steps again would write its
        // files and its enrollment record over ones that are right (an enrollment
        // finished by `dps enroll` was recorded as failed against the endpoint the
        // row was provisioned with). One whose enrollment is still owed is finished
        // here, as before.
        if let result = Self.finishedResult(board, dps: request.dps) {
            report(ProvisionEvent(
                stage: .record, status: .skipped,
                message: "board #\(boardID) has finished provisioning: nothing to resume (its files and enrollment "
                    + "are as recorded; `registry reissue --board \(boardID)` with the new firmware makes a new certificate)",
                boardID: boardID))
            return result
        }
        // The recorded UDS must go to the board it was recorded for: on another board
        // two devices would share an identity, and this row would take its MAC.
        if let attached = request.usbSerial, let recorded = board.usbSerial,
           attached.lowercased() != recorded.lowercased()
        {
            throw ProvisionError.resumeOnAnotherBoard(boardID: boardID, recordedSerial: recorded, attachedSerial: attached)
        }
        let recordedMAC = try board.mac.map { m throws(RegistryError) in try Registry.parseStored(MACAddress.init, m, board: boardID) }
        if let given = request.mac, let recorded = recordedMAC, given != recorded {
            throw ProvisionError.cannotResume(
                "board #\(boardID) has MAC \(recorded), not \(given); give its own MAC, or none")
        }
        var request = request
        request.uds = .generate  // not used: the registry's UDS is
        if request.mac == nil { request.mac = recordedMAC }
        if request.registrationID == nil, let recorded = board.registrationID {
            request.registrationID = try Registry.parseStored(RegistrationID.init, recorded, board: boardID)
        }
        if request.usbSerial == nil { request.usbSerial = board.usbSerial }
        var v = try validate(request)
        defer { v.dps?.close() }
        v.uds = board.uds
        if Self.resumeNeedsBoard(board, givenMAC: request.mac) {
            guard let session else {
                throw ProvisionError.resumeNeedsBoard(boardID: boardID, nextStep: board.nextStep?.rawValue ?? "steps")
            }
            try connect(session)
        }
        do {
            let recordedVersion = try board.firmwareVersion.map { t throws(RegistryError) in
                try Registry.parseStored(FirmwareVersion.init, t, board: boardID)
            }
            var versionRead: VersionInfo?
            if board.udsConfirmedAt == nil {
                versionRead = try checkFilesBeforeSending(
                    request, boardID: boardID, recordedVersion: recordedVersion, udsSent: board.udsSentAt != nil,
                    session: session)
            }
            return try finish(board: board, request: request, validated: v, session: session, versionRead: versionRead)
        } catch {
            reportFailure(error, boardID: boardID)
            throw error
        }
    }

    /// A row a later one superseded (the board re-issued, or provisioned again: a
    /// later row with its USB serial or MAC) is not the board's record: nothing of it
    /// is resumed. Its UDS sent again would replace the identity the board has now.
    /// `registryWords`: the `--registry`/`--key-file` of the printed command.
    public static func refuseSuperseded(_ board: BoardRecord, in registry: any RegistryStore, registryWords: [String] = []) throws {
        guard let id = board.id else { return }
        func show(_ newer: Int64) -> String {
            commandLine(["devkit", "registry", "show", "\(newer)"] + registryWords)
        }
        if let newer = board.supersededBy {
            // Set when another row took this one's certificate files (--force): maybe
            // another board, with the same registration ID.
            throw ProvisionError.cannotResume(
                "board #\(id)'s certificate files were taken over by board #\(newer) (provisioned with --force): nothing "
                    + "of #\(id) is resumed; `\(show(newer))` shows that row")
        }
        if let newer = try registry.supersedingRow(of: board)?.boardID {
            throw ProvisionError.cannotResume(
                "board #\(id) is an older record: the board was provisioned again as board #\(newer), whose UDS it holds, "
                    + "and resuming #\(id) would replace it; board #\(newer) is the one to look at (`\(show(newer))`)")
        }
    }

    /// What a resume of `board` reports when it has nothing to do: it finished (files
    /// written, no enrollment owed) and its row holds the whole result, as recorded
    /// (`dps` gives the az line's DPS names). Nil when there is something to do, or
    /// the row lacks a part of the result (then it is finished again).
    public static func finishedResult(_ board: BoardRecord, dps: DPSSettings = DPSSettings()) -> ProvisionResult? {
        guard board.state == .done, !board.awaitsEnrollment,
              let id = board.id, let registrationID = board.registrationID, let mac = board.mac,
              let version = board.firmwareVersion, let certificatePath = board.certificatePath,
              let enrollmentPath = board.enrollmentPath, let sha1 = board.certificateSHA1, let sha256 = board.certificateSHA256
        else { return nil }
        var result = ProvisionResult(
            boardID: id, registrationID: registrationID, mac: mac, firmwareVersion: version,
            certificatePath: certificatePath, enrollmentPath: enrollmentPath, certificateSHA1: sha1, certificateSHA256: sha256,
            azCommand: EnrollmentFile(registrationID: registrationID, certificatePEM: "", dps: dps)
                .azCommand(certificatePath: certificatePath))
        if let recorded = board.enrollment, let action = EnrollmentAction(rawValue: recorded.action.rawValue) {
            result.enrollment = ProvisionEnrollment(
                outcome: EnrollmentOutcome(
                    registrationId: registrationID, action: action, etag: recorded.etag,
                    sha1Thumbprint: recorded.sha1Thumbprint, time: recorded.at),
                dpsHost: recorded.dpsHost ?? "")
        }
        return result
    }

    /// Claims `keys` (``BoardClaimKeys``) for this run; a board another station
    /// holds is reported at the `claim` stage (nothing was touched: not a failure
    /// of the row, which that station is working on).
    func claim(_ keys: [String], boardID: Int64? = nil) throws(RegistryError) {
        try registry.claim(keys, station: station, boardID: boardID, reporting: report)
    }

    /// Refuses (``ProvisionError/filesOfAnotherBoard(boardID:owner:path:udsSent:)``)
    /// before the UDS is sent when the registration ID can be known before the
    /// board reboots (given, or from a given or recorded MAC) and another row's
    /// certificate is in its files. A new board whose USB serial a recorded row has
    /// is taken to have that row's MAC here (the same board provisioned again, the
    /// usual clash; the ST-LINK and the Wi-Fi module share the board), and is checked
    /// again with the MAC it reports. Reads the firmware version (read-only) when the
    /// ID needs it and returns it, for the version step to use. With `--force` the
    /// files are taken over at the certificate step; with the MAC only in the boot
    /// log the check is made there.
    private func checkFilesBeforeSending(
        _ request: ProvisionRequest, boardID: Int64?, recordedVersion: FirmwareVersion?, udsSent: Bool = false,
        session: ConsoleSession?
    ) throws -> VersionInfo? {
        guard !request.force else { return nil }
        let scheme = request.scheme
        var versionRead: VersionInfo?
        let registrationID: RegistrationID
        if let explicit = request.registrationID {
            registrationID = explicit
        } else {
            var mac = request.mac
            if mac == nil, boardID == nil, scheme.uses("mac"), let serial = request.usbSerial,
               let recorded = try registry.board(byUSBSerial: serial)?.mac
            {
                mac = try? MACAddress(recorded)
            }
            if scheme.uses("mac") && mac == nil { return nil }
            if scheme.uses("serial") && request.usbSerial == nil { return nil }
            var version = recordedVersion
            if scheme.uses("version") && version == nil {
                guard let session else { return nil }
                versionRead = try session.identifiedVersions ?? session.version()
                version = versionRead?.firmwareVersion
            }
            registrationID = try scheme.registrationID(mac: mac, usbSerial: request.usbSerial, firmwareVersion: version)
        }
        try BoardFileOwnership(registry: registry).check(
            registrationID: registrationID, outputDirectory: request.outputDirectory, boardID: boardID,
            udsSent: udsSent)
        return versionRead
    }

    private func connect(_ session: ConsoleSession) throws {
        guard session.state != .atPrompt else { return }
        report(ProvisionEvent(stage: .connect, status: .started, message: "waiting for the configuration console prompt"))
        try session.synchronize()
        // Nothing is set before the board has shown itself to be a DevKit (issue 12 item 11).
        try session.identify()
        report(ProvisionEvent(stage: .connect, status: .done, message: "the board is in configuration mode"))
    }

    private func mark(_ step: ProvisioningStep, _ board: BoardRecord, _ update: BoardUpdate = BoardUpdate()) throws -> BoardRecord {
        try mark([step], board, update)
    }

    /// Marks `steps` of `board` (the row as this run last had it) in one commit;
    /// `afterStep` sees the commit once, as its last step. Returns once it is
    /// committed, and with it every mark queued before.
    private func mark(_ steps: [ProvisioningStep], _ board: BoardRecord, _ update: BoardUpdate) throws -> BoardRecord {
        let record = try registry.markSteps(steps, of: board, update: update)
        afterStep(steps.last!, record)
        return record
    }

    /// Marks `step` without waiting for the commit: the board's next command goes
    /// out while it is written (in a 16-board run each mark waited ~1.2 ms for the
    /// shared commit). A failure is kept in `failures` and thrown by
    /// ``BackgroundFailures/throwIfAny()`` before the board is reported done.
    private func markInBackground(
        _ step: ProvisioningStep, _ board: BoardRecord, _ update: BoardUpdate = BoardUpdate(),
        failures: BackgroundFailures
    ) throws -> BoardRecord {
        let afterStep = self.afterStep
        return try registry.markStepsInBackground([step], of: board, update: update) { result in
            switch result {
            case .success(let record): afterStep(step, record)
            case .failure(let error): failures.record(error)
            }
        }
    }

    /// The first failed background mark of a board, if any.
    final class BackgroundFailures: Sendable {
        private let first = Mutex<RegistryError?>(nil)
        func record(_ error: RegistryError) { first.withLock { if $0 == nil { $0 = error } } }
        /// Throws the first failure. Call after a waited-for write, which follows
        /// every mark queued before it.
        func throwIfAny() throws {
            if let error = first.withLock({ $0 }) { throw error }
        }
    }

    private func finish(
        board initial: BoardRecord, request: ProvisionRequest, validated v: Validated, session: ConsoleSession?,
        versionRead: VersionInfo? = nil
    ) throws -> ProvisionResult {
        var board = initial
        let id = board.id!
        let failures = BackgroundFailures()
        var claimedMAC: [String] = []
        defer { registry.release(boards: claimedMAC) }

        if board.udsConfirmedAt == nil, let session {
            report(ProvisionEvent(stage: .uds, status: .started, message: "storing the UDS on the board", boardID: id))
            // Marked (and committed) before the line goes out: "sent" means the board
            // may have it. A new board was marked sent when it was recorded.
            if board.udsSentAt == nil { board = try mark(.udsSent, board) }
            try session.setUDS(board.uds)
            board = try markInBackground(.udsConfirmed, board, failures: failures)
            report(ProvisionEvent(stage: .uds, status: .done, message: "the board stored the UDS", boardID: id))
        }

        if let wifi = request.wifi, let password = v.wifiPassword, let session, board.versionReadAt == nil {
            report(ProvisionEvent(stage: .wifi, status: .started, message: "setting Wi-Fi \(wifi.ssid)", boardID: id))
            try session.setWiFiSSID(wifi.ssid)
            try session.setWiFiPassword(password)
            report(ProvisionEvent(stage: .wifi, status: .done, message: "Wi-Fi set", boardID: id))
        }

        if board.versionReadAt == nil, let session {
            report(ProvisionEvent(stage: .version, status: .started, message: "reading the firmware version", boardID: id))
            // Read already by the identity check, or when the registration ID needed
            // it before the UDS went out: not asked twice.
            let versions = try versionRead ?? session.identifiedVersions ?? session.version()
            board = try markInBackground(
                .versionRead, board, BoardUpdate(firmwareVersion: versions.firmwareVersion), failures: failures)
            report(ProvisionEvent(stage: .version, status: .done, message: "firmware \(versions.firmwareVersion.text)", boardID: id))
        }

        if board.mac == nil, let given = request.mac {
            // Given (`--resume N --mac M`) for a row whose board never printed it (a
            // sketch without the MAC line): recorded as read, no reboot.
            let macClaim = BoardClaimKeys.board(mac: given.hex, usbSerial: nil)
            try registry.claim(boards: macClaim, station: station ?? "unnamed")
            claimedMAC = macClaim
            board = try markInBackground(.macRead, board, BoardUpdate(mac: given), failures: failures)
            report(ProvisionEvent(stage: .mac, status: .done, message: "MAC \(given.hex) (given)", boardID: id))
        } else if board.mac == nil, let session {
            report(ProvisionEvent(stage: .mac, status: .started, message: "rebooting the board to read its MAC", boardID: id))
            let log: BootLog
            do {
                log = try session.exitAndReadBootLog()
            } catch ConsoleError.bootLogWithoutMAC {
                // Its sketch does not print the MAC: no retry would; --mac will.
                throw ProvisionError.macNotInBootLog
            }
            if log.mode == .configuration { throw WorkflowError.rebootedIntoConfigurationMode }
            guard let mac = log.macAddress else { throw ProvisionError.macNotInBootLog }
            // Claimed as soon as it is known (a port with no USB serial had no claim
            // until now): another station at this MAC ends this run here, its row kept.
            let macClaim = BoardClaimKeys.board(mac: mac.hex, usbSerial: nil)
            try registry.claim(boards: macClaim, station: station ?? "unnamed")
            claimedMAC = macClaim
            board = try markInBackground(.macRead, board, BoardUpdate(mac: mac), failures: failures)
            report(ProvisionEvent(stage: .mac, status: .done, message: "MAC \(mac.hex)", boardID: id))
        } else if board.mac != nil && board.macReadAt != nil {
            report(ProvisionEvent(stage: .mac, status: .skipped, message: "MAC \(board.mac!) (given)", boardID: id))
        }
        guard let recordedMAC = board.mac, let recordedVersion = board.firmwareVersion else {
            throw ProvisionError.cannotResume("board #\(id) has no MAC or firmware version recorded; connect the board")
        }
        let mac = try Registry.parseStored(MACAddress.init, recordedMAC, board: id)
        let version = try Registry.parseStored(FirmwareVersion.init, recordedVersion, board: id)

        let registrationID: RegistrationID
        if let explicit = request.registrationID {
            registrationID = explicit
        } else {
            registrationID = try request.scheme.registrationID(mac: mac, usbSerial: board.usbSerial, firmwareVersion: version)
        }

        report(ProvisionEvent(stage: .certificate, status: .started, message: "computing the Alias certificate for \(registrationID)", boardID: id))
        let moved = try BoardFileOwnership(registry: registry).claim(
            registrationID: registrationID, outputDirectory: request.outputDirectory, boardID: id, force: request.force,
            udsSent: board.udsSentAt != nil)
        for sentence in moved {
            report(ProvisionEvent(stage: .certificate, status: .started, message: sentence, boardID: id))
        }
        let files = try BoardCertificateFiles.write(
            uds: board.uds, registrationID: registrationID, factory: v.factory, outputDirectory: request.outputDirectory,
            dps: request.dps)
        var update = files.update()
        // Owed from here: a run stopped before the enroll step leaves it said.
        if let dps = v.dps { update.enrollment = .pending(dpsHost: dps.dpsHost) }
        board = try mark([.certificateWritten, .enrollmentWritten], board, update)
        // Committed after every background mark of this board: none failed unseen.
        try failures.throwIfAny()
        report(ProvisionEvent(stage: .certificate, status: .done, message: "wrote \(files.certificatePath) (SHA-1 \(files.certificate.sha1))", boardID: id))
        // Every stage reports started and done, this one too (written with the certificate).
        report(ProvisionEvent(stage: .enrollment, status: .started, message: "writing the enrollment file", boardID: id))
        report(ProvisionEvent(stage: .enrollment, status: .done, message: "wrote \(files.enrollmentPath)", boardID: id))

        var result = files.result(boardID: id, mac: mac, firmwareVersion: version)
        if let dps = v.dps {
            result.enrollment = enroll(boardID: id, registrationID: registrationID, certificatePEM: files.certificate.pem, in: dps)
        }
        return result
    }

    /// Enrolls a board provisioned earlier (its row done, its certificate file the
    /// one recorded) in the DPS of `settings`, and records the outcome: what finishes
    /// a board left `done, not enrolled` when it is plugged in again under `watch`.
    /// `replace`: DPS's enrollment holding another certificate is updated.
    public func enrollRecorded(_ board: BoardRecord, dps settings: DPSSettings, replace: Bool = false) throws -> ProvisionEnrollment {
        guard let id = board.id, board.state == .done, let recordedID = board.registrationID, let path = board.certificatePath
        else { throw ProvisionError.cannotResume("board #\(board.id ?? 0) is not provisioned to the end; finish it with --resume") }
        // Its row is changed (the enrollment recorded): not while another station
        // re-issues or enrolls it.
        let claimed = BoardClaimKeys.recorded(board)
        try claim(claimed, boardID: id)
        defer { registry.release(boards: claimed) }
        let registrationID = try Registry.parseStored(RegistrationID.init, recordedID, board: id)
        let pem: String
        do {
            pem = String(decoding: try InputFile.read(path, limit: .certificate, standardInputDash: false), as: UTF8.self)
        } catch {
            throw ProvisionError.cannotResume(
                "board #\(id)'s certificate \(escaped(path)) cannot be read (\(error.reason)); re-issue it with "
                    + "`devkit registry reissue --board \(id)`")
        }
        if let recorded = board.certificateSHA256,
           (try? EnrollmentCertificate(pem: pem))?.sha256Thumbprint != recorded.uppercased()
        {
            throw ProvisionError.cannotResume(
                "\(escaped(path)) no longer holds the certificate recorded for board #\(id); re-issue it with "
                    + "`devkit registry reissue --board \(id)`")
        }
        let dps = try DPSEnrollmentTarget(settings, log: dpsLog)
        defer { dps.close() }
        return enroll(boardID: id, registrationID: registrationID, certificatePEM: pem, in: dps, replace: replace)
    }

    /// The last step: enrolls the board (its files durable, its row done) in DPS and
    /// records the outcome. Never throws: the board is provisioned whatever DPS
    /// says; a failure is reported and left in the result (`done, not enrolled`).
    /// A conflict (DPS holds another certificate) is not replaced here.
    func enroll(
        boardID id: Int64, registrationID: RegistrationID, certificatePEM: String, in dps: DPSEnrollmentTarget,
        replace: Bool = false
    ) -> ProvisionEnrollment {
        report(ProvisionEvent(
            stage: .enroll, status: .started, message: "enrolling \(registrationID) in DPS \(dps.dpsHost)", boardID: id))
        let outcome = dps.enroll(registrationID: registrationID, certificatePEM: certificatePEM, replace: replace)
        var enrollment = ProvisionEnrollment(outcome: outcome, dpsHost: dps.dpsHost)
        do {
            try EnrollmentRecording.record(outcome, dpsHost: dps.dpsHost, boardID: id, in: registry)
        } catch {
            enrollment.recordingFailure = "\(error)"
        }
        if outcome.isEnrolled {
            var message = "\(outcome.action.rawValue) in \(dps.dpsHost)" + (outcome.sha1Thumbprint.map { " (SHA-1 \($0))" } ?? "")
            // Enrolled, but not as asked (disabled there, another hub): left as it is, said.
            if outcome.action == .unchanged, let note = outcome.message {
                message += "; \(note): left as it is (enrolling the board again with --replace writes the settings asked for)"
            }
            if let failure = enrollment.recordingFailure { message += "; not recorded in the registry: \(failure)" }
            report(ProvisionEvent(stage: .enroll, status: .done, message: message, boardID: id))
        } else {
            let error = NotEnrolled(boardID: id, enrollment: enrollment)
            report(ProvisionEvent(stage: .enroll, status: .failed, message: error.description, boardID: id, error: error))
        }
        return enrollment
    }

    /// Creates the output directory (and its parents) if missing, and checks that this
    /// process may create files in it: once, before any board or device, so that an
    /// unwritable directory is one error rather than one per board. `access(2)`, not
    /// `faccessat(AT_EACCESS)`: devkit is not setuid, and glibc's faccessat tries
    /// faccessat2, which older seccomp profiles (containers) refuse with EPERM.
    public static func checkOutputDirectory(_ path: String) throws(ProvisionError) {
        var isDirectory: ObjCBool = false
        if !FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) {
            // Created, as `devkit cert` does: before any board is touched, and the
            // error below says why when that is not possible.
            // mkdir(2) rather than FileManager, whose error reads "The operation could
            // not be completed" and hides the errno the exit code is chosen by.
            var current = path.hasPrefix("/") ? "" : "."
            for component in path.split(separator: "/") {
                current += "/" + component
                if mkdir(current, 0o755) != 0 && errno != EEXIST {
                    let error = errno
                    throw .outputDirectory(
                        path: path, reason: "does not exist and cannot be created: \(String(cString: strerror(error)))",
                        errno: error)
                }
            }
            isDirectory = true
        }
        guard isDirectory.boolValue else { throw .outputDirectory(path: path, reason: "is not a directory", errno: ENOTDIR) }
        guard access(path, W_OK | X_OK) == 0 else {
            throw .outputDirectory(path: path, reason: "is not writable", errno: errno)
        }
    }
}

/// The stage a workflow last reported as started (shared by the workflow's copies).
final class LastStartedStage: Sendable {
    let stage = Mutex<ProvisionStage?>(nil)
}
