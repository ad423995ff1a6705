import Foundation
import Testing
@testable import SerialPort
#if canImport(Glibc)
import Glibc
#endif

@Suite("Finding who holds a port")
struct PortHolderTests {
    @Test func parsesProcLocks() {
        // st_dev of devpts here: major 0, minor 0x1a; inode 5.
        let locks = """
            1: POSIX  ADVISORY  WRITE 900 00:19:1234 0 EOF
            2: FLOCK  ADVISORY  WRITE 4242 00:1a:5 0 EOF
            2: -> FLOCK  ADVISORY  WRITE 4343 00:1a:5 0 EOF
            3: FLOCK  ADVISORY  WRITE 77 08:01:5 0 EOF

            """
        let device = UInt64(0x1a)  // makedev(0, 0x1a)
        #expect(PortHolder.lockHolder(device: device, inode: 5, locks: Array(locks.utf8)) == 4242)
        #expect(PortHolder.lockHolder(device: device, inode: 6, locks: Array(locks.utf8)) == nil)
        // makedev(8, 1) = 0x801
        #expect(PortHolder.lockHolder(device: 0x801, inode: 5, locks: Array(locks.utf8)) == 77)
        #expect(PortHolder.lockHolder(device: device, inode: 5, locks: Array("garbage\n1: FLOCK".utf8)) == nil)
    }

    @Test func aBlockedReadDoesNotSpin() throws {
        let pty = try PseudoTerminalPair()
        let port = try SerialPort(path: pty.slavePath)
        defer { port.close() }
        func cpu() -> Duration {
            var usage = rusage()
            getrusage(__rusage_who_t(1), &usage)  // RUSAGE_THREAD: this thread only
            return .seconds(Int64(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec))
                + .microseconds(Int64(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec))
        }
        let before = cpu()
        #expect(try port.read(deadline: .now + .milliseconds(400)).isEmpty)
        #expect(cpu() - before < .milliseconds(100))
        // Nor does one after the device went away: it fails at once.
        pty.closeMaster()
        let after = cpu()
        for _ in 0..<100 {
            #expect(throws: SerialPortError.disconnected(path: pty.slavePath)) {
                _ = try port.read(deadline: .now + .seconds(5))
            }
        }
        #expect(cpu() - after < .milliseconds(200))
    }
}

@Suite("What a failed open means")
struct OpenErrorTests {
    @Test func mapsErrnoToTheUsersProblem() throws {
        #expect(SerialPort.openError(.permissionDenied, path: "/dev/ttyACM0") == .permissionDenied(path: "/dev/ttyACM0"))
        #expect(SerialPort.openError(.notPermitted, path: "/dev/ttyACM0") == .permissionDenied(path: "/dev/ttyACM0"))
        #expect(SerialPort.openError(.noSuchFileOrDirectory, path: "/dev/ttyACM0") == .notFound(path: "/dev/ttyACM0"))
        #expect(SerialPort.openError(.noSuchAddressOrDevice, path: "/dev/ttyACM0") == .notFound(path: "/dev/ttyACM0"))
        #expect(SerialPort.openError(.operationNotSupportedByDevice, path: "/dev/ttyACM0") == .notFound(path: "/dev/ttyACM0"))
        #expect(SerialPort.openError(.tooManyOpenFiles, path: "/x") == .system(call: "open", errno: .tooManyOpenFiles, path: "/x"))
        // EBUSY (TIOCEXCL, for non-root openers) names the flock holder from /proc/locks.
        let pty = try PseudoTerminalPair()
        let holder = try SerialPort(path: pty.slavePath)
        defer { holder.close() }
        #expect(SerialPort.openError(.resourceBusy, path: pty.slavePath) == .inUse(path: pty.slavePath, pid: getpid()))
    }
}
