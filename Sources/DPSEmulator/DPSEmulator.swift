import DevKitSystem
import DPSModel
import Foundation
import Hummingbird
import HummingbirdTLS
import Logging
import NIOCore
import NIOSSL
import ServiceLifecycle
import Synchronization
import SystemPackage
#if canImport(Glibc)
import Glibc
#endif

/// How to run the local DPS.
public struct DPSEmulatorConfiguration: Sendable {
    public var stateDirectory: EmulatorStateDirectory
    /// The port on 127.0.0.1; 0 lets the system pick a free one.
    public var port: Int
    public var faults: EmulatorFaults
    /// The ID scope of the device API; nil: the one kept in the state directory
    /// (made on first use).
    public var idScope: String?
    /// The IoT hub devices are assigned to when their enrollment names none.
    public var iotHub: String

    public static let defaultIoTHub = "devkit-emulated-hub.azure-devices.net"

    public init(
        stateDirectory: EmulatorStateDirectory, port: Int = 0, faults: EmulatorFaults = EmulatorFaults(),
        idScope: String? = nil, iotHub: String = Self.defaultIoTHub
    ) {
        self.stateDirectory = stateDirectory
        self.port = port
        self.faults = faults
        self.idScope = idScope
        self.iotHub = iotHub
    }
}

/// A local Azure IoT Hub Device Provisioning Service: the service API's enrollment
/// and registration-state operations over HTTPS on 127.0.0.1, with DPS's checks,
/// error bodies and SAS authentication, for trying devkit and for tests.
///
/// Built on Hummingbird 2 (HTTP/1.1) with HummingbirdTLS (swift-nio-ssl); no HTTP
/// is hand-written. `init` prepares the state directory (CA, server certificate,
/// service key, saved enrollments); ``run(onListening:)`` serves until ``stop()``
/// or the task is cancelled.
public final class DPSEmulator: Sendable {
    /// Not part of DPS: request counters, for benchmarks and tests (no token needed).
    public static let statsPath = "/_emulator/stats"
    /// The policy the emulator's key belongs to: DPS's default owner policy.
    public static let policyName = "provisioningserviceowner"
    /// The connection string's HostName, and so the SAS tokens' resource: the name
    /// the server certificate is for. Clients reach the emulator with `--endpoint`
    /// (the port changes), so the resource stays the same across restarts.
    public static let hostName = "localhost"

    public let configuration: DPSEmulatorConfiguration
    public let identity: EmulatorIdentity
    /// The connection string the emulator accepts (its key is a secret: never print it).
    public let connectionString: DPSConnectionString
    /// The ID scope devices register under: `/{idScope}/registrations/{id}/register`.
    public let idScope: String
    private let store: EnrollmentStore
    private let ledger: RequestLedger
    private let logger: Logger
    private let requestLog: (@Sendable (String) -> Void)?
    private let group = Mutex<ServiceGroup?>(nil)
    private let stopRequested = Atomic<Bool>(false)
    /// The state directory's lock, held while this emulator exists.
    private let directoryLock: SystemPackage.FileDescriptor

    /// Prepares `configuration.stateDirectory`: creates it (0700), the CA and the
    /// server certificate, and the service key (written as a connection string,
    /// 0600) on first use; reads them and the saved enrollments after.
    /// `requestLog` gets one line per answered request (method, path, status, time).
    public init(
        configuration: DPSEmulatorConfiguration, logger: Logger? = nil,
        requestLog: (@Sendable (String) -> Void)? = nil
    ) throws(EmulatorSetupError) {
        self.configuration = configuration
        self.requestLog = requestLog
        let directory = configuration.stateDirectory
        try directory.prepare()
        let lock = try directory.lock()
        // Given back if the rest fails: deinit does not run for an init that throws
        // before every property is set, and the directory would stay locked.
        do {
            identity = try EmulatorIdentity.loadOrCreate(in: directory)
            connectionString = try Self.loadOrCreateConnectionString(directory)
            if let scope = configuration.idScope { idScope = scope } else { idScope = try Self.loadOrCreateIDScope(directory) }
            store = try EnrollmentStore(file: directory.stateFile)
        } catch {
            try? lock.close()
            throw error
        }
        directoryLock = lock
        ledger = RequestLedger(faults: configuration.faults)
        self.logger = logger ?? Logger(label: "devkit.emulate-dps", factory: { _ in SwiftLogNoOpLogHandler() })
    }

    deinit { try? directoryLock.close() }

    /// Serves until ``stop()`` (or the calling task is cancelled). `onListening`
    /// gets the port once the socket accepts connections (the real one for port 0).
    public func run(onListening: @escaping @Sendable (Int) async -> Void = { _ in }) async throws {
        let listening = Atomic<Bool>(false)
        let router = Router(context: DPSRequestContext.self)
        router.add(middleware: ServiceGate(
            ledger: ledger,
            authorization: ServiceAuthorization(connectionString: connectionString, tokenLifetime: configuration.faults.tokenLifetime),
            faults: configuration.faults, requestLog: requestLog))
        ServiceRoutes(store: store, ledger: ledger, faults: configuration.faults).register(on: router)
        DeviceRoutes(store: store, idScope: idScope, iotHub: configuration.iotHub, operations: OperationTable())
            .register(on: router)
        router.get(RouterPath(stringLiteral: Self.statsPath)) { [self] _, _ in json(await stats()) }

        var tls: TLSConfiguration
        do {
            tls = TLSConfiguration.makeServerConfiguration(
                certificateChain: [.certificate(try NIOSSLCertificate(bytes: Array(identity.serverCertificatePEM.utf8), format: .pem))],
                privateKey: .privateKey(try NIOSSLPrivateKey(bytes: Array(identity.serverKeyPEM.utf8), format: .pem)))
        } catch {
            throw EmulatorSetupError.certificate("cannot load the server certificate or key: \(error)")
        }
        // One port for both APIs: a client certificate is asked for but optional (the
        // service API's clients send none). A presented chain is accepted as it is:
        // a DevKit's is self-signed and its Alias certificate's SAN is not RFC 5280
        // (BoringSSL's chain verification would refuse it); the device API then
        // authenticates the leaf by thumbprint, as DPS does.
        tls.certificateVerification = .optionalVerification
        // A graceful stop closes each open connection with close_notify, and NIOSSL
        // then waits out this timeout whatever the client does (Hummingbird allows
        // half-closure, so the client's close_notify does not end the wait): the
        // default 5 s held every stop (Ctrl-C, SIGTERM) that long while any client
        // stayed connected. The timer starts after an answer's last write; on loopback
        // the kernel's buffers take it whole (a 655 KB page to a client pausing 1 s
        // arrived complete), so the short wait drops nothing in practice.
        tls.shutdownTimeout = .milliseconds(200)
        let channel = TLSChannelConfiguration(tlsConfiguration: tls) { _, promise in
            promise.succeed(.certificateVerified)
        }
        let app = Application(
            router: router,
            server: try .tls(.http1(), configuration: channel),
            configuration: ApplicationConfiguration(address: .hostname("127.0.0.1", port: configuration.port)),
            onServerRunning: { channel in
                listening.store(true, ordering: .releasing)
                await onListening(channel.localAddress?.port ?? 0)
            },
            logger: logger)
        let group = ServiceGroup(configuration: .init(services: [app], logger: logger))
        self.group.withLock { $0 = group }
        if stopRequested.load(ordering: .acquiring) { await group.triggerGracefulShutdown() }
        do {
            try await group.run()
        } catch where !listening.load(ordering: .acquiring) {
            // The server failed before it listened: the port (in use, or not ours to take).
            throw EmulatorSetupError.bind(port: configuration.port, reason: Self.reason(error))
        }
    }

    /// The system's words for a socket error ("Address already in use"), else the error.
    private static func reason(_ error: any Error) -> String {
        if let error = error as? IOError { return String(cString: strerror(error.errnoCode)) }
        return "\(error)"
    }

    /// Stops serving: open requests finish, then ``run(onListening:)`` returns.
    public func stop() async {
        stopRequested.store(true, ordering: .releasing)
        let group = self.group.withLock { $0 }
        await group?.triggerGracefulShutdown()
    }

    /// The request counters so far, and how many enrollments are stored.
    public func stats() async -> EmulatorStats {
        var stats = ledger.snapshot
        stats.enrollments = await store.count
        return stats
    }

    /// The ID scope file's content, or a new scope written there on first use: `0ne`
    /// and 8 upper-case hex digits, the shape of DPS's.
    private static func loadOrCreateIDScope(_ directory: EmulatorStateDirectory) throws(EmulatorSetupError) -> String {
        let path = directory.idScopeFile
        do {
            let bytes = try InputFile.read(path, limit: .certificateFile, standardInputDash: false)
            let scope = String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            guard isValidIDScope(scope) else {
                throw EmulatorSetupError.state(path: path, reason: "'\(scope)' is not an ID scope; remove the file to have a new one made")
            }
            return scope
        } catch let error as EmulatorSetupError {
            throw error
        } catch let error as InputFileError where error == .cannotOpen(.noSuchFileOrDirectory) {
            let scope = "0ne" + String(format: "%08X", UInt32.random(in: 0...UInt32.max))
            try EmulatorIdentity.write(scope + "\n", to: path, mode: 0o644)
            return scope
        } catch {
            throw .state(path: path, reason: "\(error)")
        }
    }

    /// What the emulator takes as an ID scope: 1 to 64 letters, digits, `-`, `_`, `.`
    /// (a path segment that needs no escaping).
    public static func isValidIDScope(_ scope: String) -> Bool {
        !scope.isEmpty && scope.utf8.count <= 64
            && scope.utf8.allSatisfy { c in
                (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c == 0x2d || c == 0x5f || c == 0x2e
            }
    }

    /// The connection string file's content, or a new key (32 random bytes, as
    /// DPS's are) written there 0600 on first use. The file is the key's only home.
    private static func loadOrCreateConnectionString(_ directory: EmulatorStateDirectory) throws(EmulatorSetupError) -> DPSConnectionString {
        let path = directory.connectionStringFile
        do {
            let bytes = try InputFile.read(path, limit: .secret, standardInputDash: false)
            do {
                return try DPSConnectionString(String(decoding: bytes, as: UTF8.self))
            } catch {
                throw EmulatorSetupError.state(path: path, reason: "\(error); remove it to have a new key made")
            }
        } catch let error as EmulatorSetupError {
            throw error
        } catch let error as InputFileError where error == .cannotOpen(.noSuchFileOrDirectory) {
            var key = [UInt8](repeating: 0, count: 32)
            var generator = SystemRandomNumberGenerator()
            for i in key.indices { key[i] = generator.next() }
            let connectionString = DPSConnectionString(
                hostName: hostName, policyName: policyName, key: DPSSharedAccessKey(bytes: key))
            try EmulatorIdentity.write(connectionString.secretText + "\n", to: path, mode: 0o600)
            return connectionString
        } catch {
            throw .state(path: path, reason: "\(error)")
        }
    }
}
