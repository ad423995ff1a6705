import DevKitModel
import DevKitRegistry
import DevKitWorkflows
import Foundation
import Testing

@Suite struct CertificateReissueTests {
    @Test func reissuesEveryBoardWithAMACAndReportsTheOthers() throws {
        let f = try ProvisionFixture()
        defer { f.cleanup() }
        func board(_ mac: String?, id registrationID: String?, version: String = "1.6.2") throws -> Int64 {
            let id = try f.registry.recordNewBoard(uds: f.uds).id!
            for step in ProvisioningStep.allCases.dropFirst() {
                if step == .macRead && mac == nil { break }
                let update: BoardUpdate = switch step {
                case .versionRead: BoardUpdate(firmwareVersion: try FirmwareVersion(version))
                case .macRead: BoardUpdate(mac: try mac.map { try MACAddress($0) }, registrationID: try registrationID.map { try RegistrationID($0) })
                default: BoardUpdate()
                }
                try f.registry.markStep(step, boardID: id, update: update)
            }
            return id
        }
        let derived = try board("a4cf120b9e31", id: "az-a4cf120b9e31v1v6v2")
        let custom = try board("0123456789ab", id: "bench-7")
        let cut = try board(nil, id: nil)
        let out = f.dir + "/new"
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: false)
        let factory = try recordingMeasurer()(.elf("/new.elf"))
        let items = try CertificateReissue(registry: f.registry, factory: factory)
            .run(firmwareVersion: try FirmwareVersion("1.6.3"), outputDirectory: out)
        #expect(items.count == 3)

        let byID = Dictionary(uniqueKeysWithValues: items.map { ($0.boardID, $0.result) })
        let first = try #require(try byID[derived]?.get())
        #expect(first.registrationID == "az-a4cf120b9e31v1v6v3")
        #expect(FileManager.default.contents(atPath: out + "/az-a4cf120b9e31v1v6v3.pem")
                == Data(try factory(f.uds, try RegistrationID("az-a4cf120b9e31v1v6v3")).pem.utf8))
        let second = try #require(try byID[custom]?.get())
        #expect(second.registrationID == "bench-7")
        if case .failure(let e) = byID[cut] {
            #expect(e.remedy == .finishProvisioning(boardID: cut) && e.description.contains("no MAC recorded"))
        } else {
            Issue.record("a board without MAC was reissued")
        }
        let row = try #require(try f.registry.board(id: derived))
        #expect(row.firmwareVersion == "1.6.3")
        #expect(row.registrationID == "az-a4cf120b9e31v1v6v3")
        #expect(row.certificatePath == out + "/az-a4cf120b9e31v1v6v3.pem")
        #expect(row.state == .done)
    }

    /// A missing output directory is created before anything is written (as `cert`
    /// does); one that cannot be is an error that says so.
    @Test func createsAMissingOutputDirectory() throws {
        let f = try ProvisionFixture()
        defer { f.cleanup() }
        let reissue = CertificateReissue(registry: f.registry, factory: try recordingMeasurer()(.elf("/new.elf")))
        let out = f.dir + "/certs/2026"
        #expect(try reissue.run(firmwareVersion: try FirmwareVersion("1.6.3"), outputDirectory: out).isEmpty)
        var isDirectory: ObjCBool = false
        #expect(FileManager.default.fileExists(atPath: out, isDirectory: &isDirectory) && isDirectory.boolValue)
        try Data("x".utf8).write(to: URL(fileURLWithPath: f.dir + "/a-file"))
        do {
            _ = try reissue.run(firmwareVersion: try FirmwareVersion("1.6.3"), outputDirectory: f.dir + "/a-file/sub")
            Issue.record("an output directory under a file was accepted")
        } catch let error as ProvisionError {
            #expect("\(error)".contains("cannot be created"))
        }
    }

    /// Only the UDS a board confirmed, and only the latest record of a board: a board
    /// provisioned again holds the newer UDS, and a certificate from the older row,
    /// or from a UDS it never confirmed, would not be the one it presents.
    @Test func skipsSupersededAndUnconfirmedRows() throws {
        let f = try ProvisionFixture()
        defer { f.cleanup() }
        let otherUDS = try UDS(hex: String(repeating: "ab", count: 32))
        func done(_ uds: UDS, mac: String, serial: String?) throws -> Int64 {
            let id = try f.registry.recordNewBoard(uds: uds, usbSerial: serial).id!
            for step in ProvisioningStep.allCases.dropFirst() {
                let update: BoardUpdate = switch step {
                case .versionRead: BoardUpdate(firmwareVersion: try FirmwareVersion("1.6.2"))
                case .macRead: BoardUpdate(mac: try MACAddress(mac))
                default: BoardUpdate()
                }
                try f.registry.markStep(step, boardID: id, update: update)
            }
            return id
        }
        // Board A provisioned twice (same MAC), board B twice (same USB serial, the
        // second time cut off before the board confirmed), C given --mac and cut off
        // right after the UDS went out.
        let a1 = try done(f.uds, mac: "a4cf120b0001", serial: nil)
        let a2 = try done(otherUDS, mac: "a4cf120b0001", serial: nil)
        let b1 = try done(f.uds, mac: "a4cf120b0002", serial: "066EFF0001")
        let b2 = try f.registry.recordNewBoard(uds: otherUDS, usbSerial: "066EFF0001", alsoMark: [.udsSent]).id!
        let c = try f.registry.recordNewBoard(uds: otherUDS, mac: try MACAddress("a4cf120b0003"), alsoMark: [.udsSent]).id!

        let out = f.dir + "/new"
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: false)
        let factory = try recordingMeasurer()(.elf("/new.elf"))
        let items = try CertificateReissue(registry: f.registry, factory: factory)
            .run(firmwareVersion: try FirmwareVersion("1.6.3"), outputDirectory: out)
        let byID = Dictionary(uniqueKeysWithValues: items.map { ($0.boardID, $0.result) })

        // A: the newer row's certificate, from its own UDS.
        let a = try #require(try byID[a2]?.get())
        #expect(FileManager.default.contents(atPath: a.certificatePath)
                == Data(try factory(otherUDS, try RegistrationID("az-a4cf120b0001v1v6v3")).pem.utf8))
        for (older, newer) in [(a1, a2), (b1, b2)] {
            guard case .failure(let e) = byID[older] else {
                Issue.record("#\(older), superseded by #\(newer), was re-issued")
                continue
            }
            #expect(e.superseded && e.description.contains("#\(newer)"))
        }
        // B's newer row and C never confirmed their UDS: failures that say what to do.
        for unconfirmed in [b2, c] {
            guard case .failure(let e) = byID[unconfirmed] else {
                Issue.record("#\(unconfirmed), never confirmed, was re-issued")
                continue
            }
            #expect(!e.superseded && e.remedy == .finishProvisioning(boardID: unconfirmed))
            #expect(e.description.contains("never confirmed its UDS") && !e.description.contains("--"))
        }
        #expect(!FileManager.default.fileExists(atPath: out + "/az-a4cf120b0003v1v6v3.pem"))
        #expect(!FileManager.default.fileExists(atPath: out + "/az-a4cf120b0002v1v6v3.pem"))
        #expect(try f.registry.board(id: a1)?.firmwareVersion == "1.6.2")  // untouched
    }
}
