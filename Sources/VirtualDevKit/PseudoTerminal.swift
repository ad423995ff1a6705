import SystemPackage
#if canImport(Glibc)
import Glibc
#endif

// The Glibc module map leaves out the XSI pty calls (unlockpt, ptsname_r); bind
// them by name. Both take and return plain integers and a pointer.
private func libcSymbol(_ name: String) -> UnsafeMutableRawPointer {
    guard let symbol = dlsym(dlopen(nil, RTLD_NOW), name) else { fatalError("libc has no \(name)") }
    return symbol
}
private typealias UnlockptFunction = @convention(c) (CInt) -> CInt
private let c_unlockpt = unsafeBitCast(libcSymbol("unlockpt"), to: UnlockptFunction.self)
private typealias PtsnameFunction = @convention(c) (CInt, UnsafeMutablePointer<CChar>?, Int) -> CInt
private let c_ptsname_r = unsafeBitCast(libcSymbol("ptsname_r"), to: PtsnameFunction.self)

/// A pseudo-terminal pair. The master side is the "device"; ``slavePath``
/// (`/dev/pts/N`) is what a host program opens as if it were a serial port.
public final class PseudoTerminal: @unchecked Sendable {
    /// The master side, non-blocking and close-on-exec.
    public let master: FileDescriptor
    /// The slave device path, e.g. `/dev/pts/7`.
    public let slavePath: String

    /// Opens a new pty master through /dev/ptmx and unlocks its slave.
    public init() throws(Errno) {
        let fd: FileDescriptor
        do {
            fd = try FileDescriptor.open(
                "/dev/ptmx", .readWrite,
                options: [.nonBlocking, .closeOnExec, FileDescriptor.OpenOptions(rawValue: O_NOCTTY)])
        } catch let err as Errno {
            throw err
        } catch {
            throw .ioError
        }
        // grantpt is a no-op with devpts, so only the unlock and the name are needed.
        if c_unlockpt(fd.rawValue) != 0 {
            let err = Errno(rawValue: errno)
            try? fd.close()
            throw err
        }
        var name = [CChar](repeating: 0, count: 128)
        let rc = c_ptsname_r(fd.rawValue, &name, name.count)
        if rc != 0 {
            try? fd.close()
            throw Errno(rawValue: rc)
        }
        self.master = fd
        self.slavePath = String(decoding: name.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Opens the slave side (for the emulator's own hold on the line).
    public func openSlave() throws(Errno) -> FileDescriptor {
        do {
            return try FileDescriptor.open(
                slavePath, .readWrite,
                options: [.nonBlocking, .closeOnExec, FileDescriptor.OpenOptions(rawValue: O_NOCTTY)])
        } catch let err as Errno {
            throw err
        } catch {
            throw .ioError
        }
    }
}

private typealias EventfdFunction = @convention(c) (CUnsignedInt, CInt) -> CInt
private let c_eventfd = unsafeBitCast(libcSymbol("eventfd"), to: EventfdFunction.self)

extension FileDescriptor {
    /// A non-blocking, close-on-exec `eventfd(2)` for waking a thread blocked in poll.
    /// (EFD_CLOEXEC and EFD_NONBLOCK equal O_CLOEXEC and O_NONBLOCK.)
    static func pipeEventFD() throws(Errno) -> FileDescriptor {
        let fd = c_eventfd(0, O_CLOEXEC | O_NONBLOCK)
        if fd < 0 { throw Errno(rawValue: errno) }
        return FileDescriptor(rawValue: fd)
    }
}

// ioctl is variadic, which Swift does not import; bind it with a fixed prototype
// (integer arguments travel the same way in Linux's x86_64 and arm64 ABIs).
private typealias IoctlFunction = @convention(c) (CInt, UInt, UnsafeMutableRawPointer?) -> CInt
private let c_ioctl = unsafeBitCast(libcSymbol("ioctl"), to: IoctlFunction.self)

extension FileDescriptor {
    /// `ioctl(TIOCNXCL)`: lets the tty be opened again by anyone.
    func clearExclusiveMode() {
        _ = c_ioctl(rawValue, UInt(TIOCNXCL), nil)
    }

    /// `ioctl(TIOCEXCL)`, for tests that play a host which dies holding the port.
    public func setExclusiveForTest() {
        _ = c_ioctl(rawValue, UInt(TIOCEXCL), nil)
    }

    /// `ioctl(TIOCGEXCL)`: whether the tty is in exclusive mode (nil if unknown).
    public func isInExclusiveMode() -> Bool? {
        var value: CInt = 0
        // TIOCGEXCL = _IOR('T', 0x40, int); not exported by the Glibc module.
        let tiocgexcl: UInt = 0x8004_5440
        guard c_ioctl(rawValue, tiocgexcl, &value) == 0 else { return nil }
        return value != 0
    }
}
