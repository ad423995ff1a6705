import Foundation
import VirtualDevKit
#if canImport(Glibc)
import Glibc
#endif

/// A pty pair for tests: the master stands for the device, the slave path is what
/// `SerialPort` opens. The master is non-blocking; reads wait with poll.
final class PseudoTerminalPair: @unchecked Sendable {
    private(set) var master: Int32
    let slavePath: String

    private let pty: PseudoTerminal

    init() throws {
        pty = try PseudoTerminal()
        master = pty.master.rawValue
        slavePath = pty.slavePath
    }

    deinit { closeMaster() }

    func closeMaster() {
        if master >= 0 { Glibc.close(master); master = -1 }
    }

    /// The slave's termios, read through the master (Linux answers TCGETS on a pty
    /// master with the slave's settings), so no second open of the slave is needed.
    func slaveAttributes() -> termios {
        var t = termios()
        precondition(tcgetattr(master, &t) == 0)
        return t
    }

    func writeAll(_ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.write(master, $0.baseAddress, $0.count) }
            if n > 0 { offset += n; continue }
            if n < 0 && errno != EAGAIN && errno != EINTR { fatalError("master write: \(errno)") }
            var p = pollfd(fd: master, events: Int16(POLLOUT), revents: 0)
            _ = poll(&p, 1, 1000)
        }
    }

    /// Reads from the master until `count` bytes arrived or `timeout` passed.
    func read(count: Int, timeout: Duration = .seconds(60)) -> [UInt8] {
        let deadline = ContinuousClock.now + timeout
        var result: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while result.count < count && ContinuousClock.now < deadline {
            var p = pollfd(fd: master, events: Int16(POLLIN), revents: 0)
            _ = poll(&p, 1, 50)
            let n = buffer.withUnsafeMutableBytes { Glibc.read(master, $0.baseAddress, min($0.count, count - result.count)) }
            if n > 0 { result += buffer[..<n] }
        }
        return result
    }
}

/// A thread that is started now and joined later (with a bound).
final class Background<T: Sendable>: @unchecked Sendable {
    private var value: T?
    private let done = DispatchSemaphore(value: 0)
    init(_ body: @escaping @Sendable () -> T) {
        Thread { [self] in
            self.value = body()
            self.done.signal()
        }.start()
    }
    func join(timeout: Duration = .seconds(60)) -> T? {
        let (s, atto) = timeout.components
        let ok = done.wait(timeout: .now() + .nanoseconds(Int(s) * 1_000_000_000 + Int(atto / 1_000_000_000)))
        return ok == .success ? value : nil
    }
}
