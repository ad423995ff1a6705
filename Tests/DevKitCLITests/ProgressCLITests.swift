import DevKitTestSupport
import Foundation
import Testing
import VirtualDevKit

/// Issue 12, item 15: `provision`'s progress on a terminal (one line per step,
/// rewritten in place, with its time) and in a pipe (a line per event); the
/// fixed-nonce warning once and `--quiet`; `--verbose` on the profile commands.
@Suite("Progress and verbosity", .serialized, .timeLimit(.minutes(5)))
struct ProgressCLITests {
    static let clearLine = "\r\u{1B}[2K"
    /// A first-time run's steps (no Wi-Fi in these runs).
    static let steps = ["validate", "record", "connect", "uds", "version", "mac", "certificate", "enrollment"]

    /// `devkit provision` with stderr on a real pseudo-terminal, against the
    /// virtual DevKit: each step is one row on the screen, drawn at its start and
    /// redrawn in place (carriage return, clear line) with its outcome and time.
    @Test("on a terminal each step is one line, updated in place with its time")
    func provisionOnATerminal() throws {
        let cli = ProvisionCLITests()
        let (v, dir, kit) = try cli.setup()
        defer { kit.stop(); try? FileManager.default.removeItem(atPath: dir) }
        let r = try TestProcess.run(
            [try TestProcess.devkitBinary] + cli.provisionArgs(v, dir, kit) + ["--uds-file", dir + "/board.uds"],
            timeout: 90, stderrTerminalColumns: 500)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("Board #1 provisioned."), "\(r.stdout)")
        // The terminal's rows: its line discipline ends each with \r\n.
        let rows = r.stderr.components(separatedBy: "\r\n")
        for step in Self.steps {
            let mine = rows.filter { $0.contains("] \(step): ") }
            try #require(mine.count == 1, "\(step): one row, not \(mine.count): \(rows)")
            let row = mine[0]
            #expect(row.hasPrefix(Self.clearLine + "[...] \(step): "), "\(step) starts in place: \(row.debugDescription)")
            // What is left on the row is the last drawing: the outcome, with the step's time.
            let last = try #require(row.components(separatedBy: Self.clearLine).last)
            #expect(last.hasPrefix("[ok ] \(step): "), "\(step): \(row.debugDescription)")
            #expect(last.range(of: #" \(\d+\.\d s\)$"#, options: .regularExpression) != nil, "\(step): \(row.debugDescription)")
        }
        #expect(r.stderr.components(separatedBy: "fixed ECDSA nonce").count == 2, "\(r.stderr)")
    }

    /// Piped (a log, a script), each event keeps its own line, with no terminal
    /// control sequence; the warning once, and `--quiet` leaves errors only.
    @Test("piped, a line per event; the fixed-nonce warning once, none with --quiet")
    func provisionPiped() throws {
        let cli = ProvisionCLITests()
        let (v, dir, kit) = try cli.setup()
        defer { kit.stop(); try? FileManager.default.removeItem(atPath: dir) }
        let r = try RegistryCLIProcess.run(cli.provisionArgs(v, dir, kit) + ["--uds-file", dir + "/board.uds"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(!r.stderr.contains("\r") && !r.stderr.contains("\u{1B}"), "\(r.stderr.debugDescription)")
        let lines = r.stderr.split(separator: "\n")
        for step in Self.steps {
            #expect(lines.contains { $0.hasPrefix("[...] \(step): ") }, "\(step): \(r.stderr)")
            #expect(lines.contains { $0.hasPrefix("[ok ] \(step): ") }, "\(step): \(r.stderr)")
        }
        #expect(r.stderr.components(separatedBy: "fixed ECDSA nonce").count == 2, "\(r.stderr)")

        // A second board (the first now runs its sketch, rebooted to read its MAC).
        let second = try startedKit(.init(macAddress: v.mac, firmwareVersion: v.version))
        defer { second.stop() }
        let again = try RegistryCLIProcess.run(
            ["provision", "--port", second.devicePath, "--bin", v.bin, "--map", v.map, "--uds-file", dir + "/board.uds",
             "--output-dir", dir + "/quiet", "--registry", dir + "/quiet.sqlite", "--quiet"])
        #expect(again.status == 0, "\(again.stderr)")
        #expect(again.stderr.isEmpty, "\(again.stderr)")
    }

    /// `autoconfigure` and `watch --port` run the console through the profile
    /// provisioner; `--verbose` shows that exchange too, secrets masked.
    @Test("--verbose shows the console exchange in autoconfigure and watch", arguments: ["autoconfigure", "watch"])
    func verboseProfileCommands(command: String) throws {
        let kit = try startedKit()
        defer { kit.stop() }
        let dir = registryTestDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "output_dir = \"\(dir)/out\"\n[firmware]\nelf = \"\(WatchCommandTests.elf)\"\n[uds]\npolicy = \"generate\"\n"
            .write(toFile: dir + "/p.toml", atomically: false, encoding: .utf8)
        let r = try RegistryCLIProcess.run(
            [command, "--port", kit.devicePath, "--profile", dir + "/p.toml", "--registry", dir + "/r.sqlite", "--verbose"])
        #expect(r.status == 0, "\(r.stderr)")
        let prefix = command == "watch" ? "[\(kit.devicePath)] " : ""
        #expect(r.stderr.contains(prefix + "devkit: > set_dps_uds ***"), "\(r.stderr)")
        #expect(r.stderr.contains(prefix + "devkit: > version"), "\(r.stderr)")
        #expect(r.stderr.contains(prefix + "devkit: < "), "\(r.stderr)")
        let uds = try #require(kit.state.uds)
        #expect(!r.stderr.lowercased().contains(String(uds.lowercased().prefix(16))), "the UDS was shown")

        // Without --verbose, no exchange.
        let quiet = try RegistryCLIProcess.run(
            [command, "--port", kit.devicePath, "--profile", dir + "/p.toml", "--registry", dir + "/r2.sqlite"])
        #expect(!quiet.stderr.contains("devkit: > "), "\(quiet.stderr)")
    }
}
