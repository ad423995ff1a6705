import Crypto
import DevKitConsole
import DevKitModel
import DevKitRegistry
import DevKitWorkflows
import DevKitTestSupport
import Foundation
import SerialPort
import Synchronization
import Testing
import VirtualDevKit

/// A stand-in for the DiceRIoT generator in these workflow tests: a deterministic
/// function of (firmware, UDS, ID), so the tests can check the workflow passed the
/// right inputs. The real generator is checked end to end in ProvisionCLITests.
func recordingMeasurer(failWith error: (any Error)? = nil) -> FirmwareMeasurer {
    { firmware in
        if let error { throw error }
        return { uds, id in
            let digest = SHA256.hash(data: Data("\(firmware)|\(uds.hexString)|\(id)".utf8))
            let body = Data(digest).base64EncodedString()
            return AliasCertificate(
                pem: "-----BEGIN CERTIFICATE-----\n\(body)\n-----END CERTIFICATE-----\n",
                // The SHA-256 of the DER in the PEM, as the real generator's: file
                // ownership is decided by it.
                sha1: "SHA1-\(id)", sha256: SHA256.hash(data: Data(digest)).map { String(format: "%02X", $0) }.joined())
        }
    }
}

struct ProvisionFixture {
    let dir: String
    let registry: Registry
    let udsFile: String
    let udsHex = "c0ffee00" + String(repeating: "12", count: 28)
    var uds: UDS { try! UDS(hex: udsHex) }

    init() throws {
        var template = Array((NSTemporaryDirectory() + "devkit-provision-XXXXXX").utf8CString)
        dir = String(cString: mkdtemp(&template)!)
        registry = try Registry(path: dir + "/registry.sqlite")
        udsFile = dir + "/board.uds"
        try (udsHex.uppercased() + "\n").write(toFile: udsFile, atomically: false, encoding: .utf8)
        try "hunter2 with spaces\n".write(toFile: dir + "/wifi.secret", atomically: false, encoding: .utf8)
    }

    func request(uds: UDSSource? = nil, mac: String? = nil, wifi: Bool = false) -> ProvisionRequest {
        let mac = mac.map { try! MACAddress($0) }
        return ProvisionRequest(
            firmware: .elf(dir + "/fw.elf"), uds: uds ?? .file(udsFile), mac: mac,
            wifi: wifi ? WiFiSettings(ssid: "Bench Lab", passwordFile: dir + "/wifi.secret") : nil,
            outputDirectory: dir, dps: DPSSettings(name: "dps1", resourceGroup: "rg1"))
    }

    func cleanup() { try? FileManager.default.removeItem(atPath: dir) }
}

/// Runs `body` on a console session over the kit's pty.
func withKitSession<T>(_ kit: VirtualDevKit, _ body: (ConsoleSession) throws -> T) throws -> T {
    let port = try SerialPort(path: kit.devicePath)
    defer { port.close() }
    return try body(ConsoleSession(transport: port))
}

@Suite(.timeLimit(.minutes(5))) struct ProvisionWorkflowTests {
    @Test func provisionsEndToEndAgainstTheVirtualDevKit() throws {
        let f = try ProvisionFixture()
        defer { f.cleanup() }
        let kit = try startedKit(.init(macAddress: "a4cf120b9e31", firmwareVersion: "1.6.2"))
        defer { kit.stop() }
        var events: [ProvisionEvent] = []
        var workflow = ProvisionWorkflow(registry: f.registry, measure: recordingMeasurer()) { events.append($0) }
        // The UDS is in the registry, on disk, before the board has it (recorded and
        // marked sent in one commit). Every step is seen committed, in order.
        let committed = Mutex<[ProvisioningStep]>([])
        let registryPath = f.registry.path, uds = f.uds
        workflow.afterStep = { step, record in
            if step == .udsSent {
                #expect(kit.state.uds == nil)
                #expect(record.uds == uds)
                #expect(record.completedSteps == [.udsRecorded, .udsSent])
                let reopened = try? Registry(path: registryPath)
                #expect((try? reopened?.board(id: record.id!))??.uds == uds)
            }
            committed.withLock { $0.append(step) }
        }
        let result = try withKitSession(kit) { try workflow.run(f.request(wifi: true), session: $0) }
        #expect(committed.withLock { $0 } == [.udsSent, .udsConfirmed, .versionRead, .macRead, .enrollmentWritten])

        #expect(kit.state.uds == f.udsHex)
        #expect(kit.state.wifiSSID == "Bench Lab")
        #expect(kit.state.wifiPassword == "hunter2 with spaces")
        #expect(result.registrationID == "az-a4cf120b9e31v1v6v2")
        #expect(result.mac == "a4cf120b9e31")
        #expect(result.firmwareVersion == "1.6.2")
        #expect(result.certificatePath == f.dir + "/az-a4cf120b9e31v1v6v2.pem")
        let expected = try recordingMeasurer()(.elf(f.dir + "/fw.elf"))(f.uds, try RegistrationID("az-a4cf120b9e31v1v6v2"))
        #expect(FileManager.default.contents(atPath: result.certificatePath) == Data(expected.pem.utf8))
        let enrollment = try #require(FileManager.default.contents(atPath: result.enrollmentPath))
        #expect(enrollment == EnrollmentFile(registrationID: result.registrationID, certificatePEM: expected.pem,
                                             dps: DPSSettings(name: "dps1", resourceGroup: "rg1")).json())
        #expect(result.azCommand.contains("--dps-name dps1 --resource-group rg1"))

        let row = try #require(try f.registry.board(id: result.boardID))
        #expect(row.state == .done)
        #expect(row.completedSteps == ProvisioningStep.allCases)
        #expect(row.mac == "a4cf120b9e31" && row.firmwareVersion == "1.6.2")
        #expect(row.certificateSHA256 == expected.sha256)
        #expect(row.registrationID == "az-a4cf120b9e31v1v6v2")

        let stages = events.filter { $0.status == .done }.map(\.stage)
        #expect(stages == [.validate, .connect, .record, .uds, .wifi, .version, .mac, .certificate, .enrollment])
        #expect(!events.contains { $0.message.contains(f.udsHex) || $0.message.contains("hunter2") })
    }

    /// With DPS to enroll in, a registration ID DPS would refuse is refused before the
    /// board is touched: a given one, or a template whose shortest IDs already break
    /// DPS's rules; the derived ID and a sound template pass.
    @Test func anIDDPSWouldRefuseIsRefusedBeforeTheBoard() throws {
        func check(_ scheme: String?, id: String? = nil, serial: String? = nil) -> String? {
            var request = ProvisionRequest(
                firmware: .elf("unused"), uds: .generate, registrationID: try! id.map(RegistrationID.init),
                scheme: try! scheme.map(RegistrationIDScheme.init(parsing:)) ?? .derived, usbSerial: serial)
            request.dps = DPSSettings(connectionStringFile: "unused")
            do { try ProvisionWorkflow.checkForDPS(request) } catch { return "\(error)" }
            return nil
        }
        #expect(check(nil) == nil)
        #expect(check("bench-{mac}") == nil && check("{serial}-{mac}", serial: "066EFF") == nil)
        #expect(check(nil, id: String(repeating: "b", count: 64)) == nil)
        #expect(check(nil, id: String(repeating: "b", count: 65))?.contains("65 characters") == true)
        #expect(check(nil, id: "bench-")?.contains("starts or ends with '-'") == true)
        #expect(check("-{mac}")?.contains("template -{mac}") == true)
        // 53 + 12 = 65 characters with the MAC: too long for every board.
        #expect(check(String(repeating: "c", count: 53) + "{mac}")?.contains("65 characters") == true)
        #expect(check(String(repeating: "c", count: 52) + "{mac}") == nil)
        #expect(check(String(repeating: "c", count: 40) + "{serial}", serial: String(repeating: "d", count: 25)) != nil)
    }

    /// A sketch that does not print its MAC: the provisioning stops with
    /// `macNotInBootLog` (give --mac), not a console timeout that says to retry in
    /// configuration mode (walkthrough, helper-121); the row is kept at its MAC step.
    @Test func aSketchWithoutTheMACLineAsksForTheMAC() throws {
        let f = try ProvisionFixture()
        defer { f.cleanup() }
        let kit = try startedKit(.init(macAddress: "a4cf120b9e31", firmwareVersion: "1.6.2", faults: .init(sketchWithoutMACLog: true)))
        defer { kit.stop() }
        let workflow = ProvisionWorkflow(registry: f.registry, measure: recordingMeasurer())
        let port = try SerialPort(path: kit.devicePath)
        defer { port.close() }
        var timeouts = ConsoleSession.Timeouts()
        timeouts.bootLog = .seconds(2)
        let session = ConsoleSession(transport: port, timeouts: timeouts)
        #expect(throws: ProvisionError.macNotInBootLog) { try workflow.run(f.request(uds: .generate), session: session) }
        let row = try #require(try f.registry.allBoards().first)
        #expect(row.udsConfirmedAt != nil && row.mac == nil && row.nextStep == .macRead)

        // `--resume N --mac M` finishes it without the board (its sketch would again print no MAC).
        let result = try workflow.resume(
            boardID: try #require(row.id), request: f.request(uds: .generate, mac: "A4:CF:12:0B:9E:31"), session: nil)
        #expect(result.mac == "a4cf120b9e31" && result.registrationID == "az-a4cf120b9e31v1v6v2")
        let done = try #require(try f.registry.board(id: row.id!))
        #expect(done.state == .done && done.mac == "a4cf120b9e31" && done.macReadAt != nil)
    }

    @Test func givenMACSkipsTheReboot() throws {
        let f = try ProvisionFixture()
        defer { f.cleanup() }
        let kit = try startedKit()
        defer { kit.stop() }
        let workflow = ProvisionWorkflow(registry: f.registry, measure: recordingMeasurer())
        var request = f.request(uds: .generate, mac: "A4:CF:12:0B:9E:31")
        request.scheme = try RegistrationIDScheme(parsing: "bench-{mac}")
        let result = try withKitSession(kit) { try workflow.run(request, session: $0) }
        #expect(kit.mode == .configuration)
        #expect(result.registrationID == "bench-a4cf120b9e31")
        let row = try #require(try f.registry.board(id: result.boardID))
        #expect(row.uds.hexString == kit.state.uds)
        #expect(row.state == .done)
    }

    @Test(arguments: ["uds", "wifi", "output", "firmware", "mac", "id"])
    func invalidInputTouchesNeitherBoardNorRegistry(_ what: String) throws {
        let f = try ProvisionFixture()
        defer { f.cleanup() }
        let kit = try startedKit()
        defer { kit.stop() }
        var request = f.request(wifi: true)
        var measure = recordingMeasurer()
        switch what {
        case "uds":
            try "not-a-uds".write(toFile: f.udsFile, atomically: false, encoding: .utf8)
        case "wifi": request.wifi?.passwordFile = f.dir + "/missing"
        case "output":
            // A missing directory is created; one under a file cannot be.
            try "x".write(toFile: f.dir + "/a-file", atomically: false, encoding: .utf8)
            request.outputDirectory = f.dir + "/a-file/out"
        case "firmware": measure = recordingMeasurer(failWith: ProvisionError.firmware("fw.elf: no __start_riot_core"))
        // A bad MAC or ID cannot be put in a request at all: refused where it is parsed.
        case "mac":
            #expect(throws: InputError.self) { try MACAddress("a4cf12") }
            return
        default:
            #expect(throws: InputError.self) { try RegistrationID("Has_Upper") }
            return
        }
        let workflow = ProvisionWorkflow(registry: f.registry, measure: measure)
        #expect(throws: (any Error).self) { try withKitSession(kit) { try workflow.run(request, session: $0) } }
        #expect(kit.receivedByteCount == 0)
        #expect(kit.state.uds == nil)
        #expect(try f.registry.allBoards().isEmpty)
    }

    @Test func boardErrorIsRecordedAndTheBoardCanBeFinished() throws {
        let f = try ProvisionFixture()
        defer { f.cleanup() }
        var faults = VirtualDevKitConfiguration.Faults()
        faults.eepromWriteFailure = true
        let broken = try startedKit(.init(faults: faults))
        var events: [ProvisionEvent] = []
        let workflow = ProvisionWorkflow(registry: f.registry, measure: recordingMeasurer()) { events.append($0) }
        #expect(throws: ConsoleError.self) { try withKitSession(broken) { try workflow.run(f.request(), session: $0) } }
        broken.stop()
        let failed = try #require(try f.registry.unfinishedBoards().first)
        // The failed event carries the error for the front end, and says the facts
        // only: how to finish the board (`devkit provision --resume`) is the CLI's to say.
        let failure = try #require(events.last { $0.status == .failed })
        #expect(failure.boardID == failed.id && failure.error is ConsoleError)
        #expect(failure.message.contains("EEPROM") && failure.message.contains("board #\(failed.id!) is recorded with its UDS"))
        #expect(!failure.message.contains("--"))
        #expect(failed.state == .failed)
        #expect(failed.uds == f.uds)
        #expect(failed.completedSteps == [.udsRecorded, .udsSent])
        #expect(failed.error?.contains("EEPROM") == true)
        #expect(failed.error?.contains(f.udsHex) == false)

        // Finish it on a healthy board: the recorded UDS is the one stored.
        let kit = try startedKit()
        defer { kit.stop() }
        let result = try withKitSession(kit) {
            try workflow.resume(boardID: failed.id!, request: f.request(uds: .generate), session: $0)
        }
        #expect(result.boardID == failed.id)
        #expect(kit.state.uds == f.udsHex)
        #expect(try f.registry.board(id: failed.id!)?.state == .done)
        #expect(try f.registry.allBoards().count == 1)
    }

    @Test func resumeAfterTheBoardStepsNeedsNoBoard() throws {
        let f = try ProvisionFixture()
        defer { f.cleanup() }
        // A row as a crash right after mac_read leaves it.
        let id = try f.registry.recordNewBoard(uds: f.uds).id!
        for step in [ProvisioningStep.udsSent, .udsConfirmed] { try f.registry.markStep(step, boardID: id) }
        try f.registry.markStep(.versionRead, boardID: id, update: BoardUpdate(firmwareVersion: try FirmwareVersion("2.0.0")))
        try f.registry.markStep(.macRead, boardID: id, update: BoardUpdate(mac: try MACAddress("0123456789ab")))
        let workflow = ProvisionWorkflow(registry: f.registry, measure: recordingMeasurer())
        let result = try workflow.resume(boardID: id, request: f.request(uds: .generate), session: nil)
        #expect(result.registrationID == "az-0123456789abv2v0v0")
        let expected = try recordingMeasurer()(.elf(f.dir + "/fw.elf"))(f.uds, try RegistrationID(result.registrationID))
        #expect(FileManager.default.contents(atPath: result.certificatePath) == Data(expected.pem.utf8))

        // A row cut before the board steps needs the board.
        let early = try f.registry.recordNewBoard(uds: f.uds).id!
        let needsBoard = #expect(throws: ProvisionError.self) {
            try workflow.resume(boardID: early, request: f.request(uds: .generate), session: nil)
        }
        guard case .resumeNeedsBoard(early, _)? = needsBoard else {
            Issue.record("expected resumeNeedsBoard, got \(String(describing: needsBoard))")
            return
        }
    }

    /// A row whose board was provisioned again since (a later row with its MAC) is not
    /// resumed: its UDS sent again would replace the identity the board has now
    /// (review helper-97: `registry list`'s hint could point at such a row).
    @Test func resumeRefusesARowABoardWasProvisionedAgainSince() throws {
        let f = try ProvisionFixture()
        defer { f.cleanup() }
        let mac = try MACAddress("0123456789ab")
        let old = try f.registry.recordNewBoard(uds: f.uds, mac: mac).id!
        try f.registry.markStep(.udsSent, boardID: old)
        let newer = try f.registry.recordNewBoard(uds: try UDS(hex: String(repeating: "ab", count: 32)), mac: mac).id!
        let workflow = ProvisionWorkflow(registry: f.registry, measure: recordingMeasurer())
        let refused = #expect(throws: ProvisionError.self) {
            try workflow.resume(boardID: old, request: f.request(uds: .generate), session: nil)
        }
        #expect(refused.map { "\($0)" }?.contains("provisioned again as board #\(newer)") == true, "\(String(describing: refused))")
    }

    /// A recorded UDS goes only to the board it was recorded for.
    @Test func resumeRefusesAnotherBoard() throws {
        let f = try ProvisionFixture()
        defer { f.cleanup() }
        let workflow = ProvisionWorkflow(registry: f.registry, measure: recordingMeasurer())
        let id = try f.registry.recordNewBoard(uds: f.uds, usbSerial: "066EFF0001", alsoMark: [.udsSent]).id!
        var other = f.request(uds: .generate)
        other.usbSerial = "066EFF0002"
        do {
            _ = try workflow.resume(boardID: id, request: other, session: nil)
            Issue.record("resumed board #\(id) on another board")
        } catch let error as ProvisionError {
            #expect(error == .resumeOnAnotherBoard(boardID: id, recordedSerial: "066EFF0001", attachedSerial: "066EFF0002"))
            #expect("\(error)".contains("066EFF0001") && "\(error)".contains("066EFF0002"))
        }
        let withMAC = try f.registry.recordNewBoard(uds: f.uds, mac: try MACAddress("a4cf120b0001"), alsoMark: [.udsSent]).id!
        #expect(throws: ProvisionError.self) {
            try workflow.resume(boardID: withMAC, request: f.request(uds: .generate, mac: "a4cf120b0002"), session: nil)
        }
        #expect(try f.registry.board(id: id)?.usbSerial == "066EFF0001")
    }

    @Test func udsFromTheProfileDirectoryByUSBSerial() throws {
        let f = try ProvisionFixture()
        defer { f.cleanup() }
        let kit = try startedKit()
        defer { kit.stop() }
        try FileManager.default.createDirectory(atPath: f.dir + "/uds", withIntermediateDirectories: false)
        let serial = "0669FF555185754867102435"
        let uds = String(repeating: "7e", count: 32)
        try (uds + "\n").write(toFile: f.dir + "/uds/\(serial).uds", atomically: false, encoding: .utf8)
        let workflow = ProvisionWorkflow(registry: f.registry, measure: recordingMeasurer())
        var request = f.request(uds: .directory(f.dir + "/uds"))
        #expect(throws: ProvisionError.serialUnknown(directory: f.dir + "/uds")) {
            try withKitSession(kit) { try workflow.run(request, session: $0) }
        }
        #expect(kit.receivedByteCount == 0)
        request.usbSerial = serial
        let result = try withKitSession(kit) { try workflow.run(request, session: $0) }
        #expect(kit.state.uds == uds)
        #expect(try f.registry.board(id: result.boardID)?.usbSerial == serial)
    }
}
