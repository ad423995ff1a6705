import DevKitSystem
import Synchronization
import SystemPackage
#if canImport(Glibc)
import Glibc
#endif

/// An open serial port in raw 8N1 mode, exclusively held, with deadline-bounded I/O.
///
/// ```swift
/// let port = try SerialPort(path: "/dev/ttyACM0")
/// try port.write(Array("\r".utf8), deadline: .now + .seconds(1))
/// let bytes = try port.read(deadline: .now + .seconds(2))   // [] on timeout
/// ```
///
/// Opening takes the port for this process alone: `TIOCEXCL` (refuses later opens by
/// non-root users with EBUSY) plus an advisory `flock`, which also stops root and
/// fails at once, so a second opener learns who holds the port instead of silently
/// sharing it. The previous terminal settings are restored by ``close()``.
///
/// The port is line-for-line raw: no echo, no CR/LF translation, no flow control
/// (the DevKit console has none), `CLOCAL|CREAD`, `VMIN=0 VTIME=0`. All waiting is
/// done in `poll(2)` against a `ContinuousClock` deadline; an unplugged device
/// (POLLHUP, POLLERR, EIO, ENXIO, or end of file) is reported as
/// ``SerialPortError/disconnected(path:)`` rather than hanging or spinning.
///
/// Reads and writes may run on different threads at once; ``cancel()`` may be called
/// from any thread. ``close()`` must not race with a read or write in progress:
/// cancel them first.
public final class SerialPort: @unchecked Sendable {
    /// The device path this port was opened with.
    public let path: String
    /// The line rate the port was configured for.
    public let baudRate: Int

    private let fd: FileDescriptor
    /// Written by `cancel()` to wake a `poll` in progress.
    private let wake: FileDescriptor
    private let saved: termios
    private let closed = Mutex(false)

    /// Opens `path` and configures it raw 8N1 at `baudRate` without flow control.
    ///
    /// - Throws: ``SerialPortError/notFound(path:)``, ``SerialPortError/permissionDenied(path:)``,
    ///   ``SerialPortError/inUse(path:pid:)``, ``SerialPortError/notATerminal(path:)``,
    ///   ``SerialPortError/unsupportedBaudRate(_:)``, or ``SerialPortError/system(call:errno:path:)``.
    public init(path: String, baudRate: Int = SerialPort.defaultBaudRate) throws(SerialPortError) {
        guard let speed = Self.speed(for: baudRate) else {
            throw .unsupportedBaudRate(baudRate)
        }
        self.path = path
        self.baudRate = baudRate

        let fd: FileDescriptor
        do {
            fd = try FileDescriptor.open(
                path, .readWrite,
                options: [.nonBlocking, .closeOnExec, FileDescriptor.OpenOptions(rawValue: O_NOCTTY)],
                retryOnInterrupt: true)
        } catch let err as Errno {
            throw Self.openError(err, path: path)
        } catch {
            throw .system(call: "open", errno: .ioError, path: path)
        }

        // From here on, failures must close what was opened.
        var configured = false
        var savedAttributes = termios()
        do {
            do {
                savedAttributes = try fd.terminalAttributes()
            } catch .inappropriateIOCTLForDevice {
                throw SerialPortError.notATerminal(path: path)
            } catch {
                throw Self.mapIOError(error, call: "tcgetattr", path: path)
            }
            do {
                try fd.lockExclusiveNonBlocking()
            } catch .wouldBlock {
                throw SerialPortError.inUse(path: path, pid: PortHolder.pid(holding: fd))
            } catch {
                throw Self.mapIOError(error, call: "flock", path: path)
            }
            do { try fd.ioctl(CInt(TIOCEXCL)) } catch {
                throw Self.mapIOError(error, call: "ioctl(TIOCEXCL)", path: path)
            }

            var raw = savedAttributes
            Self.makeRaw(&raw, speed: speed)
            configured = true
            do { try fd.setTerminalAttributes(raw) } catch {
                throw Self.mapIOError(error, call: "tcsetattr", path: path)
            }
            // tcsetattr succeeds if *any* change was applied: read back to be sure.
            let applied: termios
            do { applied = try fd.terminalAttributes() } catch {
                throw Self.mapIOError(error, call: "tcgetattr", path: path)
            }
            if cfgetospeed([applied]) != speed {
                throw SerialPortError.unsupportedBaudRate(baudRate)
            }
            do { self.wake = try FileDescriptor.eventFD() } catch {
                throw SerialPortError.system(call: "eventfd", errno: error, path: path)
            }
        } catch {
            if configured { try? fd.setTerminalAttributes(savedAttributes) }
            try? fd.close()
            throw error as! SerialPortError
        }
        self.fd = fd
        self.saved = savedAttributes
    }

    deinit { close() }

    /// What a failed open(2) means for the user.
    static func openError(_ err: Errno, path: String) -> SerialPortError {
        switch err {
        case .noSuchFileOrDirectory, .noSuchAddressOrDevice, .operationNotSupportedByDevice:
            return .notFound(path: path)
        case .permissionDenied, .notPermitted:
            return .permissionDenied(path: path)
        case .isDirectory:
            return .notATerminal(path: path)  // a usage error like any other non-tty path
        case .resourceBusy:
            // TIOCEXCL set by the holder. Its flock is on the device node's inode,
            // which stat(2) gives without opening; failing that, any other opener.
            var s = Glibc.stat()
            let pid =
                stat(path, &s) == 0
                ? PortHolder.lockHolder(device: UInt64(s.st_dev), inode: UInt64(s.st_ino))
                    ?? PortHolder.openerScan(rdev: UInt64(s.st_rdev))
                : nil
            return .inUse(path: path, pid: pid)
        default:
            return .system(call: "open", errno: err, path: path)
        }
    }

    /// Applies raw 8N1, no flow control, CLOCAL|CREAD, VMIN=0/VTIME=0 and `speed`.
    static func makeRaw(_ t: inout termios, speed: speed_t) {
        cfmakeraw(&t)
        t.c_cflag &= ~tcflag_t(CSIZE | PARENB | CSTOPB)
        t.c_cflag &= ~tcflag_t(CRTSCTS)
        t.c_cflag |= tcflag_t(CS8 | CLOCAL | CREAD)
        t.c_iflag &= ~tcflag_t(IXON | IXOFF | IXANY)
        withUnsafeMutableBytes(of: &t.c_cc) { cc in
            cc[Int(VMIN)] = 0
            cc[Int(VTIME)] = 0
        }
        cfsetispeed(&t, speed)
        cfsetospeed(&t, speed)
    }

    /// Errno values that mean the device is gone.
    static func isDisconnect(_ err: Errno) -> Bool {
        err == .ioError || err == .noSuchAddressOrDevice || err == .operationNotSupportedByDevice
            || err == .brokenPipe
    }

    static func mapIOError(_ err: Errno, call: String, path: String) -> SerialPortError {
        isDisconnect(err) ? .disconnected(path: path) : .system(call: call, errno: err, path: path)
    }

    private func ensureOpen(_ call: String) throws(SerialPortError) {
        if closed.withLock({ $0 }) {
            throw .system(call: call, errno: .badFileDescriptor, path: path)
        }
    }

    /// Waits in `poll` for `events` on the port (or a cancel) until `deadline`.
    /// Returns the port's revents, or 0 when the deadline passed.
    private func wait(for events: Int16, until deadline: ContinuousClock.Instant) throws(SerialPortError) -> Int16 {
        while true {
            var fds = [
                pollfd(fd: fd.rawValue, events: events, revents: 0),
                pollfd(fd: wake.rawValue, events: Int16(POLLIN), revents: 0),
            ]
            let ready: Int
            do {
                ready = try poll(&fds, timeoutMilliseconds: pollTimeout(until: deadline))
            } catch .interrupted {
                continue
            } catch {
                throw .system(call: "poll", errno: error, path: path)
            }
            if fds[1].revents & Int16(POLLIN) != 0 {
                // Consume the wake-up so the next wait is not cancelled too.
                _ = try? wake.readAvailable(maxCount: 8)
                throw .cancelled
            }
            if fds[0].revents & Int16(POLLNVAL) != 0 {
                throw .system(call: "poll", errno: .badFileDescriptor, path: path)
            }
            if ready > 0 { return fds[0].revents }
            if ContinuousClock.now >= deadline { return 0 }
            // poll's millisecond rounding woke us a little early: wait again.
        }
    }

    /// Waits (poll, monotonic deadline) for bytes and returns what is available, at most
    /// `maxCount`, or [] once `deadline` has passed with nothing to read. Bytes already
    /// waiting are returned even when the deadline is in the past.
    ///
    /// - Throws: ``SerialPortError/disconnected(path:)`` when the device went away,
    ///   ``SerialPortError/cancelled`` when ``cancel()`` woke the wait.
    public func read(maxCount: Int = 4096, deadline: ContinuousClock.Instant) throws(SerialPortError) -> [UInt8] {
        precondition(maxCount > 0, "maxCount must be positive")
        try ensureOpen("read")
        while true {
            let revents = try wait(for: Int16(POLLIN), until: deadline)
            if revents == 0 { return [] }
            let hangup = revents & Int16(POLLHUP | POLLERR) != 0
            do {
                let bytes = try fd.readAvailable(maxCount: maxCount)
                // A tty reads 0 bytes only at hangup (VMIN=0 with O_NONBLOCK gives EAGAIN).
                if bytes.isEmpty { throw SerialPortError.disconnected(path: path) }
                return bytes
            } catch let err as Errno {
                if err == .resourceTemporarilyUnavailable {
                    // Spurious readiness; but a hangup with nothing to read is final.
                    if hangup { throw .disconnected(path: path) }
                    continue
                }
                throw Self.mapIOError(err, call: "read", path: path)
            } catch let err as SerialPortError {
                throw err
            } catch {
                throw .system(call: "read", errno: .ioError, path: path)
            }
        }
    }

    /// Writes all of `bytes` before `deadline`: loops over short writes and waits in
    /// `poll` while the driver's buffer is full.
    ///
    /// - Throws: ``SerialPortError/writeTimedOut(path:written:count:)`` when the deadline
    ///   passes first, ``SerialPortError/disconnected(path:)``, ``SerialPortError/cancelled``.
    public func write(_ bytes: [UInt8], deadline: ContinuousClock.Instant) throws(SerialPortError) {
        try ensureOpen("write")
        var offset = 0
        while offset < bytes.count {
            let result: Result<Int, Errno> = bytes.withUnsafeBytes { raw in
                Result { () throws(Errno) -> Int in
                    try fd.writeSome(UnsafeRawBufferPointer(rebasing: raw[offset...]))
                }
            }
            switch result {
            case .success(let n) where n > 0:
                offset += n
                continue
            case .success:
                break  // nothing taken: wait for room
            case .failure(let err) where err == .resourceTemporarilyUnavailable:
                break
            case .failure(let err):
                throw Self.mapIOError(err, call: "write", path: path)
            }
            let revents = try wait(for: Int16(POLLOUT), until: deadline)
            if revents == 0 {
                throw .writeTimedOut(path: path, written: offset, count: bytes.count)
            }
            if revents & Int16(POLLHUP | POLLERR) != 0 && revents & Int16(POLLOUT) == 0 {
                throw .disconnected(path: path)
            }
        }
    }

    /// Discards bytes received but not yet read (`tcflush(TCIFLUSH)`), e.g. what a
    /// device printed before this host was ready for it.
    public func discardInput() throws(SerialPortError) {
        try ensureOpen("tcflush")
        do {
            _ = try retryingOnInterrupt { tcflush(fd.rawValue, TCIFLUSH) }
        } catch {
            throw Self.mapIOError(error, call: "tcflush", path: path)
        }
    }

    /// The eventfd that ``cancel()`` writes to. A signal handler, which must not take
    /// ``cancel()``'s lock, may cancel by writing an 8-byte 1 to it with write(2)
    /// (async-signal-safe). Valid until ``close()``: remove the handler before closing.
    public var cancellationEventDescriptor: Int32 { wake.rawValue }

    /// Wakes a ``read(maxCount:deadline:)`` or ``write(_:deadline:)`` blocked in `poll`,
    /// which then throws ``SerialPortError/cancelled``. Safe from any thread (a signal
    /// handler must not call it: it takes a lock). If nothing is waiting, the next
    /// wait is cancelled instead.
    public func cancel() {
        closed.withLock { isClosed in
            guard !isClosed else { return }
            var one: UInt64 = 1
            // An eventfd counter cannot overflow from a handful of cancels; EAGAIN would
            // only mean a wake-up is already pending, which is what we want.
            _ = withUnsafeBytes(of: &one) { try? wake.writeSome($0) }
        }
    }

    /// Restores the terminal settings found at open, releases exclusive access and
    /// closes the device. Idempotent; also done on deinit. Errors are ignored: the
    /// device may already be gone.
    public func close() {
        let wasClosed = closed.withLock { isClosed in
            defer { isClosed = true }
            return isClosed
        }
        guard !wasClosed else { return }
        try? fd.setTerminalAttributes(saved)
        try? fd.ioctl(CInt(TIOCNXCL))
        try? fd.close()  // also releases the flock
        try? wake.close()
    }
}

extension SerialPort {
    /// Whether it makes sense to wait for `path` to come back after the device hung up.
    ///
    /// A board's names (`/dev/ttyACM0`, a `/dev/serial/by-id/` link, a virtual board's
    /// link) come back when it is plugged in again. A pseudo-terminal's `/dev/pts/N` does
    /// not: the kernel hands the freed number to the next terminal opened anywhere on the
    /// machine, so reopening it would take someone else's terminal.
    public static func canComeBack(path: String) -> Bool {
        !path.hasPrefix("/dev/pts/")
    }

    /// Whether `path` (or what its links lead to) is a pseudo-terminal: a virtual board
    /// (`devkit emulate`) rather than a USB serial port, whose buttons are signals.
    public static func isPseudoTerminal(path: String) -> Bool {
        guard let resolved = realpath(path, nil) else { return path.hasPrefix("/dev/pts/") }
        defer { free(resolved) }
        return String(cString: resolved).hasPrefix("/dev/pts/")
    }
}
