import CDevKitLinux
import SystemPackage
#if canImport(Glibc)
import Glibc
#endif

// The package's one home for plain descriptor I/O, pipes and eventfds, in
// swift-system's style: thin wrappers that return the value or throw the call's
// `Errno`. swift-system has read/write but not these loops (EINTR retried, short
// writes continued, EAGAIN waited out) nor pipe2 or eventfd.

extension FileDescriptor {
    /// `read(2)` of what is available, at most `maxCount` bytes; [] at end of file.
    /// EINTR is retried; EAGAIN (nothing to read on a non-blocking descriptor) is
    /// thrown as `.resourceTemporarilyUnavailable`.
    public func readAvailable(maxCount: Int) throws(Errno) -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: maxCount)
        while true {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(rawValue, $0.baseAddress, $0.count) }
            if n >= 0 {
                buffer.removeSubrange(n...)
                return buffer
            }
            let err = Errno(rawValue: errno)
            if err != .interrupted { throw err }
        }
    }

    /// Reads to end of file, failing with `.fileTooLarge` past `limit` bytes.
    /// A regular file's size is checked first (fstat), so a 1 TiB sparse file fails
    /// at once without a byte read or allocated; a pipe fails once `limit` is passed.
    public func readToEnd(limit: Int) throws(Errno) -> [UInt8] {
        var data: [UInt8] = []
        var st = Glibc.stat()
        if Glibc.fstat(rawValue, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, st.st_size > 0 {
            guard st.st_size <= limit else { throw .fileTooLarge }
            data.reserveCapacity(Int(st.st_size) + 1)
        }
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(rawValue, $0.baseAddress, $0.count) }
            if n == 0 { return data }
            if n < 0 {
                let err = Errno(rawValue: errno)
                if err == .interrupted { continue }
                throw err
            }
            data += chunk[..<n]
            if data.count > limit { throw .fileTooLarge }
        }
    }

    /// `write(2)` of part of `bytes`; returns how many were taken. EINTR is retried.
    public func writeSome(_ bytes: UnsafeRawBufferPointer) throws(Errno) -> Int {
        while true {
            let n = Glibc.write(rawValue, bytes.baseAddress, bytes.count)
            if n >= 0 { return n }
            let err = Errno(rawValue: errno)
            if err != .interrupted { throw err }
        }
    }

    /// Writes every byte: short writes are continued, EINTR retried, and EAGAIN on a
    /// non-blocking descriptor waits (poll) until it takes more.
    /// (Labelled `bytes:` beside swift-system's untyped-throwing `writeAll(_:)`.)
    public func writeAll(bytes: UnsafeRawBufferPointer) throws(Errno) {
        var offset = 0
        while offset < bytes.count {
            do throws(Errno) {
                offset += try writeSome(UnsafeRawBufferPointer(rebasing: bytes[offset...]))
            } catch .resourceTemporarilyUnavailable {
                var fds = [pollfd(fd: rawValue, events: Int16(POLLOUT), revents: 0)]
                _ = Glibc.poll(&fds, 1, -1)
            }
        }
    }

    /// ``writeAll(bytes:)`` for an array.
    public func writeAll(bytes: [UInt8]) throws(Errno) {
        // withUnsafeBytes rethrows untyped errors, so the Errno is carried out by hand.
        var failure: Errno?
        bytes.withUnsafeBytes { raw in
            do throws(Errno) { try writeAll(bytes: raw) } catch { failure = error }
        }
        if let failure { throw failure }
    }

    /// ``writeAll(bytes:)`` for text, as UTF-8.
    public func writeAll(text: String) throws(Errno) {
        try writeAll(bytes: Array(text.utf8))
    }

    /// Reads and discards what a non-blocking pipe (or eventfd, inotify descriptor)
    /// holds, so a poll on it blocks again.
    public func drain() {
        var buffer = [UInt8](repeating: 0, count: 4096)  // room for an inotify event with its name
        while Glibc.read(rawValue, &buffer, buffer.count) > 0 {}
    }

    /// A new pipe, made with `pipe2(2)` so close-on-exec (and non-blocking) are set
    /// atomically: no child started by another thread meanwhile inherits it.
    /// (swift-system's `FileDescriptor.pipe()` sets neither.)
    public static func closeOnExecPipe(nonBlocking: Bool = false) throws(Errno) -> (readEnd: FileDescriptor, writeEnd: FileDescriptor) {
        var fds: [CInt] = [-1, -1]
        let flags = O_CLOEXEC | (nonBlocking ? O_NONBLOCK : 0)
        guard CDevKitLinux_pipe2(&fds, flags) == 0 else { throw Errno(rawValue: errno) }
        return (FileDescriptor(rawValue: fds[0]), FileDescriptor(rawValue: fds[1]))
    }

    /// A new `eventfd(2)`, close-on-exec and non-blocking, counting from 0: used to
    /// wake a thread blocked in poll.
    public static func eventFD() throws(Errno) -> FileDescriptor {
        let fd = CDevKitLinux_eventfd(0, CDevKitLinux_EFD_CLOEXEC | CDevKitLinux_EFD_NONBLOCK)
        guard fd >= 0 else { throw Errno(rawValue: errno) }
        return FileDescriptor(rawValue: fd)
    }
}

extension FileDescriptor {
    /// Opens `path` to append a log that may hold what a board printed (masked, but
    /// never for other users' eyes): created with mode 0600, and an existing file
    /// that others may read is made 0600 first. Fails with the call's `Errno`,
    /// `EPERM` when the file is someone else's and cannot be made private.
    public static func openPrivateLog(_ path: String) throws(Errno) -> FileDescriptor {
        let fd = Glibc.open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw Errno(rawValue: errno) }
        var st = Glibc.stat()
        if Glibc.fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, st.st_mode & 0o077 != 0,
            Glibc.fchmod(fd, st.st_mode & 0o700) != 0
        {
            let err = Errno(rawValue: errno)
            _ = Glibc.close(fd)
            throw err
        }
        return FileDescriptor(rawValue: fd)
    }
}
