import Foundation
import VirtualDevKit
#if canImport(Glibc)
import Glibc
#endif

/// The built `devkit` running in the background for a test (`emulate`,
/// `emulate-dps`): its output on pipes, its first line read with a bound, its exit
/// waited for with a bound (killed if it overstays), killed at deinit if still running.
public final class BackgroundDevkit: @unchecked Sendable {
    public let process = Process()
    public let stdout = Pipe()
    public let stderr = Pipe()
    private let exited = DispatchSemaphore(value: 0)

    /// `environment`: added to this process's.
    public init(_ arguments: [String], environment: [String: String] = [:]) throws {
        process.executableURL = URL(fileURLWithPath: try TestProcess.devkitBinary)
        _ = sharedRegistryKeyReady
        process.arguments = arguments
        if !environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        process.standardOutput = stdout
        process.standardError = stderr
        process.standardInput = FileHandle.nullDevice
        let exited = exited
        process.terminationHandler = { _ in exited.signal() }
        try process.run()
    }

    /// The first line of standard output, waited for at most `timeout`.
    public func firstLine(timeout: Duration = .seconds(120)) -> String? {
        let fd = stdout.fileHandleForReading.fileDescriptor
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

    /// Waits for exit (bounded; killed if it overstays) and returns the status, nil if killed.
    @discardableResult
    public func wait(timeout: Duration = .seconds(120)) -> Int32? {
        let (seconds, attoseconds) = timeout.components
        let ms = Int(seconds) * 1000 + Int(attoseconds / 1_000_000_000_000_000)
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
}

extension BackgroundDevkit {
    /// Whether the process has `path` open (one of its descriptors links to it, or to
    /// the file a symbolic link at `path` names, such as a board's stable link to its
    /// pty): a test waits for this instead of sleeping before it acts on the port.
    public func hasOpen(_ path: String) -> Bool {
        let targets = Set([path, URL(fileURLWithPath: path).resolvingSymlinksInPath().path])
        let directory = "/proc/\(process.processIdentifier)/fd"
        let fds = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return fds.contains { fd in
            (try? FileManager.default.destinationOfSymbolicLink(atPath: directory + "/" + fd)).map(targets.contains) ?? false
        }
    }

    /// Waits (up to `timeout`) until the process has the pty's slave open and has put
    /// the line in raw mode (no canonical input: what a serial port's configuration
    /// does), so that bytes the test writes next reach it unchanged. A pty's two sides
    /// share their settings, so the master shows them.
    @discardableResult
    public func waitUntilRaw(_ pty: PseudoTerminal, timeout: Duration = .seconds(60)) -> Bool {
        pollUntil(timeout: timeout) {
            var attributes = termios()
            return hasOpen(pty.slavePath) && tcgetattr(pty.master.rawValue, &attributes) == 0
                && attributes.c_lflag & tcflag_t(ICANON) == 0
        }
    }

    /// Waits (up to `timeout`) until the process has `path` open; whether it did.
    @discardableResult
    public func waitUntilOpen(_ path: String, timeout: Duration = .seconds(60)) -> Bool {
        pollUntil(timeout: timeout, every: .milliseconds(50)) { hasOpen(path) }
    }
}
