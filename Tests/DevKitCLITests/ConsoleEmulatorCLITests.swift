import DevKitTestSupport
import Foundation
import Testing
import VirtualDevKit

let cliUDS = "A0B1C2D3E4F5061728394A5B6C7D8E9FA0B1C2D3E4F5061728394A5B6C7D8E9F"

@Suite("devkit one-shot commands against the virtual DevKit")
struct ConsoleEmulatorCLITests {
    func json(_ text: String) throws -> [String: Any] {
        try #require(JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
    }

    @Test func setUDSFromFileAndStdin() throws {
        let kit = try startedKit()
        defer { kit.stop() }
        let directory = consoleTestDirectory()
        defer { consoleRemoveTree(directory) }
        try (cliUDS + "\n").write(toFile: directory + "/u", atomically: false, encoding: .utf8)
        let result = try ConsoleCLIProcess.run(["set-uds", "--port", kit.devicePath, "--uds-file", directory + "/u"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(kit.state.uds == cliUDS.lowercased())
        #expect(!result.stdout.contains(cliUDS) && !result.stdout.lowercased().contains(cliUDS.lowercased()))

        let other = String(repeating: "5a", count: 32)
        let piped = try ConsoleCLIProcess.run(["set-uds", "--port", kit.devicePath, "--uds-file", "-", "--json"], stdin: other)
        #expect(piped.status == 0, "\(piped.stderr)")
        #expect(kit.state.uds == other)
        #expect(try json(piped.stdout)["stored"] as? Bool == true)
    }

    @Test func generatedUDSIsSavedAndStored() throws {
        let kit = try startedKit()
        defer { kit.stop() }
        let directory = consoleTestDirectory()
        defer { consoleRemoveTree(directory) }
        let file = directory + "/new.uds"
        let result = try ConsoleCLIProcess.run(["set-uds", "--port", kit.devicePath, "--generate", "--save", file, "--json"])
        #expect(result.status == 0, "\(result.stderr)")
        let saved = try #require(consoleReadText(file))
        #expect(consoleFileMode(file) == 0o600)
        #expect(saved == (kit.state.uds ?? "?") + "\n")
        #expect(try json(result.stdout)["uds_file"] as? String == file)
        #expect(!result.stdout.contains(kit.state.uds ?? "?"))
    }

    @Test func infoAndInfoReboot() throws {
        let kit = try startedKit(.init(macAddress: "0123456789ab", firmwareVersion: "1.10.0", wifiVersion: nil))
        defer { kit.stop() }
        let plain = try ConsoleCLIProcess.run(["info", "--port", kit.devicePath, "--json"])
        #expect(plain.status == 0, "\(plain.stderr)")
        let info = try json(plain.stdout)
        #expect(info["firmware_version"] as? String == "1.10.0")
        #expect(info["wifi_version"] is NSNull)
        #expect(info["mac_address"] is NSNull)

        let rebooted = try ConsoleCLIProcess.run(["info", "--port", kit.devicePath, "--reboot"])
        #expect(rebooted.status == 0, "\(rebooted.stderr)")
        #expect(rebooted.stdout.contains("MAC address:       0123456789ab"))
        #expect(rebooted.stdout.contains("Registration ID:   az-0123456789abv1v10v0"))
        #expect(kit.mode == .user)
    }

    @Test func setWiFiAndConnectionString() throws {
        let kit = try startedKit()
        defer { kit.stop() }
        let wifi = try ConsoleCLIProcess.run(
            ["set-wifi", "--port", kit.devicePath, "--ssid", "Lab Net", "--password-file", "-"], stdin: "s3cret pass\n")
        #expect(wifi.status == 0, "\(wifi.stderr)")
        #expect(kit.state.wifiSSID == "Lab Net")
        #expect(kit.state.wifiPassword == "s3cret pass")
        #expect(!wifi.stdout.contains("s3cret"))

        let cs = "HostName=hub.azure-devices.net;DeviceId=dev1;SharedAccessKey=c2VjcmV0a2V5c2VjcmV0a2V5MTIzNA=="
        let set = try ConsoleCLIProcess.run(["set-connection-string", "--port", kit.devicePath, "--file", "-", "--json"], stdin: cs + "\n")
        #expect(set.status == 0, "\(set.stderr)")
        #expect(kit.state.connectionString == cs)
        #expect(try json(set.stdout)["kind"] as? String == "hub")
        #expect(!set.stdout.contains("c2VjcmV0"))
    }

    static let faults: [(String, VirtualDevKitConfiguration, Int32, String)] = [
        ("EEPROM write failure", .init(faults: .init(eepromWriteFailure: true)), 74, "EEPROM zone 0x06"),
        ("verify failure", .init(faults: .init(verifyFailure: true)), 74, "read back"),
        ("unplug after 20 bytes", .init(faults: .init(unplugAfterReceivedBytes: 20)), 69, "disconnected"),
        // Booted before devkit opened the port: its boot text was heard by nobody
        // (as on a real board), so the board is silent. The session tests see the
        // banner and the AP line, with the port open across the reset.
        // Silence is not called user mode (issue 12); the mode is the first cause.
        ("user mode", .init(mode: .user), 69, "no answer from the board: no console prompt, nothing came back. Likely causes: the board is not in configuration mode (hold button A and press reset)"),
        ("AP mode", .init(mode: .ap), 69, "no answer from the board: no console prompt, nothing came back. Likely causes: the board is not in configuration mode (hold button A and press reset)"),
        ("line noise", .init(faults: .init(lineNoiseBytes: 500)), 0, ""),
        ("slow secure element", .init(faults: .init(secureElementWriteDelay: .milliseconds(300))), 0, ""),
        ("115200 pacing", .init(pacingBaudRate: 115_200), 0, ""),
    ]

    @Test("each fault → its exit code and message, bounded", arguments: faults)
    func fault(name: String, configuration: VirtualDevKitConfiguration, status: Int32, message: String) throws {
        let kit = try startedKit(configuration)
        defer { kit.stop() }
        let start = ContinuousClock.now
        let result = try ConsoleCLIProcess.run(["set-uds", "--port", kit.devicePath, "--uds-file", "-"], stdin: cliUDS, timeout: 60)
        #expect(result.status == status, "\(name): \(result.stderr)")
        #expect(message.isEmpty ? result.stderr.isEmpty : result.stderr.contains(message), "\(name): \(result.stderr)")
        #expect(!result.stderr.lowercased().contains(cliUDS.lowercased()))
        #expect(ContinuousClock.now - start < .seconds(30))
        if status == 0 { #expect(kit.state.uds == cliUDS.lowercased()) }
    }

    @Test("two devkit processes on one port: the second fails at once")
    func twoProcesses() throws {
        // The first devkit holds the port for as long as the test needs (a monitor
        // with a long --timeout, not an `info` whose 3 s prompt wait a stalled machine
        // could outlast); the line in raw mode says it has the port, locked first.
        let pty = try PseudoTerminal()
        let first = try BackgroundDevkit(["monitor", "--port", pty.slavePath, "--timeout", "120"])
        #expect(first.waitUntilRaw(pty), "the first devkit never configured the port")

        let start = ContinuousClock.now
        let second = try ConsoleCLIProcess.run(["info", "--port", pty.slavePath], timeout: 60)
        // Refused (75), not a prompt wait that ran out (69); and not after waiting for
        // the port to be free (120 s).
        #expect(ContinuousClock.now - start < .seconds(30))
        #expect(second.status == 75, "\(second.stderr)")
        #expect(second.stderr.contains("in use by PID \(first.process.processIdentifier)"), "\(second.stderr)")
    }
}
