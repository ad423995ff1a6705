import DevKitRegistry
import DevKitTestSupport
import Foundation
import Testing
import VirtualDevKit
#if canImport(Glibc)
import Glibc
#endif

/// SIGTERM (or Ctrl-C) while a one-shot command has the port: the half-sent line is
/// erased from the console, the port gets its terminal settings back, and the
/// process dies of the signal.
@Suite(.timeLimit(.minutes(5)))
struct StopSignalTests {
    @Test func sigtermMidLineErasesItAndRestoresThePort() throws {
        // 9600 baud: the 400-byte line takes about half a second on the wire.
        let kit = try startedKit(.init(pacingBaudRate: 9600))
        defer { kit.stop() }
        let directory = consoleTestDirectory()
        defer { consoleRemoveTree(directory) }
        let cs = "HostName=h.azure-devices.net;DeviceId=d;SharedAccessKey=" + String(repeating: "k", count: 340)
        try (cs + "\n").write(toFile: directory + "/cs", atomically: false, encoding: .utf8)

        let slave = open(kit.devicePath, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC)
        #expect(slave >= 0)
        defer { close(slave) }
        // Settings devkit changes (it sets VMIN=0/VTIME=0) and must put back.
        var before = termios()
        #expect(tcgetattr(slave, &before) == 0)
        withUnsafeMutableBytes(of: &before.c_cc) { cc in
            cc[Int(VMIN)] = 7
            cc[Int(VTIME)] = 3
        }
        #expect(tcsetattr(slave, TCSANOW, &before) == 0)

        // SIGTERM once part of the line is on the board (the sync's `\r`, then the first piece).
        let message = try Self.runAndTerminate(
            ["set-connection-string", "--port", kit.devicePath, "--file", directory + "/cs"]
        ) { kit.receivedByteCount > 150 }
        #expect(message.contains("stopped by SIGTERM"), "\(message)")
        var after = termios()
        #expect(tcgetattr(slave, &after) == 0)
        #expect(after.c_lflag == before.c_lflag && after.c_iflag == before.c_iflag)
        #expect(after.c_oflag == before.c_oflag && after.c_cflag == before.c_cflag)
        withUnsafeBytes(of: after.c_cc) { cc in
            #expect(cc[Int(VMIN)] == 7 && cc[Int(VTIME)] == 3)
        }

        // The next command's `\r` finds an empty line: nothing half-stored.
        let info = try ConsoleCLIProcess.run(["info", "--port", kit.devicePath])
        #expect(info.status == 0, "\(info.stderr)")
        #expect(kit.state.connectionString == nil)
    }

    /// systemd stops devkit-autoconfigure@ with SIGTERM when the board is unplugged
    /// (BindsTo=): the row says the board failed and why, not "in progress".
    @Test func sigtermDuringAutoconfigureIsRecorded() throws {
        let kit = try startedKit(.init(pacingBaudRate: 2400))
        defer { kit.stop() }
        let directory = consoleTestDirectory()
        defer { consoleRemoveTree(directory) }
        try "[firmware]\nelf = \"\(WatchCommandTests.elf)\"\n[uds]\npolicy = \"generate\"\n"
            .write(toFile: directory + "/p.toml", atomically: false, encoding: .utf8)
        // SIGTERM once the UDS line is on its way (recorded first, then sent; at 2400
        // baud the line takes a third of a second on the wire).
        _ = try Self.runAndTerminate(
            ["autoconfigure", "--port", kit.devicePath, "--profile", directory + "/p.toml",
             "--registry", directory + "/r.sqlite"]
        ) { kit.receivedByteCount > 30 }

        let row = try #require(try Registry(path: directory + "/r.sqlite").allBoards().first)
        #expect(row.state == .failed)
        #expect(row.error?.contains("cancelled") == true, "\(String(describing: row.error))")
    }

    /// Runs devkit with `arguments`, sends SIGTERM once `ready` holds, expects it to
    /// die of SIGTERM, and returns its stderr.
    static func runAndTerminate(_ arguments: [String], when ready: () -> Bool) throws -> String {
        let process = Process()
        process.executableURL = try ConsoleCLIProcess.binary
        process.arguments = arguments
        let stderr = Pipe()
        process.standardError = stderr
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        defer { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
        try waitUntil(ready)
        #expect(kill(process.processIdentifier, SIGTERM) == 0)
        process.waitUntilExit()
        #expect(process.terminationReason == .uncaughtSignal && process.terminationStatus == SIGTERM)
        return String(decoding: stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    }
}
