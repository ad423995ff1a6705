import DevKitModel
import Foundation
import GRDB

/// One step of provisioning a board, in the order the workflow performs them.
///
/// Each step has its own timestamp column in the registry, so a row always says
/// how far a board got, even after a crash.
public enum ProvisioningStep: String, CaseIterable, Codable, Sendable, Comparable {
    /// The UDS is committed (and synced) to the registry; nothing sent yet.
    case udsRecorded = "uds_recorded"
    /// The `set_dps_uds` line is about to go to the board (it may or may not have stored it).
    case udsSent = "uds_sent"
    /// The board answered that it stored the UDS.
    case udsConfirmed = "uds_confirmed"
    /// The firmware version was read with `version`.
    case versionRead = "version_read"
    /// The MAC address is known (boot log or given by the user).
    case macRead = "mac_read"
    /// The Alias certificate `<id>.pem` was written.
    case certificateWritten = "certificate_written"
    /// The enrollment file `<id>.enrollment.json` was written; the board is done.
    case enrollmentWritten = "enrollment_written"

    /// Position in the workflow (0 = first).
    public var order: Int { Self.allCases.firstIndex(of: self)! }

    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.order < rhs.order }

    /// The column name that holds this step's completion time.
    public var columnName: String { "\(rawValue)_at" }
}

/// Where a board stands overall.
public enum BoardState: String, Codable, Sendable, CaseIterable {
    /// Some steps are done, the last run has not finished (or crashed).
    case inProgress = "in_progress"
    /// The last run stopped on an error (see `BoardRecord.error`).
    case failed
    /// Every step is done: certificate and enrollment file exist.
    case done
}

/// One row of the registry: everything known about one provisioned board.
///
/// `uds` is the secret; never print it unless the user asked for it explicitly.
///
/// Not a GRDB persistable record: its `insert`/`update`/`save` would write the
/// UDS as it is. Rows are written only by the registry, which seals the UDS
/// (RegistrySealing.swift); ``databaseValues`` never holds it.
public struct BoardRecord: Sendable, Equatable, Identifiable, FetchableRecord, TableRecord {
    public static let databaseTableName = "board"

    /// Row id, assigned when the row is first inserted.
    public var id: Int64?
    /// Wi-Fi MAC, 12 lower-case hex digits, once known.
    public var mac: String?
    /// USB serial number of the board's ST-LINK, if it was discovered.
    public var usbSerial: String?
    /// Registration ID (certificate CN), once known.
    public var registrationID: String?
    /// DevKitSDK firmware version (`X.Y.Z`), once read.
    public var firmwareVersion: String?
    /// Unique Device Secret, 64 lower-case hex digits. Secret. A registry opened
    /// without its key (``RegistryKeySource/withheld``: `registry list`, `show` and
    /// `export` without the UDS) reads rows with it withheld: reading it then is a
    /// programming error and traps, rather than hand out a made-up secret.
    public var uds: UDS {
        get {
            guard let storedUDS else {
                preconditionFailure("board #\(id ?? 0)'s UDS was withheld: its registry was opened without the key")
            }
            return storedUDS
        }
        set { storedUDS = newValue }
    }
    /// Nil when withheld (see ``uds``).
    var storedUDS: UDS?
    /// Whether the row was read without its UDS (the registry opened without its key).
    public var isUDSWithheld: Bool { storedUDS == nil }
    /// SHA-1 thumbprint of the Alias certificate DER (as DPS shows it).
    public var certificateSHA1: String?
    /// SHA-256 thumbprint of the Alias certificate DER.
    public var certificateSHA256: String?
    /// Path of the written `<id>.pem`.
    public var certificatePath: String?
    /// Path of the written `<id>.enrollment.json`.
    public var enrollmentPath: String?
    public var state: BoardState
    /// The last error, without secrets, when `state == .failed`.
    public var error: String?
    public var createdAt: Date
    public var updatedAt: Date
    /// The row that replaced this one by provisioning the same files again with
    /// `--force` (schema v3); its certificate and enrollment file were moved aside
    /// (``certificatePath`` and ``enrollmentPath`` say where).
    public var supersededBy: Int64?
    /// What `provision --resume` needs to finish this board without the original
    /// command line (schema v4): a JSON object the provisioning workflow writes and
    /// reads (firmware paths and their SHA-256, output directory, registration-ID
    /// scheme, Wi-Fi settings source). Never a secret.
    public var provisionSettings: String?

    public var udsRecordedAt: Date?
    public var udsSentAt: Date?
    public var udsConfirmedAt: Date?
    public var versionReadAt: Date?
    public var macReadAt: Date?
    public var certificateWrittenAt: Date?
    public var enrollmentWrittenAt: Date?
    /// The board's DPS enrollment as last recorded (schema v5); nil when DPS was
    /// never configured for it (`provision` without DPS options, an older devkit).
    public var enrollment: BoardEnrollment?
    /// The last verification of the board's registration (schema v6); nil when it
    /// was never verified.
    public var verification: BoardVerification?
    /// The station that recorded the board (`--station`, default the host name;
    /// schema v7): which machine of a shared registry gave it its UDS. Nil for rows
    /// an older devkit wrote.
    public var station: String?

    enum CodingKeys: String, CodingKey {
        case id, mac
        case usbSerial = "usb_serial"
        case registrationID = "registration_id"
        case firmwareVersion = "firmware_version"
        case uds
        case certificateSHA1 = "certificate_sha1"
        case certificateSHA256 = "certificate_sha256"
        case certificatePath = "certificate_path"
        case enrollmentPath = "enrollment_path"
        case state, error
        case createdAt = "created_at"
        case updatedAt = "updated_at"
        case supersededBy = "superseded_by"
        case provisionSettings = "provision_settings"
        case udsRecordedAt = "uds_recorded_at"
        case udsSentAt = "uds_sent_at"
        case udsConfirmedAt = "uds_confirmed_at"
        case versionReadAt = "version_read_at"
        case macReadAt = "mac_read_at"
        case certificateWrittenAt = "certificate_written_at"
        case enrollmentWrittenAt = "enrollment_written_at"
        case enrollmentAction = "enrollment_action"
        case enrollmentAt = "enrollment_at"
        case enrollmentDPSHost = "enrollment_dps_host"
        case enrollmentETag = "enrollment_etag"
        case enrollmentSHA1 = "enrollment_sha1_thumbprint"
        case enrollmentErrorCode = "enrollment_error_code"
        case enrollmentErrorMessage = "enrollment_error_message"
        case enrollmentTrackingID = "enrollment_tracking_id"
        case verificationOutcome = "verification_outcome"
        case verificationHub = "verification_assigned_hub"
        case verificationDeviceID = "verification_device_id"
        case verificationAt = "verification_at"
        case station
    }

    /// When `step` was completed, or nil.
    public func completedAt(_ step: ProvisioningStep) -> Date? {
        switch step {
        case .udsRecorded: udsRecordedAt
        case .udsSent: udsSentAt
        case .udsConfirmed: udsConfirmedAt
        case .versionRead: versionReadAt
        case .macRead: macReadAt
        case .certificateWritten: certificateWrittenAt
        case .enrollmentWritten: enrollmentWrittenAt
        }
    }

    /// The steps completed so far, in workflow order.
    public var completedSteps: [ProvisioningStep] {
        ProvisioningStep.allCases.filter { completedAt($0) != nil }
    }

    /// The last step of the unbroken run from the start, i.e. the one before
    /// ``nextStep`` (every row has at least `.udsRecorded`). Not simply the furthest
    /// step marked: a MAC given with `--mac` marks `mac_read` at record time, and a
    /// board cut off after `uds_sent` got no further than that.
    public var lastStep: ProvisioningStep? {
        guard let next = nextStep else { return ProvisioningStep.allCases.last }
        return ProvisioningStep.allCases.last { $0 < next }
    }

    /// The first step not yet completed, or nil when the board is done.
    public var nextStep: ProvisioningStep? {
        ProvisioningStep.allCases.first { completedAt($0) == nil }
    }

    mutating func setCompleted(_ step: ProvisioningStep, at date: Date) {
        switch step {
        case .udsRecorded: udsRecordedAt = date
        case .udsSent: udsSentAt = date
        case .udsConfirmed: udsConfirmedAt = date
        case .versionRead: versionReadAt = date
        case .macRead: macReadAt = date
        case .certificateWritten: certificateWrittenAt = date
        case .enrollmentWritten: enrollmentWrittenAt = date
        }
    }

    mutating func apply(_ update: BoardUpdate) {
        if let v = update.mac { mac = v.hex }
        if let v = update.usbSerial { usbSerial = v }
        if let v = update.registrationID { registrationID = v.value }
        if let v = update.firmwareVersion { firmwareVersion = v.text }
        if let v = update.certificateSHA1 { certificateSHA1 = v }
        if let v = update.certificateSHA256 { certificateSHA256 = v }
        if let v = update.certificatePath { certificatePath = absolutePath(v) }
        if let v = update.enrollmentPath { enrollmentPath = absolutePath(v) }
        if let v = update.enrollment { enrollment = v }
    }
}

/// Facts learned at a step, stored in the same transaction as the step's mark.
/// Nil fields leave the row's value unchanged.
public struct BoardUpdate: Sendable, Equatable {
    public var mac: MACAddress?
    public var usbSerial: String?
    public var registrationID: RegistrationID?
    public var firmwareVersion: FirmwareVersion?
    public var certificateSHA1: String?
    public var certificateSHA256: String?
    public var certificatePath: String?
    public var enrollmentPath: String?
    /// The board's DPS enrollment: `pending` with the certificate when DPS is
    /// configured, so the same commit that makes the board done says it is owed.
    public var enrollment: BoardEnrollment?

    public init(
        mac: MACAddress? = nil, usbSerial: String? = nil, registrationID: RegistrationID? = nil,
        firmwareVersion: FirmwareVersion? = nil, certificateSHA1: String? = nil,
        certificateSHA256: String? = nil, certificatePath: String? = nil,
        enrollmentPath: String? = nil, enrollment: BoardEnrollment? = nil
    ) {
        self.enrollment = enrollment
        self.mac = mac
        self.usbSerial = usbSerial
        self.registrationID = registrationID
        self.firmwareVersion = firmwareVersion
        self.certificateSHA1 = certificateSHA1
        self.certificateSHA256 = certificateSHA256
        self.certificatePath = certificatePath
        self.enrollmentPath = enrollmentPath
    }
}

// GRDB would map rows through Codable: a generic Encoder and Decoder per row, which
// in a 16-board `devkit watch` run was a fifth of the daemon's CPU. The columns are
// the CodingKeys and the values are stored as the Codable path stored them (dates
// as GRDB's text, the state as its raw value), so both read the same rows.
extension BoardRecord {
    /// A row whose UDS is stored in clear text (as devkit stored it before issue 16).
    public init(row: Row) throws {
        let text = try row.decode(String.self, forColumn: CodingKeys.uds.rawValue)
        try self.init(row: row, uds: UDS(hex: text))
    }

    /// A row, with its UDS as opened by the registry's sealer (nil: withheld).
    init(row: Row, uds: UDS?) throws {
        storedUDS = uds
        id = row[CodingKeys.id.rawValue]
        mac = row[CodingKeys.mac.rawValue]
        usbSerial = row[CodingKeys.usbSerial.rawValue]
        registrationID = row[CodingKeys.registrationID.rawValue]
        firmwareVersion = row[CodingKeys.firmwareVersion.rawValue]
        certificateSHA1 = row[CodingKeys.certificateSHA1.rawValue]
        certificateSHA256 = row[CodingKeys.certificateSHA256.rawValue]
        certificatePath = row[CodingKeys.certificatePath.rawValue]
        enrollmentPath = row[CodingKeys.enrollmentPath.rawValue]
        state = try row.decode(BoardState.self, forColumn: CodingKeys.state.rawValue)
        error = row[CodingKeys.error.rawValue]
        func date(_ key: CodingKeys) -> Date? {
            // Our own format through RegistryTimestamp; anything else through GRDB.
            if let text = row[key.rawValue] as String?, let date = RegistryTimestamp.date(text) { return date }
            return row[key.rawValue]
        }
        func requiredDate(_ key: CodingKeys) throws -> Date {
            if let date = date(key) { return date }
            return try row.decode(Date.self, forColumn: key.rawValue)  // GRDB's error
        }
        createdAt = try requiredDate(.createdAt)
        updatedAt = try requiredDate(.updatedAt)
        supersededBy = row[CodingKeys.supersededBy.rawValue]
        provisionSettings = row[CodingKeys.provisionSettings.rawValue]
        udsRecordedAt = date(.udsRecordedAt)
        udsSentAt = date(.udsSentAt)
        udsConfirmedAt = date(.udsConfirmedAt)
        versionReadAt = date(.versionReadAt)
        macReadAt = date(.macReadAt)
        certificateWrittenAt = date(.certificateWrittenAt)
        enrollmentWrittenAt = date(.enrollmentWrittenAt)
        // A value other than the actions fails to decode (GRDB's error), like `state`.
        if let action = try row.decode(BoardEnrollment.Action?.self, forColumn: CodingKeys.enrollmentAction.rawValue) {
            enrollment = BoardEnrollment(
                action: action, at: date(.enrollmentAt) ?? updatedAt,
                dpsHost: row[CodingKeys.enrollmentDPSHost.rawValue],
                etag: row[CodingKeys.enrollmentETag.rawValue],
                sha1Thumbprint: row[CodingKeys.enrollmentSHA1.rawValue],
                errorCode: row[CodingKeys.enrollmentErrorCode.rawValue],
                errorMessage: row[CodingKeys.enrollmentErrorMessage.rawValue],
                trackingID: row[CodingKeys.enrollmentTrackingID.rawValue])
        }
        station = row[CodingKeys.station.rawValue]
        if let outcome = row[CodingKeys.verificationOutcome.rawValue] as String? {
            verification = BoardVerification(
                outcome: outcome, assignedHub: row[CodingKeys.verificationHub.rawValue],
                deviceID: row[CodingKeys.verificationDeviceID.rawValue], at: date(.verificationAt) ?? updatedAt)
        }
    }

    /// The table's columns, `id` first, in the order of ``databaseValues``.
    static let databaseColumns: [String] = [
        CodingKeys.id, .mac, .usbSerial, .registrationID, .firmwareVersion, .uds, .certificateSHA1,
        .certificateSHA256, .certificatePath, .enrollmentPath, .state, .error, .createdAt, .updatedAt,
        .udsRecordedAt, .udsSentAt, .udsConfirmedAt, .versionReadAt, .macReadAt, .certificateWrittenAt,
        .enrollmentWrittenAt, .supersededBy, .provisionSettings, .enrollmentAction, .enrollmentAt,
        .enrollmentDPSHost, .enrollmentETag, .enrollmentSHA1, .enrollmentErrorCode, .enrollmentErrorMessage,
        .enrollmentTrackingID, .verificationOutcome, .verificationHub, .verificationDeviceID, .verificationAt, .station,
    ].map(\.rawValue)

    /// The row's values, in the order of ``databaseColumns``.
    /// Dates go in as RegistryTimestamp's text, the text GRDB would store.
    /// The `uds` column's value is always nil: never the clear UDS. The backends
    /// put the sealed value there (``Registry`` and ``PostgresRegistry``).
    var databaseValues: [(any DatabaseValueConvertible)?] {
        let text = RegistryTimestamp.text
        return [id, mac, usbSerial, registrationID, firmwareVersion, nil, certificateSHA1,
         certificateSHA256, certificatePath, enrollmentPath, state, error, text(createdAt), text(updatedAt),
         udsRecordedAt.map(text), udsSentAt.map(text), udsConfirmedAt.map(text), versionReadAt.map(text),
         macReadAt.map(text), certificateWrittenAt.map(text), enrollmentWrittenAt.map(text), supersededBy, provisionSettings,
         enrollment?.action, enrollment.map { text($0.at) }, enrollment?.dpsHost, enrollment?.etag,
         enrollment?.sha1Thumbprint, enrollment?.errorCode, enrollment?.errorMessage, enrollment?.trackingID,
         verification?.outcome, verification?.assignedHub, verification?.deviceID, verification.map { text($0.at) },
         station]
    }
}

extension BoardState: DatabaseValueConvertible {}

/// `path` resolved against the current directory at the moment it is recorded: a
/// row is read later from anywhere (`registry show`, `reissue`, the systemd unit),
/// where a relative path would point elsewhere.
func absolutePath(_ path: String) -> String {
    guard !path.hasPrefix("/") else { return path }
    let cwd = FileManager.default.currentDirectoryPath
    return (URL(fileURLWithPath: path, relativeTo: URL(fileURLWithPath: cwd, isDirectory: true))
        .standardizedFileURL.path)
}
