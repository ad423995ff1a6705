import AsyncHTTPClient
import DevKitModel
import DiceRIoT
import Foundation
import NIOCore
import NIOHTTP1
import NIOSSL
import VirtualDevKit

/// The DevKit DPS sample's behaviour, for the virtual board in user mode: the
/// framework's `DevkitDPSClient` derives the board's DeviceID and Alias keys from
/// its UDS and firmware (here with DiceRIoT, as `devkit cert` does) and registers
/// through DPS's device API over mutual TLS, presenting its Alias certificate;
/// it prints the lines the real firmware prints (Docs/virtual-devkit-dps.md lists them).
///
/// A module of its own so that VirtualDevKit stays free of an HTTP/TLS client:
/// the board runs it through the small ``VirtualDevKitSketch`` protocol.
public struct DPSSampleSketch: VirtualDevKitSketch {
    public struct Settings: Sendable {
        /// The DPS device endpoint, e.g. `https://127.0.0.1:8443` (the firmware's
        /// is `global.azure-devices-provisioning.net`).
        public var endpoint: URL
        public var idScope: String
        /// PEM trust anchors for the TLS server; nil: the stock firmware's roots
        /// (Baltimore CyberTrust Root and DigiCert Global Root CA, bundled).
        public var trustedCAPEM: String?
        /// The firmware the board runs (its measured ranges make the Alias key).
        public var image: RIoTImage
        /// How long the SDK keeps trying before it gives up (connecting or waiting).
        public var timeout: Duration
        /// What `   DPS Version:` prints.
        public var dpsVersion: String

        public init(
            endpoint: URL, idScope: String, trustedCAPEM: String? = nil, image: RIoTImage,
            timeout: Duration = .seconds(30), dpsVersion: String = "1.3.9"
        ) {
            self.endpoint = endpoint
            self.idScope = idScope
            self.trustedCAPEM = trustedCAPEM
            self.image = image
            self.timeout = timeout
            self.dpsVersion = dpsVersion
        }
    }

    /// The api-version the firmware's SDK sends.
    public static let apiVersion = "2018-09-01-preview"
    /// The bundled sample image (the dice-vectors fixture "Tiny", a real ARM build),
    /// embedded in the code by SwiftPM: no resource bundle to find at run time.
    public static func sampleImage() throws(FirmwareError) -> RIoTImage {
        try RIoTImage(bin: PackageResources.Tiny_ino_bin, map: PackageResources.Tiny_ino_map, binPath: "Tiny.ino.bin", mapPath: "Tiny.ino.map")
    }

    /// The roots stock AZ3166 firmware trusts (the framework's certs.c).
    public static var stockRootsPEM: String { String(decoding: PackageResources.stock_roots_pem, as: UTF8.self) }

    public let settings: Settings

    public init(settings: Settings) { self.settings = settings }

    // The framework's source files and lines the SDK's error logger would name.
    private static let dpsClientFile = "DevkitDPSClient.cpp"
    private static let provClientFile = "prov_device_ll_client.c"

    public func run(on board: SketchBoard) async {
        if board.faults.noWiFi {
            board.print("\r\n>>>No Wi-Fi.\r\n")
            return
        }
        guard let uds = readUDS(board) else {
            board.print("\r\nregistration failed!\r\n")
            return
        }
        if let core = settings.image.coreAddresses {
            board.info(String(format: "The riot_core start address: 0x%08llx", core.lowerBound))
            board.info(String(format: "The riot_core end address: 0x%08llx", core.upperBound))
        }
        board.info("   DPS Version: \(settings.dpsVersion)")
        let credentials: DeviceCredentials
        do {
            guard !board.faults.diceInitFailure else { throw DiceInitFailed() }
            let id = try RegistrationID(mac: try MACAddress(board.macAddress), firmwareVersion: try FirmwareVersion(board.firmwareVersion))
            credentials = try MeasuredFirmware(settings.image).credentials(uds: try UDS(hex: uds), registrationID: id)
        } catch {
            board.error("DiceInit failed! Check UDS string provided or set on configuration mode", file: Self.dpsClientFile, function: "DevkitDPSClientStart", line: 222)
            board.print("\r\nregistration failed!\r\n")
            return
        }
        let outcome = await register(credentials, board)
        switch outcome {
        case .assigned(let hub):
            board.info("Registration Information received from service: \(hub)!")
        case .failed:
            board.error("Failure encountered on registration!", file: Self.dpsClientFile, function: "registration_status_callback", line: 146)
            board.print("\r\nregistration failed!\r\n")
        }
    }

    private struct DiceInitFailed: Error {}

    /// The UDS as the firmware reads it from the secure element, or nil after
    /// printing why not (lines 84-96 of the framework's DPS client).
    private func readUDS(_ board: SketchBoard) -> String? {
        guard !board.faults.udsUnreadable, let uds = board.state.uds else {
            board.error(
                "Unable to get DPS UDS string from EEPROM. Please set the value in configuration mode.",
                file: Self.dpsClientFile, function: "DevkitDPSSetUDS", line: 84)
            return nil
        }
        if uds.isEmpty {
            board.error("The DPS UDS string is empty.", file: Self.dpsClientFile, function: "DevkitDPSSetUDS", line: 90)
            board.error("Please set the value in configuration mode.", file: Self.dpsClientFile, function: "DevkitDPSSetUDS", line: 90)
            return nil
        }
        if uds.utf8.count != 64 {
            board.error("The length of DPS UDS string must be 64.", file: Self.dpsClientFile, function: "DevkitDPSSetUDS", line: 96)
            board.error("Please set the value with correct length in configuration mode.", file: Self.dpsClientFile, function: "DevkitDPSSetUDS", line: 96)
            return nil
        }
        return uds
    }

    private enum Outcome {
        case assigned(hub: String)
        case failed
    }

    private func status(_ name: String, _ board: SketchBoard, plain: Bool = true) {
        board.info(">>>Provisioning Status: PROV_DEVICE_REG_STATUS_\(name)")
        if plain { board.print("\r\nRegistration status: \(name)\r\n") }
    }

    /// The device API's register and poll, as the SDK's HTTP transport does them.
    private func register(_ credentials: DeviceCredentials, _ board: SketchBoard) async -> Outcome {
        let client: HTTPClient
        do {
            client = try makeClient(credentials)
        } catch {
            board.error("Failed to set option \"TrustedCerts\"", file: "DevKitMQTTClient.cpp", function: "SetupIotHubClient", line: 296)
            return .failed
        }
        let outcome = await register(credentials, board, client)
        try? await client.shutdown()
        return outcome
    }

    private func register(_ credentials: DeviceCredentials, _ board: SketchBoard, _ client: HTTPClient) async -> Outcome {
        let id = credentials.registrationID.value
        let base = settings.endpoint.absoluteString.hasSuffix("/") ? String(settings.endpoint.absoluteString.dropLast()) : settings.endpoint.absoluteString
        let registerPath = "/\(settings.idScope)/registrations/\(id)/register?api-version=\(Self.apiVersion)"
        let deadline = ContinuousClock.now + settings.timeout

        var request = HTTPClientRequest(url: base + registerPath)
        request.method = .PUT
        request.headers.add(name: "Content-Type", value: "application/json; charset=utf-8")
        request.headers.add(name: "Accept", value: "application/json")
        request.body = .bytes(ByteBuffer(string: #"{"registrationId":"\#(id)"}"#))
        status("CONNECTED", board)
        board.info("PUT \(registerPath) HTTP/1.1")
        guard case .answered(let code, let body, var retryAfter) = await send(request, client, board, deadline: deadline) else { return .failed }
        board.info("HTTP Status: \(code)")
        guard code == 202 || code == 200 else { return refused(code, body, board) }
        status("REGISTERING", board)
        var answer = (try? JSONDecoder().decode(OperationAnswer.self, from: Data(body.utf8)))
        while let current = answer, current.status.lowercased() == "assigning" {
            status("ASSIGNING", board)
            if ContinuousClock.now >= deadline {
                board.error("Timeout waiting for reply", file: Self.provClientFile, function: "prov_device_ll_client_dowork", line: 1170)
                return .failed
            }
            try? await Task.sleep(for: retryAfter ?? .seconds(1))
            if Task.isCancelled { return .failed }
            let pollPath = "/\(settings.idScope)/registrations/\(id)/operations/\(current.operationId)?api-version=\(Self.apiVersion)"
            var poll = HTTPClientRequest(url: base + pollPath)
            poll.method = .GET
            poll.headers.add(name: "Accept", value: "application/json")
            board.info("GET \(pollPath) HTTP/1.1")
            guard case .answered(let code, let body, let nextRetry) = await send(poll, client, board, deadline: deadline) else { return .failed }
            retryAfter = nextRetry
            board.info("HTTP Status: \(code)")
            guard code == 200 else { return refused(code, body, board) }
            answer = try? JSONDecoder().decode(OperationAnswer.self, from: Data(body.utf8))
        }
        guard let answer else {
            board.error("Failure retrieving data from the provisioning service", file: Self.provClientFile, function: "prov_transport_process_json_reply", line: 430)
            return .failed
        }
        switch answer.status.lowercased() {
        case "assigned":
            status("ASSIGNED", board, plain: false)
            return .assigned(hub: answer.registrationState?.assignedHub ?? "")
        case "disabled":
            status("ERROR", board, plain: false)
            board.error("The device has been disabled by DPS service", file: Self.provClientFile, function: "prov_transport_process_json_reply", line: 470)
            return .failed
        default:
            status("ERROR", board, plain: false)
            board.error(
                "Provisioning Failure: OperationId: \(answer.operationId) - Date: \(answer.registrationState?.lastUpdatedDateTimeUtc ?? "") - Msg: \(answer.registrationState?.errorMessage ?? answer.status)",
                file: Self.provClientFile, function: "prov_transport_process_json_reply", line: 480)
            return .failed
        }
    }

    /// A 4xx/5xx answer: the body as the HTTP trace shows it, and the SDK's reason.
    private func refused(_ code: Int, _ body: String, _ board: SketchBoard) -> Outcome {
        if !body.isEmpty { board.info(body) }
        status("ERROR", board, plain: false)
        if code == 401 {
            board.error("The device is unauthorized with service", file: Self.provClientFile, function: "prov_transport_process_json_reply", line: 455)
            board.error("provisioning result is unauthorized", file: Self.provClientFile, function: "on_transport_registration_data", line: 560)
        } else {
            board.error("Failure retrieving data from the provisioning service", file: Self.provClientFile, function: "on_transport_registration_data", line: 580)
        }
        return .failed
    }

    private enum Sent {
        case answered(Int, String, retryAfter: Duration?)
        case failed
    }

    /// One request; connection failures other than TLS are retried until the
    /// deadline (as the SDK's transport does), then reported as a timeout.
    private func send(_ request: HTTPClientRequest, _ client: HTTPClient, _ board: SketchBoard, deadline: ContinuousClock.Instant) async -> Sent {
        while true {
            let remaining = ContinuousClock.now.duration(to: deadline)
            guard remaining > .zero else {
                board.error("Timed out connecting to provisioning service", file: Self.provClientFile, function: "prov_device_ll_client_dowork", line: 1180)
                return .failed
            }
            do {
                let seconds = Int64(max(1, remaining.components.seconds))
                let response = try await client.execute(request, timeout: .seconds(seconds))
                let body = try await response.body.collect(upTo: 1 << 20)
                // DPS's Retry-After (seconds) sets when to poll; the SDK waits at least 1 s.
                let retryAfter = response.headers.first(name: "Retry-After").flatMap(Int64.init).map { Duration.seconds(max(1, min($0, 60))) }
                return .answered(Int(response.status.code), String(buffer: body), retryAfter: retryAfter)
            } catch let error as NIOSSLError {
                board.error("TLS handshake with the provisioning service failed: \(error)", file: "tlsio_mbedtls.c", function: "on_handshake_done", line: 190)
                return .failed
            } catch let error as BoringSSLError {
                board.error("TLS handshake with the provisioning service failed: \(error)", file: "tlsio_mbedtls.c", function: "on_handshake_done", line: 190)
                return .failed
            } catch let error as HTTPClientError where error == .deadlineExceeded || error == .readTimeout {
                board.error("Timeout waiting for reply", file: Self.provClientFile, function: "prov_device_ll_client_dowork", line: 1170)
                return .failed
            } catch {
                if Task.isCancelled { return .failed }
                // Refused or unreachable: the SDK keeps trying until its timeout.
                try? await Task.sleep(for: .milliseconds(500))
            }
        }
    }

    /// AsyncHTTPClient with the Alias certificate and key as client identity (the
    /// DeviceID certificate after it, as the board sends its chain) and the
    /// firmware's trust anchors.
    private func makeClient(_ credentials: DeviceCredentials) throws -> HTTPClient {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.certificateChain = [
            .certificate(try NIOSSLCertificate(bytes: credentials.aliasCertificateDER, format: .der)),
            .certificate(try NIOSSLCertificate(bytes: try credentials.deviceCertificateDER(), format: .der)),
        ]
        tls.privateKey = .privateKey(try NIOSSLPrivateKey(bytes: Array(try credentials.aliasPrivateKeyPEM().utf8), format: .pem))
        tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMBytes(Array((settings.trustedCAPEM ?? Self.stockRootsPEM).utf8)))
        var configuration = HTTPClient.Configuration(tlsConfiguration: tls)
        configuration.timeout = .init(connect: .seconds(5), read: .seconds(Int64(max(1, settings.timeout.components.seconds))))
        configuration.connectionPool = .init(idleTimeout: .seconds(5))
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }
}

/// The register answer and the poll's, as far as the board reads them.
private struct OperationAnswer: Decodable {
    var operationId: String
    var status: String
    var registrationState: State?

    struct State: Decodable {
        var assignedHub: String?
        var deviceId: String?
        var errorCode: Int?
        var errorMessage: String?
        var lastUpdatedDateTimeUtc: String?
    }
}
