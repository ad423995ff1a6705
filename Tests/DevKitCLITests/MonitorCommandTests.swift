import DevKitTestSupport
import Foundation
import SystemPackage
import Testing
import VirtualDevKit
#if canImport(Glibc)
import Glibc
#endif

/// `devkit monitor`, the built binary, on the virtual board's pty and on a bare pty
/// the test writes to.
@Suite("devkit monitor", .serialized)
struct MonitorCommandTests {
    static let uds = String(repeating: "a1b2c3d4e5f60718", count: 4)

    /// Polls the monitor's log (bounded, 60 s) until `condition` holds on its text.
    static func waitForLog(_ path: String, _ condition: (String) -> Bool) -> Bool {
        pollUntil { condition(consoleReadText(path) ?? "") }
    }

    @Test("follows the board through an unplug and a replug by its link, and keeps logging")
    func survivesUnplugAndReplug() throws {
        let dir = consoleTestDirectory()
        defer { consoleRemoveTree(dir) }
        let link = dir + "/ttyDevKit"
        let log = dir + "/board.log"
        let kit = try startedKit(.init(mode: .user, linkPath: link, sketchLogInterval: .milliseconds(100)))
        defer { kit.stop() }
        // Each step waits for what the log shows, not for a fixed time; Ctrl-C ends the
        // run once it has shown all of it (--timeout is only a backstop).
        let monitor = try BackgroundDevkit(["monitor", "--port", link, "--log", log, "--timeout", "120"])
        #expect(monitor.waitUntilOpen(link))
        #expect(Self.waitForLog(log) { $0.contains("Sketch telemetry #") })
        kit.unplug()
        #expect(Self.waitForLog(log) { $0.contains("* \(link) disconnected") })
        try kit.replug()
        #expect(Self.waitForLog(log) { text in
            guard let back = text.range(of: "* \(link) is back") else { return false }
            return text[back.upperBound...].components(separatedBy: "Sketch telemetry #").count > 5
        })
        #expect(kill(monitor.process.processIdentifier, SIGINT) == 0)
        let status = monitor.wait(timeout: .seconds(120))
        let out = String(decoding: monitor.stdout.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let err = String(decoding: monitor.stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        // Ended by the Ctrl-C, not by an error or the backstop.
        #expect(status == SIGINT && monitor.process.terminationReason == .uncaughtSignal, "stderr: \(err)")
        #expect(err.contains("\(link) disconnected; waiting for it to come back"))
        #expect(err.contains("\(link) is back"))
        let text = try #require(consoleReadText(log))
        let lines = text.split(separator: "\n").map(String.init)
        let gone = try #require(lines.firstIndex { $0.hasSuffix("* \(link) disconnected") }, "log: \(text)")
        let back = try #require(lines.firstIndex { $0.hasSuffix("* \(link) is back") }, "log: \(text)")
        #expect(gone < back)
        // Telemetry before the unplug and again after the replug (a fresh boot counts from #1).
        #expect(lines[..<gone].contains { $0.contains(" < ") && $0.contains("Sketch telemetry #") })
        #expect(lines[back...].filter { $0.contains(" < ") && $0.contains("Sketch telemetry #") }.count >= 5)
        #expect(out.contains("Sketch telemetry #"))
        #expect(consoleFileMode(log) == 0o600)
    }

    @Test("secrets a sketch prints are masked on screen and in the log; --until stops at its line")
    func masksSecrets() throws {
        let dir = consoleTestDirectory()
        defer { consoleRemoveTree(dir) }
        let log = dir + "/board.log"
        let pty = try PseudoTerminal()
        let monitor = try BackgroundDevkit(["monitor", "--port", pty.slavePath, "--log", log, "--until", "^done$", "--timeout", "20", "--timestamps"])
        #expect(monitor.waitUntilRaw(pty))
        let text = "UDS: \(Self.uds)\r\nHostName=x.azure-devices.net;DeviceId=d1;SharedAccessKey=c2VjcmV0LWtleQ==\r\n"
            + "Wi-Fi password: hunter2\r\n\u{1B}]0;title\u{07}\r\ndone\r\nafter\r\n"
        // Byte by byte, as a slow UART would deliver it.
        for byte in Array(text.utf8) {
            var b = byte
            _ = Glibc.write(pty.master.rawValue, &b, 1)
        }
        let status = monitor.wait(timeout: .seconds(20))
        let out = String(decoding: monitor.stdout.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let logged = try #require(consoleReadText(log))
        #expect(status == 0)
        for place in [out, logged] {
            #expect(!place.contains(Self.uds))
            #expect(!place.contains("a1b2c3d4e5f6"))
            #expect(!place.contains("c2VjcmV0"))
            #expect(!place.contains("hunter2"))
            #expect(!place.contains("\u{1B}"))
            #expect(place.contains("SharedAccessKey=***"))
            #expect(place.contains("UDS: ***"))
        }
        #expect(out.contains("] done"))
        #expect(!logged.contains("after"))  // stopped at the --until line
        #expect(out.range(of: #"\[\d\d:\d\d:\d\d\.\d\d\d\] UDS: \*\*\*"#, options: .regularExpression) != nil)
    }

    @Test("--until unmatched by --timeout is 75; --timeout alone is 0")
    func timeouts() throws {
        let pty = try PseudoTerminal()
        let started = ContinuousClock.now
        let unmatched = try TestProcess.run(
            [try TestProcess.devkitBinary, "monitor", "--port", pty.slavePath, "--until", "never", "--timeout", "0.5"], timeout: 120)
        #expect(unmatched.status == 75)
        #expect(unmatched.stderr.contains("no line matched --until 'never' within 0.5 s"))
        let plain = try TestProcess.run([try TestProcess.devkitBinary, "monitor", "--port", pty.slavePath, "--timeout", "0.5"], timeout: 120)
        #expect(plain.status == 0)
        #expect(ContinuousClock.now - started < .seconds(15))
    }

    @Test("the board not back within --reconnect-timeout is 69")
    func gone() throws {
        let dir = consoleTestDirectory()
        defer { consoleRemoveTree(dir) }
        let link = dir + "/ttyDevKit"
        let kit = try startedKit(.init(mode: .user, linkPath: link, sketchLogInterval: .milliseconds(200)))
        defer { kit.stop() }
        let monitor = try BackgroundDevkit(["monitor", "--port", link, "--reconnect-timeout", "0.5", "--timeout", "20"])
        #expect(monitor.waitUntilOpen(link))
        kit.unplug()
        let status = monitor.wait(timeout: .seconds(20))
        let err = String(decoding: monitor.stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(status == 69)
        #expect(err.contains("did not come back within 0.5 s"))
    }

    /// Runs `command` (it opens the port last) on a pseudo-terminal, sends `signal`
    /// once the port is in raw mode, and expects it to die of that signal with the
    /// port free again: another monitor opens it (flock released).
    func expectStoppedBySignal(_ command: [String], _ signal: Int32) throws {
        let pty = try PseudoTerminal()
        let process = try BackgroundDevkit(command + ["--port", pty.slavePath])
        #expect(process.waitUntilRaw(pty))
        kill(process.process.processIdentifier, signal)
        _ = process.wait(timeout: .seconds(10))
        #expect(process.process.terminationReason == .uncaughtSignal)
        #expect(process.process.terminationStatus == signal)
        let again = try TestProcess.run([try TestProcess.devkitBinary, "monitor", "--port", pty.slavePath, "--timeout", "0.3"], timeout: 120)
        #expect(again.status == 0, "the port is free again: \(again.stderr)")
    }

    @Test("Ctrl-C (SIGINT) ends it as the signal does, and the port is free again")
    func interrupt() throws {
        try expectStoppedBySignal(["monitor"], SIGINT)
    }

    /// `console --raw` stopped by SIGTERM or SIGINT (from kill(1)) ends as the signal
    /// does, like every board command, after the terminal and port are restored
    /// (walkthrough, helper-118: it exited 0).
    @Test("console --raw stopped by a signal dies of it", arguments: [SIGTERM, SIGINT])
    func rawConsoleStoppedBySignal(signal: Int32) throws {
        try expectStoppedBySignal(["console", "--raw"], signal)
    }

    @Test("a bare pseudo-terminal that hangs up is not waited for: its number goes to the next terminal opened")
    func bareTerminalNotWaitedFor() throws {
        let pty = try PseudoTerminal()
        let path = pty.slavePath
        let monitor = try BackgroundDevkit(["monitor", "--port", path, "--timeout", "120"])
        #expect(monitor.waitUntilOpen(path))
        try pty.master.close()  // the terminal hangs up
        // Waiting for the path would last until --timeout (120 s).
        let status = monitor.wait(timeout: .seconds(60))
        let err = String(decoding: monitor.stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(status == 69, "\(err)")
        #expect(err.contains("\(path) hung up"), "\(err)")
        #expect(!err.contains("waiting for it to come back"), "\(err)")
    }

    @Test("errors: no such port 66, a log that cannot be created 73, a bad --until 64")
    func errors() throws {
        let devkit = try TestProcess.devkitBinary
        let missing = try TestProcess.run([devkit, "monitor", "--port", "/nonexistent/ttyACM9", "--timeout", "1"], timeout: 120)
        #expect(missing.status == 66)
        #expect(missing.stderr.contains("No serial device at /nonexistent/ttyACM9"))
        let pty = try PseudoTerminal()
        let badLog = try TestProcess.run([devkit, "monitor", "--port", pty.slavePath, "--log", "/nonexistent-dir/x.log", "--timeout", "1"], timeout: 120)
        #expect(badLog.status == 73)
        #expect(badLog.stderr.contains("cannot open the log /nonexistent-dir/x.log"))
        let badRegex = try TestProcess.run([devkit, "monitor", "--port", pty.slavePath, "--until", "(unclosed"], timeout: 120)
        #expect(badRegex.status == 64)
    }
}
