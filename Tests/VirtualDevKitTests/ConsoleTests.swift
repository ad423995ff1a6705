import Foundation
import SerialPort
import Testing
@testable import VirtualDevKit

@Suite("Virtual DevKit console, byte for byte over a real pty")
struct ConsoleTests {
    @Test func bootsIntoTheConfigurationConsole() throws {
        let bench = try Bench()
        let host = try Host(bench.kit)
        bench.kit.reset(into: .configuration)
        #expect(try host.awaitPrompt() == Expected.banner + Expected.help + Expected.prompt)
        #expect(bench.kit.mode == .configuration)
    }

    @Test func whatItPrintedBeforeTheHostOpenedIsNotReplayed() throws {
        let bench = try Bench()
        #expect(bench.kit.waitUntilIdle())  // booted, with nobody listening
        let host = try Host(bench.kit)
        #expect(try host.drain(for: .milliseconds(200)).isEmpty)
        #expect(try host.run("") == Expected.prompt)
    }

    @Test func helpAndUnknownCommands() throws {
        let bench = try Bench()
        let host = try Host(bench.kit)
        try host.sync()
        #expect(try host.run("help") == "help\r\n" + Expected.help + Expected.prompt)
        #expect(try host.run("flash") == "flash\r\nError:Invalid command: flash\r\n" + Expected.prompt)
    }

    @Test func versionReportsTheConfiguredFirmware() throws {
        let bench = try Bench { c, _ in
            c.firmwareVersion = "2.10.7"
            c.wifiVersion = nil
        }
        let host = try Host(bench.kit)
        try host.sync()
        #expect(
            try host.run("version")
                == "version\r\nDevKitSDK version: 2.10.7\r\nMico version: 31620002.049\r\n"
                + "mbed-os version: 5.4.3\r\nmbed TLS version: 2.6.0\r\nWIFI version: unknown\r\n"
                + Expected.prompt)
    }

    @Test func scanListsNetworksOrNone() throws {
        let bench = try Bench { c, _ in c.networks = ["Lab", "Guest net"] }
        let host = try Host(bench.kit)
        try host.sync()
        #expect(try host.run("scan") == "scan\r\nAvailable networks:\r\n  Lab\r\n  Guest net\r\n" + Expected.prompt)

        let empty = try Bench { c, _ in c.networks = [] }
        let other = try Host(empty.kit)
        try other.sync()
        #expect(try other.run("scan") == "scan\r\nNo available network.\r\n" + Expected.prompt)
    }

    @Test func setWifiSSIDLimitsAndQuoting() throws {
        let bench = try Bench()
        let host = try Host(bench.kit)
        try host.sync()
        #expect(try host.run("set_wifissid") == "set_wifissid\r\nUsage: set_wifissid <SSID>. Please provide the SSID of the Wi-Fi.\r\n" + Expected.prompt)
        let long = String(repeating: "s", count: 32)
        #expect(try host.run("set_wifissid \(long)") == "set_wifissid \(long)\r\nInvalid Wi-Fi SSID.\r\n" + Expected.prompt)
        #expect(bench.kit.state.wifiSSID == nil)
        let max = String(repeating: "s", count: 31)
        #expect(try host.run("set_wifissid \(max)") == "set_wifissid \(max)\r\nINFO: Set Wi-Fi SSID successfully.\r\n" + Expected.prompt)
        #expect(bench.kit.state.wifiSSID == max)
        #expect(try host.run("set_wifissid \"Lab Net\"") == "set_wifissid \"Lab Net\"\r\nINFO: Set Wi-Fi SSID successfully.\r\n" + Expected.prompt)
        #expect(bench.kit.state.wifiSSID == "Lab Net")
        _ = try host.run(#"set_wifissid my\ net\"s"#)
        #expect(bench.kit.state.wifiSSID == #"my net"s"#)
    }

    @Test func setWifiPasswordIsMaskedAndStored() throws {
        let bench = try Bench()
        let host = try Host(bench.kit)
        try host.sync()
        #expect(try host.run("set_wifipwd hunter2") == "set_wifipwd *******\r\nINFO: Set Wi-Fi password successfully.\r\n" + Expected.prompt)
        #expect(bench.kit.state.wifiPassword == "hunter2")
        // TAB becomes the space, and masking starts after it.
        #expect(try host.run("set_wifipwd\tab") == "set_wifipwd **\r\nINFO: Set Wi-Fi password successfully.\r\n" + Expected.prompt)
        // Too long: reported, then stored anyway.
        let long = String(repeating: "p", count: 64)
        #expect(
            try host.run("set_wifipwd \(long)")
                == "set_wifipwd " + String(repeating: "*", count: 64)
                + "\r\nInvalid Wi-Fi password.\r\nINFO: Set Wi-Fi password successfully.\r\n" + Expected.prompt)
        #expect(bench.kit.state.wifiPassword == long)
        // No argument clears it.
        #expect(try host.run("set_wifipwd") == "set_wifipwd\r\nINFO: Set Wi-Fi password successfully.\r\n" + Expected.prompt)
        #expect(bench.kit.state.wifiPassword == "")
    }

    @Test func connectionStrings() throws {
        let bench = try Bench()
        let host = try Host(bench.kit)
        try host.sync()
        #expect(try host.run("set_az_iothub") == "set_az_iothub\r\nUsage: set_az_iothub <connection string>. Please provide the connection string of the Azure IoT hub.\r\n" + Expected.prompt)
        #expect(try host.run("set_az_iotdps") == "set_az_iotdps\r\nUsage: set_az_iotdps <connection string>. Please provide the connection string of DPS.\r\n" + Expected.prompt)
        let hub = "HostName=h.azure-devices.net;DeviceId=d;SharedAccessKey=k="
        #expect(try host.run("set_az_iothub \(hub)") == "set_az_iothub \(hub)\r\nINFO: Set Azure Iot hub connection string successfully.\r\n" + Expected.prompt)
        #expect(bench.kit.state.connectionString == hub)
        let dps = "DPSEndpoint=global.azure-devices-provisioning.net;IdScope=0ne;DeviceId=d;SymmetricKey=k"
        #expect(try host.run("set_az_iotdps \(dps)") == "set_az_iotdps \(dps)\r\nINFO: Set DPS connection string successfully.\r\n" + Expected.prompt)
        #expect(bench.kit.state.connectionString == dps)
        let tooLong = String(repeating: "c", count: 512)
        #expect(try host.run("set_az_iothub \(tooLong)") == "set_az_iothub \(tooLong)\r\nInvalid Azure IoT hub connection string.\r\n" + Expected.prompt)
        #expect(try host.run("set_az_iotdps \(tooLong)") == "set_az_iotdps \(tooLong)\r\nInvalid DPS connection string.\r\n" + Expected.prompt)
        let longest = String(repeating: "c", count: 511)
        #expect(try host.run("set_az_iothub \(longest)").hasSuffix("INFO: Set Azure Iot hub connection string successfully.\r\n" + Expected.prompt))
        #expect(bench.kit.state.connectionString == longest)
    }

    @Test func setDPSUDSQuirkThenSuccess() throws {
        let bench = try Bench()
        let host = try Host(bench.kit)
        try host.sync()
        #expect(try host.run("set_dps_uds") == "set_dps_uds\r\nUsage: set_dps_uds [uds]. Please provide the UDS for DPS.\r\n" + Expected.prompt)
        #expect(
            try host.run("set_dps_uds \(Expected.uds)")
                == "set_dps_uds " + String(repeating: "*", count: 64)
                + "\r\nInvalid UDS.\r\nINFO: Set DPS UDS successfully.\r\n" + Expected.prompt)
        #expect(bench.kit.state.uds == Expected.uds)
        // 63 characters pass the firmware's off-by-one check silently.
        let short = String(Expected.uds.dropLast())
        #expect(try host.run("set_dps_uds \(short)") == "set_dps_uds " + String(repeating: "*", count: 63) + "\r\nINFO: Set DPS UDS successfully.\r\n" + Expected.prompt)
        #expect(bench.kit.state.uds == short)
    }

    @Test func enableSecure() throws {
        let bench = try Bench()
        let host = try Host(bench.kit)
        try host.sync()
        let usage = String(decoding: FirmwareText.enableSecureUsage, as: UTF8.self)
        #expect(usage.hasPrefix("Usage: enable_secure <secure level> <provided key>. 64-characters key is only needed for level 2. More detail:\r\n        1.\"enable_secure 1\""))
        #expect(try host.run("enable_secure") == "enable_secure\r\n" + usage + Expected.prompt)
        #expect(try host.run("enable_secure 12") == "enable_secure 12\r\n" + usage + Expected.prompt)
        #expect(try host.run("enable_secure 3") == "enable_secure 3\r\nINFO: Enable secure channel failed.\r\n" + Expected.prompt)
        #expect(try host.run("enable_secure 2 \(Expected.uds)") == "enable_secure 2 \(Expected.uds)\r\nINFO: Enable secure channel failed.\r\n" + Expected.prompt)
        #expect(try host.run("enable_secure 2 XYZ") == "enable_secure 2 XYZ\r\n" + usage + Expected.prompt)
        #expect(bench.kit.state.secureChannelEnabled == false)
        #expect(try host.run("enable_secure 1") == "enable_secure 1\r\nINFO: Enable secure channel successfully.\r\n" + Expected.prompt)
        #expect(bench.kit.state.secureChannelEnabled)
        #expect(try host.run("enable_secure 1") == "enable_secure 1\r\nINFO: Secure channel has already been enabled.\r\n" + Expected.prompt)
    }

    @Test func lineEditingRules() throws {
        let bench = try Bench()
        let host = try Host(bench.kit)
        try host.sync()
        // Empty line: only the prompt. "\r\n" works as an end of line: \n is ignored.
        #expect(try host.run("") == Expected.prompt)
        try host.send("\r\n")
        #expect(try host.read(through: Expected.prompt) == Expected.prompt)
        // Backspace and DEL erase with "\b \b"; on an empty line they do nothing.
        try host.send([0x08, 0x7f] + Array("helpx".utf8) + [0x7f] + [0x0d])
        #expect(try host.read(through: Expected.prompt) == "helpx\u{8} \u{8}\r\n" + Expected.help + Expected.prompt)
        try host.send(Array("versioq".utf8) + [0x08] + Array("n".utf8) + [0x0d])
        #expect(try host.read(through: Expected.prompt).hasPrefix("versioq\u{8} \u{8}n\r\nDevKitSDK version: 1.6.2\r\n"))
        // Other control bytes vanish; TAB is a space.
        try host.send([0x01, 0x1b] + Array("he".utf8) + [0x07] + Array("lp\tx".utf8) + [0x0d])
        #expect(try host.read(through: Expected.prompt) == "help x\r\n" + Expected.help + Expected.prompt)
        // Only whitespace: an empty line, after its echo.
        #expect(try host.run("   ") == "   " + Expected.prompt)
    }

    @Test func inputBufferOverflow() throws {
        let bench = try Bench()
        let host = try Host(bench.kit)
        try host.sync()
        // Sent in pieces after each echo, as a careful host does.
        let piece = [UInt8](repeating: UInt8(ascii: "a"), count: 128)
        var echoed: [UInt8] = []
        for _ in 0..<7 {
            try host.send(piece)
            echoed += try host.read(count: 128)
        }
        try host.send(piece)
        let last = try host.read(through: Array(Expected.prompt.utf8))
        #expect(echoed == [UInt8](repeating: UInt8(ascii: "a"), count: 896))
        #expect(String(decoding: last, as: UTF8.self) == String(repeating: "a", count: 128) + "\r\nError: input buffer overflow\r\n" + Expected.prompt)
        // The line was dropped: the console is at a fresh prompt.
        #expect(try host.run("") == Expected.prompt)
    }

    @Test func syntaxErrors() throws {
        let bench = try Bench()
        let host = try Host(bench.kit)
        try host.sync()
        // No "\r\n" before it: the firmware fails before it ends the echoed line.
        #expect(try host.run("set_wifissid \"open") == "set_wifissid \"open" + "Error:Syntax error\r\n" + Expected.prompt)
        #expect(try host.run("a b c d \"e") == "a b c d \"eError:Syntax error\r\n" + Expected.prompt)
        #expect(try host.run("a b c d e f") == "a b c d e f\r\nError:Invalid command: a\r\n" + Expected.prompt)
    }

    @Test func exitRebootsIntoUserModeWithTheBootLog() throws {
        let bench = try Bench { c, _ in
            c.macAddress = "a4cf120b9e31"
            c.firmwareVersion = "1.6.2"
        }
        let host = try Host(bench.kit)
        try host.sync()
        try host.send("exit\r")
        let head = try host.read(through: "Firmware Version: 1.6.2\r\n")
        let prefix = "exit\r\nReboot\r\n" + Expected.banner + Expected.userMode
        #expect(head.hasPrefix(prefix))
        let log = head.dropFirst(prefix.count)
        let pattern = #/^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} INFO:  DevKit MAC Address: a4cf120b9e31\r\n\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} INFO:  DevKit Firmware Version: 1\.6\.2\r\n$/#
        #expect(log.wholeMatch(of: pattern) != nil, "\(log)")
        #expect(bench.kit.mode == .user)
        // User mode ignores the console.
        try host.send("help\r")
        #expect(try host.drain(for: .milliseconds(300)).isEmpty)
        // A reset with button A held brings the console back.
        bench.kit.reset(into: .configuration)
        #expect(try host.awaitPrompt() == Expected.banner + Expected.help + Expected.prompt)
    }

    @Test func apModePrintsTheSoftAPLines() throws {
        let bench = try Bench { c, _ in
            c.mode = .ap
            c.macAddress = "0123456789ab"
        }
        let host = try Host(bench.kit)
        bench.kit.reset(into: .ap)
        let out = try host.read(through: "system settings.\r\n")
        #expect(out == Expected.banner + "Soft AP AZ-0123456789ab is running...\r\nConnect and visit \"http://192.168.0.1/\" to config the system settings.\r\n")
        try host.send("help\r")
        #expect(try host.drain(for: .milliseconds(300)).isEmpty)
    }

    @Test func userModeAtPowerUp() throws {
        let bench = try Bench { c, _ in c.mode = .user }
        #expect(bench.kit.waitUntilIdle())
        #expect(bench.kit.mode == .user)
        let host = try Host(bench.kit)
        bench.kit.reset(into: .user)
        let out = try host.read(through: "DevKit Firmware Version: 1.6.2\r\n")
        #expect(out.hasPrefix(Expected.banner + Expected.userMode))
        #expect(out.contains("INFO:  DevKit MAC Address: a4cf120b9e31\r\n"))
    }
}

@Suite("The firmware tokenizer")
struct TokenizerTests {
    func words(_ line: String) -> [String]? {
        switch ConsoleFirmware.tokenize(Array(line.utf8)) {
        case .syntaxError: return nil
        case .words(_, let argv): return argv.map { String(decoding: $0, as: UTF8.self) }
        }
    }

    @Test func splitsQuotesAndEscapes() {
        #expect(words("") == [])
        #expect(words("   ") == [])
        #expect(words("a  b") == ["a", "b"])
        #expect(words("set_wifissid \"my net\"") == ["set_wifissid", "my net"])
        #expect(words(#"x a\ b"#) == ["x", "a b"])
        #expect(words(#"x a\"b"#) == ["x", "a\"b"])
        #expect(words(#"x "a\"b""#) == ["x", "a\"b"])
        #expect(words("x a\"b") == ["x", "a\"b"])  // a quote inside a word is kept
        #expect(words("\"ab\"cd") == ["ab", "cd"])
        #expect(words("x \"") == nil)
        #expect(words("x \"abc") == nil)
    }

    @Test func stopsAfterFourWords() {
        #expect(ConsoleFirmware.tokenize(Array("a b c d e f".utf8)) == .words(argc: 5, argv: [[97], [98], [99], [100]]))
        #expect(ConsoleFirmware.tokenize(Array("a b c d \"e".utf8)) == .syntaxError)
        #expect(ConsoleFirmware.tokenize(Array("a b c d".utf8)) == .words(argc: 4, argv: [[97], [98], [99], [100]]))
    }
}
