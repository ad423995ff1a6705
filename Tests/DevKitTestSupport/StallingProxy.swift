import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A forwarder between a client and a server's Unix socket (the test cluster's)
/// that can stop forwarding without closing anything: what a client sees when the
/// server's host is gone without a reset (a half-open connection). Its socket is
/// `directory/.s.PGSQL.<port>`, so a URL reaches it with `?host=<directory>`.
public final class StallingProxy: @unchecked Sendable {
    /// `host=` of a URL: the proxy's socket's directory.
    public let directory: String
    private let target: String
    private let listener: Int32
    private let lock = NSLock()
    private var stalled = false
    /// Connections numbered below this are cut for good (``cut()``).
    private var cutBelow = 0
    private var accepted = 0
    private var stopped = false
    private var descriptors: [Int32] = []
    /// The client ends of `descriptors`.
    private var clients: [Int32] = []

    /// Forwards `directory/.s.PGSQL.<port>` to `targetSocket`.
    public init(to targetSocket: String, port: Int = 5432) throws {
        target = targetSocket
        var template = Array("/tmp/devkit-proxy-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw ClusterError("mkdtemp failed") }
        directory = String(cString: made)
        listener = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard listener >= 0 else { throw ClusterError("socket failed: errno \(errno)") }
        var address = Self.address("\(directory)/.s.PGSQL.\(port)")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard bound == 0, listen(listener, 16) == 0 else { throw ClusterError("bind/listen failed: errno \(errno)") }
        Thread { [self] in acceptLoop() }.start()
    }

    /// From now on nothing more is forwarded either way; every socket stays open.
    public func stall() { lock.withLock { stalled = true } }

    /// Forwards again (new connections; a client gave up on the stalled ones).
    public func resume() { lock.withLock { stalled = false } }

    /// A network cut that is over: the connections made so far never forward
    /// anything again, not even a close, either way (each end sees its peer go
    /// silent), while new connections are forwarded.
    public func cut() { lock.withLock { cutBelow = accepted } }

    /// How many clients still have their end of a connection open (a client that
    /// closed it shows as hung up, even while forwarding is stalled).
    public func connectedClients() -> Int {
        lock.withLock {
            clients.filter { descriptor in
                // POLLRDHUP (Linux, 0x2000): the peer closed its end.
                let hungUp: Int16 = 0x2000 | Int16(POLLHUP) | Int16(POLLERR)
                var entry = pollfd(fd: descriptor, events: 0x2000, revents: 0)
                return poll(&entry, 1, 0) == 0 || entry.revents & hungUp == 0
            }.count
        }
    }

    /// Closes everything.
    public func stop() {
        // Under the lock: a pump's finish() removes its numbers under it before
        // closing them, so no number shut down here can have been reused meanwhile.
        lock.withLock {
            stopped = true
            for descriptor in descriptors { shutdown(descriptor, Int32(SHUT_RDWR)) }
        }
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
        TestProcess.shell("rm -rf '\(directory)'")
    }

    private final class Pair: Sendable {
        let count = Mutex(0)
    }

    private static func address(_ path: String) -> sockaddr_un {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { buffer in
            let bytes = Array(path.utf8.prefix(buffer.count - 1))
            buffer.copyBytes(from: bytes)
            buffer[bytes.count] = 0
        }
        return address
    }

    private func acceptLoop() {
        while true {
            let client = accept(listener, nil, nil)
            if client < 0 {
                if errno == EINTR { continue }
                return
            }
            let server = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            var address = Self.address(target)
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(server, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
            guard connected == 0 else {
                close(client)
                close(server)
                continue
            }
            let number = lock.withLock {
                descriptors += [client, server]
                clients.append(client)
                accepted += 1
                return accepted - 1
            }
            // The second pump to end closes both sockets (not before: the other
            // may still be reading one, and a closed number can be reused).
            let ended = Pair()
            let finish: @Sendable () -> Void = { [self] in
                guard ended.count.withLock({ $0 += 1; return $0 }) == 2 else { return }
                lock.withLock {
                    descriptors.removeAll { $0 == client || $0 == server }
                    clients.removeAll { $0 == client }
                }
                close(client)
                close(server)
            }
            Thread { [self] in pump(from: client, to: server, number: number); finish() }.start()
            Thread { [self] in pump(from: server, to: client, number: number); finish() }.start()
        }
    }

    /// Copies `from` to `to` until either ends; while stalled, holds what it read
    /// and reads no more; once cut, passes nothing on, its end neither.
    private func pump(from source: Int32, to sink: Int32, number: Int) {
        var buffer = [UInt8](repeating: 0, count: 65536)
        func held() -> Bool { lock.withLock { (stalled || number < cutBelow) && !stopped } }
        while true {
            let count = read(source, &buffer, buffer.count)
            if count <= 0 { break }
            while held() { usleep(50_000) }
            if lock.withLock({ stopped }) { break }
            var offset = 0
            while offset < count {
                let written = buffer[offset..<count].withUnsafeBytes { write(sink, $0.baseAddress, $0.count) }
                if written <= 0 { break }
                offset += written
            }
            if offset < count { break }
        }
        // A cut connection's end is not passed on either.
        while lock.withLock({ number < cutBelow && !stopped }) { usleep(50_000) }
        shutdown(sink, Int32(SHUT_WR))
    }
}
