import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The built `devkit emulate-dps` running in the background for a test: started
/// with `--json --port 0` and a scratch state directory, its first line read for
/// the URL, the CA file and the connection-string file. Stopped with SIGTERM by
/// ``stop()``, killed at deinit if still running.
public final class TestDPSEmulator: @unchecked Sendable {
    public let process = Process()
    public let stateDirectory: String
    /// `https://127.0.0.1:<port>`.
    public let url: String
    public let port: Int
    /// The emulator's CA certificate (PEM): `--dps-ca-file` / `--ca-file`.
    public let caFile: String
    /// A file holding a connection string the emulator accepts (0600).
    public let connectionStringFile: String
    private let stdout = Pipe()
    private let stderr = Pipe()
    private let exited = DispatchSemaphore(value: 0)

    /// Starts it; `arguments` are extra switches (`--throttle 2`, `--port N` to
    /// reuse a port after a restart, ...).
    public init(stateDirectory: String, arguments: [String] = [], timeout: Duration = .seconds(60)) throws {
        self.stateDirectory = stateDirectory
        process.executableURL = URL(fileURLWithPath: try TestProcess.devkitBinary)
        let port = arguments.contains("--port") ? [] : ["--port", "0"]
        process.arguments = ["emulate-dps", "--json", "--state-dir", stateDirectory] + port + arguments
        process.standardOutput = stdout
        process.standardError = stderr
        process.standardInput = FileHandle.nullDevice
        let exited = exited
        process.terminationHandler = { _ in exited.signal() }
        try process.run()
        guard let line = Self.line(stdout.fileHandleForReading.fileDescriptor, timeout: timeout),
              let info = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
              let url = info["url"] as? String, let port = info["port"] as? Int,
              let ca = info["ca_file"] as? String, let cs = info["connection_string_file"] as? String
        else {
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            let message = String(decoding: stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            throw StartFailure(description: "devkit emulate-dps did not start: \(message)")
        }
        self.url = url
        self.port = port
        caFile = ca
        connectionStringFile = cs
    }

    public struct StartFailure: Error, CustomStringConvertible {
        public var description: String
    }

    /// The enrollments the emulator holds now, as `devkit dps list --json` prints
    /// them (the built binary, over TLS, trusting the emulator's CA).
    public func dpsArguments() -> [String] {
        ["--connection-string-file", connectionStringFile, "--endpoint", url, "--ca-file", caFile]
    }

    /// SIGTERM, then waits (bounded) for it to exit; returns its status.
    @discardableResult
    public func stop(timeout: Duration = .seconds(20)) -> Int32? {
        guard process.isRunning else { return process.terminationStatus }
        kill(process.processIdentifier, SIGTERM)
        let ms = Int(timeout.components.seconds * 1000)
        if exited.wait(timeout: .now() + .milliseconds(ms)) == .timedOut {
            kill(process.processIdentifier, SIGKILL)
            exited.wait()
            return nil
        }
        return process.terminationStatus
    }

    deinit {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }

    /// One line from `fd`, waited for at most `timeout`.
    static func line(_ fd: Int32, timeout: Duration) -> String? {
        let deadline = ContinuousClock.now + timeout
        var bytes: [UInt8] = []
        while ContinuousClock.now < deadline {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, 100) > 0 else { continue }
            var byte: UInt8 = 0
            guard read(fd, &byte, 1) == 1 else { return nil }
            if byte == 0x0a { return String(decoding: bytes, as: UTF8.self) }
            bytes.append(byte)
        }
        return nil
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
