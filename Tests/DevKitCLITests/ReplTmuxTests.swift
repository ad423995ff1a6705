import Foundation
import DevKitTestSupport
import Testing
import VirtualDevKit
#if canImport(Glibc)
import Glibc
#endif

/// Drives the real `devkit console` binary in a detached tmux session (tmux gives it
/// a terminal, so this runs in CI with none), against a board on a pseudo-terminal.
@Suite("devkit console in tmux", .serialized)
struct ReplTmuxTests {
    static let tmuxPath = ["/usr/bin/tmux", "/usr/local/bin/tmux", "/bin/tmux"]
        .first { FileManager.default.isExecutableFile(atPath: $0) }

    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Fixtures/dice-vectors").path

    /// A virtual DevKit on `<directory>/devkit0`, started and idle (stop it with a `defer`).
    static func startedBoard(
        in directory: ReplTemporaryDirectory, pacingBaudRate: Int? = nil,
        faults: VirtualDevKitConfiguration.Faults = .init()
    ) throws -> (board: VirtualDevKit, link: String) {
        let link = directory.path + "/devkit0"
        var configuration = VirtualDevKitConfiguration(linkPath: link, pacingBaudRate: pacingBaudRate)
        configuration.faults = faults
        let board = try VirtualDevKit(configuration: configuration)
        board.start()
        #expect(board.waitUntilIdle())
        return (board, link)
    }

    /// Starts `devkit console` on `link` in a fresh tmux server; `exec cat` keeps the
    /// pane (and its last screen) after devkit exits.
    static func startConsole(in directory: ReplTemporaryDirectory, link: String) throws -> ReplTmux {
        try #require(FileManager.default.isExecutableFile(atPath: ReplBinary.devkit),
                     "the devkit executable is not built at \(ReplBinary.devkit)")
        let tmux = try ReplTmux(tmux: tmuxPath!, in: directory)
        try tmux.start(
            "env HOME='\(directory.path)' XDG_STATE_HOME='\(directory.path)/state' '\(ReplBinary.devkit)' console "
                + "--port '\(link)' --log '\(directory.path)/session.log'; echo \"[devkit exited $?]\"; exec cat")
        return tmux
    }

    /// `body` with a virtual DevKit (`faults`) and `devkit console` on it in tmux, at
    /// its first prompt; both stopped after.
    static func withConsole(
        faults: VirtualDevKitConfiguration.Faults = .init(),
        _ body: (VirtualDevKit, ReplTmux, ReplTemporaryDirectory) throws -> Void
    ) throws {
        let directory = try ReplTemporaryDirectory()
        let (board, link) = try startedBoard(in: directory, faults: faults)
        defer { board.stop() }
        let tmux = try startConsole(in: directory, link: link)
        defer { tmux.kill() }
        try tmux.waitFor { $0.lastLine == "devkit>" }
        try body(board, tmux, directory)
    }

    @Test("type, complete, recall, hide secrets, follow unplug, quit (virtual DevKit)",
          .enabled(if: tmuxPath != nil, "tmux is not installed (apt install tmux): the REPL test needs it"),
          .timeLimit(.minutes(5)))
    func interactiveSession() throws {
        let directory = try ReplTemporaryDirectory()
        let (board, link) = try Self.startedBoard(in: directory)
        defer { board.stop() }
        let tmux = try Self.startConsole(in: directory, link: link)
        defer { tmux.kill() }

        try tmux.waitFor { $0.lastLine == "devkit>" }

        // A command and its reply.
        tmux.send("version", "Enter")
        try tmux.waitFor { $0.contains("DevKitSDK version: 1.6.2") && $0.contains("mbed TLS version: 2.6.0") }

        // Tab completion: `set_dp` becomes `set_dps_uds`, and its space asks for the
        // secret with echo off, as a typed space does.
        tmux.send("set_dp", "Tab")
        try tmux.waitFor { $0.contains("devkit> set_dps_uds\n") && $0.contains("UDS (64 hex digits, not shown):") }
        let uds = "5eed5eed00112233445566778899aabbccddeeff00112233445566778899abcd"
        tmux.send(uds, "Enter")
        try tmux.waitFor { $0.contains("INFO: Set DPS UDS successfully.") }
        #expect(board.state.uds?.lowercased() == uds)
        #expect(!tmux.capture().contains("5eed5eed"))

        // A longer line first: libedit's buffer keeps its tail, and the secret
        // command's line below must not pick it up.
        tmux.send("set_wifissid Lab-network-5GHz", "Enter")
        try tmux.waitFor { $0.contains("INFO: Set Wi-Fi SSID successfully.") }
        #expect(board.state.wifiSSID == "Lab-network-5GHz")

        // A secret typed (or pasted) on the line: the space after the command switches
        // to the hidden prompt, so the secret is never drawn.
        tmux.send("set_wifipwd hunter2-secret", "Enter")
        try tmux.waitFor { $0.contains("INFO: Set Wi-Fi password successfully.") }
        #expect(board.state.wifiPassword == "hunter2-secret")
        #expect(board.state.wifiSSID == "Lab-network-5GHz")
        let screen = tmux.capture()
        #expect(!screen.contains("Invalid command"))
        #expect(!screen.contains("hunter2"))
        #expect(screen.contains("devkit> set_wifipwd\n"))
        #expect(screen.contains("Wi-Fi password (not shown; empty clears it):"))

        // History: Up recalls the latest entry; a secret command is kept by name only.
        tmux.send("Up")
        try tmux.waitFor { $0.lastLine == "devkit> set_wifipwd" }
        tmux.send("Up", "Up", "Up")
        try tmux.waitFor { $0.lastLine == "devkit> version" }
        tmux.send("Enter")
        try tmux.waitFor { $0.occurrences(of: "DevKitSDK version: 1.6.2") == 2 }

        // Local commands: `:info` parses `version`; `:uds generate` saves the new UDS
        // (mode 0600) before the board gets it, and never shows it.
        tmux.send(":info", "Enter")
        try tmux.waitFor { $0.contains("Firmware (DevKitSDK) version: 1.6.2") }
        let udsFile = directory.path + "/new.uds"
        tmux.send(":uds generate \(udsFile)", "Enter")
        try tmux.waitFor { $0.contains("a new UDS was saved to \(udsFile)") }
        let generated = try String(contentsOfFile: udsFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(generated.count == 64 && generated.allSatisfy(\.isHexDigit))
        #expect(board.state.uds?.lowercased() == generated.lowercased())
        #expect(!tmux.capture().lowercased().contains(generated.lowercased()))
        var udsInfo = stat()
        #expect(stat(udsFile, &udsInfo) == 0 && udsInfo.st_mode & 0o777 == 0o600)

        // `:cert` with the firmware version read from the board (1.6.2): byte for byte
        // the reference vector's Alias certificate.
        let vector = try #require(DiceVector.all.first { $0.registrationID == "az-c893467a10fev1v6v2" })
        let vectorUDS = directory.path + "/vector.uds"
        try (vector.uds + "\n").write(toFile: vectorUDS, atomically: false, encoding: .utf8)
        let certificates = directory.path + "/certs"
        tmux.send(":cert --elf \(Self.fixtures)/\(vector.elf) --uds-file \(vectorUDS) --mac c893467a10fe "
            + "--output-dir \(certificates)", "Enter")
        try tmux.waitFor { $0.contains("wrote \(certificates)/az-c893467a10fev1v6v2.pem") }
        let pem = try String(contentsOfFile: certificates + "/az-c893467a10fev1v6v2.pem", encoding: .utf8)
        #expect(pem == vector.aliasCertificate)

        // Unplug: noticed and said; replug: reconnected, and commands work again.
        board.unplug()
        try tmux.waitFor { $0.contains("board unplugged") && $0.lastLine == "devkit (unplugged)>" }
        try board.replug()
        try tmux.waitFor { $0.contains("is back: reconnected") && $0.lastLine == "devkit>" }
        tmux.send("version", "Enter")
        try tmux.waitFor { $0.occurrences(of: "DevKitSDK version: 1.6.2") == 3 }

        // Ctrl-D quits with status 0.
        tmux.send("C-d")
        try tmux.waitFor { $0.contains("[devkit exited 0]") }

        // No secret reached the history file (mode 0600) or the transcript.
        let historyPath = directory.path + "/state/devkit/history"
        let history = try String(contentsOfFile: historyPath, encoding: .utf8)
        #expect(history.contains("version"))
        #expect(history.contains("set_dps_uds"))
        #expect(history.contains("set_wifipwd"))
        #expect(!history.contains("5eed5eed"))
        #expect(!history.contains("hunter2"))
        #expect(!history.contains("set_wifipwdd"))
        var info = stat()
        #expect(stat(historyPath, &info) == 0 && info.st_mode & 0o777 == 0o600)

        let log = directory.path + "/session.log"
        let transcript = try String(contentsOfFile: log, encoding: .utf8)
        #expect(transcript.contains("> version"))
        #expect(transcript.contains("< DevKitSDK version: 1.6.2"))
        #expect(transcript.contains("> set_wifipwd ****"))
        #expect(transcript.contains("board unplugged"))
        #expect(!transcript.contains("5eed5eed"))
        #expect(!transcript.contains("hunter2"))
        #expect(stat(log, &info) == 0 && info.st_mode & 0o777 == 0o600)
    }

    /// `--raw`: keys go to the board as typed (its own echo shows them), Ctrl-]
    /// quits, and the terminal settings are as before.
    @Test("--raw passes bytes both ways, Ctrl-] quits, the terminal is restored",
          .enabled(if: tmuxPath != nil, "tmux is not installed (apt install tmux): the REPL test needs it"),
          .timeLimit(.minutes(5)))
    func rawPassthrough() throws {
        let directory = try ReplTemporaryDirectory()
        let (board, link) = try Self.startedBoard(in: directory)
        defer { board.stop() }
        let tmux = try ReplTmux(tmux: Self.tmuxPath!, in: directory)
        defer { tmux.kill() }
        let before = directory.path + "/stty.before"
        let after = directory.path + "/stty.after"
        try tmux.start(
            "stty -a > '\(before)'; '\(ReplBinary.devkit)' console --raw --port '\(link)'; "
                + "echo \"[devkit exited $?]\"; stty -a > '\(after)'; exec cat")
        try tmux.waitFor { $0.contains("Ctrl-] quits") }
        tmux.send("version", "Enter")
        // The board's echo, then its reply, then its prompt.
        try tmux.waitFor { $0.contains("version") && $0.contains("DevKitSDK version: 1.6.2") && $0.lastLine == "#" }
        tmux.send("C-]")
        try tmux.waitFor { $0.contains("[devkit exited 0]") }
        try waitUntil { FileManager.default.fileExists(atPath: after) && ((try? String(contentsOfFile: after, encoding: .utf8)) ?? "").contains("speed") }
        #expect(try String(contentsOfFile: before, encoding: .utf8) == String(contentsOfFile: after, encoding: .utf8))
    }

    /// Ctrl-C ends the wait for a reply that never comes, not the program. (A test
    /// board whose `scan` never answers: the virtual DevKit always answers.)
    @Test("Ctrl-C stops waiting for the board, the console goes on",
          .enabled(if: tmuxPath != nil, "tmux is not installed (apt install tmux): the REPL test needs it"),
          .timeLimit(.minutes(5)))
    func ctrlCCancelsTheWait() throws {
        let directory = try ReplTemporaryDirectory()
        let link = directory.path + "/devkit0"
        let board = try ReplTestBoard(linkPath: link)
        defer { board.stop() }
        let tmux = try Self.startConsole(in: directory, link: link)
        defer { tmux.kill() }

        try tmux.waitFor { $0.lastLine == "devkit>" }
        tmux.send("scan", "Enter")
        // Ctrl-C only once the line reached the board, so it hits the wait, not the editor.
        try waitUntil { board.received.suffix(5) == Array("scan\r".utf8) }
        // While it waits, the terminal does not echo (a secret typed ahead stays hidden).
        #expect(try tmux.paneTerminalSettings().contains(" -echo "))
        tmux.send("C-c")
        try tmux.waitFor { $0.contains("stopped waiting (Ctrl-C)") && $0.lastLine == "devkit>" }
        tmux.send("version", "Enter")
        try tmux.waitFor { $0.contains("DevKitSDK version: 1.6.2") }

        // Ctrl-C while editing drops the line; the console is still there.
        tmux.send("abc")
        // (Ctrl-C makes the tty flush unread input: wait until the editor shows it.)
        try tmux.waitFor { $0.lastLine == "devkit> abc" }
        tmux.send("C-c")
        try tmux.waitFor { $0.contains("devkit> abc^C") && $0.lastLine == "devkit>" }
        // Ctrl-C while a secret is typed hidden cancels it; nothing reaches the board.
        tmux.send("set_dps_uds 12")
        try tmux.waitFor { $0.lastLine == "UDS (64 hex digits, not shown):" }
        tmux.send("C-c")
        try tmux.waitFor { $0.lastLine == "devkit>" }
        #expect(!String(decoding: board.received, as: UTF8.self).contains("set_dps_uds"))
        #expect(!tmux.capture().contains("set_dps_uds 12"))

        tmux.send("C-d")
        try tmux.waitFor { $0.contains("[devkit exited 0]") }
        // The terminal's echo is back once devkit has gone.
        #expect(try tmux.paneTerminalSettings().contains(" echo "))
    }
}

extension ReplTmuxTests {
    /// Ctrl-C while a connection string is going out in pieces: the board keeps
    /// nothing (the half-sent line is erased), and its clear-text echo of the
    /// secret stays off the screen and out of the transcript.
    @Test("Ctrl-C mid-line: nothing half-stored, no secret shown",
          .enabled(if: tmuxPath != nil, "tmux is not installed (apt install tmux): the REPL test needs it"),
          .timeLimit(.minutes(5)))
    func ctrlCMidLine() throws {
        let directory = try ReplTemporaryDirectory()
        // 9600 baud: the 400-byte line takes about half a second.
        let (board, link) = try Self.startedBoard(in: directory, pacingBaudRate: 9600)
        defer { board.stop() }
        let tmux = try Self.startConsole(in: directory, link: link)
        defer { tmux.kill() }
        try tmux.waitFor { $0.lastLine == "devkit>" }

        tmux.send("set_az_iothub", "Enter")
        try tmux.waitFor { $0.lastLine.hasSuffix("(not shown):") }
        let secret = "HostName=h.azure-devices.net;DeviceId=d;SharedAccessKey=" + String(repeating: "Q", count: 340)
        let before = board.receivedByteCount
        tmux.send(secret, "Enter")
        try waitUntil { board.receivedByteCount > before + 150 }
        tmux.send("C-c")
        try tmux.waitFor { $0.contains("stopped waiting (Ctrl-C)") && $0.lastLine == "devkit>" }
        tmux.send("version", "Enter")
        // The whole reply, back at the prompt (at 9600 baud it takes a moment).
        try tmux.waitFor { $0.contains("WIFI version:") && $0.lastLine == "devkit>" }
        #expect(board.state.connectionString == nil)
        #expect(!tmux.capture().contains("QQQQ"))
        tmux.send("C-d")
        try tmux.waitFor { $0.contains("[devkit exited 0]") }
        let transcript = try String(contentsOfFile: directory.path + "/session.log", encoding: .utf8)
        #expect(!transcript.contains("QQQQ"))
    }
}

extension ReplTmuxTests {
    /// `--uds-file -` at a terminal: a prompt, and the UDS typed is not shown.
    @Test("a secret typed at the terminal is asked for and not shown",
          .enabled(if: tmuxPath != nil, "tmux is not installed (apt install tmux): the test needs a terminal"),
          .timeLimit(.minutes(5)))
    func secretFromTheTerminal() throws {
        let directory = try ReplTemporaryDirectory()
        let (board, link) = try Self.startedBoard(in: directory)
        defer { board.stop() }
        let tmux = try ReplTmux(tmux: Self.tmuxPath!, in: directory)
        defer { tmux.kill() }
        try tmux.start("'\(ReplBinary.devkit)' set-uds --port '\(link)' --uds-file -; echo \"[devkit exited $?]\"; exec cat")
        try tmux.waitFor { $0.contains("type the secret (it is not shown), then Enter:") }
        let uds = "5eed5eed00112233445566778899aabbccddeeff00112233445566778899abcd"
        tmux.send(uds, "Enter")
        try tmux.waitFor { $0.contains("[devkit exited 0]") }
        #expect(board.state.uds == uds)
        #expect(!tmux.capture().contains("5eed5eed"))
        // Echo is back for what comes next.
        #expect(try tmux.paneTerminalSettings().contains(" echo "))
    }
}

extension ReplTmuxTests {
    /// Tab completing a secret command asks for the secret as a typed space does:
    /// completed with a space as text, the secret typed next was drawn on screen.
    @Test("Tab completing a secret command asks for the secret, hidden",
          .enabled(if: tmuxPath != nil, "tmux is not installed (apt install tmux): the REPL test needs it"),
          .timeLimit(.minutes(5)))
    func tabCompletedSecretCommandHidesTheSecret() throws {
        try Self.withConsole { board, tmux, _ in
            tmux.send("set_wifip", "Tab")
            try tmux.waitFor { $0.contains("Wi-Fi password (not shown") }
            tmux.send("TabPw1", "Enter")
            try tmux.waitFor { $0.contains("Set Wi-Fi password successfully") }
            #expect(board.state.wifiPassword == "TabPw1")
            #expect(!tmux.capture().contains("TabPw1"), "\(tmux.capture())")
            // Ctrl-D at the hidden prompt cancels it; what is said next starts a line.
            tmux.send("set_wifipwd", "Enter")
            try tmux.waitFor { $0.occurrences(of: "Wi-Fi password (not shown") == 2 }
            tmux.send("C-d")
            try tmux.waitFor { $0.contains("\n[devkit] cancelled; nothing was sent") }
            #expect(board.state.wifiPassword == "TabPw1")
            // The same at the prompt a typed space opens: said, and no `^C` for a Ctrl-D.
            tmux.send("set_wifipwd ")
            try tmux.waitFor { $0.occurrences(of: "Wi-Fi password (not shown") == 3 }
            tmux.send("C-d")
            try tmux.waitFor { $0.occurrences(of: "[devkit] cancelled; nothing was sent") == 2 }
            #expect(!tmux.capture().contains("^C"), "\(tmux.capture())")
            #expect(board.state.wifiPassword == "TabPw1")
        }
    }

    /// A board unplugged while it stores a secret: the console says the value may or
    /// may not be stored (it said nothing), on a line of its own.
    @Test("unplugged mid-set: the cut-off reply ends, and the value's fate is said",
          .enabled(if: tmuxPath != nil, "tmux is not installed (apt install tmux): the REPL test needs it"),
          .timeLimit(.minutes(5)))
    func unplugMidSetSaysTheValueMayBeStored() throws {
        var faults = VirtualDevKitConfiguration.Faults()
        faults.secureElementWriteDelay = .seconds(3)
        try Self.withConsole(faults: faults) { board, tmux, directory in
            tmux.send("set_dps_uds", "Enter")
            try tmux.waitFor { $0.contains("UDS (64 hex digits, not shown):") }
            let before = board.receivedByteCount
            tmux.send(String(repeating: "5e", count: 32), "Enter")
            // The line is in (the board takes 3 s to store it): pulled out now.
            try waitUntil { board.receivedByteCount >= before + 64 + 13 }
            usleep(300_000)
            board.unplug()
            try tmux.waitFor { $0.contains("was cut off: the board may or may not have stored it") }
            let screen = tmux.capture()
            #expect(!screen.contains("Set DPS UDS successfully"), "\(screen)")
            #expect(!screen.contains("Invalid UDS.[devkit]") && !screen.contains("Invalid UDS.devkit"), "\(screen)")

            // Back: `:uds generate` cut off the same way names the file whose UDS the board may hold.
            try board.replug()
            try tmux.waitFor { $0.contains("is back: reconnected") && $0.lastLine == "devkit>" }
            let saved = directory.path + "/u1.hex"
            let sent = board.receivedByteCount
            tmux.send(":uds generate \(saved)", "Enter")
            try waitUntil { board.receivedByteCount >= sent + 64 + 13 }
            usleep(300_000)
            board.unplug()
            try tmux.waitFor { $0.contains("may or may not hold the UDS saved in \(saved)") }

            // Ctrl-C while the board stores: the reply so far ends its line before it is said.
            try board.replug()
            try tmux.waitFor { $0.occurrences(of: "is back: reconnected") == 2 && $0.lastLine == "devkit>" }
            tmux.send("set_dps_uds", "Enter")
            try tmux.waitFor { $0.occurrences(of: "UDS (64 hex digits, not shown):") == 2 }
            let again = board.receivedByteCount
            tmux.send(String(repeating: "6f", count: 32), "Enter")
            try waitUntil { board.receivedByteCount >= again + 64 + 13 }
            usleep(300_000)
            tmux.send("C-c")
            try tmux.waitFor { $0.contains("stopped waiting (Ctrl-C)") }
            #expect(!tmux.capture().contains("Invalid UDS.devkit"), "\(tmux.capture())")
        }
    }

    /// After `exit` the board runs its sketch: the next command is answered with
    /// that (it used to get nothing; only the one after it did).
    @Test("the first command after exit says the board runs its sketch",
          .enabled(if: tmuxPath != nil, "tmux is not installed (apt install tmux): the REPL test needs it"),
          .timeLimit(.minutes(5)))
    func firstCommandAfterExitIsAnswered() throws {
        try Self.withConsole { board, tmux, _ in
            tmux.send("exit", "Enter")
            // The sketch's boot log arrives at the prompt, and with it the note.
            try tmux.waitFor { $0.contains("in user mode (running its sketch)") && $0.lastLine == "devkit>" }
            tmux.send("version", "Enter")
            try tmux.waitFor { $0.contains("no console prompt: the board runs its sketch") }
        }
    }

    /// A non-ASCII character typed reaches the board as UTF-8 (it was dropped, and
    /// the board stored `Mnster-Lab`).
    @Test("a non-ASCII SSID typed at the console is stored as typed",
          .enabled(if: tmuxPath != nil, "tmux is not installed (apt install tmux): the REPL test needs it"),
          .timeLimit(.minutes(5)))
    func nonASCIITextIsSentAsTyped() throws {
        try Self.withConsole { board, tmux, _ in
            tmux.send("set_wifissid Münster-Lab", "Enter")
            try tmux.waitFor { $0.contains("INFO: Set Wi-Fi SSID successfully.") }
            #expect(board.state.wifiSSID == "Münster-Lab", "\(tmux.capture())")
        }
    }

    /// What a board prints unasked reaches the screen and the --log transcript with
    /// its secrets masked and its control characters escaped, as `devkit monitor` shows it.
    @Test("a board's unasked output is masked and escaped on screen and in the log",
          .enabled(if: tmuxPath != nil, "tmux is not installed (apt install tmux): the REPL test needs it"),
          .timeLimit(.minutes(5)))
    func unsolicitedOutputIsMasked() throws {
        let directory = try ReplTemporaryDirectory()
        let board = try ReplTestBoard(linkPath: directory.path + "/board0")
        defer { board.stop() }
        let tmux = try Self.startConsole(in: directory, link: board.linkPath)
        defer { tmux.kill() }
        try tmux.waitFor { $0.lastLine == "devkit>" }
        let key = "c2VjcmV0S2V5VmFsdWUxMjM0NQ=="
        let uds = String(repeating: "4b", count: 32)
        board.printUnasked("HostName=h;DeviceId=d;SharedAccessKey=\(key)\r\nuds=\(uds)\r\n\u{1B}[31mred\r\n")
        try tmux.waitFor { $0.contains("red") }
        let screen = tmux.capture()
        #expect(screen.contains("SharedAccessKey=***") && screen.contains("uds=***"), "\(screen)")
        #expect(!screen.contains(key) && !screen.contains(uds))
        #expect(screen.contains("\\u{1B}[31mred"), "the escape sequence is shown, not obeyed: \(screen)")
        let log = try String(contentsOfFile: directory.path + "/session.log", encoding: .utf8)
        #expect(!log.contains(key) && !log.contains(uds) && !log.contains("\u{1B}"), "\(log)")
    }
}

extension ReplTmuxTests {
    /// `devkit watch` on a terminal: one status line per board, redrawn in place.
    @Test("watch on a terminal: one status line per board",
          .enabled(if: tmuxPath != nil, "tmux is not installed (apt install tmux): the test needs a terminal"),
          .timeLimit(.minutes(5)))
    func watchStatusLines() throws {
        let directory = try ReplTemporaryDirectory()
        let links = [directory.path + "/tty1", directory.path + "/tty2"]
        let boards = try links.enumerated().map { index, link in
            try VirtualDevKit(configuration: .init(macAddress: "a4cf120b000\(index + 1)", linkPath: link))
        }
        for board in boards { board.start() }
        defer { for board in boards { board.stop() } }
        for board in boards { #expect(board.waitUntilIdle()) }
        try "[firmware]\nelf = \"\(WatchCommandTests.elf)\"\n[uds]\npolicy = \"generate\"\n"
            .write(toFile: directory.path + "/p.toml", atomically: false, encoding: .utf8)
        let tmux = try ReplTmux(tmux: Self.tmuxPath!, in: directory)
        defer { tmux.kill() }
        try tmux.start("'\(ReplBinary.devkit)' watch --profile '\(directory.path)/p.toml' --registry '\(directory.path)/r.sqlite' "
            + links.map { "--port '\($0)'" }.joined(separator: " ") + "; echo \"[devkit exited $?]\"; exec cat")
        try tmux.waitFor { $0.contains("[devkit exited 0]") }
        let screen = tmux.capture()
        for link in links {
            let lines = screen.split(separator: "\n").filter { $0.contains("[\(link)]") }
            #expect(lines.count == 1, "\(screen)")
            #expect(lines.first?.contains("] provisioned az-a4cf120b000") == true, "\(screen)")
        }
    }
}

/// Polls a condition on the test's own objects with a bounded deadline.
func waitUntil(_ condition: () -> Bool) throws {
    guard pollUntil(every: .milliseconds(10), condition) else { throw ReplTmuxTimeout(screen: "(condition on the board)") }
}

/// The built `devkit` executable, next to the test bundle.
enum ReplBinary {
    static var devkit: String {
        var buffer = [CChar](repeating: 0, count: 4096)
        let count = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        if count > 0 {
            let me = String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            let candidate = (me as NSString).deletingLastPathComponent + "/devkit"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        // swift-testing's runner may be the xctest bundle itself; fall back to .build/debug.
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent()
        return root.path + "/.build/debug/devkit"
    }
}

/// A temporary directory removed on deinit.
final class ReplTemporaryDirectory {
    let path: String
    init() throws {
        var template = Array("/tmp/devkit-repl-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw POSIXError(.EIO) }
        path = String(cString: made)
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }
}

struct ReplTmuxTimeout: Error, CustomStringConvertible {
    let screen: String
    var description: String { "the expected text did not appear within the deadline; screen:\n\(screen)" }
}

/// One tmux server on its own socket (-S, inside the test's temporary directory, so
/// nothing is left behind), killed at the end.
struct ReplTmux {
    let tmux: String
    let socket: String
    let target = "repl"

    init(tmux: String, in directory: ReplTemporaryDirectory) throws {
        self.tmux = tmux
        socket = directory.path + "/tmux.sock"
    }

    func start(_ command: String) throws {
        let status = run(["new-session", "-d", "-s", target, "-x", "120", "-y", "40", command])
        guard status == 0 else { throw POSIXError(.ECHILD) }
    }

    func send(_ keys: String...) {
        for key in keys {
            // Literal text with -l; key names (Enter, Tab, Up, C-c) without.
            let isKeyName = ["Enter", "Tab", "Up", "Down", "C-c", "C-d", "C-u", "C-]"].contains(key)
            _ = run(["send-keys", "-t", target] + (isKeyName ? [] : ["-l"]) + [key])
        }
    }

    func capture() -> String {
        var output = ""
        _ = run(["capture-pane", "-p", "-S", "-", "-t", target], output: &output)  // with scrollback
        return output
    }

    /// Polls the screen until `condition` holds; bounded (60 s: only a hang should reach
    /// it, not a stalled machine), never a fixed sleep.
    func waitFor(_ condition: (ReplScreen) -> Bool) throws {
        let deadline = ContinuousClock.now + .seconds(60)
        var screen = ReplScreen(text: capture())
        while !condition(screen) {
            guard ContinuousClock.now < deadline else { throw ReplTmuxTimeout(screen: screen.text) }
            // Re-check on a short interval: tmux offers no change notification to wait on.
            var request = timespec(tv_sec: 0, tv_nsec: 20_000_000)
            nanosleep(&request, nil)
            screen = ReplScreen(text: capture())
        }
    }

    func kill() {
        _ = run(["kill-server"])
    }

    /// `stty -a` of the pane's terminal.
    func paneTerminalSettings() throws -> String {
        var tty = ""
        _ = run(["display-message", "-p", "-t", target, "#{pane_tty}"], output: &tty)
        let path = tty.trimmingCharacters(in: .whitespacesAndNewlines)
        let fd = open(path, O_RDONLY | O_NOCTTY)
        guard fd >= 0 else { throw POSIXError(.ENOENT) }
        defer { close(fd) }
        var settings = termios()
        guard tcgetattr(fd, &settings) == 0 else { throw POSIXError(.EIO) }
        return settings.c_lflag & tcflag_t(ECHO) != 0 ? " echo " : " -echo "
    }

    /// Runs a tmux command whose output is not needed (stdout to /dev/null: the
    /// server that `new-session` starts would inherit a pipe and keep it open).
    @discardableResult
    private func run(_ arguments: [String]) -> Int32 {
        var ignored = ""
        return run(arguments, output: &ignored, capture: false)
    }

    /// posix_spawn + waitpid rather than Foundation's Process, whose exit detection
    /// waits for a descriptor that the daemonised tmux server inherits.
    private func run(_ arguments: [String], output: inout String, capture: Bool = true) -> Int32 {
        let argv = [tmux, "-S", socket, "-f", "/dev/null"] + arguments
        var fds: [Int32] = [-1, -1]
        if capture {
            guard let ends = try? TestProcess.makePipe() else { return -1 }
            fds = [ends.read, ends.write]
        }
        // The tmux server daemonises and lives on: it must hold no other test's pipe,
        // and not the signal mask of the test runner's threads, or kill-server cannot
        // end it and the panes it starts.
        let spawned = TestProcess.spawnClean(argv) { actions in
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
            if capture {
                posix_spawn_file_actions_adddup2(&actions, fds[1], 1)
            } else {
                posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
            }
            posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        }
        if capture { close(fds[1]) }
        guard let pid = spawned else {
            if capture { close(fds[0]) }
            return -1
        }
        if capture {
            var data: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 8192)
            while true {
                let n = read(fds[0], &buffer, buffer.count)
                if n > 0 { data += buffer[..<n] } else if n < 0 && errno == EINTR { continue } else { break }
            }
            close(fds[0])
            output = String(decoding: data, as: UTF8.self)
        }
        let status = TestProcess.waitStatus(pid)
        return (status & 0x7F) == 0 ? (status >> 8) & 0xFF : -1
    }
}

/// A captured screen.
struct ReplScreen {
    let text: String

    func contains(_ needle: String) -> Bool { text.contains(needle) }

    /// The last non-blank line (where the cursor's prompt is), trailing spaces dropped.
    var lastLine: String {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
            .map { String($0.reversed().drop(while: { $0 == " " }).reversed()) }
        return lines.last(where: { !$0.isEmpty }) ?? ""
    }

    func occurrences(of needle: String) -> Int {
        text.components(separatedBy: needle).count - 1
    }
}
