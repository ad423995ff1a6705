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

    /// Silence is not evidence of user mode (issue 12): "no answer", with the causes.
    @Test("a silent port → exit 69, no answer from the board, with what to do")
    func silentPortIsNoAnswer() throws {
        let pty = try PseudoTerminal()  // nobody answers on the master side
        let result = try ConsoleCLIProcess.run(["info", "--port", pty.slavePath], timeout: 15)
        #expect(result.status == 69)
        #expect(result.stderr.contains("no answer from the board: no console prompt, nothing came back"))
        #expect(result.stderr.contains("hold button A and press reset"))
        #expect(!result.stderr.contains("user mode"))
    }
}
