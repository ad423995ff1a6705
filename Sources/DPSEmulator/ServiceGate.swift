import DPSModel
import Foundation
import HTTPTypes
import Hummingbird
import Synchronization

/// What every service request passes before its operation runs, in DPS's order
/// as far as it can be seen from outside: the fault switches (429, 503), the SAS
/// token (401), then `api-version` (400); every answer held to the added latency. Also turns every
/// refusal into DPS's error shape and counts the answers.
struct ServiceGate: RouterMiddleware {
    typealias Context = DPSRequestContext

    let ledger: RequestLedger
    let authorization: ServiceAuthorization
    let faults: EmulatorFaults
    /// Gets a line per answered request (`--verbose`), when set.
    let requestLog: (@Sendable (String) -> Void)?

    /// The `api-version`s the emulator answers: the one devkit and the Azure CLI
    /// send, and the previous stable one (same enrollment bodies).
    static let apiVersions: Set<String> = [DPSAPI.version, "2019-03-31"]

    func handle(
        _ request: Request, context: Context, next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        if request.uri.path == DPSEmulator.statsPath { return try await next(request, context) }
        let start = ContinuousClock.now
        // --latency-ms is the time an answer takes, the server's own work inside it
        // (as seen from a client of a remote service): the answer leaves no sooner
        // than that after the request arrived, and no later than its work allows.
        let earliestAnswer = start + faults.latency
        var response: Response
        do {
            switch ledger.admit(RequestKind(request.method, path: request.uri.path)) {
            case .throttled(let seconds):
                response = answer(.throttled)
                response.headers[.retryAfter] = String(seconds)
                try await Task.sleep(until: earliestAnswer, clock: .continuous)
                finish(request, response, since: start)
                return response
            case .unavailable:
                throw ServiceFailure.unavailable
            case nil:
                break
            }
            // The device API authenticates by the TLS client certificate (DeviceRoutes), not SAS.
            let device = DeviceRoutes.isDevicePath(request.uri.path)
            if !device { try authorization.check(request.headers[.authorization]) }
            guard let version = request.uri.queryParameters.get("api-version") else {
                throw ServiceFailure.badAPIVersion("The api-version query parameter is missing (e.g. ?api-version=\(DPSAPI.version)).")
            }
            guard (device ? DeviceRoutes.apiVersions : Self.apiVersions).contains(version) else {
                throw ServiceFailure.badAPIVersion("api-version '\(version)' is not supported; use \(device ? "2021-10-01" : DPSAPI.version).")
            }
            response = try await next(request, context)
        } catch let failure as ServiceFailure {
            response = answer(failure)
        } catch let error as HTTPError {
            // The router's own refusals: no route (404) or no such method on one (405).
            response = answer(
                error.status == .notFound || error.status == .methodNotAllowed
                    ? .noSuchOperation(request.method, request.uri.path)
                    : ServiceFailure(status: error.status, errorCode: error.status.code * 1000, message: error.body ?? "\(error.status)"))
        } catch is CancellationError {
            throw CancellationError()  // shutting down: no answer to give
        } catch {
            // A bug of the emulator's, still answered in DPS's shape (and counted).
            response = answer(ServiceFailure(status: .internalServerError, errorCode: 500000, message: "Internal error: \(error)"))
        }
        try await Task.sleep(until: earliestAnswer, clock: .continuous)
        finish(request, response, since: start)
        return response
    }

    private func finish(_ request: Request, _ response: Response, since start: ContinuousClock.Instant) {
        ledger.answered(response.status.code)
        guard let requestLog else { return }
        let ms = Double((ContinuousClock.now - start).components.attoseconds) / 1e15
            + Double((ContinuousClock.now - start).components.seconds) * 1000
        requestLog("\(request.method) \(request.uri.path) -> \(response.status.code) (\(String(format: "%.1f", ms)) ms)")
    }

    private func answer(_ failure: ServiceFailure) -> Response {
        var headers = HTTPFields()
        headers[HTTPField.Name(DPSAPI.errorCodeHeader)!] = String(failure.errorCode)
        return json(failure.body(trackingId: UUID().uuidString.lowercased()), status: failure.status, headers: headers)
    }
}

extension RequestKind {
    init(_ method: HTTPRequest.Method, path: String) {
        let parts = path.split(separator: "/", omittingEmptySubsequences: true)
        switch (method, parts.count, parts.first) {
        case (.post, 1, "enrollments"): self = .bulk
        case (.post, 2, "enrollments") where parts[1] == "query": self = .query
        case (.put, 2, "enrollments"): self = .enrollmentPut
        case (.get, 2, "enrollments"): self = .enrollmentGet
        case (.delete, 2, "enrollments"): self = .enrollmentDelete
        case (.get, 2, "registrations"): self = .registrationGet
        case (.delete, 2, "registrations"): self = .registrationDelete
        case (.put, 4, _) where parts[1] == "registrations" && parts[3] == "register": self = .deviceRegister
        case (.get, 5, _) where parts[1] == "registrations" && parts[3] == "operations": self = .devicePoll
        default: self = .other
        }
    }
}

/// The SAS check (DPSModel's `SASToken.verify`: signature, expiry, policy name,
/// resource = the connection string's HostName), and `--expire-tokens`.
final class ServiceAuthorization: Sendable {
    private let connectionString: DPSConnectionString
    private let tokenLifetime: Duration?
    /// When each token was first accepted, and its own expiry (for pruning).
    private let firstUse = Mutex<[String: (first: ContinuousClock.Instant, expiry: Int64)]>([:])

    init(connectionString: DPSConnectionString, tokenLifetime: Duration?) {
        self.connectionString = connectionString
        self.tokenLifetime = tokenLifetime
    }

    func check(_ header: String?) throws(ServiceFailure) {
        guard let header, !header.isEmpty else {
            throw .unauthorized("The request has no Authorization header; sign a SAS token with the service's shared access key.")
        }
        do {
            try SASToken.verify(
                header, resource: connectionString.hostName,
                policies: [connectionString.policyName: connectionString.key])
        } catch {
            throw .unauthorized("Unauthorized: \(error).")
        }
        guard let tokenLifetime, let expiry = try? SASToken.parse(header).expiry else { return }
        let now = ContinuousClock.now
        let first = firstUse.withLock { seen in
            if seen.count >= 4096 {
                // Tokens past their own expiry fail the check above anyway.
                let epoch = Int64(Date().timeIntervalSince1970)
                seen = seen.filter { $0.value.expiry > epoch }
            }
            if let entry = seen[header] { return entry.first }
            seen[header] = (now, expiry)
            return now
        }
        if now - first > tokenLifetime {
            throw .unauthorized(
                "Unauthorized: the SAS token has expired (the emulator's --expire-tokens: a token lasts \(tokenLifetime) after its first use); sign a new one.")
        }
    }
}
