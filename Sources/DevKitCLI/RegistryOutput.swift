import DevKitModel
import DevKitRegistry
import DevKitWorkflows
import Foundation

/// How a registry row is shown to scripts (`--json`, `export`). Every key is
/// always present (null when unknown); the UDS only when `includeSecret`.
struct BoardJSON: Encodable {
    let board: BoardRecord
    let includeSecret: Bool

    private enum Key: String, CodingKey {
        case id, mac, usbSerial = "usb_serial", registrationID = "registration_id"
        case firmwareVersion = "firmware_version", uds, certificateSHA1 = "certificate_sha1"
        case certificateSHA256 = "certificate_sha256", certificatePath = "certificate_path"
        case enrollmentPath = "enrollment_path", state, error, lastStep = "last_step"
        case nextStep = "next_step", createdAt = "created_at", updatedAt = "updated_at", steps
        case supersededBy = "superseded_by", enrolled, enrollment, verification, station
    }

    private enum VerificationKey: String, CodingKey {
        case outcome, assignedHub = "assigned_hub", deviceID = "device_id", at
    }

    private enum EnrollmentKey: String, CodingKey {
        case action, at, dpsHost = "dps_host", etag, sha1Thumbprint = "sha1_thumbprint"
        case errorCode = "error_code", message, trackingID = "tracking_id"
    }

    func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: Key.self)
        try c.encode(board.id, forKey: .id)
        try c.encode(board.mac, forKey: .mac)
        try c.encode(board.usbSerial, forKey: .usbSerial)
        try c.encode(board.station, forKey: .station)
        try c.encode(board.registrationID, forKey: .registrationID)
        try c.encode(board.firmwareVersion, forKey: .firmwareVersion)
        if includeSecret { try c.encode(board.uds.hexString, forKey: .uds) }
        try c.encode(board.certificateSHA1, forKey: .certificateSHA1)
        try c.encode(board.certificateSHA256, forKey: .certificateSHA256)
        try c.encode(board.certificatePath, forKey: .certificatePath)
        try c.encode(board.enrollmentPath, forKey: .enrollmentPath)
        try c.encode(board.state.rawValue, forKey: .state)
        try c.encode(board.error, forKey: .error)
        try c.encode(board.supersededBy, forKey: .supersededBy)
        try c.encode(board.lastStep?.rawValue, forKey: .lastStep)
        try c.encode(board.nextStep?.rawValue, forKey: .nextStep)
        try c.encode(timestamp(board.createdAt), forKey: .createdAt)
        try c.encode(timestamp(board.updatedAt), forKey: .updatedAt)
        // `state` stays `done` for a board whose enrollment is owed; `enrolled`
        // says whether DPS holds its current certificate, `enrollment` is null when
        // DPS was never configured for it.
        try c.encode(board.isEnrolled, forKey: .enrolled)
        if let e = board.enrollment {
            var n = c.nestedContainer(keyedBy: EnrollmentKey.self, forKey: .enrollment)
            try n.encode(e.action.rawValue, forKey: .action)
            try n.encode(timestamp(e.at), forKey: .at)
            try n.encode(e.dpsHost, forKey: .dpsHost)
            try n.encode(e.etag, forKey: .etag)
            try n.encode(e.sha1Thumbprint, forKey: .sha1Thumbprint)
            try n.encode(e.errorCode, forKey: .errorCode)
            try n.encode(e.errorMessage, forKey: .message)
            try n.encode(e.trackingID, forKey: .trackingID)
        } else {
            try c.encodeNil(forKey: .enrollment)
        }
        // The last check of the board registering (`verify`, `provision --verify`); null if never.
        if let v = board.verification {
            var n = c.nestedContainer(keyedBy: VerificationKey.self, forKey: .verification)
            try n.encode(v.outcome, forKey: .outcome)
            try n.encode(v.assignedHub, forKey: .assignedHub)
            try n.encode(v.deviceID, forKey: .deviceID)
            try n.encode(timestamp(v.at), forKey: .at)
        } else {
            try c.encodeNil(forKey: .verification)
        }
        var steps = c.nestedContainer(keyedBy: StepKey.self, forKey: .steps)
        for step in ProvisioningStep.allCases {
            try steps.encode(board.completedAt(step).map(timestamp), forKey: StepKey(step.rawValue))
        }
    }

    private struct StepKey: CodingKey {
        let stringValue: String
        init(_ s: String) { stringValue = s }
        init?(stringValue: String) { self.stringValue = stringValue }
        var intValue: Int? { nil }
        init?(intValue: Int) { nil }
    }
}

/// ISO 8601 in UTC with milliseconds, the same everywhere in the output. Rounded to
/// the nearest millisecond, as the registry stores times: the format style truncates,
/// and a stored `.780` read back as 0.77999… seconds was shown as `.779`.
func timestamp(_ date: Date) -> String {
    date.addingTimeInterval(0.0005).formatted(
        Date.ISO8601FormatStyle(includingFractionalSeconds: true, timeZone: TimeZone(identifier: "UTC")!))
}

/// Registry rows as CSV (RFC 4180: CRLF line ends, fields quoted when needed).
func registryCSV(_ boards: [BoardRecord], includeSecrets: Bool) -> String {
    var header = ["id", "mac", "usb_serial", "registration_id", "firmware_version"]
    if includeSecrets { header.append("uds") }
    header += ["certificate_sha1", "certificate_sha256", "certificate_path", "enrollment_path",
               "state", "error", "created_at", "updated_at"]
    header += ProvisioningStep.allCases.map(\.columnName)
    header += ["enrolled", "enrollment_action", "enrollment_at", "enrollment_dps_host", "enrollment_etag",
               "enrollment_sha1_thumbprint", "enrollment_error_code", "enrollment_error_message",
               "enrollment_tracking_id"]
    header += ["verification_outcome", "verification_assigned_hub", "verification_device_id", "verification_at"]
    // Last, so that the columns scripts already read keep their places.
    header += ["superseded_by", "station"]
    var lines = [header.joined(separator: ",")]
    for b in boards {
        var fields: [String?] = [b.id.map(String.init), b.mac, b.usbSerial, b.registrationID, b.firmwareVersion]
        if includeSecrets { fields.append(b.uds.hexString) }
        fields += [b.certificateSHA1, b.certificateSHA256, b.certificatePath, b.enrollmentPath,
                   b.state.rawValue, b.error, timestamp(b.createdAt), timestamp(b.updatedAt)]
        fields += ProvisioningStep.allCases.map { b.completedAt($0).map(timestamp) }
        let e = b.enrollment
        fields += [b.isEnrolled ? "true" : "false", e?.action.rawValue, e.map { timestamp($0.at) }, e?.dpsHost, e?.etag,
                   e?.sha1Thumbprint, e?.errorCode.map(String.init), e?.errorMessage, e?.trackingID]
        let v = b.verification
        fields += [v?.outcome, v?.assignedHub, v?.deviceID, v.map { timestamp($0.at) }]
        fields += [b.supersededBy.map(String.init), b.station]
        lines.append(fields.map { csvField($0 ?? "") }.joined(separator: ","))
    }
    return lines.joined(separator: "\r\n") + "\r\n"
}

/// The rows of a listing, each with ``BoardRecord/supersededBy`` also set when a
/// later row of the same board (its USB serial, else its MAC) confirmed its UDS: the
/// board was provisioned again, on any station, and holds that row's UDS, so this
/// row's certificate no longer matches it. The registry stores `superseded_by` only
/// for `provision --force`; a board provisioned again elsewhere (another station,
/// another output directory) showed `done` twice. A later row that never confirmed
/// its UDS does not count here (the board may still hold this row's), though
/// `reissue` and `dps enroll` skip on any later row, to be safe. `all`: every row,
/// so that a filter (`--unfinished`, `--station`) cannot hide the later one. For
/// display only.
func markingLaterRows(_ boards: [BoardRecord], all: [BoardRecord]) -> [BoardRecord] {
    let latest = LatestBoardRecords(all.filter { $0.udsConfirmedAt != nil })
    return boards.map { board in
        var board = board
        if board.supersededBy == nil { board.supersededBy = latest.newer(than: board)?.boardID }
        return board
    }
}

/// A board's state in one phrase: `superseded by #N`, `done, not enrolled` (its
/// certificate is written, the DPS enrollment it was provisioned with is owed), or
/// the registry's state.
func stateText(_ board: BoardRecord) -> String {
    if let newer = board.supersededBy { return "superseded by #\(newer)" }
    if board.awaitsEnrollment { return "done, not enrolled" }
    return board.state.rawValue
}

/// The ENROLLED cell of `registry list`: `created 12:01` (the action that enrolled
/// the current certificate and when), `conflict 12:01` (DPS holds another
/// certificate), `failed 401002` (DPS's error code), `not enrolled` (owed: not
/// attempted yet or DPS not reached), `old certificate` (enrolled before the
/// certificate was re-issued), `-` (DPS never configured for it).
func enrollmentCell(_ board: BoardRecord, now: Date = Date()) -> String {
    guard let e = board.enrollment else { return "-" }
    if board.isEnrolled { return "\(e.action.rawValue) \(shortTime(e.at, now: now))" }
    switch e.action {
    case .created, .updated, .unchanged: return "old certificate"
    case .conflict: return "conflict \(shortTime(e.at, now: now))"
    case .failed: return e.errorCode.map { "failed \($0)" } ?? "not enrolled"
    case .pending: return "not enrolled"
    }
}

/// The VERIFIED cell of `registry list`: the outcome of the board's last
/// verification and the hub it was assigned to (`assigned my-hub.azure-devices.net`),
/// `-` when it was never verified.
func verificationCell(_ board: BoardRecord) -> String {
    guard let v = board.verification else { return "-" }
    return v.outcome + (v.assignedHub.map { " \($0)" } ?? "")
}

/// `HH:mm` (24-hour) today, `yyyy-MM-dd` another day, local time: a table cell, short.
func shortTime(_ date: Date, now: Date = Date()) -> String {
    let formatter = DateFormatter()
    formatter.locale = Locale(identifier: "en_US_POSIX")
    formatter.dateFormat = Calendar.current.isDate(date, inSameDayAs: now) ? "HH:mm" : "yyyy-MM-dd"
    return formatter.string(from: date)
}

/// One CSV field: quoted when it must be; control and invisible format characters
/// escaped (`escapedControlCharacters`: a field's own line breaks and tabs, which
/// quoting carries, are kept), so the CSV shown in a terminal cannot drive it.
private func csvField(_ raw: String) -> String {
    let s = escapedControlCharacters(raw)
    guard s.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) else { return s }
    return "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\""
}

/// A plain-text table with left-aligned columns, for terminals.
func textTable(_ header: [String], _ rows: [[String]]) -> String {
    var widths = header.map(\.count)
    for row in rows { for (i, cell) in row.enumerated() { widths[i] = max(widths[i], cell.count) } }
    func line(_ cells: [String]) -> String {
        cells.enumerated().map { i, cell in
            i == cells.count - 1 ? cell : cell.padding(toLength: widths[i], withPad: " ", startingAt: 0)
        }.joined(separator: "  ")
    }
    return ([line(header)] + rows.map(line)).joined(separator: "\n")
}
