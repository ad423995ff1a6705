import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The built `devkit emulate-dps` running in the background for a test: started
/// with `--json --port 0` and a scratch state directory, its first line read for
/// the URL, the CA file and the connection-string file. Stopped with SIGTERM by
/// ``stop()``, killed at deinit if still running.
public final class TestDPSEmulator: @unchecked Sendable {
    public let running: BackgroundDevkit
    public var process: Process { running.process }
    public let stateDirectory: String
    /// `https://127.0.0.1:<port>`.
    public let url: String
    public let port: Int
    /// The emulator's CA certificate (PEM): `--dps-ca-file` / `--ca-file`.
    public let caFile: String
    /// A file holding a connection string the emulator accepts (0600).
    public let connectionStringFile: String
    /// The device API's ID scope (`/<scope>/registrations/<id>/register`).
    public let idScope: String

    /// Starts it; `arguments` are extra switches (`--throttle 2`, `--port N` to
    /// reuse a port after a restart, ...).
    public init(stateDirectory: String, arguments: [String] = [], timeout: Duration = .seconds(60)) throws {
        self.stateDirectory = stateDirectory
        let port = arguments.contains("--port") ? [] : ["--port", "0"]
        running = try BackgroundDevkit(["emulate-dps", "--json", "--state-dir", stateDirectory] + port + arguments)
        guard let line = running.firstLine(timeout: timeout),
              let info = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
              let url = info["url"] as? String, let port = info["port"] as? Int,
              let ca = info["ca_file"] as? String, let cs = info["connection_string_file"] as? String,
              let scope = info["id_scope"] as? String
        else {
            if running.process.isRunning { kill(running.process.processIdentifier, SIGKILL) }
            let message = String(decoding: running.stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            throw StartFailure(description: "devkit emulate-dps did not start: \(message)")
        }
        self.url = url
        self.port = port
        caFile = ca
        connectionStringFile = cs
        idScope = scope
    }

    /// Starts it like ``init(stateDirectory:arguments:timeout:)``, waiting on a
    /// thread of its own (``offPool(_:)``) rather than on the concurrency pool.
    public static func start(
        stateDirectory: String, arguments: [String] = [], timeout: Duration = .seconds(60)
    ) async throws -> TestDPSEmulator {
        try await offPool { try TestDPSEmulator(stateDirectory: stateDirectory, arguments: arguments, timeout: timeout) }
    }

    public struct StartFailure: Error, CustomStringConvertible {
        public var description: String
    }

    /// The options that point `devkit dps ...` at this emulator (over TLS,
    /// trusting its CA).
    public func dpsArguments() -> [String] {
        ["--connection-string-file", connectionStringFile, "--endpoint", url, "--ca-file", caFile]
    }

    /// SIGTERM, then waits (bounded) for it to exit; returns its status.
    @discardableResult
    public func stop(timeout: Duration = .seconds(120)) -> Int32? {
        guard process.isRunning else { return process.terminationStatus }
        kill(process.processIdentifier, SIGTERM)
        return running.wait(timeout: timeout)
    }

    /// ``stop(timeout:)`` waited for on a thread of its own (``offPool(_:)``).
    @discardableResult
    public func stopped(timeout: Duration = .seconds(120)) async -> Int32? {
        await timedStop(timeout: timeout).status
    }

    /// The same, with the time from SIGTERM to the exit, measured on that thread: the
    /// emulator's own stop, without the wait for a concurrency-pool thread to resume
    /// the caller (which the loaded parallel suite can make seconds).
    public func timedStop(timeout: Duration = .seconds(120)) async -> (status: Int32?, afterSignal: Duration) {
        (try? await offPool { () -> (Int32?, Duration) in
            let start = ContinuousClock.now
            let status = self.stop(timeout: timeout)
            return (status, ContinuousClock.now - start)
        }) ?? (nil, .zero)
    }

    /// What it wrote on standard error so far and until it exits (read once it
    /// has stopped: the read waits for the end of the stream).
    public func standardError() -> String {
        String(decoding: running.stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    }
}

/// A TCP port on 127.0.0.1 that nothing listens on (bound, then closed): where a
/// DPS that is down would be.
public func closedLoopbackPort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw POSIXError(.EIO) }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = 0
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let bound = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard bound == 0 else { throw POSIXError(.EADDRINUSE) }
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    return Int(UInt16(bigEndian: address.sin_port))
}
