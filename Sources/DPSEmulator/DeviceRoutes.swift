import DevKitModel
import DPSModel
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import NIOSSL
import Synchronization

/// The emulator's request context: Hummingbird's basic one plus the connection,
/// so that the device API can read the certificate the client presented in the
/// TLS handshake (NIOSSL keeps it on the channel's `NIOSSLHandler`).
struct DPSRequestContext: RequestContext {
    var coreContext: CoreRequestContextStorage
    let channel: any Channel

    init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        channel = source.channel
    }

    /// The leaf certificate of the client's chain, as presented (accepted without
    /// X.509 checks by ``DPSEmulator``'s verification callback), or nil.
    func peerCertificate() async -> NIOSSLCertificate? {
        (try? await channel.nioSSL_peerCertificate().get()) ?? nil
    }
}

/// The device registration API (what a board calls, not an operator):
/// `PUT /{idScope}/registrations/{id}/register` and the operation poll
/// `GET /{idScope}/registrations/{id}/operations/{operationId}`.
///
/// The device authenticates as with DPS's X.509 attestation: by the certificate
/// it presents in the TLS handshake. The emulator takes the leaf (a DevKit's Alias
/// certificate), requires its subject CN to be the path's registration ID, and
/// matches its SHA-1 thumbprint with the enrollment's primary or secondary
/// certificate. No SAS token is involved.
struct DeviceRoutes: Sendable {
    let store: EnrollmentStore
    let idScope: String
    /// The hub a device is assigned to when its enrollment names none (`--iot-hub`).
    let iotHub: String
    /// Operations started by `register` and not yet polled to their end.
    let operations: OperationTable

    /// The `api-version`s the device API answers: the DevKit firmware's SDK sends
    /// the first, current SDKs the second.
    static let apiVersions: Set<String> = ["2018-09-01-preview", "2019-03-31", "2021-06-01", "2021-10-01"]
    /// Seconds a device is told to wait before polling (DPS says 3 as well).
    static let retryAfterSeconds = 1

    /// Whether `path` is one of the device API's (`/{idScope}/registrations/…`,
    /// four or five segments), which the service gate does not ask a SAS token for.
    static func isDevicePath(_ path: String) -> Bool {
        let parts = path.split(separator: "/", omittingEmptySubsequences: true)
        return parts.count >= 4 && parts[1] == "registrations"
    }

    func register(on router: Router<DPSRequestContext>) {
        router.put("/:scope/registrations/:id/register") { request, context in
            try await registerDevice(request, context)
        }
        router.get("/:scope/registrations/:id/operations/:operation") { _, context in
            try await poll(context)
        }
    }

    private func registerDevice(_ request: Request, _ context: DPSRequestContext) async throws -> Response {
        let id = try checkedPath(context)
        guard let certificate = await context.peerCertificate() else {
            throw ServiceFailure.unauthorized(
                "The device presented no client certificate; a device with X.509 attestation authenticates in the TLS handshake.")
        }
        let presented: EnrollmentCertificate
        do {
            presented = try EnrollmentCertificate(der: try certificate.toDERBytes())
        } catch {
            throw ServiceFailure.invalidCertificate
        }
        guard let cn = presented.commonName, DPSRegistrationIDRules.key(cn) == DPSRegistrationIDRules.key(id) else {
            throw ServiceFailure.unauthorized(
                "Invalid certificate: its subject CN '\(presented.commonName ?? "")' is not the registration ID '\(id)' of the path.")
        }
        let body: DeviceRegistrationBody
        do {
            let buffer = try await request.body.collect(upTo: 64 << 10)
            body = try JSONDecoder().decode(DeviceRegistrationBody.self, from: Data(buffer.readableBytesView))
        } catch {
            throw ServiceFailure.badBody(#"The body must be {"registrationId": "<id>"}."#)
        }
        guard DPSRegistrationIDRules.key(body.registrationId) == DPSRegistrationIDRules.key(id) else {
            throw ServiceFailure.badRegistrationID(
                "The body's registrationId '\(body.registrationId)' is not the path's '\(id)'.")
        }
        // No enrollment and a wrong certificate look the same to the device, as with DPS.
        guard let enrollment = await store.enrollment(id) else { throw ServiceFailure.invalidCertificate }
        let certificates = enrollment.attestation.x509?.clientCertificates
        let enrolled = [certificates?.primary, certificates?.secondary].compactMap { $0?.info?.sha1Thumbprint?.uppercased() }
        guard enrolled.contains(presented.sha1Thumbprint.uppercased()) else {
            try await store.recordRegistration(
                enrollment.registrationId, status: .failed,
                errorCode: ServiceFailure.invalidCertificate.errorCode, errorMessage: ServiceFailure.invalidCertificate.message)
            throw ServiceFailure.invalidCertificate
        }
        let operationID = "4.\(UInt64.random(in: 0...UInt64.max) & 0xffff_ffff_ffff).\(UUID().uuidString.lowercased())"
        let outcome: RegistrationOutcome
        if enrollment.provisioningStatus == .disabled {
            outcome = .disabled
        } else {
            outcome = .assigned(hub: enrollment.iotHubHostName ?? iotHub, deviceId: enrollment.deviceId ?? enrollment.registrationId)
        }
        operations.start(operationID, registrationID: enrollment.registrationId, outcome: outcome)
        try await store.recordRegistration(enrollment.registrationId, status: .assigning)
        var headers = HTTPFields()
        headers[.retryAfter] = String(Self.retryAfterSeconds)
        headers[.location] = "/\(idScope)/registrations/\(id)/operations/\(operationID)"
        return json(DeviceOperationAnswer(operationId: operationID, status: RegistrationStatus.assigning.rawValue), status: .accepted, headers: headers)
    }

    private func poll(_ context: DPSRequestContext) async throws -> Response {
        let id = try checkedPath(context)
        let operationID = context.parameters.get("operation") ?? ""
        guard let operation = operations.take(operationID), DPSRegistrationIDRules.key(operation.registrationID) == DPSRegistrationIDRules.key(id) else {
            throw ServiceFailure.operationNotFound(operationID)
        }
        let state: DeviceRegistrationState
        switch operation.outcome {
        case .assigned(let hub, let deviceId):
            state = try await store.recordRegistration(operation.registrationID, status: .assigned, assignedHub: hub, deviceId: deviceId)
        case .disabled:
            state = try await store.recordRegistration(operation.registrationID, status: .disabled)
        }
        return json(DeviceOperationAnswer(operationId: operationID, status: state.status?.rawValue ?? "failed", registrationState: state))
    }

    /// The path's ID scope (must be this emulator's) and registration ID.
    private func checkedPath(_ context: DPSRequestContext) throws(ServiceFailure) -> String {
        let scope = context.parameters.get("scope") ?? ""
        guard scope == idScope else {
            throw ServiceFailure.unauthorized("Unknown ID scope '\(scope)' (this service's is \(idScope)).")
        }
        let id = context.parameters.get("id") ?? ""
        do {
            try DPSRegistrationIDRules.check(id, x509: true)
        } catch {
            throw .badRegistrationID("Invalid registration ID: \(error).")
        }
        return id
    }
}

/// `{"registrationId": "<id>"}`: what the device sends (DPS also takes a `payload`, ignored here).
struct DeviceRegistrationBody: Codable {
    var registrationId: String
}

/// The register answer and the poll's: `{"operationId", "status", "registrationState"}`.
struct DeviceOperationAnswer: Codable {
    var operationId: String
    var status: String
    var registrationState: DeviceRegistrationState?
}

enum RegistrationOutcome: Sendable {
    case assigned(hub: String, deviceId: String)
    case disabled
}

/// Operations between `register` and the poll that ends them (in memory: a
/// device whose emulator restarted registers again, as after a DPS error).
final class OperationTable: Sendable {
    struct Operation: Sendable {
        var registrationID: String
        var outcome: RegistrationOutcome
    }

    private let pending = Mutex<[String: Operation]>([:])

    func start(_ id: String, registrationID: String, outcome: RegistrationOutcome) {
        pending.withLock { table in
            if table.count > 10_000 { table.removeAll() }  // devices that never polled
            table[id] = Operation(registrationID: registrationID, outcome: outcome)
        }
    }

    /// The operation, ended by this poll (every operation ends on its first poll).
    func take(_ id: String) -> Operation? {
        pending.withLock { $0.removeValue(forKey: id) }
    }
}
