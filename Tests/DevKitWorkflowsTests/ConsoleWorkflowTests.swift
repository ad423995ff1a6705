import DevKitBoard
import DevKitConsole
import DevKitModel
import DevKitTestSupport
import DevKitWorkflows
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A minimal responsive console (echo with masking, a reply per line), for the
/// workflows' ordering and outcomes. The byte-exact console is VirtualDevKit's job.
final class MiniConsole: ConsoleTransport {
    private var pending: [UInt8] = []
    private var line: [UInt8] = []
    private(set) var lines: [String] = []
    private(set) var sendCount = 0
    /// What `version` prints: a DevKit's, so the identity check before any `set_`
    /// (issue 12 item 11) passes; it is recorded in `lines` like any other line.
    var versionReply = "DevKitSDK version: 1.6.2\r\nWIFI version: unknown"
    /// Output for a line (without the `\r\n` before it and the prompt after it);
    /// nil for `exit`-like lines that print no prompt.
    var reply: (String) -> (output: String, prompt: Bool)

    init(reply: @escaping (String) -> (output: String, prompt: Bool)) { self.reply = reply }

    func send(_ bytes: [UInt8], deadline: ContinuousClock.Instant) throws {
        sendCount += 1
        for byte in bytes {
            if byte == 0x0D {
                let text = String(decoding: line, as: UTF8.self)
                line.removeAll()
                if text.isEmpty {
                    pending += Array("\r\n# ".utf8)
                    continue
                }
                lines.append(text)
                let (output, prompt) = text == "version" ? (versionReply, true) : reply(text)
                pending += Array(("\r\n" + output + (prompt ? "\r\n# " : "")).utf8)
            } else {
                let masked = line.firstIndex(of: 0x20).map {
                    ["set_wifipwd", "set_dps_uds"].contains(String(decoding: line[..<$0], as: UTF8.self))
                } ?? false
                line.append(byte)
                pending.append(masked ? 0x2A : byte)
            }
        }
    }

    func receive(deadline: ContinuousClock.Instant) throws -> [UInt8] {
        defer { pending.removeAll() }
        return pending
    }
}

let miniBootLog = "Reboot\r\n\r\n** MXChip - Microsoft IoT Developer Kit **\r\n"
    + "2026-11-28 09:00:01 INFO:  DevKit MAC Address: a4cf120b9e31\r\n"
    + "2026-11-28 09:00:01 INFO:  DevKit Firmware Version: 1.6.2\r\n"

@Suite("Workflows over a console")
struct ConsoleWorkflowTests {
    @Test("--generate: the UDS is on disk (0600) before the board is sent it")
    func generatedUDSSavedFirst() throws {
        let directory = consoleTestDirectory()
        defer { consoleRemoveTree(directory) }
        let file = directory + "/board.uds"
        var onDiskWhenSent: String?
        let board = MiniConsole { line in
            if line.hasPrefix("set_dps_uds ") {
                onDiskWhenSent = consoleReadText(file)
                #expect(consoleFileMode(file) == 0o600)
                return ("Invalid UDS.\r\nINFO: Set DPS UDS successfully.", true)
            }
            return ("Error:Invalid command: \(line)", true)
        }
        let uds = try DevKitWorkflow(session: ConsoleSession(transport: board)).setGeneratedUDS(savingTo: file).hexString
        #expect(uds.utf8.count == 64)
        #expect(onDiskWhenSent == uds + "\n")
        #expect(board.lines == ["version", "set_dps_uds " + uds], "the identity check, then the UDS")
        // Only the file remains: no temporary left behind.
        var entries: [String] = []
        if let dir = opendir(directory) {
            while let entry = readdir(dir) {
                entries.append(withUnsafeBytes(of: entry.pointee.d_name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) })
            }
            closedir(dir)
        }
        #expect(Set(entries) == [".", "..", "board.uds"])
    }

    @Test("--generate never overwrites an existing file, and then sends nothing")
    func generateRefusesToClobber() throws {
        let directory = consoleTestDirectory()
        defer { consoleRemoveTree(directory) }
        let file = directory + "/old.uds"
        try SecretFile.writeNew(Array("old secret\n".utf8), to: file)
        let board = MiniConsole { _ in ("", true) }
        #expect(throws: WorkflowError.secretFileExists(path: file)) {
            try DevKitWorkflow(session: ConsoleSession(transport: board)).setGeneratedUDS(savingTo: file)
        }
        #expect(board.lines == ["version"], "only the read-only identity check")
        #expect(consoleReadText(file) == "old secret\n")
    }

    @Test func unwritableSaveFileSendsNothing() throws {
        let board = MiniConsole { _ in ("", true) }
        #expect(throws: WorkflowError.self) {
            try DevKitWorkflow(session: ConsoleSession(transport: board)).setGeneratedUDS(savingTo: "/nonexistent-dir/x.uds")
        }
        #expect(board.lines == ["version"], "only the read-only identity check")
    }

    @Test func infoWithReboot() throws {
        let board = MiniConsole { line in
            switch line {
            case "exit": return (miniBootLog, false)
            default: return ("", true)
            }
        }
        let info = try DevKitWorkflow(session: ConsoleSession(transport: board)).info(reboot: true)
        #expect(info.versions.firmwareVersion.text == "1.6.2")
        #expect(info.macAddress?.hex == "a4cf120b9e31")
        #expect(info.registrationID?.value == "az-a4cf120b9e31v1v6v2")
        #expect(board.lines == ["version", "exit"])
    }

    @Test func rebootIntoConfigurationModeIsReported() throws {
        let board = MiniConsole { line in
            switch line {
            case "exit": return ("Reboot\r\nConfiguration console:\r\n - help: Help document.", true)
            default: return ("", true)
            }
        }
        #expect(throws: WorkflowError.rebootedIntoConfigurationMode) {
            _ = try DevKitWorkflow(session: ConsoleSession(transport: board)).info(reboot: true)
        }
    }

    @Test("set-wifi validates both values before sending anything")
    func wifiValidatesFirst() throws {
        let board = MiniConsole { line in
            line.hasPrefix("set_wifissid") ? ("INFO: Set Wi-Fi SSID successfully.", true)
                : ("INFO: Set Wi-Fi password successfully.", true)
        }
        let workflow = DevKitWorkflow(session: ConsoleSession(transport: board))
        // A bad SSID is refused before anything is sent; a too-long password cannot
        // even be made.
        #expect(throws: ConsoleError.self) {
            try workflow.setWiFi(ssid: String(repeating: "s", count: 32), password: WiFiPassword("ok"))
        }
        #expect(throws: InputError.wifiPasswordTooLong(64)) { try WiFiPassword(String(repeating: "p", count: 64)) }
        #expect(board.sendCount == 0)
        try workflow.setWiFi(ssid: "Lab Net", password: WiFiPassword("pa ss"))
        #expect(board.lines == ["version", "set_wifissid Lab\\ Net", "set_wifipwd pa\\ ss"])
    }

    @Test func connectionStringKinds() throws {
        let board = MiniConsole { line in
            line.hasPrefix("set_az_iothub") ? ("INFO: Set Azure Iot hub connection string successfully.", true)
                : ("INFO: Set DPS connection string successfully.", true)
        }
        let workflow = DevKitWorkflow(session: ConsoleSession(transport: board))
        #expect(try workflow.setConnectionString(ConnectionString("HostName=h.azure-devices.net;DeviceId=d;SharedAccessKey=k=")) == .hub)
        #expect(try workflow.setConnectionString(ConnectionString("DPSEndpoint=global.azure-devices-provisioning.net;IdScope=0ne;DeviceId=d;SymmetricKey=k")) == .dps)
        #expect(throws: WorkflowError.self) { try workflow.setConnectionString(ConnectionString("Garbage=1")) }
        #expect(board.lines.map { $0.prefix(13) } == ["version", "set_az_iothub", "set_az_iotdps"])
    }
}

@Suite("Secret files and UDS generation")
struct SecretFileTests {
    @Test func readUDSTrimsAndLowercases() throws {
        let directory = consoleTestDirectory()
        defer { consoleRemoveTree(directory) }
        let uds = "0123456789ABCDEF0123456789abcdef0123456789ABCDEF0123456789abcdef"
        try SecretFile.writeNew(Array("  \(uds)\r\n\n".utf8), to: directory + "/u")
        #expect(try SecretFile.readUDS(directory + "/u").hexString == uds.lowercased())

        try SecretFile.writeNew(Array(("\(uds.dropLast())x\n").utf8), to: directory + "/bad")
        do {
            _ = try SecretFile.readUDS(directory + "/bad")
            Issue.record("accepted a bad UDS")
        } catch {
            #expect("\(error)".contains("64 hex digits"))
            #expect(!"\(error)".contains(String(uds.prefix(16))))
        }
        #expect(throws: WorkflowError.self) { try SecretFile.readUDS(directory + "/missing") }
    }

    @Test func passwordKeepsSpacesDropsLineEnd() throws {
        let directory = consoleTestDirectory()
        defer { consoleRemoveTree(directory) }
        try SecretFile.writeNew(Array(" pass word \r\n".utf8), to: directory + "/p")
        #expect(try SecretFile.readLine(directory + "/p") == " pass word ")
        try SecretFile.writeNew(Array("a\nb\n".utf8), to: directory + "/two")
        #expect(throws: WorkflowError.self) { try SecretFile.readLine(directory + "/two") }
    }

    @Test func writtenFilesAre0600() throws {
        let directory = consoleTestDirectory()
        defer { consoleRemoveTree(directory) }
        try SecretFile.writeNew(Array("x".utf8), to: directory + "/s")
        #expect(consoleFileMode(directory + "/s") == 0o600)
    }

    @Test func secretFilesAreParsedIntoTheirTypes() throws {
        let directory = consoleTestDirectory()
        defer { consoleRemoveTree(directory) }
        let long = String(repeating: "q", count: 64)
        try SecretFile.writeNew(Array((long + "\n").utf8), to: directory + "/pw")
        let error = #expect(throws: WorkflowError.self) { try SecretFile.readWiFiPassword(directory + "/pw") }
        #expect(error.map { "\($0)".contains("at most 63") && !"\($0)".contains(long) } == true)
        try SecretFile.writeNew(Array(" pa ss \n".utf8), to: directory + "/ok")
        #expect(try SecretFile.readWiFiPassword(directory + "/ok").secretValue == " pa ss ")
        try SecretFile.writeNew(Array("  HostName=h;SharedAccessKey=k\n".utf8), to: directory + "/cs")
        #expect(try SecretFile.readConnectionString(directory + "/cs").secretValue == "HostName=h;SharedAccessKey=k")
        try SecretFile.writeNew(Array("\n".utf8), to: directory + "/empty")
        #expect(throws: WorkflowError.self) { try SecretFile.readConnectionString(directory + "/empty") }
    }

    @Test func generatedUDSAreHexAndFresh() {
        let a = UDSGenerator.generate().hexString
        let b = UDSGenerator.generate().hexString
        #expect(a.utf8.count == 64)
        #expect(a.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) })
        #expect(a != b)
        struct Counter: RandomNumberGenerator {
            var n: UInt64 = 0x0123456789abcdef
            mutating func next() -> UInt64 { defer { n &+= 1 }; return n }
        }
        var counter = Counter()
        #expect(UDSGenerator.generate(using: &counter).hexString
            == "0123456789abcdef0123456789abcdf00123456789abcdf10123456789abcdf2")
    }
}
