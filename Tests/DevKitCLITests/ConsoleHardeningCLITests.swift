import DevKitTestSupport
import Foundation
import Testing
import VirtualDevKit

/// Issue 12, items 3, 4 and 12: a flooding board, a board that quotes secrets back,
/// a silent port, and a sketch that never logs its MAC, each against `devkit`.
@Suite("devkit against misbehaving virtual DevKits")
struct ConsoleHardeningCLITests {
    /// Every 8-character part of `secret` (ASCII case ignored) absent from `text`.
    func expectNoPart(of secret: String, in text: String, sourceLocation: SourceLocation = #_sourceLocation) {
        let s = Array(secret.lowercased())
        let t = text.lowercased()
        for start in 0...(s.count - 8) where t.contains(String(s[start..<(start + 8)])) {
            Issue.record("\"\(String(s[start..<(start + 8)]))\" of the secret was shown", sourceLocation: sourceLocation)
            return
        }
    }

    // MARK: Item 3

    /// A board that prints 10 MiB instead of a prompt: each command ends within its
    /// prompt budget (3 attempts of 1 s) with "no answer", exit 69. The process
    /// timeout (30 s, room for a stalled machine) is the bound; the old code took 35-47 s.
    @Test("a 10 MiB flood: info and set-uds end with exit 69 and a clear error", arguments: [["info"], ["set-uds", "--uds-file", "-"]])
    func flood(command: [String]) throws {
        let kit = try startedKit(.init(faults: .init(floodBytes: 10 << 20)))
        defer { kit.stop() }
        let result = try ConsoleCLIProcess.run(command + ["--port", kit.devicePath], stdin: cliUDS + "\n", timeout: 30)
        #expect(result.status == 69, "\(result.stderr)")
        #expect(result.stderr.contains("devkit: error: no answer from the board: no console prompt, only"), "\(result.stderr)")
        #expect(!result.stderr.contains("user mode"))
        #expect(kit.state.uds == nil)
    }

    // MARK: Item 4

    @Test("a secret the board quotes back is not printed (set-uds, set-wifi, set-connection-string)")
    func echoedSecretIsNotPrinted() throws {
        let kit = try startedKit(.init(faults: .init(echoSecretInErrors: true)))
        defer { kit.stop() }
        let uds = try ConsoleCLIProcess.run(["set-uds", "--port", kit.devicePath, "--uds-file", "-"], stdin: cliUDS + "\n")
        #expect(uds.status == 74, "\(uds.stderr)")
        #expect(uds.stderr.contains("the board rejected the value (\"Invalid set_dps_uds value: ***\")"), "\(uds.stderr)")
        expectNoPart(of: cliUDS, in: uds.stdout + uds.stderr)

        let password = "correct horse battery staple"
        let wifi = try ConsoleCLIProcess.run(
            ["set-wifi", "--port", kit.devicePath, "--ssid", "Lab", "--password-file", "-"], stdin: password + "\n")
        #expect(wifi.status == 74, "\(wifi.stderr)")
        expectNoPart(of: password, in: wifi.stdout + wifi.stderr)

        let cs = "HostName=hub.azure-devices.net;DeviceId=dev1;SharedAccessKey=c2VjcmV0a2V5c2VjcmV0a2V5MTIzNA=="
        let set = try ConsoleCLIProcess.run(["set-connection-string", "--port", kit.devicePath, "--file", "-"], stdin: cs + "\n")
        #expect(set.status == 74, "\(set.stderr)")
        expectNoPart(of: "SharedAccessKey=c2VjcmV0a2V5c2VjcmV0a2V5MTIzNA==", in: set.stdout + set.stderr)
    }

    @Test("devkit console: a quoted secret stays off the screen and out of --log")
    func echoedSecretInTheConsole() throws {
        let kit = try startedKit(.init(faults: .init(echoSecretInErrors: true)))
        defer { kit.stop() }
        let directory = consoleTestDirectory()
        defer { consoleRemoveTree(directory) }
        let log = directory + "/session.log"
        let result = try ConsoleCLIProcess.run(
            ["console", "--port", kit.devicePath, "--log", log], stdin: "set_dps_uds \(cliUDS)\nversion\n")
        let transcript = consoleReadText(log) ?? ""
        #expect(transcript.contains("Invalid set_dps_uds value: ***"), "\(transcript)")
        #expect(result.stdout.contains("Invalid set_dps_uds value: ***"), "\(result.stdout)")
        #expect(transcript.contains("DevKitSDK version"), "the session went on")
        expectNoPart(of: cliUDS, in: result.stdout + result.stderr + transcript)
    }

    // MARK: Item 12

    @Test("a silent port is 'no answer from the board' with the likely causes, not user mode", arguments: [["info"], ["set-uds", "--uds-file", "-"]])
    func silentPort(command: [String]) throws {
        let kit = try startedKit(.init(faults: .init(silent: true)))
        defer { kit.stop() }
        let result = try ConsoleCLIProcess.run(command + ["--port", kit.devicePath], stdin: cliUDS + "\n")
        #expect(result.status == 69, "\(result.stderr)")
        #expect(result.stderr.contains("devkit: error: no answer from the board: no console prompt, nothing came back"), "\(result.stderr)")
        for cause in ["hold button A and press reset", "wrong port", "another program holds the board", "ModemManager"] {
            #expect(result.stderr.contains(cause), "\(cause): \(result.stderr)")
        }
        #expect(!result.stderr.contains("user mode"))
    }

    @Test("info --reboot with a sketch that never logs its MAC: says what it waits for, --timeout shortens it")
    func rebootWaitIsAnnouncedAndBounded() throws {
        let kit = try startedKit(.init(faults: .init(sketchWithoutMACLog: true)))
        defer { kit.stop() }
        let start = ContinuousClock.now
        let result = try ConsoleCLIProcess.run(["info", "--port", kit.devicePath, "--reboot", "--timeout", "2"], timeout: 120)
        let elapsed = start.duration(to: .now)
        #expect(result.status == 75, "\(result.stderr)")
        let lines = result.stderr.split(separator: "\n")
        #expect(lines.contains { $0.hasPrefix("devkit: the board is rebooting; waiting up to 2 s for its boot log to print `DevKit MAC Address:`") },
                "\(result.stderr)")
        #expect(result.stderr.contains("timed out after 2 s waiting for a `DevKit MAC Address:` line"), "\(result.stderr)")
        #expect(elapsed < .seconds(15), "the 30 s default was not shortened: \(elapsed)")
        #expect(kit.mode == .user)
    }

    @Test("info --timeout without --reboot is a usage error")
    func timeoutNeedsReboot() throws {
        let result = try ConsoleCLIProcess.run(["info", "--port", "/dev/null", "--timeout", "2"])
        #expect(result.status == 64, "\(result.stderr)")
        #expect(result.stderr.contains("--reboot"))
    }
}

/// `set-uds --generate-uds` without --save names the file after the second: a second
/// board in that second gets `-2` instead of failing (73) on the first one's file.
@Suite("set-uds --generate-uds's default file")
struct GeneratedUDSFileNameTests {
    @Test("a default name taken already: the next free one, the board stored once")
    func takenNameGetsASuffix() throws {
        let kit = try startedKit()
        defer { kit.stop() }
        let directory = consoleTestDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        // Every second of the next 30 already has its file, as after another board.
        let now = time(nil)
        var taken: Set<String> = []
        for offset in -1...30 {
            var t = now + offset
            var parts = tm()
            gmtime_r(&t, &parts)
            let name = String(format: "uds-%04d%02d%02dT%02d%02d%02dZ.hex", parts.tm_year + 1900, parts.tm_mon + 1,
                              parts.tm_mday, parts.tm_hour, parts.tm_min, parts.tm_sec)
            try "taken\n".write(toFile: directory + "/" + name, atomically: false, encoding: .utf8)
            taken.insert(name)
        }
        let result = try TestProcess.run(
            ["/bin/sh", "-c", "cd '\(directory)' && exec '\(TestProcess.devkitBinary)' set-uds --port '\(kit.devicePath)' --generate-uds --json"],
            timeout: 120)
        #expect(result.status == 0, "\(result.stderr)")
        let made = try FileManager.default.contentsOfDirectory(atPath: directory).filter { !taken.contains($0) }
        #expect(made.count == 1 && made[0].hasSuffix("Z-2.hex"), "\(made)")
        if let file = made.first {
            let saved = try String(contentsOfFile: directory + "/" + file, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(kit.state.uds == saved.lowercased(), "the board holds the UDS in the new file")
        }
        #expect(result.stdout.contains("Z-2.hex"), "\(result.stdout)")
    }
}

/// Issue 12 item 11: another ST board behind the shared USB ID is left alone.
@Suite("devkit against a board that is not a DevKit")
struct NotADevKitCLITests {
    @Test("set-uds on another ST board's shell: exit 69, 'not a DevKit', no set_ line sent")
    func setUDSLeavesItAlone() throws {
        let kit = try startedKit(.init(faults: .init(notADevKit: true)))
        defer { kit.stop() }
        let result = try ConsoleCLIProcess.run(["set-uds", "--uds-file", "-", "--port", kit.devicePath], stdin: cliUDS + "\n", timeout: 120)
        #expect(result.status == 69, "\(result.stderr)")
        #expect(result.stderr.contains("devkit: error: not a DevKit"), "\(result.stderr)")
        #expect(result.stderr.contains("left alone"), "\(result.stderr)")
        #expect(!kit.shellLines.contains { $0.hasPrefix("set_") }, "\(kit.shellLines)")
    }

    @Test("info on another ST board's shell: exit 69 'not a DevKit', as set-uds (not 74, an I/O error)")
    func infoSaysNotADevKit() throws {
        let kit = try startedKit(.init(faults: .init(notADevKit: true)))
        defer { kit.stop() }
        for json in [false, true] {
            let result = try ConsoleCLIProcess.run(["info", "--port", kit.devicePath] + (json ? ["--json"] : []), timeout: 120)
            #expect(result.status == 69, "\(result.stderr)")
            #expect(result.stderr.contains("not a DevKit"), "\(result.stderr)")
        }
    }
}
