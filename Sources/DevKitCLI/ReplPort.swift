import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A minimal raw tty port for the console. Stand-in until the `SerialPort` module
/// lands; it does only what the console needs: raw 8N1, poll-based reads that a
/// pipe can wake, and hang-up detection.
final class ReplTTYPort: ReplPort, @unchecked Sendable {
    private let fd: Int32
    private let wake: (read: Int32, write: Int32)
    private let closed = Mutex(false)
    private var saved = termios()

    init(path: String, baudRate: Int) throws {
        fd = open(path, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { throw ReplPortError.open(path: path, errno: errno) }
        guard let fds = makeNonBlockingPipe() else {
            close(fd)
            throw ReplPortError.open(path: path, errno: errno)
        }
        wake = fds
        if tcgetattr(fd, &saved) == 0 {
            var raw = saved
            cfmakeraw(&raw)
            raw.c_cflag |= tcflag_t(CLOCAL | CREAD)
            let speed = speed_t(B115200)
            _ = cfsetispeed(&raw, speed)
            _ = cfsetospeed(&raw, speed)
            _ = tcsetattr(fd, TCSANOW, &raw)
        }
    }

    func readBytes(maxCount: Int, deadline: ContinuousClock.Instant) throws -> [UInt8] {
        while true {
            let remaining = ContinuousClock.now.duration(to: deadline)
            if remaining <= .zero { return [] }
            let (seconds, attoseconds) = remaining.components
            let timeout = Int32(clamping: seconds * 1000 + attoseconds / 1_000_000_000_000_000 + 1)
            var fds = [pollfd(fd: fd, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: wake.read, events: Int16(POLLIN), revents: 0)]
            let ready = poll(&fds, 2, timeout)
            if ready < 0 {
                if errno == EINTR { continue }
                throw ReplPortError.disconnected
            }
            if fds[1].revents != 0 { drainPipe(wake.read); return [] }
            if fds[0].revents & Int16(POLLIN) != 0 {
                var buffer = [UInt8](repeating: 0, count: maxCount)
                let n = read(fd, &buffer, maxCount)
                if n > 0 { return Array(buffer[..<n]) }
                if n < 0 && (errno == EAGAIN || errno == EINTR) { continue }
                throw ReplPortError.disconnected
            }
            if fds[0].revents & Int16(POLLHUP | POLLERR | POLLNVAL) != 0 { throw ReplPortError.disconnected }
        }
    }

    func writeBytes(_ bytes: [UInt8], deadline: ContinuousClock.Instant) throws {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if n > 0 { offset += n; continue }
            if n < 0 && (errno == EINTR) { continue }
            if n < 0 && errno == EAGAIN {
                if ContinuousClock.now >= deadline { throw ReplPortError.disconnected }
                var pfd = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                _ = poll(&pfd, 1, 50)
                continue
            }
            throw ReplPortError.disconnected
        }
    }

    func cancelRead() {
        var byte: UInt8 = 1
        _ = write(wake.write, &byte, 1)
    }

    func closePort() {
        let wasClosed = closed.withLock { closed -> Bool in
            defer { closed = true }
            return closed
        }
        guard !wasClosed else { return }
        _ = tcsetattr(fd, TCSANOW, &saved)
        close(fd)
        close(wake.read)
        close(wake.write)
    }
}

enum ReplPortError: Error, CLIReportable {
    case open(path: String, errno: Int32)
    case disconnected

    var exitStatus: ExitStatus {
        switch self {
        case .open(_, let code): return code == EACCES ? .noPermission : .unavailable
        case .disconnected: return .ioError
        }
    }

    var userMessage: String {
        switch self {
        case .open(let path, let code):
            return "cannot open \(path): \(String(cString: strerror(code)))"
        case .disconnected:
            return "device disconnected"
        }
    }
}
