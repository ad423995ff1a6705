import DevKitModel
import DevKitSystem
import SystemPackage
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Reading and writing secrets (UDS, Wi-Fi password, connection string) in files.
///
/// Written on DevKitSystem's ``DurableFile`` because the guarantees are the point:
/// mode 0600 from the first byte, no clobbering of an existing secret, and
/// durability (fsync of the file and its directory) before the secret is ever sent
/// to a board.

public enum SecretFile {
    /// Largest secret file read, so a wrong path (a disk image…) fails fast.
    public static let maxSize = InputLimit.secret.bytes

    /// Reads a whole file, or standard input for `-`. Standard input that is a
    /// terminal is asked for one line, with a prompt on stderr and echo off: a
    /// secret typed there is never shown.
    public static func read(_ path: String) throws(WorkflowError) -> [UInt8] {
        if path == "-" && isatty(STDIN_FILENO) == 1 { return try readHiddenLine() }
        do { return try InputFile.read(path, limit: .secret) } catch {
            switch error {
            case .cannotOpen(let e), .cannotRead(let e): throw .cannotReadSecret(path: path, reason: errnoText(e.rawValue))
            case .isDirectory, .notAFile, .tooLarge: throw .cannotReadSecret(path: path, reason: error.reason)
            }
        }
    }

    /// One line from the terminal on standard input, echo off. The terminal's
    /// settings come back afterwards, also when SIGINT, SIGTERM or SIGHUP ends the
    /// process while it waits (the read loop polls a SignalRelay beside stdin, restores them, then dies of the signal).
    public static func readHiddenLine() throws(WorkflowError) -> [UInt8] {
        var saved = termios()
        guard tcgetattr(STDIN_FILENO, &saved) == 0 else {
            throw .cannotReadSecret(path: "-", reason: errnoText(errno))
        }
        let prompt = "devkit: type the secret (it is not shown), then Enter: "
        _ = prompt.withCString { Glibc.write(STDERR_FILENO, $0, strlen($0)) }
        var hidden = saved
        hidden.c_lflag &= ~tcflag_t(ECHO)
        hidden.c_lflag |= tcflag_t(ICANON | ECHONL)
        // A signal while the echo is off: the terminal's settings come back before
        // the process dies of it (here, not in the handler: see SignalRelay).
        let signals = try? SignalRelay([SIGINT, SIGTERM, SIGHUP], restartingCalls: true)
        _ = tcsetattr(STDIN_FILENO, TCSAFLUSH, &hidden)
        defer {
            _ = tcsetattr(STDIN_FILENO, TCSANOW, &saved)
            signals?.restore()
        }
        var line: [UInt8] = []
        var byte: UInt8 = 0
        while true {
            var fds = [pollfd(fd: STDIN_FILENO, events: Int16(POLLIN), revents: 0)]
            if let signals { fds.append(pollfd(fd: signals.fd, events: Int16(POLLIN), revents: 0)) }
            if poll(&fds, nfds_t(fds.count), -1) < 0 {
                if errno == EINTR { continue }
                throw .cannotReadSecret(path: "-", reason: errnoText(errno))
            }
            if let signals, fds[1].revents != 0, let signal = signals.takeSignals().first {
                _ = tcsetattr(STDIN_FILENO, TCSANOW, &saved)
                signals.restore()
                SignalRelay.dieOf(signal)
            }
            guard fds[0].revents != 0 else { continue }
            let n = Glibc.read(STDIN_FILENO, &byte, 1)
            if n < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                throw .cannotReadSecret(path: "-", reason: errnoText(errno))
            }
            if n == 0 || byte == 0x0A { break }
            line.append(byte)
            guard line.count <= maxSize else {
                throw .cannotReadSecret(path: "-", reason: "the line is longer than \(maxSize) bytes")
            }
        }
        return line
    }

    /// Reads a text secret, without surrounding whitespace (UDS, connection strings).
    public static func readTrimmed(_ path: String) throws(WorkflowError) -> String {
        let bytes = try read(path)
        let isSpace: (UInt8) -> Bool = { $0 == 0x20 || $0 == 0x09 || $0 == 0x0A || $0 == 0x0D }
        guard let first = bytes.firstIndex(where: { !isSpace($0) }), let last = bytes.lastIndex(where: { !isSpace($0) })
        else { return "" }
        return try utf8(bytes[first...last], path)
    }

    /// Reads a UDS file: 64 hex digits, either case, surrounding whitespace allowed.
    public static func readUDS(_ path: String) throws(WorkflowError) -> UDS {
        let text = try readTrimmed(path)
        do { return try UDS(hex: text) } catch { throw .invalidSecret(path: path, reason: "does not hold a UDS: \(error)") }
    }

    /// Reads a Wi-Fi password file (see ``readLine(_:)``).
    public static func readWiFiPassword(_ path: String) throws(WorkflowError) -> WiFiPassword {
        let text = try readLine(path)
        do { return try WiFiPassword(text) } catch {
            throw .invalidSecret(path: path, reason: "does not hold a usable Wi-Fi password: \(error)")
        }
    }

    /// Reads a connection string file (surrounding whitespace ignored).
    public static func readConnectionString(_ path: String) throws(WorkflowError) -> ConnectionString {
        let text = try readTrimmed(path)
        do { return try ConnectionString(text) } catch {
            throw .invalidSecret(path: path, reason: "does not hold a usable connection string: \(error)")
        }
    }

    /// Reads a secret whose spaces matter (a Wi-Fi password): only a final line end is removed.
    public static func readLine(_ path: String) throws(WorkflowError) -> String {
        var bytes = try read(path)[...]
        if bytes.last == 0x0A { bytes = bytes.dropLast() }
        if bytes.last == 0x0D { bytes = bytes.dropLast() }
        if bytes.contains(0x0A) {
            throw .invalidSecret(path: path, reason: "holds more than one line; put the secret alone on the first line")
        }
        return try utf8(bytes, path)
    }

    private static func utf8(_ bytes: ArraySlice<UInt8>, _ path: String) throws(WorkflowError) -> String {
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw .invalidSecret(path: path, reason: "is not UTF-8 text")
        }
        return text
    }

    /// Writes a new file holding `contents`, mode 0600, atomically: it appears complete
    /// or not at all, is on disk (file and directory synced) when this returns, and an
    /// existing file is never replaced.
    public static func writeNew(_ contents: [UInt8], to path: String) throws(WorkflowError) {
        guard !path.isEmpty, !path.hasSuffix("/") else { throw .cannotWriteSecret(path: path, reason: "it names a directory") }
        if access(path, F_OK) == 0 { throw .secretFileExists(path: path) }
        do {
            try DurableFile.write(contents, to: path, mode: 0o600, replacing: false)
        } catch where error.errno == .fileExists && error.path == path {
            throw .secretFileExists(path: path)
        } catch {
            throw .cannotWriteSecret(path: path, reason: error.reason, errno: error.errno.rawValue)
        }
    }

    static func errnoText(_ code: Int32) -> String {
        guard let text = strerror(code) else { return "errno \(code)" }
        return String(cString: text)
    }
}
