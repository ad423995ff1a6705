import DevKitBoard
import DPSModel
import DPSService
import DevKitModel
import DevKitRegistry
import Dispatch
import Foundation
import Synchronization

/// The DPS boards are enrolled in as provisioning's last step, ready to use.
///
/// Opened when the inputs are checked, before the board is touched: the connection
/// string is read (once: it may come from standard input) and parsed, the endpoint
/// checked, and the client made, which reads the trust anchors (`ca_file`). A wrong
/// file then fails the run at once instead of after the board holds a new UDS.
/// ``close()`` when done (the HTTP client must be shut down).
public final class DPSEnrollmentTarget: Sendable {
    public let settings: DPSSettings
    public let client: DPSClient

    /// The DPS host name (the connection string's HostName): what the registry records.
    public var dpsHost: String { client.configuration.connectionString.hostName }

    /// Reads `settings.connectionStringFile` and makes the client. `log` is told
    /// each request (never a header: `--verbose`).
    public init(_ settings: DPSSettings, log: (@Sendable (String) -> Void)? = nil) throws {
        guard let file = settings.connectionStringFile else {
            throw DPSTargetError.notConfigured
        }
        let text = try SecretFile.readTrimmed(file)
        let connectionString: DPSConnectionString
        do { connectionString = try DPSConnectionString(text) } catch {
            throw DPSTargetError.connectionString(path: file, reason: error.description)
        }
        var endpoint: URL?
        if let given = settings.endpoint {
            guard let url = DPSClientConfiguration.endpointURL(given) else { throw DPSTargetError.endpoint(given) }
            endpoint = url
        }
        let proxy: ProxySettings?
        do { proxy = try ProxySettings.fromEnvironment(for: endpoint?.host ?? connectionString.hostName) } catch {
            throw DPSTargetError.proxy(error.description)
        }
        var configuration = DPSClientConfiguration(
            connectionString: connectionString, endpoint: endpoint, caFiles: settings.caFile.map { [$0] } ?? [],
            proxy: proxy)
        configuration.log = log
        self.settings = settings
        client = try DPSClient(configuration)
    }

    /// Enrolls one board (blocking; called on a board's own thread, never from a
    /// task). Idempotent: a DPS that holds this certificate is `unchanged`; one
    /// holding another is a `conflict`, left alone unless `replace` (then updated
    /// with If-Match). Never throws: a failure is the outcome's.
    public func enroll(registrationID: RegistrationID, certificatePEM: String, replace: Bool = false) -> EnrollmentOutcome {
        let certificate: EnrollmentCertificate
        do { certificate = try EnrollmentCertificate(pem: certificatePEM) } catch {
            let failure = DPSServiceError(kind: .invalidRequest, operation: "enroll \(registrationID)", message: error.description)
            return EnrollmentOutcome(registrationId: registrationID.value, action: .failed, error: failure, message: failure.description)
        }
        let workflow = EnrollmentWorkflow(
            client: client,
            settings: EnrollmentSettings(
                iotHubHostName: settings.iotHubHostName,
                provisioningStatus: settings.provisioningEnabled ? .enabled : .disabled, replace: replace))
        let item = EnrollmentItem(registrationId: registrationID.value, certificate: certificate)
        return waitFor { await workflow.enrollOne(item) }
    }

    /// Enrolls recorded boards (blocking): one alone, several through the bulk API
    /// (10 a request, a few in flight), and records each outcome in `registry`.
    /// `replace`: an enrollment holding another certificate is updated (with
    /// If-Match): `registry reissue --enroll`, whose boards have new certificates.
    public func enroll(
        _ boards: [(boardID: Int64, registrationID: RegistrationID, certificatePEM: String)], replace: Bool,
        recordingIn registry: any RegistryStore
    ) -> [Int64: ProvisionEnrollment] {
        var items: [EnrollmentItem] = []
        var ids: [Int64] = []
        var results: [Int64: ProvisionEnrollment] = [:]
        for board in boards {
            do {
                items.append(EnrollmentItem(
                    registrationId: board.registrationID.value, certificate: try EnrollmentCertificate(pem: board.certificatePEM)))
                ids.append(board.boardID)
            } catch {
                let failure = DPSServiceError(kind: .invalidRequest, operation: "enroll \(board.registrationID)", message: error.description)
                let outcome = EnrollmentOutcome(
                    registrationId: board.registrationID.value, action: .failed, error: failure, message: failure.description)
                results[board.boardID] = ProvisionEnrollment(outcome: outcome, dpsHost: dpsHost)
            }
        }
        let workflow = EnrollmentWorkflow(
            client: client,
            settings: EnrollmentSettings(
                iotHubHostName: settings.iotHubHostName,
                provisioningStatus: settings.provisioningEnabled ? .enabled : .disabled, replace: replace))
        let outcomes = items.isEmpty ? [] : waitFor { [items] in await workflow.enroll(items) }
        for (id, outcome) in zip(ids, outcomes) {
            var enrollment = ProvisionEnrollment(outcome: outcome, dpsHost: dpsHost)
            do { try EnrollmentRecording.record(outcome, dpsHost: dpsHost, boardID: id, in: registry) } catch {
                enrollment.recordingFailure = "\(error)"
            }
            results[id] = enrollment
        }
        return results
    }

    /// Shuts the client down (blocking).
    public func close() {
        let client = self.client
        waitFor { await client.shutdown() }
    }
}

/// Runs `body` as a task and blocks the calling thread until it is done: the
/// provisioning workflow runs on plain threads (the serial console blocks), the DPS
/// client is async. Never call it from a task: it would hold a thread of the pool
/// the task needs.
func waitFor<T: Sendable>(_ body: @escaping @Sendable () async -> T) -> T {
    let result = Mutex<T?>(nil)
    let done = DispatchSemaphore(value: 0)
    Task.detached {
        let value = await body()
        result.withLock { $0 = value }
        done.signal()
    }
    done.wait()
    return result.withLock { $0! }
}

/// Why the DPS to enroll in cannot be used; nothing was sent to the board.
public enum DPSTargetError: Error, Sendable, Equatable, CustomStringConvertible {
    case notConfigured
    /// The file's text is not a DPS shared access policy connection string.
    case connectionString(path: String, reason: String)
    /// The endpoint is not an http(s) URL.
    case endpoint(String)
    /// HTTPS_PROXY is not a proxy URL.
    case proxy(String)

    public var description: String {
        switch self {
        case .notConfigured: "no DPS connection string file is configured"
        case .connectionString(let path, let reason):
            "\(WorkflowError.name(path)) does not hold a DPS connection string: \(reason)"
        case .endpoint(let url): "the DPS endpoint '\(escaped(url))' is not an https URL (plain http would carry the SAS token in clear)"
        case .proxy(let reason): reason
        }
    }
}

/// The one place a DPS enrollment outcome becomes the registry's record: `dps
/// enroll --from-registry`, the enroll step of `provision`/`autoconfigure`/`watch`
/// and `registry reissue --enroll` all record through it.
public enum EnrollmentRecording {
    /// The registry's words for `outcome` in the DPS at `dpsHost`.
    public static func record(_ outcome: EnrollmentOutcome, dpsHost: String) -> BoardEnrollment {
        let action: BoardEnrollment.Action = switch outcome.action {
        case .created: .created
        case .updated: .updated
        case .unchanged: .unchanged
        case .conflict: .conflict
        case .failed: .failed
        }
        let error = outcome.error
        return BoardEnrollment(
            action: action, at: outcome.time, dpsHost: dpsHost, etag: outcome.etag,
            // For a conflict the thumbprint is ours, not what DPS holds: not recorded as DPS's.
            sha1Thumbprint: outcome.action == .conflict || outcome.action == .failed ? nil : outcome.sha1Thumbprint,
            errorCode: error?.errorCode,
            errorMessage: outcome.action == .conflict ? outcome.message : (error?.description ?? outcome.message),
            trackingID: error?.trackingId)
    }

    /// Records `outcome` for board `boardID`; returns the row as stored.
    @discardableResult
    public static func record(
        _ outcome: EnrollmentOutcome, dpsHost: String, boardID: Int64, in registry: any RegistryStore
    ) throws(RegistryError) -> BoardRecord {
        try registry.recordEnrollment(boardID: boardID, record(outcome, dpsHost: dpsHost))
    }

    /// Records a fleet's outcomes, each for its board, in one registry commit.
    public static func record(
        _ outcomes: [(boardID: Int64, outcome: EnrollmentOutcome)], dpsHost: String, in registry: any RegistryStore
    ) throws(RegistryError) {
        try registry.recordEnrollments(outcomes.map { ($0.boardID, record($0.outcome, dpsHost: dpsHost)) })
    }
}
