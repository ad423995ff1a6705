import Foundation
import DevKitTestSupport
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A small stand-in for the board's configuration console on a pseudo-terminal,
/// for the REPL tests: echo (secrets as `*`), the prompt, `version`, `help`,
/// `set_dps_uds`, `set_wifipwd`, an unknown-command error, and `scan`, which never
/// answers (to test Ctrl-C). It can be unplugged (pty closed, link removed) and
/// plugged back (new pty, same link path).
final class ReplTestBoard: @unchecked Sendable {
    let linkPath: String
    private struct State {
        var master: Int32 = -1
        var slave: Int32 = -1
        var line: [UInt8] = []
        var storedUDS: String?
        var storedPassword: String?
        var received: [UInt8] = []
    }
    private let state = Mutex(State())
    private var thread: Thread?
    private let stopPipe: (read: Int32, write: Int32)
    private let done = DispatchSemaphore(value: 0)

    init(linkPath: String) throws {
        self.linkPath = linkPath
        stopPipe = try TestProcess.makePipe()
        try plugIn()
        let thread = Thread { [self] in
            serve()
            done.signal()
        }
        thread.start()
        self.thread = thread
    }

    /// The UDS the board stored last.
    var storedUDS: String? { state.withLock { $0.storedUDS } }
    var storedPassword: String? { state.withLock { $0.storedPassword } }
    /// Every byte the host sent.
    var received: [UInt8] { state.withLock { $0.received } }

    /// Creates a fresh pty and points the link at it, then prints the prompt.
    func plugIn() throws {
        // posix_openpt and friends are not exported to Swift; this is what they do on Linux.
        let master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC)
        var unlock: Int32 = 0
        var number: UInt32 = 0
        // TIOCSPTLCK = _IOW('T', 0x31, int), TIOCGPTN = _IOR('T', 0x30, unsigned int):
        // function-like macros, which Swift does not import.
        let setLock: UInt = 0x4004_5431
        let getNumber: UInt = 0x8004_5430
        guard master >= 0, ioctl(master, setLock, &unlock) == 0,
              ioctl(master, getNumber, &number) == 0 else {
            throw POSIXError(.EIO)
        }
        let slavePath = "/dev/pts/\(number)"
        // Raw line discipline, so board output is not echoed back to the board.
        var attributes = termios()
        _ = tcgetattr(master, &attributes)
        cfmakeraw(&attributes)
        _ = tcsetattr(master, TCSANOW, &attributes)
        // Holding the slave open keeps the master from reporting a hang-up while no host is attached.
        let slave = open(slavePath, O_RDWR | O_NOCTTY | O_CLOEXEC)
        state.withLock {
            $0.master = master
            $0.slave = slave
            $0.line = []
        }
        unlink(linkPath)
        guard symlink(slavePath, linkPath) == 0 else { throw POSIXError(.EIO) }
        send("\r\n# ")
        wake()
    }

    /// The board goes away: link removed, pty closed (the host sees a hang-up).
    func unplug() {
        unlink(linkPath)
        let (master, slave) = state.withLock { s -> (Int32, Int32) in
            defer { s.master = -1; s.slave = -1 }
            return (s.master, s.slave)
        }
        if slave >= 0 { close(slave) }
        if master >= 0 { close(master) }
        wake()
    }

    func stop() {
        var byte: UInt8 = 0
        _ = write(stopPipe.write, &byte, 1)
        _ = done.wait(timeout: .now() + 5)
        unplug()
        close(stopPipe.read)
        close(stopPipe.write)
    }

    private func wake() {
        var byte: UInt8 = 1
        _ = write(stopPipe.write, &byte, 1)
    }

    /// Prints `text` unasked, as a sketch's log or a chatty firmware would.
    func printUnasked(_ text: String) { send(text) }

    private func send(_ text: String) {
        let master = state.withLock { $0.master }
        guard master >= 0 else { return }
        let bytes = Array(text.utf8)
        _ = bytes.withUnsafeBytes { write(master, $0.baseAddress, $0.count) }
    }

    private func serve() {
        while true {
            let master = state.withLock { $0.master }
            var fds = [pollfd(fd: stopPipe.read, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: master, events: Int16(POLLIN), revents: 0)]
            let ready = poll(&fds, 2, 5000)
            if ready < 0 && errno != EINTR { return }
            if fds[0].revents != 0 {
                var byte: UInt8 = 0
                _ = read(stopPipe.read, &byte, 1)
                if byte == 0 { return }  // stop; 1 = re-read the master descriptor
                continue
            }
            guard master >= 0, fds[1].revents & Int16(POLLIN) != 0 else { continue }
            var buffer = [UInt8](repeating: 0, count: 512)
            let n = read(master, &buffer, buffer.count)
            guard n > 0 else { continue }
            for byte in buffer[..<n] { take(byte) }
        }
    }

    private func take(_ byte: UInt8) {
        let line = state.withLock { s -> [UInt8]? in
            s.received.append(byte)
            if byte == 0x0D {
                defer { s.line = [] }
                return s.line
            }
            return nil
        }
        if let line {
            run(String(decoding: line, as: UTF8.self))
            return
        }
        guard byte >= 0x20 else { return }
        let masked = state.withLock { s -> Bool in
            defer { s.line.append(byte) }
            guard let space = s.line.firstIndex(of: 0x20) else { return false }
            let head = String(decoding: s.line[..<space], as: UTF8.self)
            return head == "set_dps_uds" || head == "set_wifipwd"
        }
        send(masked ? "*" : String(decoding: [byte], as: UTF8.self))
    }

    private func run(_ line: String) {
        let words = line.split(separator: " ").map(String.init)
        guard let name = words.first else {
            send("\r\n# ")
            return
        }
        send("\r\n")
        switch name {
        case "version":
            send("DevKitSDK version: 1.6.2\r\nMico version: 3.2.0\r\nmbed-os version: 5.4.3\r\n"
                + "mbed TLS version: 2.4.2\r\nWIFI version: unknown\r\n")
        case "help":
            send("Configuration console:\r\n - help: Help document.\r\n - version: System version.\r\n")
        case "set_dps_uds":
            state.withLock { $0.storedUDS = words.count > 1 ? words[1] : nil }
            send("Invalid UDS.\r\nINFO: Set DPS UDS successfully.\r\n")
        case "set_wifipwd":
            state.withLock { $0.storedPassword = words.count > 1 ? words[1] : "" }
            send("INFO: Set Wi-Fi password successfully.\r\n")
        case "scan":
            return  // never answers: the host has to give up (Ctrl-C)
        default:
            send("Error:Invalid command: \(name)\r\n")
        }
        send("\r\n# ")
    }
}
