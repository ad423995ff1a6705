import Foundation
import SerialPort
import SystemPackage
import Testing
#if canImport(Glibc)
import Glibc
#endif

private func now() -> ContinuousClock.Instant { .now }

@Suite("SerialPort over real ptys")
struct SerialPortTests {
    @Test func configuresRaw8N1WithoutFlowControl() throws {
        let pty = try PseudoTerminalPair()
        let port = try SerialPort(path: pty.slavePath, baudRate: 115_200)
        defer { port.close() }
        let t = pty.slaveAttributes()
        #expect(t.c_cflag & tcflag_t(CSIZE) == tcflag_t(CS8))
        #expect(t.c_cflag & tcflag_t(PARENB) == 0)
        #expect(t.c_cflag & tcflag_t(CSTOPB) == 0)
        #expect(t.c_cflag & tcflag_t(CRTSCTS) == 0)
        #expect(t.c_cflag & tcflag_t(CLOCAL) != 0)
        #expect(t.c_cflag & tcflag_t(CREAD) != 0)
        #expect(t.c_iflag & tcflag_t(IXON | IXOFF | IXANY | ICRNL | INLCR | IGNCR | ISTRIP) == 0)
        #expect(t.c_oflag & tcflag_t(OPOST) == 0)
        #expect(t.c_lflag & tcflag_t(ICANON | ECHO | ECHONL | ISIG | IEXTEN) == 0)
        var copy = t
        let cc = withUnsafeBytes(of: &copy.c_cc) { Array($0) }
        #expect(cc[Int(VMIN)] == 0)
        #expect(cc[Int(VTIME)] == 0)
        #expect(cfgetospeed(&copy) == speed_t(B115200))
        #expect(cfgetispeed(&copy) == speed_t(B115200))
    }

    // The expected speeds are the libc constants themselves, not the driver's table.
    @Test(arguments: [
        (9600, speed_t(B9600)), (57600, speed_t(B57600)), (230_400, speed_t(B230400)),
        (921_600, speed_t(B921600)), (4_000_000, speed_t(B4000000)),
    ])
    func selectsStandardRates(rate: Int, speed: speed_t) throws {
        let pty = try PseudoTerminalPair()
        let port = try SerialPort(path: pty.slavePath, baudRate: rate)
        defer { port.close() }
        var t = pty.slaveAttributes()
        #expect(port.baudRate == rate)
        #expect(cfgetospeed(&t) == speed)
        #expect(cfgetispeed(&t) == speed)
    }

    @Test func refusesNonStandardRate() throws {
        let pty = try PseudoTerminalPair()
        #expect(throws: SerialPortError.unsupportedBaudRate(12345)) {
            _ = try SerialPort(path: pty.slavePath, baudRate: 12345)
        }
    }

    @Test func restoresTerminalSettingsOnClose() throws {
        let pty = try PseudoTerminalPair()
        let before = pty.slaveAttributes()
        #expect(before.c_lflag & tcflag_t(ICANON) != 0)  // a fresh pty is cooked
        let port = try SerialPort(path: pty.slavePath)
        #expect(pty.slaveAttributes().c_lflag & tcflag_t(ICANON) == 0)
        port.close()
        port.close()  // idempotent
        let after = pty.slaveAttributes()
        #expect(after.c_iflag == before.c_iflag)
        #expect(after.c_oflag == before.c_oflag)
        #expect(after.c_cflag == before.c_cflag)
        #expect(after.c_lflag == before.c_lflag)
    }

    @Test func bytesFlowBothWaysUntranslated() throws {
        let pty = try PseudoTerminalPair()
        let port = try SerialPort(path: pty.slavePath)
        defer { port.close() }
        let all = (0...255).map { UInt8($0) }
        try port.write(all, deadline: now() + .seconds(5))
        #expect(pty.read(count: 256) == all)
        pty.writeAll(all)
        var received: [UInt8] = []
        let deadline = now() + .seconds(5)
        while received.count < 256 {
            let chunk = try port.read(deadline: deadline)
            if chunk.isEmpty { break }
            received += chunk
        }
        #expect(received == all)
    }

    @Test func readHonoursMaxCount() throws {
        let pty = try PseudoTerminalPair()
        let port = try SerialPort(path: pty.slavePath)
        defer { port.close() }
        pty.writeAll(Array("abcdef".utf8))
        let first = try port.read(maxCount: 2, deadline: now() + .seconds(5))
        #expect(first == Array("ab".utf8))
    }

    @Test func readTimesOutWithEmptyResultWithinBounds() throws {
        let pty = try PseudoTerminalPair()
        let port = try SerialPort(path: pty.slavePath)
        defer { port.close() }
        let start = now()
        let bytes = try port.read(deadline: start + .milliseconds(150))
        let elapsed = start.duration(to: now())
        #expect(bytes.isEmpty)
        #expect(elapsed >= .milliseconds(150))
        #expect(elapsed < .seconds(2))
        // A deadline in the past polls once and returns at once.
        let again = now()
        #expect(try port.read(deadline: again - .seconds(1)).isEmpty)
        #expect(again.duration(to: now()) < .milliseconds(500))
    }

    @Test func largeWriteLoopsOverShortWritesWhileTheOtherSideDrains() throws {
        let pty = try PseudoTerminalPair()
        let port = try SerialPort(path: pty.slavePath)
        defer { port.close() }
        // Far beyond the pty buffer (a few KiB), so write(2) returns short and EAGAIN.
        let payload = (0..<1_000_000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 8) }
        let reader = Background { pty.read(count: payload.count, timeout: .seconds(20)) }
        try port.write(payload, deadline: now() + .seconds(20))
        let received = reader.join(timeout: .seconds(25))
        #expect(received?.count == payload.count)
        #expect(received == payload)
    }

    @Test func writeThatCannotDrainTimesOut() throws {
        let pty = try PseudoTerminalPair()
        let port = try SerialPort(path: pty.slavePath)
        defer { port.close() }
        let start = now()
        let payload = [UInt8](repeating: 0x55, count: 1_000_000)
        do {
            try port.write(payload, deadline: start + .milliseconds(200))
            Issue.record("a write nobody reads must time out")
        } catch .writeTimedOut(let path, let written, let count) {
            #expect(path == pty.slavePath)
            #expect(written > 0 && written < count)
            #expect(count == payload.count)
        }
        #expect(start.duration(to: now()) < .seconds(3))
    }

    @Test func secondOpenFailsFastAsInUse() throws {
        let pty = try PseudoTerminalPair()
        let first = try SerialPort(path: pty.slavePath)
        defer { first.close() }
        let start = now()
        do {
            _ = try SerialPort(path: pty.slavePath)
            Issue.record("second open must fail")
        } catch .inUse(let path, let pid) {
            #expect(path == pty.slavePath)
            // Root gets past TIOCEXCL and meets the flock, whose holder /proc/locks
            // names (this process); others get EBUSY, and the scan skips this process.
            if getuid() == 0 { #expect(pid == getpid()) }
        }
        #expect(start.duration(to: now()) < .seconds(1))
        // Once the first closes, the port can be opened again.
        first.close()
        let third = try SerialPort(path: pty.slavePath)
        third.close()
    }

    @Test func inUseByAnotherProcessNamesItsPID() throws {
        let flockTool = ["/usr/bin/flock", "/bin/flock"].first { FileManager.default.isExecutableFile(atPath: $0) }
        let sleepTool = ["/usr/bin/sleep", "/bin/sleep"].first { FileManager.default.isExecutableFile(atPath: $0) }
        try #require(flockTool != nil && sleepTool != nil, "util-linux flock(1) needed")
        let pty = try PseudoTerminalPair()
        // flock(1) takes an exclusive lock on the device and becomes `sleep`, which
        // keeps holding it under the same PID.
        let holder = Process()
        holder.executableURL = URL(fileURLWithPath: flockTool!)
        holder.arguments = ["--exclusive", "--no-fork", pty.slavePath, sleepTool!, "30"]
        holder.standardInput = FileHandle.nullDevice
        try holder.run()
        defer {
            // SIGKILL: the test runner's threads may block SIGTERM, which children inherit.
            kill(holder.processIdentifier, SIGKILL)
            holder.waitUntilExit()
        }
        // Wait (bounded) until the lock shows up, then the open must fail with its PID.
        let deadline = now() + .seconds(10)
        var outcome: SerialPortError?
        while now() < deadline {
            do {
                let port = try SerialPort(path: pty.slavePath)
                port.close()
                var p = pollfd(fd: -1, events: 0, revents: 0)
                _ = poll(&p, 0, 20)  // the child has not locked yet: look again shortly
            } catch {
                outcome = error
                break
            }
        }
        #expect(outcome == .inUse(path: pty.slavePath, pid: holder.processIdentifier))
        #expect(outcome?.description.contains("PID \(holder.processIdentifier)") == true)
    }

    @Test func closingTheMasterIsADisconnectNotAHang() throws {
        let pty = try PseudoTerminalPair()
        let port = try SerialPort(path: pty.slavePath)
        defer { port.close() }
        let start = now()
        let reader = Background { () -> Result<[UInt8], SerialPortError> in
            Result { () throws(SerialPortError) in try port.read(deadline: now() + .seconds(30)) }
        }
        pty.closeMaster()
        let result = reader.join(timeout: .seconds(5))
        #expect(start.duration(to: now()) < .seconds(5))
        switch result {
        case .failure(let error)?: #expect(error == .disconnected(path: pty.slavePath))
        case .success(let bytes)?: Issue.record("read returned \(bytes) after the master closed")
        case nil: Issue.record("read hung after the master closed")
        }
        // Every later call fails the same way, at once (no spin, no hang).
        let again = now()
        #expect(throws: SerialPortError.disconnected(path: pty.slavePath)) {
            _ = try port.read(deadline: now() + .seconds(5))
        }
        #expect(throws: SerialPortError.disconnected(path: pty.slavePath)) {
            try port.write([1, 2, 3], deadline: now() + .seconds(5))
        }
        #expect(again.duration(to: now()) < .seconds(1))
    }

    @Test func hangupEndsInDisconnectEvenWithBytesPending() throws {
        let pty = try PseudoTerminalPair()
        let port = try SerialPort(path: pty.slavePath)
        defer { port.close() }
        pty.writeAll(Array("last words".utf8))
        // Let the line discipline take the bytes before hanging up.
        _ = try port.read(maxCount: 1, deadline: now() + .seconds(5))
        pty.closeMaster()
        var rest: [UInt8] = []
        do {
            while true { rest += try port.read(deadline: now() + .seconds(5)) }
        } catch {
            #expect(error == .disconnected(path: pty.slavePath))
        }
        // Linux flushes a hung-up tty's input, so what was pending may be lost; what
        // does arrive is in order.
        #expect(Array("ast words".utf8).starts(with: rest))
    }

    @Test func cancelWakesABlockedRead() throws {
        let pty = try PseudoTerminalPair()
        let port = try SerialPort(path: pty.slavePath)
        defer { port.close() }
        let start = now()
        let reader = Background { () -> Result<[UInt8], SerialPortError> in
            Result { () throws(SerialPortError) in try port.read(deadline: now() + .seconds(30)) }
        }
        port.cancel()
        let result = reader.join(timeout: .seconds(5))
        #expect(start.duration(to: now()) < .seconds(5))
        switch result {
        case .failure(let error)?: #expect(error == .cancelled)
        default: Issue.record("read was not cancelled: \(String(describing: result))")
        }
        // The cancel is consumed: the next read waits normally and sees data.
        pty.writeAll([0x42])
        #expect(try port.read(deadline: now() + .seconds(5)) == [0x42])
    }

    @Test func cancelWakesABlockedWrite() throws {
        let pty = try PseudoTerminalPair()
        let port = try SerialPort(path: pty.slavePath)
        defer { port.close() }
        let writer = Background { () -> Result<Void, SerialPortError> in
            Result { () throws(SerialPortError) in
                try port.write([UInt8](repeating: 7, count: 1_000_000), deadline: now() + .seconds(30))
            }
        }
        port.cancel()
        let result = writer.join(timeout: .seconds(5))
        switch result {
        case .failure(let error)?: #expect(error == .cancelled)
        default: Issue.record("write was not cancelled: \(String(describing: result))")
        }
    }

    @Test func missingDeviceIsNotFound() {
        let path = "/dev/ttyDEVKIT-does-not-exist-\(getpid())"
        #expect(throws: SerialPortError.notFound(path: path)) {
            _ = try SerialPort(path: path)
        }
    }

    @Test func nonTerminalIsRejected() {
        #expect(throws: SerialPortError.notATerminal(path: "/dev/null")) {
            _ = try SerialPort(path: "/dev/null")
        }
        // A directory (say, /dev/serial/by-id itself) is the same mistake.
        #expect(throws: SerialPortError.notATerminal(path: "/tmp")) {
            _ = try SerialPort(path: "/tmp")
        }
    }

    @Test func usingAClosedPortIsAnError() throws {
        let pty = try PseudoTerminalPair()
        let port = try SerialPort(path: pty.slavePath)
        port.close()
        port.cancel()  // harmless after close
        #expect(throws: SerialPortError.system(call: "read", errno: .badFileDescriptor, path: pty.slavePath)) {
            _ = try port.read(deadline: now() + .seconds(1))
        }
    }

    // Root ignores file modes; as root, ConsoleCLITests runs devkit as `nobody` instead.
    @Test(.enabled(if: getuid() != 0, "root ignores file modes"))
    func permissionDeniedWhereTheMachineAllowsIt() throws {
        let pty = try PseudoTerminalPair()
        #expect(chmod(pty.slavePath, 0) == 0)
        #expect(throws: SerialPortError.permissionDenied(path: pty.slavePath)) {
            _ = try SerialPort(path: pty.slavePath)
        }
    }

    @Test func messagesSayWhatToDoNext() {
        let denied = SerialPortError.permissionDenied(path: "/dev/ttyACM0").description
        #expect(denied.contains("sudo usermod -aG dialout $USER"))
        #expect(denied.contains("log out"))
        #expect(SerialPortError.inUse(path: "/dev/ttyACM0", pid: 4242).description.contains("in use by PID 4242"))
        #expect(SerialPortError.inUse(path: "/dev/ttyACM0", pid: nil).description.contains("in use"))
        #expect(SerialPortError.disconnected(path: "/dev/ttyACM0").description.contains("disconnected"))
        #expect(SerialPortError.notFound(path: "/dev/ttyACM9").description.contains("/dev/ttyACM9"))
        #expect(SerialPortError.unsupportedBaudRate(1234).description.contains("115200"))
        let sys = SerialPortError.system(call: "tcsetattr", errno: .ioError, path: "/dev/x").description
        #expect(sys.contains("tcsetattr") && sys.contains("/dev/x"))
    }
}

/// Issue 12 item 11: the permission hint names the serial group that exists here.
@Suite struct SerialGroupTests {
    @Test func picksDialoutThenUucp() {
        #expect(SerialPortError.serialGroup(etcGroup: "root:x:0:\nuucp:x:14:\ndialout:x:20:me\n") == "dialout")
        #expect(SerialPortError.serialGroup(etcGroup: "root:x:0:\nuucp:x:14:me\nlock:x:54:\n") == "uucp")
        #expect(SerialPortError.serialGroup(etcGroup: "root:x:0:\nuucpx:x:9:\n") == "dialout")
    }
}

/// A virtual board is a pty, whatever link names it: its buttons are signals, and
/// `provision --verify` says so.
@Test func aPseudoTerminalIsKnownThroughItsLinks() throws {
    let pair = try PseudoTerminalPair()
    let link = NSTemporaryDirectory() + "ttyDevKit-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    #expect(symlink(pair.slavePath, link) == 0)
    defer { unlink(link) }
    #expect(SerialPort.isPseudoTerminal(path: pair.slavePath))
    #expect(SerialPort.isPseudoTerminal(path: link))
    #expect(!SerialPort.isPseudoTerminal(path: "/dev/null"))
    #expect(!SerialPort.isPseudoTerminal(path: "/dev/ttyACM7"))  // no such device here: judged by its name
}
