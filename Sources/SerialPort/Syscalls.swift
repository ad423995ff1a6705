import DevKitSystem
import SystemPackage
#if canImport(Glibc)
import Glibc
#endif

// Thin wrappers over the system calls this module needs and swift-system does not
// offer (termios, ioctl, poll), in swift-system's style: each returns the
// value or throws the call's `Errno`, retrying EINTR where that is safe. Reads,
// writes, the eventfd and flock come from DevKitSystem.

/// Runs `body` until it does not fail with EINTR; returns its result or throws `Errno`.
@inline(__always)
func retryingOnInterrupt<T: BinaryInteger>(_ body: () -> T) throws(Errno) -> T {
    while true {
        let result = body()
        if result != -1 { return result }
        let err = Errno(rawValue: errno)
        if err != .interrupted { throw err }
    }
}

extension FileDescriptor {
    /// `ioctl(fd, request, 0)`: for requests without an argument (TIOCEXCL, TIOCNXCL).
    func ioctl(_ request: CInt) throws(Errno) {
        _ = try retryingOnInterrupt { Glibc.ioctl(rawValue, UInt(request)) }
    }

    /// `tcgetattr(3)`.
    func terminalAttributes() throws(Errno) -> termios {
        var t = termios()
        _ = try retryingOnInterrupt { tcgetattr(rawValue, &t) }
        return t
    }

    /// `tcsetattr(3)` with TCSANOW.
    func setTerminalAttributes(_ attributes: termios) throws(Errno) {
        var t = attributes
        _ = try retryingOnInterrupt { tcsetattr(rawValue, TCSANOW, &t) }
    }

    /// `fstat(2)`.
    func status() throws(Errno) -> Glibc.stat {
        var s = Glibc.stat()
        _ = try retryingOnInterrupt { fstat(rawValue, &s) }
        return s
    }
}

/// `poll(2)` on `fds` for at most `timeoutMilliseconds` (-1: no limit). EINTR is
/// thrown as `.interrupted` so the caller can recompute its timeout.
func poll(_ fds: inout [pollfd], timeoutMilliseconds: CInt) throws(Errno) -> Int {
    let rc = fds.withUnsafeMutableBufferPointer {
        Glibc.poll($0.baseAddress, nfds_t($0.count), timeoutMilliseconds)
    }
    if rc < 0 { throw Errno(rawValue: errno) }
    return Int(rc)
}

/// Milliseconds from now to `deadline`, rounded up, clamped to 0...Int32.max.
func pollTimeout(until deadline: ContinuousClock.Instant) -> CInt {
    let remaining = ContinuousClock.now.duration(to: deadline)
    if remaining <= .zero { return 0 }
    let (seconds, attoseconds) = remaining.components
    let ms = seconds * 1000 + (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000
    return CInt(clamping: ms)
}

/// Reads a small file (such as /proc/locks) whole.
func readSmallFile(_ path: String) throws -> [UInt8] {
    let fd = try FileDescriptor.open(path, .readOnly, options: [.closeOnExec])
    return try fd.closeAfter { () throws -> [UInt8] in try fd.readToEnd(limit: 16 << 20) }
}
