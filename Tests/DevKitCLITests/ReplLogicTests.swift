import Foundation
import Testing
@testable import DevKitCLI
import DevKitConsole
@testable import DevKitREPL
#if canImport(Glibc)
import Glibc
#endif

@Suite("REPL logic")
struct ReplLogicTests {
    // MARK: The UDS quirk (issue 12, item 13)

    @Test("the UDS quirk note only when `Invalid UDS.` came before the success line")
    func udsQuirk() {
        #expect(ReplSession.isUDSQuirk(["Invalid UDS.", "INFO: Set DPS UDS successfully."]))
        #expect(!ReplSession.isUDSQuirk(["INFO: Set DPS UDS successfully."]))
        #expect(!ReplSession.isUDSQuirk(["Invalid UDS."]))
        #expect(!ReplSession.isUDSQuirk(["INFO: Set DPS UDS successfully.", "Invalid UDS."]))
    }

    // MARK: Completion

    @Test func completesCommandNames() {
        #expect(ReplCommands.completions(forLinePrefix: "set_dp") == ["set_dps_uds"])
        #expect(ReplCommands.completions(forLinePrefix: "ver") == ["version"])
        #expect(Set(ReplCommands.completions(forLinePrefix: "set_az")) == ["set_az_iothub", "set_az_iotdps"])
        #expect(ReplCommands.commonPrefix(["set_az_iothub", "set_az_iotdps"]) == "set_az_iot")
        #expect(ReplCommands.completions(forLinePrefix: ":u") == [":uds"])
        #expect(ReplCommands.completions(forLinePrefix: ":uds ge") == ["generate"])
        #expect(ReplCommands.completions(forLinePrefix: "version x").isEmpty)
        #expect(ReplCommands.completions(forLinePrefix: "zzz").isEmpty)
        // Every device command of the brief completes from its first letters.
        for name in ["help", "version", "exit", "scan", "set_wifissid", "set_wifipwd", "set_az_iothub",
                     "set_az_iotdps", "set_dps_uds", "enable_secure", ":help", ":info", ":quit"] {
            #expect(ReplCommands.completions(forLinePrefix: name) == [name])
        }
    }

    // MARK: :cert

    @Test func certArgumentsAreChecked() {
        let ok = ReplCertRequest.parseWords(["--elf", "a.elf", "--uds-file", "u", "--mac", "a4cf120b9e31"])
        #expect((try? ok.get())?.firmware.elf == "a.elf")
        #expect((try? ok.get())?.output.outputDir == ".")
        let binMap = ReplCertRequest.parseWords(["--bin", "b", "--map", "m", "--uds-file", "u", "--registration-id", "x",
                                                 "--output-dir", "out"])
        #expect((try? binMap.get())?.output.outputDir == "out")
        #expect((try? binMap.get())?.firmware.bin == "b")
        let bad: [([String], String)] = [
            (["--elf", "a", "--bin", "b", "--map", "m", "--uds-file", "u", "--mac", "m"], "not both"),
            (["--bin", "b", "--uds-file", "u", "--mac", "m"], "--bin needs --map"),
            (["--elf", "a", "--mac", "m"], "--uds-file"),
            (["--elf", "a", "--uds-file", "u"], "either --mac"),
            (["--elf", "a", "--uds-file", "u", "--mac", "m", "--registration-id", "r"], "either --mac"),
            (["--elf", "a", "--uds-file"], "uds-file"),
            (["--elf", "a", "--uds-file", "u", "--mac", "m", "--frobnicate", "x"], "unknown option --frobnicate"),
            (["--frobnicate", "x"], "unknown option --frobnicate"),
            (["--help"], "Alias certificate"),
        ]
        for (words, reason) in bad {
            switch ReplCertRequest.parseWords(words) {
            case .success: Issue.record("accepted \(words)")
            case .failure(let usage): #expect(usage.reason.contains(reason), "\(words): \(usage.reason)")
            }
        }
        // What the console prints for a bad line: the reason, then the usage.
        let said = ReplCert.run(["--elf", "a"]) { nil }
        #expect(said.contains("--uds-file") && said.hasSuffix(ReplCertRequest.usage), "\(said)")
        #expect(!said.contains(".;"), "\(said)")
    }

    // MARK: Secrets

    @Test func secretsNeverReachHistoryOrLog() {
        let uds = String(repeating: "ab", count: 32)
        for command in ["set_dps_uds", "set_wifipwd", "set_az_iothub", "set_az_iotdps"] {
            let line = "\(command) \(uds)"
            #expect(ReplCommands.carriesSecret(line))
            #expect(ReplCommands.historyEntry(for: line) == command)
            #expect(ReplCommands.masked(line) == "\(command) ****")
            #expect(ReplCommands.historyEntry(for: "  \(command)   \(uds) ") == command)
        }
        // enable_secure's key is a secret too; its level is not.
        #expect(ReplCommands.masked("enable_secure 2 0123abcd") == "enable_secure 2 ****")
        #expect(ReplCommands.historyEntry(for: "enable_secure 2 0123abcd") == "enable_secure 2")
        #expect(ReplCommands.masked("enable_secure 1") == "enable_secure 1")
        #expect(!ReplCommands.carriesSecret("enable_secure 1"))
        #expect(ReplCommands.historyEntry(for: "set_wifissid home") == "set_wifissid home")
        #expect(ReplCommands.masked("set_wifissid home") == "set_wifissid home")
        #expect(ReplCommands.historyEntry(for: "   ") == nil)
        #expect(ReplCommands.secretPrompt(for: "set_dps_uds") != nil)
        #expect(ReplCommands.secretPrompt(for: "version") == nil)
    }

    @Test func transcriptMasksAndTimestamps() throws {
        let directory = try ReplTemporaryDirectory()
        let path = directory.path + "/t.log"
        do {
            let transcript = try ReplTranscript(path: path)
            transcript.sent("set_dps_uds " + String(repeating: "c", count: 64))
            transcript.received(Array("INFO: Set DPS UDS ".utf8))
            transcript.received(Array("successfully.\r\nnext".utf8))
            transcript.note("board unplugged")
        }
        let text = try String(contentsOfFile: path, encoding: .utf8)
        let lines = text.split(separator: "\n").map(String.init)
        #expect(lines.count == 4)
        #expect(lines[0].hasSuffix(" > set_dps_uds ****"))
        #expect(lines[1].hasSuffix(" < INFO: Set DPS UDS successfully."))
        #expect(lines[2].hasSuffix(" < next"))
        #expect(lines[3].hasSuffix(" * board unplugged"))
        #expect(!text.contains("cccc"))
        // ISO 8601 UTC timestamp with milliseconds first.
        #expect(lines[0].range(of: #"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z "#, options: .regularExpression) != nil)
        var info = stat()
        #expect(stat(path, &info) == 0 && info.st_mode & 0o777 == 0o600)
    }

    /// The board echoes `set_az_iothub` in clear, and in `--raw` mode every typed
    /// line comes back as echo after the prompt: the transcript masks those lines.
    @Test func transcriptMasksEchoedSecrets() throws {
        let directory = try ReplTemporaryDirectory()
        let path = directory.path + "/t.log"
        do {
            let transcript = try ReplTranscript(path: path)
            transcript.received(Array("\r\n# set_az_iothub HostName=h;DeviceId=d;SharedAccessKey=SECRETKEY123\r\n".utf8))
            transcript.received(Array("INFO: Set Azure Iot hub connection string successfully.\r\n# set_az_iotdps Id".utf8))
            transcript.note("board unplugged")  // flushes the partial echo
            transcript.received(Array(" - set_az_iothub: Set IoT Hub device connection string.\r\n".utf8))
        }
        let text = try String(contentsOfFile: path, encoding: .utf8)
        let lines = text.split(separator: "\n").map(String.init)
        #expect(lines.count == 6)
        #expect(lines[1].hasSuffix(" < # set_az_iothub ****"))
        #expect(lines[2].hasSuffix(" < INFO: Set Azure Iot hub connection string successfully."))
        #expect(lines[3].hasSuffix(" < # set_az_iotdps ****"))
        #expect(lines[5].hasSuffix(" <  - set_az_iothub: Set IoT Hub device connection string."))
        #expect(!text.contains("SECRETKEY") && !text.contains("Id\n"))
    }

    // MARK: Framing

    /// Feeds `bytes` split at `cuts` and returns what was shown and what came after.
    private func frame(_ bytes: [UInt8], echo: String, cuts: [Int], untilReboot: Bool = false)
        -> (shown: [UInt8], after: [UInt8], state: ConsoleFramer.State)
    {
        var framer = ConsoleFramer(echo: Array(echo.utf8), untilReboot: untilReboot)
        var shown: [UInt8] = []
        var after: [UInt8] = []
        var start = 0
        for cut in cuts + [bytes.count] where cut >= start {
            for event in framer.feed(Array(bytes[start..<cut])) {
                if case .reply(let s) = event { shown += s }
                if case .after(let a) = event { after += a }
            }
            start = cut
        }
        return (shown, after, framer.state)
    }

    @Test func framesEchoReplyAndPromptAtEverySplit() {
        let wire = Array("\r\n# version\r\nDevKitSDK version: 1.6.2\r\nWIFI version: unknown\r\n\r\n# extra".utf8)
        let reply = Array("DevKitSDK version: 1.6.2\r\nWIFI version: unknown\r\n".utf8)
        for first in 0...wire.count {
            for second in [first, min(wire.count, first + 1), min(wire.count, first + 7)] {
                let result = frame(wire, echo: "version", cuts: [first, second])
                #expect(result.shown == reply, "split at \(first), \(second)")
                #expect(result.after == Array("extra".utf8))
                #expect(result.state == .done)
            }
        }
    }

    @Test func maskedEchoIsNotShown() {
        let echo = "set_dps_uds " + String(repeating: "*", count: 64)
        let wire = Array((echo + "\r\nInvalid UDS.\r\nINFO: Set DPS UDS successfully.\r\n\r\n# ").utf8)
        let result = frame(wire, echo: echo, cuts: [5, 40])
        #expect(String(decoding: result.shown, as: UTF8.self) == "Invalid UDS.\r\nINFO: Set DPS UDS successfully.\r\n")
        #expect(result.state == .done)
    }

    @Test func exitEndsAtReboot() {
        let wire = Array("exit\r\nReboot\r\n\r\n****".utf8)
        let result = frame(wire, echo: "exit", cuts: [9], untilReboot: true)
        #expect(String(decoding: result.shown, as: UTF8.self) == "Reboot\r\n")
        #expect(result.after == Array("\r\n****".utf8))
        #expect(result.state == .done)
    }

    @Test func unfinishedReplyHoldsBackAPossiblePrompt() {
        var framer = ConsoleFramer(echo: Array("help".utf8), untilReboot: false)
        let shown = framer.feed(Array("help\r\nline\r\n".utf8))
        // `\r\n` may begin the prompt: held until the next bytes decide.
        #expect(shown == [.echo(Array("help\r\n".utf8)), .reply(Array("line".utf8))])
        let more = framer.feed(Array("next\r\n".utf8))
        #expect(more == [.reply(Array("\r\nnext".utf8))])
        #expect(framer.state == .reply)
    }

    /// The transcript's board lines: a secret command's echo, a value quoted back in
    /// an error (`--raw` knows no typed secret), and what a sketch prints, masked by
    /// its shape; control characters escaped.
    @Test func transcriptBoardLinesAreMasked() {
        func logged(_ text: String) -> String { ReplTranscript.maskedBoardLine(Array(text.utf8)) }
        #expect(logged("# set_wifipwd hunter22") == "# set_wifipwd ****")
        #expect(logged("Invalid set_wifipwd value: RawEcho55") == "Invalid set_wifipwd value: ***")
        #expect(logged("Invalid set_az_iothub value: HostName=h;SharedAccessKey=abc=") == "Invalid set_az_iothub value: ***")
        #expect(logged("HostName=h;DeviceId=d;SharedAccessKey=c2VjcmV0==") == "HostName=h;DeviceId=d;SharedAccessKey=***")
        #expect(logged("uds=" + String(repeating: "ab", count: 32)) == "uds=***")
        #expect(logged("Wi-Fi password: MonPw123") == "Wi-Fi password: ***")
        #expect(logged("\u{1B}[31mred") == "\\u{1B}[31mred")
        #expect(logged("DevKitSDK version: 1.6.2") == "DevKitSDK version: 1.6.2")
    }

    @Test func unsolicitedOutputIsMaskedAndEscaped() {
        var output = ReplUnsolicitedOutput()
        let shown = output.feed(Array("SharedAccessKey=c2VjcmV0==\r\n\u{1B}]0;title\u{07}\r\n".utf8))
        #expect(String(decoding: shown, as: UTF8.self) == "SharedAccessKey=***\r\n\\u{1B}]0;title\\u{7}\r\n")
        _ = output.feed(Array("pwd=secret1".utf8))
        #expect(String(decoding: output.flush(), as: UTF8.self) == "pwd=***\r\n")
    }

    /// Local commands take paths as people type them: quoted or escaped spaces, `~/`.
    @Test func localCommandWordsKeepQuotedSpacesAndExpandHome() throws {
        let home = try #require(getenv("HOME").map { String(cString: $0) })
        #expect(ReplSession.localWords(#":uds generate "/tmp/sp dir/u.hex""#) == [":uds", "generate", "/tmp/sp dir/u.hex"])
        #expect(ReplSession.localWords(#":uds generate /tmp/sp\ dir/u.hex"#) == [":uds", "generate", "/tmp/sp dir/u.hex"])
        #expect(ReplSession.localWords(":uds generate ~/u.hex") == [":uds", "generate", home + "/u.hex"])
        #expect(ReplSession.localWords(":uds generate a~/u.hex") == [":uds", "generate", "a~/u.hex"])
        #expect(ReplSession.localWords(#":cert --uds-file "/tmp/a b" --mac a4cf120b9e31"#)
            == [":cert", "--uds-file", "/tmp/a b", "--mac", "a4cf120b9e31"])
        #expect(ReplSession.localWords(#":uds generate "open"#) == nil)
    }

    @Test func unsolicitedOutputComesInWholeLinesWithoutThePrompt() {
        var output = ReplUnsolicitedOutput()
        #expect(output.feed(Array("\r\n****\r\n** MXChip".utf8)) == Array("****\r\n".utf8))
        #expect(output.hasPartialLine)
        #expect(output.flush() == Array("** MXChip\r\n".utf8))
        #expect(output.feed(Array("\r\n# ".utf8)).isEmpty)
        #expect(!output.hasPartialLine)
        #expect(output.flush().isEmpty)
    }
}
