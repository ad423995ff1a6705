import Foundation
import GRDB

extension BoardEnrollment.Action: DatabaseValueConvertible {}

/// A board's DPS enrollment as last recorded: the action, DPS's etag and SHA-1
/// thumbprint of the enrolled certificate, when, in which DPS, and for a failure
/// DPS's error code, message and tracking ID. Never a secret.
public struct BoardEnrollment: Sendable, Equatable {
    /// What the last attempt to enroll a board in DPS came to (schema v5).
    ///
    /// The registry's own words for it: the DPS client's result is mapped to this in
    /// one place (DevKitWorkflows' `EnrollmentRecording`), so the registry does not
    /// depend on the client.
    public enum Action: String, Codable, Sendable, CaseIterable {
        /// DPS was configured for the board but no enrollment result is recorded yet:
        /// written with the certificate, so a run stopped between the certificate and
        /// the enrollment leaves a row that says the enrollment is still owed.
        case pending
        /// DPS had no enrollment with this ID; one was created.
        case created
        /// DPS held another certificate; it was replaced (`--replace`, `reissue --enroll`).
        case updated
        /// DPS already held this certificate; nothing was written.
        case unchanged
        /// DPS holds another certificate for this ID, left alone (no `--replace`).
        case conflict
        /// The attempt failed: DPS refused it (``BoardEnrollment/errorCode``) or could
        /// not be reached (no code; ``BoardEnrollment/errorMessage`` says why).
        case failed

        /// Whether this action leaves DPS holding the certificate that was sent.
        public var enrolls: Bool { self == .created || self == .updated || self == .unchanged }
    }

    public var action: Action
    /// When the result was recorded (or, for `pending`, when DPS was configured).
    public var at: Date
    /// The DPS host name (`<name>.azure-devices-provisioning.net`, or the local DPS's).
    public var dpsHost: String?
    /// The enrollment's etag as DPS returned it (absent for bulk results, conflicts, failures).
    public var etag: String?
    /// The SHA-1 thumbprint DPS reports for the enrolled certificate (upper-case hex).
    public var sha1Thumbprint: String?
    /// DPS's error code (e.g. 401002) for a refusal; nil when DPS was not reached.
    public var errorCode: Int?
    /// What went wrong, without secrets.
    public var errorMessage: String?
    /// DPS's tracking ID for the failed request (what Microsoft support asks for).
    public var trackingID: String?

    public init(
        action: Action, at: Date = Date(), dpsHost: String? = nil, etag: String? = nil,
        sha1Thumbprint: String? = nil, errorCode: Int? = nil, errorMessage: String? = nil, trackingID: String? = nil
    ) {
        self.action = action
        self.at = at
        self.dpsHost = dpsHost
        self.etag = etag
        self.sha1Thumbprint = sha1Thumbprint
        self.errorCode = errorCode
        self.errorMessage = errorMessage
        self.trackingID = trackingID
    }

    /// DPS was configured for a board whose enrollment has no result yet.
    public static func pending(dpsHost: String?, at date: Date = Date()) -> BoardEnrollment {
        BoardEnrollment(action: .pending, at: date, dpsHost: dpsHost)
    }
}

extension BoardRecord {
    /// Whether DPS holds this board's current certificate, as last recorded: the
    /// last action enrolled it and the thumbprint DPS reported is the certificate
    /// the row holds now (a certificate re-issued since is not enrolled).
    public var isEnrolled: Bool {
        guard let enrollment, enrollment.action.enrolls else { return false }
        guard let enrolled = enrollment.sha1Thumbprint, let current = certificateSHA1 else { return true }
        return enrolled.uppercased() == current.uppercased()
    }

    /// A finished board (certificate and enrollment file written) that DPS was
    /// configured for and that is not enrolled: shown as `done, not enrolled`.
    /// `devkit dps enroll --from-registry --id <id>` finishes it.
    public var awaitsEnrollment: Bool {
        state == .done && supersededBy == nil && enrollment != nil && !isEnrolled
    }
}
