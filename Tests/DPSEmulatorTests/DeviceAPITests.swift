import AsyncHTTPClient
import Crypto
import DPSEmulator
import DPSModel
import DevKitTestSupport
import Foundation
import NIOCore
import NIOHTTP1
import NIOSSL
import Testing
import X509

/// The device registration API over mutual TLS, straight against the emulator:
/// an AsyncHTTPClient that presents a client certificate (a DICE vector's real
/// Alias certificate and key, or a self-made one) and trusts only the emulator's CA.
@Suite("emulate-dps: the device API (mutual TLS)")
struct DeviceAPITests {
    /// What a device presents in TLS: a certificate and its private key (PEM).
    struct Identity {
        let registrationID: String
        let aliasCertificate: String
        let aliasPrivateKey: String

        /// The reference vectors DPS can enroll, each with its real Alias key.
        static let all: [Identity] = DiceVector.enrollable.map {
            Identity(registrationID: $0.registrationID, aliasCertificate: $0.aliasCertificate, aliasPrivateKey: $0.aliasPrivateKey)
        }

        /// A self-signed certificate for `commonName` with a new key: a device that
        /// claims an ID but is not the enrolled one.
        static func impostor(_ commonName: String) throws -> Identity {
            let (pem, key) = try makeSelfSignedCertificate(commonName: commonName)
            return Identity(registrationID: commonName, aliasCertificate: pem, aliasPrivateKey: key.pemRepresentation)
        }
    }

    /// `PUT /{scope}/registrations/{id}/register` (and the poll, `operation`)
    /// presenting `identity` (none: no client certificate).
    static func device(
        _ service: RunningService, _ method: HTTPMethod, _ path: String, identity: Identity?, body: String? = nil,
        apiVersion: String = "2018-09-01-preview"
    ) async throws -> Answer {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(service.caFile))
        if let identity {
            tls.certificateChain = [.certificate(try NIOSSLCertificate(bytes: Array(identity.aliasCertificate.utf8), format: .pem))]
            tls.privateKey = .privateKey(try NIOSSLPrivateKey(bytes: Array(identity.aliasPrivateKey.utf8), format: .pem))
        }
        // Bounds against a hang only, as the service API's client's.
        let client = HTTPClient(
            eventLoopGroupProvider: .singleton,
            configuration: .init(tlsConfiguration: tls, timeout: .init(connect: .seconds(60), read: .seconds(120))))
        do {
            var request = HTTPClientRequest(url: service.baseURL + path + "?api-version=\(apiVersion)")
            request.method = method
            if let body {
                request.headers.add(name: "Content-Type", value: "application/json")
                request.body = .bytes(ByteBuffer(string: body))
            }
            let response = try await client.execute(request, timeout: .seconds(120))
            let bytes = try await response.body.collect(upTo: 1 << 20)
            try await client.shutdown()
            return Answer(status: response.status, headers: response.headers, body: Data(bytes.readableBytesView))
        } catch {
            try? await client.shutdown()
            throw error
        }
    }

    static func register(_ service: RunningService, _ identity: Identity?, id: String? = nil, scope: String? = nil) async throws -> Answer {
        let id = id ?? identity?.registrationID ?? "nobody"
        return try await device(
            service, .PUT, "/\(scope ?? service.idScope)/registrations/\(id)/register", identity: identity,
            body: #"{"registrationId":"\#(id)"}"#)
    }

    static func enroll(_ service: RunningService, _ identity: Identity, disabled: Bool = false) async throws {
        var enrollment = IndividualEnrollment.x509(registrationId: identity.registrationID, certificatePEM: identity.aliasCertificate)
        if disabled { enrollment.provisioningStatus = .disabled }
        #expect(try await service.send(.PUT, "/enrollments/\(identity.registrationID)", json: enrollment).status == .ok)
    }

    struct Operation: Decodable {
        var operationId: String
        var status: String
        var registrationState: DeviceRegistrationState?
    }

    @Test("an enrolled Alias certificate registers: 202 assigning with Retry-After, the poll says assigned; the service API shows the state")
    func assigned() async throws {
        try await RunningService.with { service in
            let identity = Identity.all[0]
            try await Self.enroll(service, identity)
            let started = try await Self.register(service, identity)
            #expect(started.status == .accepted, "\(String(decoding: started.body, as: UTF8.self))")
            #expect(started.headers.first(name: "Retry-After") != nil)
            let operation = try started.decode(Operation.self)
            #expect(operation.status == "assigning")
            #expect(try await service.send(.GET, "/registrations/\(identity.registrationID)").decode(DeviceRegistrationState.self).status == .assigning)

            let polled = try await Self.device(
                service, .GET, "/\(service.idScope)/registrations/\(identity.registrationID)/operations/\(operation.operationId)",
                identity: identity, apiVersion: "2021-10-01")
            #expect(polled.status == .ok)
            let result = try polled.decode(Operation.self)
            #expect(result.status == "assigned")
            #expect(result.registrationState?.assignedHub == DPSEmulatorConfiguration.defaultIoTHub)
            #expect(result.registrationState?.deviceId == identity.registrationID)

            let state = try await service.send(.GET, "/registrations/\(identity.registrationID)").decode(DeviceRegistrationState.self)
            #expect(state.status == .assigned && state.deviceId == identity.registrationID)
            #expect(state.etag != nil && state.createdDateTimeUtc != nil && state.lastUpdatedDateTimeUtc != nil)
            let stats = try await service.stats()
            #expect(stats.byKind["device_register"] == 1 && stats.byKind["device_poll"] == 1, "\(stats.byKind)")
            // No SAS token for the device API, but the service API still wants one.
            #expect(try await service.send(.GET, "/registrations/\(identity.registrationID)", token: .some(nil)).status == .unauthorized)
            #expect(try await service.send(.DELETE, "/registrations/\(identity.registrationID)").status == .noContent)
            #expect(try await service.send(.GET, "/registrations/\(identity.registrationID)").status == .notFound)
        }
    }

    @Test("no client certificate: 401")
    func noCertificate() async throws {
        try await RunningService.with { service in
            try await Self.enroll(service, Identity.all[0])
            let answer = try await Self.register(service, nil, id: Identity.all[0].registrationID)
            #expect(answer.status == .unauthorized)
            #expect(try answer.dpsError().errorCode == 401002)
        }
    }

    @Test("a certificate that matches no enrollment, or not the enrolled one: 401002 Invalid certificate")
    func invalidCertificate() async throws {
        try await RunningService.with { service in
            let identity = Identity.all[0]
            let unenrolled = try await Self.register(service, identity)
            #expect(unenrolled.status == .unauthorized)
            let error = try unenrolled.dpsError()
            #expect(error.errorCode == 401002 && error.message == "Invalid certificate")

            try await Self.enroll(service, identity)
            let impostor = try await Self.register(service, try Identity.impostor(identity.registrationID))
            #expect(impostor.status == .unauthorized)
            #expect(try impostor.dpsError().message == "Invalid certificate")
            let state = try await service.send(.GET, "/registrations/\(identity.registrationID)").decode(DeviceRegistrationState.self)
            #expect(state.status == .failed && state.errorCode == 401002)
        }
    }

    @Test("the path's registration ID must be the certificate's CN; the ID scope must be the emulator's")
    func pathMismatch() async throws {
        try await RunningService.with { service in
            let a = Identity.all[0], b = Identity.all[1]
            try await Self.enroll(service, a)
            try await Self.enroll(service, b)
            let crossed = try await Self.register(service, a, id: b.registrationID)
            #expect(crossed.status == .unauthorized)
            #expect(try crossed.dpsError().message?.contains("CN") == true)
            let scope = try await Self.register(service, a, scope: "0neFFFFFFFF")
            #expect(scope.status == .unauthorized)
            // The body's ID must be the path's.
            let body = try await Self.device(
                service, .PUT, "/\(service.idScope)/registrations/\(a.registrationID)/register", identity: a,
                body: #"{"registrationId":"\#(b.registrationID)"}"#)
            #expect(body.status == .badRequest)
        }
    }

    @Test("a disabled enrollment: the operation ends disabled")
    func disabled() async throws {
        try await RunningService.with { service in
            let identity = Identity.all[0]
            try await Self.enroll(service, identity, disabled: true)
            let operation = try await Self.register(service, identity).decode(Operation.self)
            let result = try await Self.device(
                service, .GET, "/\(service.idScope)/registrations/\(identity.registrationID)/operations/\(operation.operationId)",
                identity: identity).decode(Operation.self)
            #expect(result.status == "disabled")
            #expect(try await service.send(.GET, "/registrations/\(identity.registrationID)").decode(DeviceRegistrationState.self).status == .disabled)
        }
    }

    @Test("the ID scope is made once and kept in the state directory: 0ne + 8 upper-case hex digits")
    func idScopeKept() async throws {
        let scratch = consoleTestDirectory()
        defer { consoleRemoveTree(scratch) }
        let directory = scratch + "/dps"
        let first = try await RunningService.with(directory: directory) { $0.idScope }
        #expect(first.count == 11 && first.hasPrefix("0ne") && first.dropFirst(3).allSatisfy { $0.isHexDigit && !$0.isLowercase })
        #expect(try await RunningService.with(directory: directory) { $0.idScope } == first)
    }
}
