import AsyncHTTPClient
import DPSModel
import DevKitModel
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// How to reach a DPS and how patient to be.
public struct DPSClientConfiguration: Sendable {
    public var connectionString: DPSConnectionString
    /// The base URL; default `https://<HostName>`. The SAS resource stays the HostName.
    public var endpoint: URL?
    /// PEM files of extra trust anchors, added to the system's (`--ca-file`).
    public var caFiles: [String]
    /// nil: none. ``ProxySettings/fromEnvironment(_:for:)`` reads HTTPS_PROXY/NO_PROXY.
    public var proxy: ProxySettings?
    public var connectTimeout: Duration
    /// The whole request, answer included.
    public var requestTimeout: Duration
    public var retry: RetryPolicy
    /// How long a SAS token is signed for, and how close to its expiry it is renewed.
    public var tokenLifetime: TimeInterval
    public var tokenRenewalMargin: TimeInterval
    /// Connections kept per host; at least the requests in flight.
    public var maxConnections: Int
    /// Told each request's method, path, outcome and time (`--verbose`); never a
    /// header or a body, so never the token.
    public var log: (@Sendable (String) -> Void)?

    public init(
        connectionString: DPSConnectionString, endpoint: URL? = nil, caFiles: [String] = [],
        proxy: ProxySettings? = nil, connectTimeout: Duration = .seconds(10), requestTimeout: Duration = .seconds(30),
        retry: RetryPolicy = RetryPolicy(), tokenLifetime: TimeInterval = SASToken.defaultLifetime,
        tokenRenewalMargin: TimeInterval = 300, maxConnections: Int = 8
    ) {
        self.connectionString = connectionString; self.endpoint = endpoint; self.caFiles = caFiles
        self.proxy = proxy; self.connectTimeout = connectTimeout; self.requestTimeout = requestTimeout
        self.retry = retry; self.tokenLifetime = tokenLifetime; self.tokenRenewalMargin = tokenRenewalMargin
        self.maxConnections = maxConnections
    }

    /// The base URL requests go to.
    public var baseURL: URL { endpoint ?? URL(string: "https://\(connectionString.hostName)")! }

    /// An endpoint as given (`--endpoint`, `--dps-endpoint`, a profile's `endpoint`):
    /// an https URL with a host, or nil. Plain http is refused: every request carries
    /// a SAS token signed with the policy's key, which anyone on the path could then
    /// use until it expires.
    public static func endpointURL(_ text: String) -> URL? {
        guard let url = URL(string: text), url.scheme?.lowercased() == "https", url.host?.isEmpty == false else { return nil }
        return url
    }
}

/// The kinds of request counted (for the benchmark and for tests that a rerun writes nothing).
public enum DPSRequestKind: String, Sendable, CaseIterable, Codable {
    case get, put, delete, bulk, query, registration
}

/// Requests sent, by kind, retries and token renewals included.
public struct DPSRequestCounts: Sendable, Equatable, Codable {
    public var byKind: [String: Int] = [:]
    /// Requests sent again (backoff retries and the retry after a renewed token).
    public var retries = 0
    /// SAS tokens signed after the first.
    public var tokenRenewals = 0
    public var total: Int { byKind.values.reduce(0, +) }
    public subscript(kind: DPSRequestKind) -> Int { byKind[kind.rawValue] ?? 0 }
}

/// The DPS service API (2021-10-01) over HTTPS, on AsyncHTTPClient.
///
/// Every request carries `api-version`, `Accept: application/json` and a SAS token
/// signed for one hour and renewed when less than five minutes are left; a 401 gets
/// one renewed token and one more try (a token that expired mid-run, or a server that
/// stopped taking it). 429, 500, 502, 503, 504, timeouts and broken connections are
/// retried by ``RetryPolicy`` (5 tries, backoff with jitter, `Retry-After` obeyed);
/// 5xx are retried too because a bulk create that was applied before the failure
/// is recognised by the workflow (the enrollment is then read back). Other 4xx are
/// never retried. Call ``shutdown()`` when done.
public final class DPSClient: Sendable {
    public let configuration: DPSClientConfiguration
    private let http: HTTPClient
    private let token = Mutex<SASToken?>(nil)
    private let counts = Mutex(DPSRequestCounts())

    public init(_ configuration: DPSClientConfiguration) throws(DPSServiceError) {
        self.configuration = configuration
        var tls = TLSConfiguration.makeClientConfiguration()
        if !configuration.caFiles.isEmpty {
            var anchors: [NIOSSLCertificate] = []
            for path in configuration.caFiles {
                do {
                    let loaded = try NIOSSLCertificate.fromPEMFile(path)
                    guard !loaded.isEmpty else { throw DPSServiceError(kind: .trustAnchors, operation: "", message: "") }
                    anchors += loaded
                } catch {
                    let reason = access(path, R_OK) == 0 ? "it holds no PEM certificate" : String(cString: strerror(errno)).lowercased()
                    throw DPSServiceError(
                        kind: .trustAnchors, operation: "read \(path)",
                        message: "cannot read trust anchors from \(path): \(reason)")
                }
            }
            // Added to the system's anchors, not instead of them.
            tls.additionalTrustRoots = [.certificates(anchors)]
        }
        var config = HTTPClient.Configuration(
            tlsConfiguration: tls, redirectConfiguration: .disallow,
            timeout: .init(connect: .init(configuration.connectTimeout), read: .init(configuration.requestTimeout)))
        // A refused connection fails its request at once (the pool would otherwise
        // retry for the whole connect timeout); the client's own policy decides.
        config.connectionPool.retryConnectionEstablishment = false
        config.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = max(8, configuration.maxConnections)
        if let proxy = configuration.proxy {
            let auth = proxy.user.map { HTTPClient.Authorization.basic(username: $0, password: proxy.password ?? "") }
            config.proxy = .server(host: proxy.host, port: proxy.port, authorization: auth)
        }
        http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: config)
    }

    /// Closes the connections. The client cannot be used afterwards.
    public func shutdown() async { try? await http.shutdown() }

    /// Runs `body` with this client, then shuts it down however `body` ends (its
    /// pooled connections closed before the caller goes on).
    public func shuttingDown<T>(after body: (DPSClient) async throws -> T) async throws -> T {
        do {
            let result = try await body(self)
            await shutdown()
            return result
        } catch {
            await shutdown()
            throw error
        }
    }

    /// Requests sent so far.
    public var requestCounts: DPSRequestCounts { counts.withLock { $0 } }

    // MARK: - Operations

    /// Creates or replaces an enrollment (`PUT`); with `ifMatch`, only if its etag
    /// still is that (`*`: any). Returns the enrollment as stored (etag, certificate info).
    public func createOrUpdate(_ enrollment: IndividualEnrollment, ifMatch: String? = nil) async throws(DPSServiceError) -> IndividualEnrollment {
        let id = try checkedID(enrollment.registrationId, operation: "PUT /enrollments")
        let response = try await send(
            .PUT, kind: .put, path: "/enrollments/\(id)", body: try encode(enrollment),
            headers: ifMatch.map { [("If-Match", $0)] } ?? [])
        return try decode(IndividualEnrollment.self, response)
    }

    /// The enrollment, or nil when DPS has none under that ID (404).
    public func get(_ registrationId: String) async throws(DPSServiceError) -> IndividualEnrollment? {
        let id = try checkedID(registrationId, operation: "GET /enrollments")
        let response = try await send(.GET, kind: .get, path: "/enrollments/\(id)", accepting404: true)
        if response.status == 404 { return nil }
        return try decode(IndividualEnrollment.self, response)
    }

    /// Deletes an enrollment; with `ifMatch`, only if its etag still is that. A 404 is an error.
    public func delete(_ registrationId: String, ifMatch: String? = nil) async throws(DPSServiceError) {
        let id = try checkedID(registrationId, operation: "DELETE /enrollments")
        _ = try await send(.DELETE, kind: .delete, path: "/enrollments/\(id)", headers: ifMatch.map { [("If-Match", $0)] } ?? [])
    }

    /// Applies up to 10 enrollments at once (`POST /enrollments`).
    public func bulk(_ mode: BulkEnrollmentMode, _ enrollments: [IndividualEnrollment]) async throws(DPSServiceError) -> BulkEnrollmentOperationResult {
        let operation: BulkEnrollmentOperation
        do { operation = try BulkEnrollmentOperation(mode: mode, enrollments: enrollments) } catch {
            throw DPSServiceError(kind: .invalidRequest, operation: "POST /enrollments", message: error.description)
        }
        for e in enrollments { _ = try checkedID(e.registrationId, operation: "POST /enrollments") }
        let response = try await send(.POST, kind: .bulk, path: "/enrollments", body: try encode(operation))
        return try decode(BulkEnrollmentOperationResult.self, response)
    }

    /// One page of the enrollments (`POST /enrollments/query`, query `*`): the
    /// enrollments and the continuation token for the next page (nil on the last).
    public func queryPage(pageSize: Int? = nil, continuation: String? = nil) async throws(DPSServiceError) -> (enrollments: [IndividualEnrollment], continuation: String?) {
        var headers: [(String, String)] = []
        if let pageSize { headers.append((DPSAPI.maxItemCountHeader, String(pageSize))) }
        if let continuation { headers.append((DPSAPI.continuationHeader, continuation)) }
        let response = try await send(
            .POST, kind: .query, path: "/enrollments/query", body: try encode(QuerySpecification()), headers: headers)
        let next = response.headers.first(name: DPSAPI.continuationHeader).flatMap { $0.isEmpty ? nil : $0 }
        return (try decode([IndividualEnrollment].self, response), next)
    }

    /// Every enrollment, following the continuation tokens.
    public func query(pageSize: Int? = nil) async throws(DPSServiceError) -> [IndividualEnrollment] {
        var all: [IndividualEnrollment] = []
        var continuation: String?
        var seen = Set<String>()
        repeat {
            let page = try await queryPage(pageSize: pageSize, continuation: continuation)
            all += page.enrollments
            continuation = page.continuation
            // A server that hands the same token back would loop for ever.
            if let c = continuation, !seen.insert(c).inserted {
                throw DPSServiceError(kind: .invalidResponse, operation: "POST /enrollments/query", message: "the same continuation token twice")
            }
        } while continuation != nil
        return all
    }

    /// The device's registration state, or nil when it never registered (404).
    public func registrationState(_ registrationId: String) async throws(DPSServiceError) -> DeviceRegistrationState? {
        let id = try checkedID(registrationId, operation: "GET /registrations", x509: false)
        let response = try await send(.GET, kind: .registration, path: "/registrations/\(id)", accepting404: true)
        if response.status == 404 { return nil }
        return try decode(DeviceRegistrationState.self, response)
    }

    // MARK: - The request

    struct Response: Sendable {
        var status: Int
        var headers: HTTPHeaders
        var body: Data
    }

    /// The ID checked against DPS's rules and percent-encoded for the path.
    private func checkedID(_ id: String, operation: String, x509: Bool = true) throws(DPSServiceError) -> String {
        do { try DPSRegistrationIDRules.check(id, x509: x509) } catch {
            throw DPSServiceError(kind: .invalidRequest, operation: operation, message: error.description)
        }
        return SASToken.urlEncode(id)
    }

    /// The SAS token to send: the current one, or a new one when it has less than
    /// the renewal margin left or `renew` (a 401) says it no longer works.
    private func authorization(renew: Bool) -> String {
        let now = Date().timeIntervalSince1970
        return token.withLock { current in
            if let t = current, !renew, Double(t.expiry) - now > configuration.tokenRenewalMargin { return t.header }
            var expiry = Int64(now + configuration.tokenLifetime)
            // A renewed token must differ from the refused one: a later expiry (a
            // server that keys expiry on the token text sees a new token).
            if let old = current, expiry <= old.expiry { expiry = old.expiry + 1 }
            if current != nil { counts.withLock { $0.tokenRenewals += 1 } }
            let t = configuration.connectionString.token(expiry: expiry)
            current = t
            return t.header
        }
    }

    private func send(
        _ method: HTTPMethod, kind: DPSRequestKind, path: String, body: Data? = nil,
        headers extra: [(String, String)] = [], accepting404: Bool = false
    ) async throws(DPSServiceError) -> Response {
        let operation = "\(method.rawValue) \(path.removingPercentEncoding ?? path)"
        var base = configuration.baseURL.absoluteString
        while base.hasSuffix("/") { base.removeLast() }
        let url = "\(base)\(path)?api-version=\(DPSAPI.version)"
        var renewed = false
        var renewNext = false
        var tries = 0
        do {
            return try await configuration.retry.run { _ in
                tries += 1
                if tries > 1 { counts.withLock { $0.retries += 1 } }
                var request = HTTPClientRequest(url: url)
                request.method = method
                request.headers.add(name: "Authorization", value: authorization(renew: renewNext))
                renewNext = false
                request.headers.add(name: "Accept", value: "application/json")
                request.headers.add(name: "User-Agent", value: "devkit/0.1 (DPS service API \(DPSAPI.version))")
                for (name, value) in extra { request.headers.add(name: name, value: value) }
                if let body {
                    request.headers.add(name: "Content-Type", value: "application/json; charset=utf-8")
                    request.body = .bytes(ByteBuffer(bytes: body))
                }
                counts.withLock { $0.byKind[kind.rawValue, default: 0] += 1 }
                let response: Response
                let started = ContinuousClock.now
                func elapsed() -> String { "\(Int(((ContinuousClock.now - started) / .milliseconds(1)).rounded())) ms" }
                do {
                    let r = try await http.execute(request, timeout: .init(configuration.requestTimeout))
                    let bytes = try await r.body.collect(upTo: 64 << 20)
                    response = Response(status: Int(r.status.code), headers: r.headers, body: Data(bytes.readableBytesView))
                    configuration.log?("\(operation) -> HTTP \(response.status) (\(elapsed()))")
                } catch {
                    let failure = classify(error, operation: operation, attempts: tries)
                    configuration.log?("\(operation) -> \(failure.message ?? "failed") (\(elapsed()))")
                    switch failure.kind {
                    case .timedOut, .connectionLost: return .retry(failure, retryAfter: nil)
                    default: throw failure
                    }
                }
                switch response.status {
                case 200..<300: return .success(response)
                case 404 where accepting404: return .success(response)
                case 401 where !renewed:
                    renewed = true
                    renewNext = true
                    return .retryNow(serviceError(response, operation: operation, attempts: tries))
                case 429, 500, 502, 503, 504:
                    return .retry(serviceError(response, operation: operation, attempts: tries), retryAfter: retryAfter(response))
                default:
                    throw serviceError(response, operation: operation, attempts: tries)
                }
            }
        } catch let error as DPSServiceError {
            var error = error
            error.attempts = tries
            throw error
        } catch {
            // Cancelled while waiting between tries.
            throw DPSServiceError(kind: .timedOut, operation: operation, message: "cancelled", attempts: tries)
        }
    }
}

extension DPSClient {
    func encode<T: Encodable>(_ value: T) throws(DPSServiceError) -> Data {
        do { return try JSONEncoder().encode(value) } catch {
            throw DPSServiceError(kind: .invalidRequest, operation: "encode", message: "\(error)")
        }
    }

    func decode<T: Decodable>(_ type: T.Type, _ response: Response) throws(DPSServiceError) -> T {
        do { return try JSONDecoder().decode(type, from: response.body) } catch {
            throw DPSServiceError(
                kind: .invalidResponse, operation: "\(T.self)", status: response.status,
                message: "HTTP \(response.status) with a body that is not a \(T.self): \(error)")
        }
    }

    /// The service's error body (and `x-ms-error-code`) as a typed error.
    func serviceError(_ response: Response, operation: String, attempts: Int) -> DPSServiceError {
        let body = try? JSONDecoder().decode(DPSErrorBody.self, from: response.body)
        var message = body?.message
        if message == nil, !response.body.isEmpty, response.body.count < 500 {
            message = String(decoding: response.body, as: UTF8.self)
        }
        if message == nil { message = HTTPResponseStatus(statusCode: response.status).reasonPhrase }
        let code = body?.errorCode ?? response.headers.first(name: DPSAPI.errorCodeHeader).flatMap { Int($0) }
        return DPSServiceError(
            kind: .http, operation: operation, status: response.status, errorCode: code, message: message,
            trackingId: body?.trackingId, attempts: attempts)
    }

    /// `Retry-After` in seconds (an HTTP date is read too).
    func retryAfter(_ response: Response) -> Duration? {
        guard let value = response.headers.first(name: "Retry-After")?.trimmingCharacters(in: .whitespaces) else { return nil }
        if let seconds = Double(value), seconds >= 0 { return .milliseconds(Int64(seconds * 1000)) }
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
        if let date = formatter.date(from: value) { return .milliseconds(Int64(max(0, date.timeIntervalSinceNow) * 1000)) }
        return nil
    }

    /// A transport failure in the client's terms: unreachable (DNS, refused, TLS),
    /// timed out, or a connection that broke mid-request.
    func classify(_ error: any Error, operation: String, attempts: Int) -> DPSServiceError {
        func make(_ kind: DPSServiceError.Kind, _ message: String) -> DPSServiceError {
            DPSServiceError(kind: kind, operation: operation, message: message, attempts: attempts)
        }
        let host = configuration.baseURL.host ?? "the host"
        switch error {
        case let e as HTTPClientError:
            switch e {
            case .connectTimeout: return make(.timedOut, "no connection to \(host) within the connect timeout")
            case .tlsHandshakeTimeout: return make(.timedOut, "the TLS handshake with \(host) timed out")
            case .readTimeout, .deadlineExceeded: return make(.timedOut, "no answer within the request timeout")
            case .remoteConnectionClosed, .uncleanShutdown: return make(.connectionLost, "the server closed the connection")
            case .httpProxyHandshakeTimeout: return make(.timedOut, "the HTTPS proxy did not answer in time")
            case .invalidProxyResponse, .proxyAuthenticationRequired:
                return make(.unreachable, "the HTTPS proxy refused the tunnel (\(e)); check HTTPS_PROXY")
            default: return make(.unreachable, "\(e)")
            }
        case let e as NIOConnectionError:
            if e.connectionErrors.isEmpty {
                return make(.unreachable, "cannot resolve \(e.host) (DNS); check the HostName or --endpoint")
            }
            let reasons = Set(e.connectionErrors.map { describe($0.error) }).sorted().joined(separator: "; ")
            return make(.unreachable, "cannot connect to \(e.host):\(e.port): \(reasons)")
        case let e as IOError:
            switch e.errnoCode {
            case ECONNRESET, EPIPE: return make(.connectionLost, describe(e))
            case ETIMEDOUT: return make(.timedOut, describe(e))
            default: return make(.unreachable, "cannot connect to \(host): \(describe(e))")
            }
        case is NIOSSLError, is BoringSSLError, is NIOSSLExtraError:
            return make(
                .unreachable,
                "the TLS handshake with \(host) failed (\(Self.tlsReason(error))); if the server's certificate comes from a private CA, give it with --ca-file")
        case let e as ChannelError:
            switch e {
            case .connectTimeout: return make(.timedOut, "no connection to \(host) within the connect timeout")
            case .ioOnClosedChannel, .eof, .alreadyClosed, .outputClosed: return make(.connectionLost, "the connection was closed")
            default: return make(.unreachable, "\(e)")
            }
        case is CancellationError:
            return make(.timedOut, "cancelled")
        default:
            return make(.unreachable, "\(error)")
        }
    }

    /// What went wrong in TLS, in words: BoringSSL's reasons ("certificate verify
    /// failed"), without the error numbers and the build's source paths that
    /// swift-nio-ssl's descriptions carry (`Error: 268435581 error:1000007d:SSL
    /// routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED at /…/ssl/handshake.cc:…`).
    static func tlsReason(_ error: any Error) -> String {
        var boring = error as? BoringSSLError
        if case .handshakeFailed(let inner)? = error as? NIOSSLError { boring = inner }
        let stack: NIOBoringSSLErrorStack
        switch boring {
        case .sslError(let s)?, .unknownError(let s)?, .invalidSNIName(let s)?, .failedToSetALPN(let s)?: stack = s
        default: return "\(error)"
        }
        var reasons: [String] = []  // in the stack's order, each once
        for entry in stack {
            let text = entry.description
            // "Error: <code> error:…:REASON_IN_CAPITALS at <path>:<line>", or a synthetic
            // "Error:  EOF during handshake": the reason is the last field before " at ".
            let head = text.range(of: " at ").map { String(text[..<$0.lowerBound]) } ?? text
            let field = head.split(separator: ":").last.map(String.init) ?? head
            let reason = field.trimmingCharacters(in: .whitespaces).replacingOccurrences(of: "_", with: " ").lowercased()
            if !reason.isEmpty && !reasons.contains(reason) { reasons.append(reason) }
        }
        return reasons.isEmpty ? "\(error)" : reasons.joined(separator: "; ")
    }

    private func describe(_ error: any Error) -> String {
        if let e = error as? IOError { return String(cString: strerror(e.errnoCode)).lowercased() }
        return "\(error)"
    }
}

extension TimeAmount {
    init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        self = .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}
