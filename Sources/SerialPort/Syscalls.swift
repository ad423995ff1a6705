import SystemPackage
#if canImport(Glibc)
import Glibc
#endif

// Thin wrappers over the system calls this module needs and swift-system does not
// offer (termios, ioctl, flock, poll, eventfd), in swift-system's style: each
// returns the value or throws the call's `Errno`, retrying EINTR where that is safe.

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

// Swift does not import C variadic functions (ioctl) and the Glibc module map leaves
// out <sys/eventfd.h>, so both are looked up once through dlsym with a fixed
// prototype. On Linux's x86_64 and arm64 ABIs integer arguments of a variadic call
// travel exactly like those of a fixed one, so the call is well defined.
private func libcSymbol(_ name: String) -> UnsafeMutableRawPointer {
    guard let symbol = dlsym(dlopen(nil, RTLD_NOW), name) else { fatalError("libc has no \(name)") }
    return symbol
}

// `flock` the function is hidden behind `struct flock` in Swift; bind it by name.
private typealias FlockFunction = @convention(c) (CInt, CInt) -> CInt
private let c_flock = unsafeBitCast(libcSymbol("flock"), to: FlockFunction.self)

private typealias IoctlFunction = @convention(c) (CInt, UInt, UInt) -> CInt
private let ioctlFunction: IoctlFunction = unsafeBitCast(libcSymbol("ioctl"), to: IoctlFunction.self)

private typealias EventfdFunction = @convention(c) (CUnsignedInt, CInt) -> CInt
private let eventfdFunction: EventfdFunction = unsafeBitCast(libcSymbol("eventfd"), to: EventfdFunction.self)

extension FileDescriptor {
    /// `ioctl(fd, request, 0)`: for requests without an argument (TIOCEXCL, TIOCNXCL).
    func ioctl(_ request: CInt) throws(Errno) {
        _ = try retryingOnInterrupt { ioctlFunction(rawValue, UInt(request), 0) }
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

    /// `flock(2)`, non-blocking exclusive: throws `.wouldBlock` when someone holds it.
    func lockExclusiveNonBlocking() throws(Errno) {
        _ = try retryingOnInterrupt { c_flock(rawValue, LOCK_EX | LOCK_NB) }
    }

    /// `fstat(2)`.
    func status() throws(Errno) -> Glibc.stat {
        var s = Glibc.stat()
        _ = try retryingOnInterrupt { fstat(rawValue, &s) }
        return s
    }

    /// `read(2)` into a new array; returns [] at end of file. EINTR is retried,
    /// EAGAIN is thrown as `.resourceTemporarilyUnavailable`.
    func readAvailable(maxCount: Int) throws(Errno) -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: maxCount)
        let n = buffer.withUnsafeMutableBytes { raw in
            Glibc.read(rawValue, raw.baseAddress, raw.count)
        }
        if n < 0 {
            let err = Errno(rawValue: errno)
            if err == .interrupted { return try readAvailable(maxCount: maxCount) }
            throw err
        }
        buffer.removeSubrange(n...)
        return buffer
    }

    /// `write(2)` of part of a buffer; returns how many bytes were taken.
    func writeSome(_ bytes: UnsafeRawBufferPointer) throws(Errno) -> Int {
        try retryingOnInterrupt { Glibc.write(rawValue, bytes.baseAddress, bytes.count) }
    }

    /// A new `eventfd(2)` (close-on-exec, non-blocking), used to wake `poll`.
    static func eventFD() throws(Errno) -> FileDescriptor {
        // EFD_CLOEXEC and EFD_NONBLOCK are defined equal to O_CLOEXEC and O_NONBLOCK.
        let fd = try retryingOnInterrupt { eventfdFunction(0, O_CLOEXEC | O_NONBLOCK) }
        return FileDescriptor(rawValue: fd)
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
    return try fd.closeAfter { () throws -> [UInt8] in
        var result: [UInt8] = []
        while true {
            let chunk = try fd.readAvailable(maxCount: 65536)
            if chunk.isEmpty { return result }
            result += chunk
        }
    }
}
