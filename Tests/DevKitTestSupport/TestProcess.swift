// Shared by the test targets (a test target cannot import another one): bounded
// child processes and the paths of the built binaries.
import CDevKitLinux
import Foundation
import VirtualDevKit
#if canImport(Glibc)
import Glibc
#endif

/// What a bounded child process did.
public struct ProcessResult: Sendable {
    /// Exit code, or 128 + signal number when it was killed.
    public var status: Int32
    public var stdout: String
    public var stderr: String
    /// True when the deadline passed and the process group was killed.
    public var timedOut: Bool
    /// The signal that ended the process, if one did.
    public var signal: Int32? = nil

    public var stdoutLines: [String] { stdout.split(separator: "\n").map(String.init) }
}

// pipe2 and posix_spawn_file_actions_addclosefrom_np are GNU calls the Glibc
// module map hides: the project's C shim declares them.

/// Bounded child processes for the end-to-end tests of the built `devkit`.
public enum TestProcess {
    /// A pipe whose ends are close-on-exec from the moment they exist.
    ///
    /// The tests spawn children from many threads at once. A plain pipe() is
    /// inherited by whatever another thread spawns next (a long-lived emulator, a
    /// tmux server), and that copy of the write end keeps the reader from ever
    /// seeing end-of-file: a child waiting for EOF on its stdin then hangs until
    /// the deadline. pipe2(O_CLOEXEC) closes that window.
    public static func makePipe() throws -> (read: Int32, write: Int32) {
        var fds: [Int32] = [-1, -1]
        guard CDevKitLinux_pipe2(&fds, O_CLOEXEC) == 0 else { throw POSIXError(.init(rawValue: errno) ?? .EIO) }
        return (fds[0], fds[1])
    }

    /// Adds "close every descriptor from 3 up" to `actions`, so a child gets only
    /// its three standard streams whatever other threads left open without
    /// close-on-exec (glibc 2.34 and later; a no-op before).
    public static func closeOtherDescriptors(_ actions: inout posix_spawn_file_actions_t) {
        _ = CDevKitLinux_posix_spawn_file_actions_addclosefrom_np(&actions, 3)
    }

    /// Sets `attributes` so that a child blocks no signal and takes the default
    /// action for the ones that end or stop servers: the test runner's threads block
    /// some and ignore SIGPIPE, and a server (tmux, PostgreSQL) started with that
    /// mask could not be stopped.
    public static func withDefaultSignals(_ attributes: inout posix_spawnattr_t) {
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGHUP, SIGINT, SIGTERM, SIGCHLD, SIGPIPE] { sigaddset(&defaults, signal) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
    }

    /// system(3) without what it hands down: `/bin/sh -c command`, the child given only
    /// descriptors 0-2. system(3) passes every descriptor another thread holds without
    /// close-on-exec, and a PostgreSQL server started that way kept another test's
    /// stdin pipe open for its whole life: the `devkit console` reading it never saw
    /// end-of-file (CI, 2026-12-05). Returns the wait status, as system(3) does (-1
    /// if the shell could not be started).
    @discardableResult
    public static func shell(_ command: String) -> Int32 {
        guard let pid = spawnClean(["/bin/sh", "-c", command]) else { return -1 }
        return waitStatus(pid)
    }

    /// Starts `argv` (`argv[0]` a path) as a child that holds no descriptor but 0-2
    /// (after `redirect`'s actions on them) and blocks no signal
    /// (``withDefaultSignals(_:)``): what a server it may start lives with. Its PID,
    /// nil if it could not be started.
    public static func spawnClean(
        _ argv: [String], redirect: (inout posix_spawn_file_actions_t) -> Void = { _ in }
    ) -> pid_t? {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        redirect(&actions)
        closeOtherDescriptors(&actions)
        var arguments: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        defer { for argument in arguments { free(argument) } }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        withDefaultSignals(&attributes)
        var pid: pid_t = 0
        guard posix_spawn(&pid, argv[0], &actions, &attributes, &arguments, environ) == 0 else { return nil }
        return pid
    }

    /// Waits for child `pid` (through interruptions); its wait status, -1 if the wait failed.
    public static func waitStatus(_ pid: pid_t) -> Int32 {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            if errno != EINTR { return -1 }
        }
        return status
    }

    /// The `devkit` executable `swift test` built next to the test bundle
    /// (`DEVKIT_BINARY` overrides). Throws when it is not there, so a test fails
    /// naming the path instead of running whatever other `devkit` is on PATH.
    public static var devkitBinary: String {
        get throws {
            let bundle = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
                ?? CommandLine.arguments[0]
            return try locateDevkit(testBundle: bundle, environment: ProcessInfo.processInfo.environment)
        }
    }

    /// Where `devkitBinary` looks: `DEVKIT_BINARY`, else the test bundle's folder
    /// (or, when the bundle is a directory such as `…/devkitPackageTests.xctest/…`,
    /// the folder that holds it). Nowhere else.
    public static func locateDevkit(testBundle: String, environment: [String: String]) throws -> String {
        if let path = environment["DEVKIT_BINARY"] {
            guard FileManager.default.isExecutableFile(atPath: path) else {
                throw MissingBinary(path: path, hint: "DEVKIT_BINARY names no executable")
            }
            return path
        }
        let buildDirectory = URL(fileURLWithPath: testBundle).deletingLastPathComponent()
        var directory = buildDirectory
        while directory.lastPathComponent != "/" {
            let candidate = directory.appendingPathComponent("devkit").path
            if FileManager.default.isExecutableFile(atPath: candidate) {
                // devkit hands every command but --version, info and set-uds to it: without
                // it most tests would fail with devkit's exit 78, far from the cause.
                let full = directory.appendingPathComponent("devkit-full").path
                guard FileManager.default.isExecutableFile(atPath: full) else {
                    throw MissingBinary(path: full, hint: "run swift build first, which builds devkit and devkit-full")
                }
                return candidate
            }
            guard directory.lastPathComponent.hasSuffix(".xctest") || directory.path.contains(".xctest/") else { break }
            directory = directory.deletingLastPathComponent()
        }
        throw MissingBinary(
            path: buildDirectory.appendingPathComponent("devkit").path,
            hint: "run swift build first (swift test --skip-build does not build it)")
    }

    /// The built `devkit` is not where the tests look for it.
    public struct MissingBinary: Error, CustomStringConvertible {
        public var path: String
        public var hint: String
        public var description: String { "no devkit executable at \(path): \(hint)" }
    }

    /// The first executable named `name` on PATH, or nil.
    public static func which(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for directory in path.split(separator: ":") {
            let candidate = "\(directory)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }

    /// Runs `argv` in its own process group with `stdin` as its standard input
    /// (/dev/null when nil), collects its output, and kills the whole group if it is
    /// not done within `timeout`.
    ///
    /// posix_spawn rather than Foundation.Process: the deadline must kill the
    /// grandchildren (umockdev-run's child) too, which needs a process group.
    ///
    /// With `stderrTerminalColumns`, standard error is a pseudo-terminal that many
    /// columns wide instead of a pipe (`isatty(2)` true), and `stderr` is what the
    /// terminal received: the line discipline turns each `\n` into `\r\n`.
    public static func run(
        _ argv: [String], stdin: [UInt8]? = nil, environment: [String: String] = [:], timeout: Double,
        stderrTerminalColumns: Int? = nil
    ) throws -> ProcessResult {
        var inPipe: [Int32] = [-1, -1]
        if stdin != nil {
            let ends = try makePipe()
            inPipe = [ends.read, ends.write]
        }
        let outEnds = try makePipe()
        let outPipe = [outEnds.read, outEnds.write]
        var errPipe: [Int32]
        // Kept open until the child is gone: the master is the terminal's reading end.
        var terminal: PseudoTerminal?
        if let columns = stderrTerminalColumns {
            let pty = try PseudoTerminal()
            var size = winsize(ws_row: 50, ws_col: UInt16(columns), ws_xpixel: 0, ws_ypixel: 0)
            _ = ioctl(pty.master.rawValue, UInt(TIOCSWINSZ), &size)
            let slave = try pty.openSlave().rawValue
            _ = fcntl(slave, F_SETFL, fcntl(slave, F_GETFL) & ~O_NONBLOCK)  // the child's stderr blocks, as a terminal's does
            errPipe = [pty.master.rawValue, slave]
            terminal = pty
        } else {
            let errEnds = try makePipe()
            errPipe = [errEnds.read, errEnds.write]
        }

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        if stdin != nil {
            posix_spawn_file_actions_adddup2(&actions, inPipe[0], 0)
        } else {
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        }
        posix_spawn_file_actions_adddup2(&actions, outPipe[1], 1)
        posix_spawn_file_actions_adddup2(&actions, errPipe[1], 2)
        // dup2 clears close-on-exec on 0, 1 and 2; everything else closes.
        closeOtherDescriptors(&actions)

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP))
        posix_spawnattr_setpgroup(&attributes, 0)

        var env = ProcessInfo.processInfo.environment
        for (key, value) in environment { env[key] = value }
        // XDG_CONFIG_HOME is the test process's private one (CDevKitTestEnvironment)
        // unless the test gives its own; HOME alone no longer moves it.
        if environment["XDG_CONFIG_HOME"] == nil { _ = sharedRegistryKeyReady }
        let cArgs = argv.map { strdup($0) } + [nil]
        let cEnv = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            cArgs.forEach { free($0) }
            cEnv.forEach { free($0) }
        }
        var pid: pid_t = 0
        let rc = posix_spawnp(&pid, argv[0], &actions, &attributes, cArgs, cEnv)
        close(outPipe[1])
        close(errPipe[1])
        if let stdin {
            // Small inputs fit the pipe buffer; the child reads them at its pace.
            close(inPipe[0])
            _ = stdin.withUnsafeBytes { write(inPipe[1], $0.baseAddress, $0.count) }
            close(inPipe[1])
        }
        defer {
            close(outPipe[0])
            if let terminal { try? terminal.master.close() } else { close(errPipe[0]) }
        }
        guard rc == 0 else { throw POSIXError(.init(rawValue: rc)!) }

        var start = timespec()
        clock_gettime(CLOCK_MONOTONIC, &start)
        func elapsed() -> Double {
            var now = timespec()
            clock_gettime(CLOCK_MONOTONIC, &now)
            return Double(now.tv_sec - start.tv_sec) + Double(now.tv_nsec - start.tv_nsec) / 1e9
        }

        var out: [UInt8] = [], err: [UInt8] = []
        var open = [outPipe[0], errPipe[0]]
        var timedOut = false
        var buffer = [UInt8](repeating: 0, count: 65536)
        while !open.isEmpty {
            let remaining = timeout - elapsed()
            if remaining <= 0 {
                timedOut = true
                kill(-pid, SIGKILL)
                break
            }
            var fds = open.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            let ready = poll(&fds, nfds_t(fds.count), Int32(min(remaining * 1000, 1_000_000)) + 1)
            if ready < 0 && errno != EINTR { break }
            for entry in fds where entry.revents != 0 {
                let n = read(entry.fd, &buffer, buffer.count)
                if n > 0 {
                    if entry.fd == outPipe[0] { out += buffer[..<n] } else { err += buffer[..<n] }
                } else if n == 0 || (errno != EINTR && errno != EAGAIN) {
                    open.removeAll { $0 == entry.fd }
                }
            }
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        // Nothing of the group may outlive the test.
        kill(-pid, SIGKILL)
        let exitStatus: Int32 = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        return ProcessResult(
            status: exitStatus, stdout: String(decoding: out, as: UTF8.self),
            stderr: String(decoding: err, as: UTF8.self), timedOut: timedOut,
            signal: (status & 0x7f) == 0 ? nil : status & 0x7f)
    }
}
