import Foundation
import SerialPort
import Testing
import VirtualDevKit

@Suite("One-shot commands on a real pty")
struct ConsolePortTests {
    @Test("a second devkit on a port in use fails at once, naming the holder")
    func secondProcessFailsFast() throws {
        let pty = try PseudoTerminal()
        let holder = try SerialPort(path: pty.slavePath)
        defer { holder.close() }
        let start = ContinuousClock.now
        let result = try ConsoleCLIProcess.run(["info", "--port", pty.slavePath], timeout: 10)
        #expect(ContinuousClock.now - start < .seconds(5))
        #expect(result.status == 75)
        #expect(result.stderr.contains("in use by PID \(getpid())"))
    }

    @Test("a silent board (user mode) → exit 69 with what to do")
    func silentBoardIsUserMode() throws {
        let pty = try PseudoTerminal()  // nobody answers on the master side
        let result = try ConsoleCLIProcess.run(["info", "--port", pty.slavePath], timeout: 15)
        #expect(result.status == 69)
        #expect(result.stderr.contains("board is in user mode: hold button A, press reset, try again"))
    }
}
