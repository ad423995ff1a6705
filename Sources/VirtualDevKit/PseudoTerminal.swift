import CDevKitLinux
import SystemPackage
#if canImport(Glibc)
import Glibc
#endif

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
        if CDevKitLinux_unlockpt(fd.rawValue) != 0 {
            let err = Errno(rawValue: errno)
            try? fd.close()
            throw err
        }
        var name = [CChar](repeating: 0, count: 128)
        let rc = CDevKitLinux_ptsname_r(fd.rawValue, &name, name.count)
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

extension FileDescriptor {
    /// `ioctl(TIOCNXCL)`: lets the tty be opened again by anyone.
    func clearExclusiveMode() {
        _ = Glibc.ioctl(rawValue, UInt(TIOCNXCL))
    }

    /// `ioctl(TIOCGEXCL)`: whether the tty is in exclusive mode (nil if unknown).
    public func isInExclusiveMode() -> Bool? {
        var value: CInt = 0
        guard Glibc.ioctl(rawValue, UInt(CDevKitLinux_TIOCGEXCL), &value) == 0 else { return nil }
        return value != 0
    }
}
