import AsyncHTTPClient
import Crypto
import DPSEmulator
import DPSModel
import DevKitTestSupport
import Foundation
import NIOCore
import NIOHTTP1
import NIOSSL
import SwiftASN1
import Testing
import X509

/// The built `devkit emulate-dps` in its own process, on a free port in a scratch
/// state directory, and an AsyncHTTPClient that trusts the emulator's CA and
/// nothing else: every request makes a real TLS handshake that checks the
/// certificate for 127.0.0.1.
///
/// Its own process, not in this one: served from the test process, the
/// emulator's handlers waited for the Swift concurrency pool (2 threads on CI)
/// that the rest of the parallel suite kept busy, and requests timed out or took
/// longer than a token's lifetime (CI, 2026-12-04). It is also how users run it.
final class RunningService: Sendable {
    let emulator: TestDPSEmulator
    let client: HTTPClient
    /// The connection string the emulator accepts, read from its file.
    let connectionString: DPSConnectionString
    /// The scratch directory `start` made for the state directory, removed by `stop`
    /// (each run of the suite left ~40 of them, CA keys included, in /tmp).
    private let scratch: String?

    private init(emulator: TestDPSEmulator, client: HTTPClient, connectionString: DPSConnectionString, scratch: String?) {
        self.emulator = emulator
        self.client = client
        self.connectionString = connectionString
        self.scratch = scratch
    }

    /// Starts the emulator on `directory` (a new scratch one when nil) with
    /// `faults` given as its command-line switches.
    static func start(faults: EmulatorFaults = EmulatorFaults(), directory: String? = nil) async throws -> RunningService {
        let scratch = directory == nil ? consoleTestDirectory() : nil
        let emulator: TestDPSEmulator
        do {
            emulator = try await TestDPSEmulator.start(stateDirectory: directory ?? scratch! + "/dps", arguments: faults.commandLine)
        } catch {
            if let scratch { consoleRemoveTree(scratch) }
            throw error
        }
        do {
            let text = try #require(consoleReadText(emulator.connectionStringFile))
            let connectionString = try DPSConnectionString(text)
            var tls = TLSConfiguration.makeClientConfiguration()
            tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(emulator.caFile))
            // Bounds against a hang, not a measure of speed: the tests check what is
            // stored and answered.
            let client = HTTPClient(
                eventLoopGroupProvider: .singleton,
                configuration: .init(tlsConfiguration: tls, timeout: .init(connect: .seconds(60), read: .seconds(120))))
            return RunningService(emulator: emulator, client: client, connectionString: connectionString, scratch: scratch)
        } catch {
            await emulator.stopped()
            if let scratch { consoleRemoveTree(scratch) }
            throw error
        }
    }

    /// Stops the client, then the server with SIGTERM (waiting for it); a server
    /// that does not exit 0 is an error.
    func stop() async throws {
        _ = try await timedStop()
    }

    /// ``stop()``, returning how long the server took from SIGTERM to its exit.
    func timedStop() async throws -> Duration {
        try await client.shutdown()
        let (status, afterSignal) = await emulator.timedStop()
        if let scratch { consoleRemoveTree(scratch) }
        guard status == 0 else {
            throw HarnessError.exited(status: status, stderr: emulator.standardError())
        }
        return afterSignal
    }

    var port: Int { emulator.port }
    /// The state directory.
    var directory: String { emulator.stateDirectory }
    var baseURL: String { emulator.url }
    /// The emulator's CA certificate (PEM file).
    var caFile: String { emulator.caFile }
    /// The device API's ID scope.
    var idScope: String { emulator.idScope }

    /// A token signed with the emulator's own key, valid for an hour.
    var token: String { connectionString.token().header }

    /// The counters, from `GET /_emulator/stats` (which is not counted).
    func stats() async throws -> EmulatorStats {
        let answer = try await send(.GET, DPSEmulator.statsPath, token: .some(nil), apiVersion: nil)
        guard answer.status == .ok else { throw HarnessError.stats(answer.status) }
        return try answer.decode(EmulatorStats.self)
    }

    /// One request; `body` is encoded as JSON. `token: nil` sends no Authorization.
    func send(
        _ method: HTTPMethod, _ path: String, json body: (some Encodable)? = Optional<String>.none,
        headers: [(String, String)] = [], token: String?? = .none, apiVersion: String? = DPSAPI.version
    ) async throws -> Answer {
        var url = baseURL + path
        if let apiVersion { url += (path.contains("?") ? "&" : "?") + "api-version=\(apiVersion)" }
        var request = HTTPClientRequest(url: url)
        request.method = method
        let authorization: String? = switch token {
        case .none: self.token
        case .some(let given): given
        }
        if let authorization { request.headers.add(name: "Authorization", value: authorization) }
        request.headers.add(name: "Accept", value: "application/json")
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json; charset=utf-8")
            request.body = .bytes(ByteBuffer(bytes: try JSONEncoder().encode(body)))
        }
        let response = try await client.execute(request, timeout: .seconds(120))
        let bytes = try await response.body.collect(upTo: 16 << 20)
        return Answer(status: response.status, headers: response.headers, body: Data(bytes.readableBytesView))
    }

    /// Runs `body` with a started service, stopping it however `body` ends.
    static func with<T>(
        faults: EmulatorFaults = EmulatorFaults(), directory: String? = nil,
        _ body: (RunningService) async throws -> T
    ) async throws -> T {
        let service = try await start(faults: faults, directory: directory)
        do {
            let result = try await body(service)
            try await service.stop()
            return result
        } catch {
            try? await service.stop()
            throw error
        }
    }
}

extension EmulatorFaults {
    /// The `devkit emulate-dps` switches that set these faults.
    var commandLine: [String] {
        var arguments: [String] = []
        if throttleFirst != 0 { arguments += ["--throttle", String(throttleFirst)] }
        if retryAfterSeconds != 1 { arguments += ["--retry-after", String(retryAfterSeconds)] }
        if failFirst5xx != 0 { arguments += ["--fail-5xx", String(failFirst5xx)] }
        if latency != .zero {
            let (seconds, attoseconds) = latency.components
            arguments += ["--latency-ms", String(seconds * 1000 + attoseconds / 1_000_000_000_000_000)]
        }
        if let tokenLifetime {
            let (seconds, attoseconds) = tokenLifetime.components
            arguments += ["--expire-tokens", "--token-lifetime", String(Double(seconds) + Double(attoseconds) / 1e18)]
        }
        if requireIfMatch { arguments.append("--require-if-match") }
        return arguments
    }
}

enum HarnessError: Error, CustomStringConvertible {
    /// The emulator did not exit 0 when stopped (nil: killed after the deadline).
    case exited(status: Int32?, stderr: String)
    case stats(HTTPResponseStatus)

    var description: String {
        switch self {
        case .exited(let status, let stderr): "devkit emulate-dps exited \(status.map(String.init) ?? "killed"): \(stderr)"
        case .stats(let status): "GET \(DPSEmulator.statsPath) answered \(status)"
        }
    }
}

/// An answer: status, headers, body.
struct Answer {
    let status: HTTPResponseStatus
    let headers: HTTPHeaders
    let body: Data

    func decode<T: Decodable>(_ type: T.Type = T.self) throws -> T {
        try JSONDecoder().decode(T.self, from: body)
    }

    /// The DPS error body, checked to have DPS's shape: every field, and the code
    /// repeated in `x-ms-error-code`.
    func dpsError(sourceLocation: SourceLocation = #_sourceLocation) throws -> DPSErrorBody {
        let object = try #require(try JSONSerialization.jsonObject(with: body) as? [String: Any], sourceLocation: sourceLocation)
        #expect(Set(object.keys) == ["errorCode", "trackingId", "message", "info", "timestampUtc"], sourceLocation: sourceLocation)
        let error = try decode(DPSErrorBody.self)
        #expect(headers.first(name: DPSAPI.errorCodeHeader) == error.errorCode.map(String.init), sourceLocation: sourceLocation)
        #expect(error.errorCode.map { $0 / 1000 } == Int(status.code), sourceLocation: sourceLocation)
        return error
    }
}

/// A self-signed P-256 certificate whose subject CN is `commonName`, as PEM.
func makeCertificatePEM(commonName: String) throws -> String {
    try makeSelfSignedCertificate(commonName: commonName).pem
}

/// A self-signed P-256 certificate whose subject CN is `commonName` (PEM, valid
/// for a day from now), and its new key.
func makeSelfSignedCertificate(commonName: String) throws -> (pem: String, key: P256.Signing.PrivateKey) {
    let key = P256.Signing.PrivateKey()
    let name = try DistinguishedName { CommonName(commonName) }
    let certificate = try Certificate(
        version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: Certificate.PrivateKey(key).publicKey,
        notValidBefore: Date(), notValidAfter: Date().addingTimeInterval(86_400), issuer: name, subject: name,
        signatureAlgorithm: .ecdsaWithSHA256, extensions: Certificate.Extensions {}, issuerPrivateKey: Certificate.PrivateKey(key))
    return (try certificate.serializeAsPEM().pemString + "\n", key)
}

/// The DER inside a PEM certificate, read independently of the emulator (the
/// vectors' PEM is one base64 line, as devkit writes it).
func derBytes(ofPEM pem: String) throws -> [UInt8] {
    let body = pem.components(separatedBy: "\n").filter { !$0.hasPrefix("-----") }.joined()
    return Array(try #require(Data(base64Encoded: body)))
}

func upperHex<D: Sequence>(_ digest: D) -> String where D.Element == UInt8 {
    digest.map { String(format: "%02X", $0) }.joined()
}
