import DevKitSystem
import Foundation
import SystemPackage
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite struct FileIOTests {
    @Test func pipeIsCloseOnExecAndOptionallyNonBlocking() throws {
        let (r, w) = try FileDescriptor.closeOnExecPipe(nonBlocking: true)
        defer { try? r.close(); try? w.close() }
        for fd in [r, w] {
            #expect(fcntl(fd.rawValue, F_GETFD) & FD_CLOEXEC != 0)
            #expect(fcntl(fd.rawValue, F_GETFL) & O_NONBLOCK != 0)
        }
        let (r2, w2) = try FileDescriptor.closeOnExecPipe()
        defer { try? r2.close(); try? w2.close() }
        #expect(fcntl(r2.rawValue, F_GETFD) & FD_CLOEXEC != 0)
        #expect(fcntl(r2.rawValue, F_GETFL) & O_NONBLOCK == 0)
    }

    /// A `--log` file: created 0600 whatever the umask, an existing one others may
    /// read made 0600 (its contents kept, appended to), a directory refused.
    @Test func privateLogIsMadePrivate() throws {
        let dir = NSTemporaryDirectory() + "devkit-log-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: false)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        func mode(_ path: String) -> mode_t {
            var st = stat()
            _ = stat(path, &st)
            return st.st_mode & 0o777
        }
        let fresh = dir + "/new.log"
        let old = umask(0)
        defer { umask(old) }
        let a = try FileDescriptor.openPrivateLog(fresh)
        try a.close()
        #expect(mode(fresh) == 0o600)
        let existing = dir + "/old.log"
        try "old\n".write(toFile: existing, atomically: false, encoding: .utf8)
        #expect(chmod(existing, 0o644) == 0)
        let b = try FileDescriptor.openPrivateLog(existing)
        try b.writeAll(bytes: Array("new\n".utf8))
        try b.close()
        #expect(mode(existing) == 0o600)
        #expect(try String(contentsOfFile: existing, encoding: .utf8) == "old\nnew\n")
        #expect(throws: Errno.isDirectory) { _ = try FileDescriptor.openPrivateLog(dir) }
    }

    @Test func readAvailableThrowsEAGAINWhenEmptyAndEndsWithEmpty() throws {
        let (r, w) = try FileDescriptor.closeOnExecPipe(nonBlocking: true)
        defer { try? r.close() }
        #expect(throws: Errno.resourceTemporarilyUnavailable) { _ = try r.readAvailable(maxCount: 16) }
        try w.writeAll(bytes: [1, 2, 3])
        #expect(try r.readAvailable(maxCount: 2) == [1, 2])
        #expect(try r.readAvailable(maxCount: 16) == [3])
        try w.close()
        #expect(try r.readAvailable(maxCount: 16) == [])
    }

    /// 1 MiB through a 64 KiB non-blocking pipe: writeAll waits out EAGAIN and
    /// continues short writes, and every byte arrives in order.
    @Test(.timeLimit(.minutes(5))) func writeAllFillsANonBlockingPipe() throws {
        let (r, w) = try FileDescriptor.closeOnExecPipe(nonBlocking: true)
        let sent = (0..<(1 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let received = ReceivedBytes()
        let reader = Thread {
            var fds = [pollfd(fd: r.rawValue, events: Int16(POLLIN), revents: 0)]
            while true {
                _ = poll(&fds, 1, -1)
                guard let chunk = try? r.readAvailable(maxCount: 65536) else { continue }
                if chunk.isEmpty { break }
                received.append(chunk)
            }
            try? r.close()
            received.finish()
        }
        reader.start()
        try w.writeAll(bytes: sent)
        try w.close()
        received.waitUntilFinished()
        #expect(received.bytes == sent)
    }

    @Test func readToEndStopsAtTheLimit() throws {
        let (r, w) = try FileDescriptor.closeOnExecPipe()
        defer { try? r.close() }
        try w.writeAll(text: "hello")
        try w.close()
        #expect(throws: Errno.fileTooLarge) { _ = try r.readToEnd(limit: 4) }
        let (r2, w2) = try FileDescriptor.closeOnExecPipe()
        defer { try? r2.close() }
        try w2.writeAll(text: "hello")
        try w2.close()
        #expect(try r2.readToEnd(limit: 5) == Array("hello".utf8))
    }

    @Test func eventFDAndDrain() throws {
        let event = try FileDescriptor.eventFD()
        defer { try? event.close() }
        #expect(fcntl(event.rawValue, F_GETFD) & FD_CLOEXEC != 0)
        #expect(fcntl(event.rawValue, F_GETFL) & O_NONBLOCK != 0)
        var one: UInt64 = 1
        _ = try withUnsafeBytes(of: &one) { try event.writeSome($0) }
        var fds = [pollfd(fd: event.rawValue, events: Int16(POLLIN), revents: 0)]
        #expect(poll(&fds, 1, 0) == 1)
        event.drain()
        #expect(poll(&fds, 1, 0) == 0)
    }
}

private final class ReceivedBytes: @unchecked Sendable {
    private let condition = NSCondition()
    private var data: [UInt8] = []
    private var finished = false
    var bytes: [UInt8] { condition.withLock { data } }
    func append(_ chunk: [UInt8]) { condition.withLock { data += chunk } }
    func finish() { condition.withLock { finished = true; condition.broadcast() } }
    func waitUntilFinished() { condition.withLock { while !finished { condition.wait() } } }
}
