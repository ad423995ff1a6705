import DevKitConsole
import DevKitModel
import DevKitRegistry
import DevKitTestSupport
import DevKitWorkflows
import Foundation
import SerialPort
import Synchronization
import Testing
import UserModeLog
import VirtualDevKit

/// One station at a time per board on a shared (PostgreSQL) registry: each test
/// opens two handles, two stations, on one database of the test cluster; the
/// first holds a claim, the second runs a workflow and must leave the board alone.
@Suite(.timeLimit(.minutes(5)), .enabled(if: PostgresCluster.available, "PostgreSQL's binaries are not installed (and CI is not set)"))
struct SharedRegistryClaimTests {
    /// Two stations on one new database, sealing with one key.
    static func stations(_ f: ProvisionFixture) throws -> (PostgresRegistry, PostgresRegistry) {
        let keyPath = f.dir + "/shared.key"
        var random = SystemRandomNumberGenerator()
        let hex = (0..<32).map { _ in UInt8.random(in: 0...255, using: &random) }.map { String(format: "%02x", $0) }.joined() + "\n"
        #expect(FileManager.default.createFile(atPath: keyPath, contents: Data(hex.utf8), attributes: [.posixPermissions: 0o600]))
        let cluster = try PostgresCluster.shared()
        let location = try PostgresLocation(url: cluster.url(try cluster.createDatabase()))
        return (try PostgresRegistry(location: location, key: .file(keyPath)),
                try PostgresRegistry(location: location, key: .file(keyPath)))
    }

    /// watch/autoconfigure claim the USB serial before reading the registry: while
    /// another station holds the board, nothing is decided, recorded or opened (the
    /// port does not exist: opening it would fail differently).
    @Test func aBoardAnotherStationHoldsIsLeftBeforeTheRegistryIsRead() throws {
        let f = try ProvisionFixture()
        defer { f.cleanup() }
        let (lineOne, lineTwo) = try Self.stations(f)
        try lineOne.claim(boards: ["usb:0672ff"], station: "line-1")
        var provisioner = ProfileProvisioner(
            profile: ProvisioningProfile(firmware: .elf(f.dir + "/fw.elf"), uds: .generate, outputDirectory: f.dir),
            registry: lineTwo, measure: recordingMeasurer())
        provisioner.station = "line-2"
        #expect(throws: RegistryError.boardBusy(board: "with USB serial 0672ff", station: "line-1")) {
            _ = try provisioner.provision(path: f.dir + "/no-such-port", usbSerial: "0672FF", report: { _ in })
        }
        #expect(try lineTwo.allBoards().isEmpty)
        // Once the first station lets go, the second gets as far as the (missing) port.
        lineOne.release(boards: ["usb:0672ff"])
        #expect(throws: SerialPortError.self) {
            _ = try provisioner.provision(path: f.dir + "/no-such-port", usbSerial: "0672FF", report: { _ in })
        }
        // The second station let go of it after its failure: free for a third.
        let third = try PostgresRegistry(location: lineOne.location, key: .file(f.dir + "/shared.key"))
        #expect(throws: Never.self) { try third.claim(boards: ["usb:0672ff"], station: "line-3") }
    }

    /// `--resume ID` claims the row itself: a row another station is finishing is
    /// refused with its name, even when it records no MAC or USB serial yet.
    @Test func aRowAnotherStationIsFinishingIsNotResumed() throws {
        let f = try ProvisionFixture()
        defer { f.cleanup() }
        let (lineOne, lineTwo) = try Self.stations(f)
        let row = try lineOne.recordNewBoard(
            uds: f.uds, mac: nil, usbSerial: nil, registrationID: nil, firmwareVersion: nil, provisionSettings: nil,
            station: "line-1", alsoMark: [.udsSent])
        let id = try #require(row.id)
        try lineOne.claim(boards: ["row:\(id)"], station: "line-1")
        var workflow = ProvisionWorkflow(registry: lineTwo, measure: recordingMeasurer()) { _ in }
        workflow.station = "line-2"
        #expect(throws: RegistryError.boardBusy(board: "#\(id)", station: "line-1")) {
            _ = try workflow.resume(boardID: id, request: f.request(), session: nil)
        }
        lineOne.release(boards: ["row:\(id)"])
        // Free now: the resume goes on, and asks for the board it needs.
        #expect(throws: ProvisionError.self) {
            _ = try workflow.resume(boardID: id, request: f.request(), session: nil)
        }
    }

    /// A row in its first run is claimed before its UDS goes out: `--resume` of it
    /// from another station then, before anything is recorded of the board but the
    /// row, is refused naming the first station.
    @Test func aRowInItsFirstRunIsNotResumedElsewhere() throws {
        let f = try ProvisionFixture()
        defer { f.cleanup() }
        let (lineOne, lineTwo) = try Self.stations(f)
        let kit = try startedKit(.init(macAddress: "a4cf120b9e31", firmwareVersion: "1.6.2"))
        defer { kit.stop() }
        let resumeRequest = f.request()
        let measure = recordingMeasurer()
        let seen = Mutex<[String]>([])
        var workflow = ProvisionWorkflow(registry: lineOne, measure: recordingMeasurer()) { _ in }
        workflow.station = "line-1"
        workflow.afterStep = { step, record in
            guard step == .udsSent, let id = record.id else { return }
            var other = ProvisionWorkflow(registry: lineTwo, measure: measure) { _ in }
            other.station = "line-2"
            do {
                _ = try other.resume(boardID: id, request: resumeRequest, session: nil)
                seen.withLock { $0.append("resumed") }
            } catch {
                seen.withLock { $0.append("\(error)") }
            }
        }
        let result = try withKitSession(kit) { try workflow.run(f.request(), session: $0) }
        #expect(seen.withLock { $0 } == [RegistryError.boardBusy(board: "#\(result.boardID)", station: "line-1").description])
        #expect(kit.state.uds == f.uds.hexString)
        #expect(try lineTwo.board(id: result.boardID)?.state == .done)
    }

    /// Claims are per run, not per station: the server's lock belongs to the
    /// station's one connection, so another thread of the same station (a board
    /// replugged under a new node while its first run goes on) is refused here.
    @Test func anotherRunOfTheSameStationIsRefused() throws {
        let f = try ProvisionFixture()
        defer { f.cleanup() }
        let (station, _) = try Self.stations(f)
        try station.claim(boards: ["usb:0672ff"], station: "line-1")
        try station.claim(boards: ["usb:0672ff"], station: "line-1")  // nested, same run
        func fromAnotherThread() -> String {
            let outcome = Mutex("")
            let done = DispatchSemaphore(value: 0)
            let runner = Thread {
                do {
                    try station.claim(boards: ["usb:0672ff"], station: "line-1")
                    station.release(boards: ["usb:0672ff"])
                    outcome.withLock { $0 = "claimed" }
                } catch {
                    outcome.withLock { $0 = "\(error)" }
                }
                done.signal()
            }
            runner.start()
            done.wait()
            return outcome.withLock { $0 }
        }
        let busy = RegistryError.boardBusy(board: "with USB serial 0672ff", station: "line-1 (another run of this station)")
        #expect(fromAnotherThread() == busy.description)
        station.release(boards: ["usb:0672ff"])
        #expect(fromAnotherThread() == busy.description, "still held by the outer claim")
        station.release(boards: ["usb:0672ff"])
        #expect(fromAnotherThread() == "claimed")
    }

    /// A port with no USB serial and no --mac: the MAC is claimed as soon as the
    /// board reports it. Another station holding it ends this run there, the UDS
    /// sent kept in this station's row (failed, to resume), not given a second MAC row.
    @Test func aMACReadIsClaimedBeforeItIsRecorded() throws {
        let f = try ProvisionFixture()
        defer { f.cleanup() }
        let (lineOne, lineTwo) = try Self.stations(f)
        let kit = try startedKit(.init(macAddress: "a4cf120b9e31", firmwareVersion: "1.6.2"))
        defer { kit.stop() }
        try lineOne.claim(boards: ["mac:a4cf120b9e31"], station: "line-1")
        var workflow = ProvisionWorkflow(registry: lineTwo, measure: recordingMeasurer()) { _ in }
        workflow.station = "line-2"
        #expect(throws: RegistryError.boardBusy(board: "with MAC a4cf120b9e31", station: "line-1")) {
            _ = try withKitSession(kit) { try workflow.run(f.request(), session: $0) }
        }
        let rows = try lineTwo.allBoards()
        #expect(rows.count == 1)
        #expect(rows.first?.uds == f.uds)
        #expect(rows.first?.mac == nil, "the MAC another station holds was recorded")
        #expect(rows.first?.state == .failed)
        #expect(rows.first?.certificatePath == nil)
    }

    /// A board another station holds is reported at the `claim` stage (what a
    /// front end shows and `--json` carries), not as a failure to connect; nothing
    /// is sent to it.
    @Test func aBusyBoardIsReportedAtTheClaimStage() throws {
        let f = try ProvisionFixture()
        defer { f.cleanup() }
        let (lineOne, lineTwo) = try Self.stations(f)
        let kit = try startedKit(.init(macAddress: "a4cf120b9e31", firmwareVersion: "1.6.2"))
        defer { kit.stop() }
        try lineOne.claim(boards: ["usb:0672ff"], station: "line-1")
        let events = Mutex<[ProvisionEvent]>([])
        var workflow = ProvisionWorkflow(registry: lineTwo, measure: recordingMeasurer()) { e in events.withLock { $0.append(e) } }
        workflow.station = "line-2"
        var request = f.request()
        request.usbSerial = "0672FF"
        #expect(throws: RegistryError.boardBusy(board: "with USB serial 0672ff", station: "line-1")) {
            _ = try withKitSession(kit) { try workflow.run(request, session: $0) }
        }
        let failed = events.withLock { $0 }.filter { $0.status == .failed }
        #expect(failed.map(\.stage) == [.claim], "\(failed)")
        #expect(try lineTwo.allBoards().isEmpty && kit.state.uds == nil)
    }

    /// A verification's outcome is recorded in the row only under a claim: while
    /// another station holds the board the report says so, naming it, and the row
    /// keeps what it had; once free, the outcome is recorded.
    @Test func aVerificationIsNotRecordedInARowAnotherStationHolds() throws {
        let f = try ProvisionFixture()
        defer { f.cleanup() }
        let (lineOne, lineTwo) = try Self.stations(f)
        let row = try lineOne.recordNewBoard(
            uds: f.uds, mac: try MACAddress("a4cf120b9e31"), usbSerial: nil, registrationID: nil, firmwareVersion: nil,
            provisionSettings: nil, station: "line-1", alsoMark: [.udsSent])
        let id = try #require(row.id)
        try lineOne.claim(boards: ["row:\(id)"], station: "line-1")
        let classifier = RegistrationClassifier()
        let subject = try RegistrationCheck.subject(classifier: classifier, registry: lineTwo, boardID: id)
        let held = RegistrationCheck.report(
            .assigned(hub: "hub.example"), classifier: classifier, subject: subject, recordingIn: lineTwo, station: "line-2")
        #expect(held.recordingFailure?.contains("being provisioned by station line-1") == true, "\(held.recordingFailure ?? "recorded")")
        #expect(try lineTwo.board(id: id)?.verification == nil)
        lineOne.release(boards: ["row:\(id)"])
        let free = RegistrationCheck.report(
            .assigned(hub: "hub.example"), classifier: classifier, subject: subject, recordingIn: lineTwo, station: "line-2")
        #expect(free.recordingFailure == nil)
        #expect(try lineTwo.board(id: id)?.verification?.outcome == "assigned")
        // The claim was given back: the first station can take the row again.
        #expect(throws: Never.self) { try lineOne.claim(boards: ["row:\(id)"], station: "line-1") }
    }
}
