import DevKitModel
import DevKitRegistry
import DevKitWorkflows
import DevKitTestSupport
import Foundation
import GRDB
import Testing
import VirtualDevKit

/// Issue 12 item 8: a board's `<id>.pem` and `<id>.enrollment.json` never replace
/// another registry row's, and that is known before a new UDS reaches the board
/// whenever the registration ID is.
@Suite(.serialized, .timeLimit(.minutes(5))) struct FileOwnershipTests {
    static let mac = "a4cf120b9e31"
    static let derivedID = "az-a4cf120b9e31v1v6v2"

    func kit() throws -> VirtualDevKit { try startedKit(.init(macAddress: Self.mac, firmwareVersion: "1.6.2")) }

    func contents(_ path: String) -> String? { try? String(contentsOfFile: path, encoding: .utf8) }

    /// A scratch registry and a virtual board, provisioned once as board #1 with its
    /// MAC given (so it did not reboot); `stop()` removes both.
    struct Bench {
        let f: ProvisionFixture
        let kit: VirtualDevKit
        let first: ProvisionResult
        func stop() {
            kit.stop()
            f.cleanup()
        }
    }

    func benchWithBoardOne() throws -> Bench {
        let f = try ProvisionFixture()
        let kit = try kit()
        do {
            let workflow = ProvisionWorkflow(registry: f.registry, measure: recordingMeasurer())
            let first = try withKitSession(kit) { try workflow.run(f.request(mac: Self.mac), session: $0) }
            return Bench(f: f, kit: kit, first: first)
        } catch {
            kit.stop()
            f.cleanup()
            throw error
        }
    }

    /// With the ID known before the reboot (`--mac`, or `--registration-id`), a second
    /// provision into the same directory is refused before the board gets a new UDS
    /// and before a row is recorded.
    @Test(arguments: ["mac", "registration-id"])
    func aKnownRegistrationIDIsCheckedBeforeTheUDSIsSent(_ given: String) throws {
        let f = try ProvisionFixture()
        defer { f.cleanup() }
        let kit = try kit()
        defer { kit.stop() }
        let workflow = ProvisionWorkflow(registry: f.registry, measure: recordingMeasurer())
        var request = given == "mac" ? f.request(mac: Self.mac) : f.request()
        if given == "registration-id" { request.registrationID = try RegistrationID("bench-1") }
        let first = try withKitSession(kit) { try workflow.run(request, session: $0) }
        let pemBefore = contents(first.certificatePath)
        let enrollmentBefore = contents(first.enrollmentPath)
        if given == "registration-id" { kit.reset(into: .configuration) }  // it rebooted to read the MAC

        request.uds = .generate
        do {
            _ = try withKitSession(kit) { try workflow.run(request, session: $0) }
            Issue.record("the second provision into board #1's files was not refused")
        } catch {
            #expect("\(error)".contains("board #1"), "\(error)")
            #expect("\(error)".contains("nothing was sent to the board"), "\(error)")
        }
        #expect(kit.state.uds == f.udsHex, "the board still holds board #1's UDS")
        #expect(try f.registry.allBoards().count == 1, "nothing recorded for a board that was not touched")
        #expect(contents(first.certificatePath) == pemBefore && contents(first.enrollmentPath) == enrollmentBefore)
    }

    /// The same board provisioned again without `--mac` (the usual case): its USB
    /// serial is a recorded row's, so that row's MAC gives the ID before the reboot,
    /// and the clash is found before the board gets a new UDS.
    @Test func theSameBoardByItsUSBSerialIsCheckedBeforeTheUDSIsSent() throws {
        let f = try ProvisionFixture()
        defer { f.cleanup() }
        let kit = try kit()
        defer { kit.stop() }
        let workflow = ProvisionWorkflow(registry: f.registry, measure: recordingMeasurer())
        var request = f.request()
        request.usbSerial = "066EFF3"
        let first = try withKitSession(kit) { try workflow.run(request, session: $0) }
        let pemBefore = contents(first.certificatePath)
        kit.reset(into: .configuration)  // it rebooted to read the MAC

        request.uds = .generate
        do {
            _ = try withKitSession(kit) { try workflow.run(request, session: $0) }
            Issue.record("the second provision into board #1's files was not refused")
        } catch {
            #expect("\(error)".contains("board #1") && "\(error)".contains("nothing was sent"), "\(error)")
        }
        #expect(kit.state.uds == f.udsHex, "the board still holds board #1's UDS")
        #expect(try f.registry.allBoards().count == 1)
        #expect(contents(first.certificatePath) == pemBefore)
    }

    /// `--resume` of a row with a recorded MAC is checked before the UDS is sent too.
    @Test func aResumeWithARecordedMACIsCheckedBeforeTheUDSIsSent() throws {
        let bench = try benchWithBoardOne()
        defer { bench.stop() }
        let (f, kit, first) = (bench.f, bench.kit, bench.first)
        let workflow = ProvisionWorkflow(registry: f.registry, measure: recordingMeasurer())
        let pemBefore = contents(first.certificatePath)
        // A row recorded with the same MAC whose UDS never went out (the run stopped).
        let other = try UDS(hex: String(repeating: "ab", count: 32))
        let second = try f.registry.recordNewBoard(uds: other, mac: try MACAddress(Self.mac)).id!
        do {
            _ = try withKitSession(kit) {
                try workflow.resume(boardID: second, request: f.request(uds: .generate), session: $0)
            }
            Issue.record("the resume into board #1's files was not refused")
        } catch {
            #expect("\(error)".contains("board #1"), "\(error)")
        }
        #expect(kit.state.uds == f.udsHex, "the board still holds board #1's UDS")
        #expect(contents(first.certificatePath) == pemBefore)
        #expect(try f.registry.board(id: second)?.state == .failed)
    }

    /// Ownership is the certificate in the file, not the path a row stored: rows of
    /// the release before stored paths relative to where devkit ran. With the MAC
    /// known only from the boot log the board already holds the new UDS when the
    /// clash is found: the row is left unfinished (failed), nothing is overwritten,
    /// and the error says so.
    @Test func relativePathsOfAnEarlierReleaseStillOwnTheirFiles() throws {
        let bench = try benchWithBoardOne()
        defer { bench.stop() }
        let (f, kit, first) = (bench.f, bench.kit, bench.first)
        let workflow = ProvisionWorkflow(registry: f.registry, measure: recordingMeasurer())
        let pemBefore = contents(first.certificatePath)
        let enrollmentBefore = contents(first.enrollmentPath)
        let queue = try DatabaseQueue(path: f.registry.path)
        try queue.write { db in
            try db.execute(
                sql: "UPDATE board SET certificate_path = ?, enrollment_path = ? WHERE id = 1",
                arguments: ["\(Self.derivedID).pem", "\(Self.derivedID).enrollment.json"])
        }
        try queue.close()

        do {
            _ = try withKitSession(kit) { try workflow.run(f.request(uds: .generate), session: $0) }
            Issue.record("board #1's files were replaced")
        } catch {
            #expect("\(error)".contains("board #1"), "\(error)")
            #expect("\(error)".contains("already holds board #2's new UDS"), "\(error)")
        }
        #expect(contents(first.certificatePath) == pemBefore && contents(first.enrollmentPath) == enrollmentBefore)
        let row2 = try #require(try f.registry.board(id: 2))
        #expect(row2.state == .failed && row2.certificateWrittenAt == nil)
        #expect(try f.registry.board(id: 1)?.state == .done)
    }

    /// `--force` keeps the old row's files under a name that is free: an earlier kept
    /// `<id>.row1.pem` is not replaced, and the event says where the files went.
    @Test func forceNeverReplacesAKeptFileAndSaysWhereTheFilesWent() throws {
        let bench = try benchWithBoardOne()
        defer { bench.stop() }
        let (f, kit, first) = (bench.f, bench.kit, bench.first)
        var events: [ProvisionEvent] = []
        let workflow = ProvisionWorkflow(registry: f.registry, measure: recordingMeasurer()) { events.append($0) }
        let pemA = try #require(contents(first.certificatePath))
        let kept = f.dir + "/\(Self.derivedID).row1.pem"
        try "kept by hand\n".write(toFile: kept, atomically: false, encoding: .utf8)

        var request = f.request(uds: .generate, mac: Self.mac)
        request.force = true
        let second = try withKitSession(kit) { try workflow.run(request, session: $0) }
        #expect(second.boardID == 2)
        #expect(contents(kept) == "kept by hand\n")
        let aside = f.dir + "/\(Self.derivedID).row1.2.pem"
        #expect(contents(aside) == pemA)
        #expect(FileManager.default.fileExists(atPath: f.dir + "/\(Self.derivedID).row1.2.enrollment.json"))
        let row1 = try #require(try f.registry.board(id: 1))
        #expect(row1.supersededBy == 2 && row1.certificatePath == aside)
        #expect(events.contains { $0.message.contains(aside) }, "\(events.map(\.message))")
    }

    /// One UDS provisioned twice gives one certificate: when this row records it too,
    /// the file is its own, even though an older (superseded) row records the same.
    @Test func aCertificateThisRowRecordsIsItsOwnFile() throws {
        let f = try ProvisionFixture()
        defer { f.cleanup() }
        let factory = try recordingMeasurer()(.elf("/fw.elf"))
        let certificate = try factory(f.uds, try RegistrationID("bench-7"))
        try certificate.pem.write(toFile: f.dir + "/bench-7.pem", atomically: false, encoding: .utf8)
        var ids: [Int64] = []
        for _ in 0..<2 {
            let id = try f.registry.recordNewBoard(uds: f.uds).id!
            for step in ProvisioningStep.allCases.dropFirst() {
                let update: BoardUpdate = switch step {
                case .versionRead: BoardUpdate(firmwareVersion: try FirmwareVersion("1.6.2"))
                case .macRead: BoardUpdate(mac: try MACAddress(Self.mac), registrationID: try RegistrationID("bench-7"))
                case .certificateWritten: BoardUpdate(certificateSHA256: certificate.sha256)
                default: BoardUpdate()
                }
                try f.registry.markStep(step, boardID: id, update: update)
            }
            ids.append(id)
        }
        try f.registry.markSuperseded(boardID: ids[0], by: ids[1], certificatePath: nil, enrollmentPath: nil)
        let items = try CertificateReissue(registry: f.registry, factory: factory)
            .run(firmwareVersion: nil, outputDirectory: f.dir, boardIDs: [ids[1]])
        #expect(items.count == 1)
        #expect((try? items.first?.result.get()) != nil, "\(String(describing: items.first?.result))")
    }

    /// `registry reissue` never replaces another row's files: two rows with one
    /// registration ID re-issued into one directory; the second is refused.
    @Test func reissueNeverReplacesAnotherRowsFiles() throws {
        let f = try ProvisionFixture()
        defer { f.cleanup() }
        let otherUDS = try UDS(hex: String(repeating: "ab", count: 32))
        func done(_ uds: UDS, mac: String) throws -> Int64 {
            let id = try f.registry.recordNewBoard(uds: uds).id!
            for step in ProvisioningStep.allCases.dropFirst() {
                let update: BoardUpdate = switch step {
                case .versionRead: BoardUpdate(firmwareVersion: try FirmwareVersion("1.6.2"))
                case .macRead: BoardUpdate(mac: try MACAddress(mac), registrationID: try RegistrationID("bench-7"))
                default: BoardUpdate()
                }
                try f.registry.markStep(step, boardID: id, update: update)
            }
            return id
        }
        let one = try done(f.uds, mac: "a4cf120b9e31")
        let two = try done(otherUDS, mac: "0123456789ab")
        let factory = try recordingMeasurer()(.elf("/new.elf"))
        let items = try CertificateReissue(registry: f.registry, factory: factory)
            .run(firmwareVersion: try FirmwareVersion("1.6.3"), outputDirectory: f.dir)
        let byID = Dictionary(uniqueKeysWithValues: items.map { ($0.boardID, $0.result) })
        #expect((try? byID[one]?.get()) != nil)
        if case .failure(let e)? = byID[two] {
            #expect(e.description.contains("board #\(one)"), "\(e.description)")
            #expect(String(describing: e.remedy).contains("filesOfAnotherBoard"))
        } else {
            Issue.record("board #\(two) replaced board #\(one)'s files")
        }
        let pem = contents(f.dir + "/bench-7.pem")
        #expect(pem == (try factory(f.uds, try RegistrationID("bench-7"))).pem)
    }
}
