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

/// A local DPS started in-process on a free port in a scratch state directory,
/// and an AsyncHTTPClient that trusts the emulator's CA and nothing else: every
/// request makes a real TLS handshake that checks the certificate for 127.0.0.1.
final class RunningService: Sendable {
    let emulator: DPSEmulator
    let port: Int
    let client: HTTPClient
    let directory: String
    private let serving: Task<Void, any Error>

    private init(emulator: DPSEmulator, port: Int, client: HTTPClient, directory: String, serving: Task<Void, any Error>) {
        self.emulator = emulator
        self.port = port
        self.client = client
        self.directory = directory
        self.serving = serving
    }

    /// Starts the emulator on `directory` (a new scratch one when nil).
    static func start(faults: EmulatorFaults = EmulatorFaults(), directory: String? = nil) async throws -> RunningService {
        let directory = directory ?? consoleTestDirectory() + "/dps"
        let emulator = try DPSEmulator(
            configuration: DPSEmulatorConfiguration(stateDirectory: EmulatorStateDirectory(directory), faults: faults))
        let (ports, continuation) = AsyncStream.makeStream(of: Int.self)
        let serving = Task {
            defer { continuation.finish() }
            try await emulator.run { port in continuation.yield(port) }
        }
        guard let port = await ports.first(where: { _ in true }) else {
            try await serving.value  // its error
            throw HarnessError.notListening
        }
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.trustRoots = .certificates([try NIOSSLCertificate(file: emulator.configuration.stateDirectory.caCertificate, format: .pem)])
        // Generous bounds: with the whole suite running in parallel on 2 cores, this
        // in-process server's handlers wait for the busy concurrency pool, and the
        // default 10 s for a pooled connection ran out (CI, 2026-12-04). The tests
        // check what is stored and answered, not how fast.
        let client = HTTPClient(
            eventLoopGroupProvider: .singleton,
            configuration: .init(tlsConfiguration: tls, timeout: .init(connect: .seconds(90), read: .seconds(120))))
        return RunningService(emulator: emulator, port: port, client: client, directory: directory, serving: serving)
    }

    /// Stops the server (waiting for it) and the client.
    func stop() async throws {
        try await client.shutdown()
        await emulator.stop()
        try await serving.value
    }

    var baseURL: String { "https://127.0.0.1:\(port)" }

    /// A token signed with the emulator's own key, valid for an hour.
    var token: String { emulator.connectionString.token().header }

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

enum HarnessError: Error { case notListening }

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

/// The DICE/RIoT reference vectors' Alias certificates: the real certificates a
/// DevKit presents, with their non-standard Subject Alternative Name.
struct AliasVector: Decodable {
    let registrationID: String
    let aliasCertificate: String
    enum CodingKeys: String, CodingKey {
        case registrationID = "registration_id"
        case aliasCertificate = "alias_certificate"
    }

    static let all: [AliasVector] = {
        struct File: Decodable { let vectors: [AliasVector] }
        let url = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/dice-vectors/vectors.json")
        return try! JSONDecoder().decode(File.self, from: Data(contentsOf: url)).vectors
    }()

    /// Those DPS takes: IDs within the 64-character limit of an X.509 enrollment.
    static var enrollable: [AliasVector] { all.filter { $0.registrationID.utf8.count <= 64 } }
}

/// A self-signed P-256 certificate whose subject CN is `commonName`, as PEM.
func makeCertificatePEM(commonName: String) throws -> String {
    let key = P256.Signing.PrivateKey()
    let name = try DistinguishedName { CommonName(commonName) }
    let certificate = try Certificate(
        version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: Certificate.PrivateKey(key).publicKey,
        notValidBefore: Date(), notValidAfter: Date().addingTimeInterval(86_400), issuer: name, subject: name,
        signatureAlgorithm: .ecdsaWithSHA256, extensions: Certificate.Extensions {}, issuerPrivateKey: Certificate.PrivateKey(key))
    return try certificate.serializeAsPEM().pemString + "\n"
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
