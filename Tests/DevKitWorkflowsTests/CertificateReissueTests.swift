import DevKitModel
import DevKitRegistry
import DevKitWorkflows
import Foundation
import Synchronization
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
        // Board A provisioned twice (same MAC), board B twice (same USB serial, the
        // second time cut off before the board confirmed), C given --mac and cut off
        // right after the UDS went out.
        let a1 = try f.finishedBoard(uds: f.uds, mac: "a4cf120b0001")
        let a2 = try f.finishedBoard(uds: otherUDS, mac: "a4cf120b0001")
        let b1 = try f.finishedBoard(uds: f.uds, mac: "a4cf120b0002", serial: "066EFF0001")
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

    /// A fleet's rows are claimed a batch at a time, and a batch's claims are given
    /// back before the next is claimed: a command never holds a whole fleet (on a
    /// shared registry, thousands of rows would fill the server's lock table), and
    /// another station can take a board as soon as its batch is done.
    @Test func rowsAreClaimedABatchAtATime() throws {
        let f = try ProvisionFixture()
        defer { f.cleanup() }
        var ids: [Int64] = []
        for n in 0..<5 { ids.append(try f.finishedBoard(uds: f.uds, mac: "a4cf120b9e3\(n)")) }
        let out = f.dir + "/new"
        var reissue = CertificateReissue(registry: f.registry, factory: try recordingMeasurer()(.elf("/new.elf")))
        let claims = RowClaims(registry: f.registry, station: "line-1")
        reissue.claims = claims
        /// Which rows another run of the station (another thread) can claim now.
        let all = ids
        func freeRows() -> [Int64] {
            let free = Mutex<[Int64]>([])
            let done = DispatchSemaphore(value: 0)
            Thread {
                for id in all where (try? f.registry.claim(boards: [BoardClaimKeys.row(id)], station: "line-2")) != nil {
                    f.registry.release(boards: [BoardClaimKeys.row(id)])
                    free.withLock { $0.append(id) }
                }
                done.signal()
            }.start()
            done.wait()
            return free.withLock { $0 }
        }
        var batches: [[Int64]] = []
        var freeDuring: [[Int64]] = []
        try reissue.run(firmwareVersion: try FirmwareVersion("1.6.3"), outputDirectory: out, jobs: 2, batch: 2) { items in
            #expect(items.allSatisfy { (try? $0.result.get()) != nil })
            batches.append(items.map(\.boardID))
            #expect(claims.count == items.count)
            freeDuring.append(freeRows())
        }
        #expect(batches == [[ids[0], ids[1]], [ids[2], ids[3]], [ids[4]]])
        // Held: the batch's own rows only; the earlier batches' already given back.
        #expect(freeDuring == [Array(ids[2...]), [ids[0], ids[1], ids[4]], Array(ids[0..<4])])
        #expect(claims.count == 0)
        #expect(freeRows() == ids)
    }

    /// A board provisioned again after the listing (on another station, while an
    /// earlier batch was being re-issued) is skipped when its batch comes: its row
    /// is asked again under the claim, and the new row holds the board's UDS.
    @Test func aBoardProvisionedAgainAfterTheListingIsSkipped() throws {
        let f = try ProvisionFixture()
        defer { f.cleanup() }
        let first = try f.finishedBoard(uds: f.uds, mac: "a4cf120b9e31")
        let second = try f.finishedBoard(uds: f.uds, mac: "a4cf120b9e32")
        var reissue = CertificateReissue(registry: f.registry, factory: try recordingMeasurer()(.elf("/new.elf")))
        reissue.claims = RowClaims(registry: f.registry, station: "line-1")
        var results: [Int64: Result<ProvisionResult, CertificateReissue.ReissueError>] = [:]
        var again: Int64?
        try reissue.run(firmwareVersion: try FirmwareVersion("1.6.3"), outputDirectory: f.dir + "/new", batch: 1) { items in
            for item in items { results[item.boardID] = item.result }
            // Between the batches: the second board provisioned again, as a new row.
            if again == nil { again = try f.registry.recordNewBoard(uds: f.uds, mac: try MACAddress("a4cf120b9e32")).id }
        }
        #expect((try? results[first]?.get()) != nil)
        guard case .failure(let skipped)? = results[second] else {
            Issue.record("the old row of a board provisioned again was re-issued: \(String(describing: results[second]))")
            return
        }
        #expect(skipped.superseded && skipped.description.contains("provisioned again as #\(again!) (same MAC)"), "\(skipped)")
        #expect(try f.registry.board(id: second)?.firmwareVersion == "1.6.2", "the old row was changed")
    }
}

extension ProvisionFixture {
    /// A board recorded and marked through every step, firmware 1.6.2; its row ID.
    func finishedBoard(uds: UDS, mac: String, serial: String? = nil) throws -> Int64 {
        let id = try registry.recordNewBoard(uds: uds, usbSerial: serial).id!
        for step in ProvisioningStep.allCases.dropFirst() {
            let update: BoardUpdate = switch step {
            case .versionRead: BoardUpdate(firmwareVersion: try FirmwareVersion("1.6.2"))
            case .macRead: BoardUpdate(mac: try MACAddress(mac))
            default: BoardUpdate()
            }
            try registry.markStep(step, boardID: id, update: update)
        }
        return id
    }
}
