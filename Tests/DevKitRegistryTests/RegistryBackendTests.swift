import DevKitModel
import Foundation
import GRDB
import DevKitTestSupport
import Synchronization
import Testing

@testable import DevKitRegistry

/// The registry's behaviour on both backends (issue 16): the same cases against
/// an SQLite file and against a real PostgreSQL server (a throwaway cluster, see
/// PostgresCluster). Without PostgreSQL's binaries, and outside CI, the PostgreSQL
/// half is skipped with that said; in CI it must run.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct RegistryBackendTests {
    enum Backend: String, CaseIterable, CustomTestStringConvertible {
        case sqlite, postgresql
        var testDescription: String { rawValue }
    }

    /// A fresh, empty registry of `backend` sealed with the key in `keyFile`.
    struct Opened {
        let store: any RegistryStore
        let reopen: (RegistryKeySource) throws -> any RegistryStore
        /// A handle that only reads, opened without the key (``RegistryKeySource/withheld``).
        let readWithoutKey: () throws -> any RegistryStore
        /// Everything a backup of it holds: the SQLite file and WAL, or pg_dump's output.
        let backup: () throws -> [UInt8]
    }

    static func open(_ backend: Backend, _ tmp: TempDir, key: RegistryKeySource) throws -> Opened {
        switch backend {
        case .sqlite:
            let path = tmp.file("r.sqlite")
            return Opened(
                store: try Registry(path: path, key: key),
                reopen: { try Registry(path: path, key: $0) },
                readWithoutKey: { try Registry(path: path, key: .withheld, readOnly: true) },
                backup: { databaseBytes(path) })
        case .postgresql:
            let cluster = try PostgresCluster.shared()
            let database = try cluster.createDatabase()
            let location = try PostgresLocation(url: cluster.url(database))
            return Opened(
                store: try PostgresRegistry(location: location, key: key),
                reopen: { try PostgresRegistry(location: location, key: $0) },
                readWithoutKey: { try PostgresRegistry(location: location, key: .withheld, readOnly: true) },
                backup: { Array(try cluster.dump(database).utf8) })
        }
    }

    static let backends: [Backend] = {
        if PostgresCluster.available { return Backend.allCases }
        print("RegistryBackendTests: PostgreSQL's server binaries are not installed and CI is not set: "
            + "only SQLite is tested (Scripts/install-deps.sh installs postgresql)")
        return [.sqlite]
    }()

    /// Claims `keys` on a thread of its own, as a fleet command's worker does, and
    /// keeps them (that thread's run holds them); the refusal, if any.
    func claimOnAnotherThread(_ store: any RegistryStore, _ keys: [String], station: String) -> RegistryError? {
        let claimed = Mutex<RegistryError?>(nil)
        let worker = Thread {
            do throws(RegistryError) { try store.claim(boards: keys, station: station) } catch { claimed.withLock { $0 = error } }
        }
        worker.start()
        while !worker.isFinished { usleep(1_000) }
        return claimed.withLock { $0 }
    }

    func keyFile(_ tmp: TempDir, _ name: String = "k", bytes: [UInt8]? = nil) throws -> RegistryKeySource {
        try writeKeyFile(tmp.file(name), bytes ?? RegistryKey.generate().key.withUnsafeBytes { Array($0) })
        return .file(tmp.file(name))
    }

    @Test(arguments: backends)
    func recordsMarksAndReadsBack(backend: Backend) throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let opened = try Self.open(backend, tmp, key: try keyFile(tmp))
        let registry = opened.store
        let a = try registry.recordNewBoard(
            uds: udsA, mac: try MACAddress("a4cf120b9e31"), usbSerial: "0672FF", registrationID: nil,
            firmwareVersion: nil, provisionSettings: "{}", alsoMark: [.udsSent])
        let b = try registry.recordNewBoard(
            uds: udsB, mac: nil, usbSerial: nil, registrationID: nil, firmwareVersion: nil, provisionSettings: nil,
            alsoMark: [])
        #expect(a.id != b.id)
        var update = BoardUpdate()
        update.registrationID = try RegistrationID("az-a4cf120b9e31")
        let marked = try registry.markSteps([.udsConfirmed, .versionRead], boardID: a.id!, update: update)
        #expect(marked.registrationID == "az-a4cf120b9e31" && marked.lastStep == .macRead)
        try registry.markFailed(boardID: b.id!, error: "unplugged")

        let read = try #require(try registry.board(id: a.id!))
        #expect(read.uds == udsA && read.usbSerial == "0672FF" && read.provisionSettings == "{}")
        #expect(read.completedSteps == [.udsRecorded, .udsSent, .udsConfirmed, .versionRead, .macRead])
        #expect(try registry.board(byMAC: "A4:CF:12:0B:9E:31")?.id == a.id)
        #expect(try registry.allBoards().map(\.uds) == [udsA, udsB])
        #expect(try registry.unfinishedBoards().map(\.state) == [.inProgress, .failed])
        #expect(try registry.board(id: 999) == nil)
        #expect(throws: RegistryError.boardNotFound("999")) { try registry.markSteps([.macRead], boardID: 999, update: BoardUpdate()) }
    }

    /// A row is superseded by a later row of the same board, found by its USB
    /// serial first, else by its MAC; a board's latest row, and a row with
    /// neither, are superseded by nothing. Asked of the registry now (what a fleet
    /// command asks under a row's claim, long after its listing).
    @Test(arguments: backends)
    func aLaterRowOfTheSameBoardSupersedes(backend: Backend) throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let registry = try Self.open(backend, tmp, key: try keyFile(tmp)).store
        func row(mac: String?, serial: String?) throws -> BoardRecord {
            try registry.recordNewBoard(
                uds: udsA, mac: try mac.map { try MACAddress($0) }, usbSerial: serial, registrationID: nil,
                firmwareVersion: nil, provisionSettings: nil, alsoMark: [])
        }
        let first = try row(mac: "a4cf120b9e31", serial: "0672FF")
        let bare = try row(mac: nil, serial: nil)
        #expect(try registry.supersedingRow(of: first) == nil)
        let sameMAC = try row(mac: "a4cf120b9e31", serial: nil)
        #expect(try registry.supersedingRow(of: first) == SupersedingRow(boardID: sameMAC.id!, sameUSBSerial: false))
        let sameSerial = try row(mac: nil, serial: "0672FF")
        #expect(try registry.supersedingRow(of: first) == SupersedingRow(boardID: sameSerial.id!, sameUSBSerial: true))
        #expect(try registry.supersedingRow(of: sameMAC) == nil)
        #expect(try registry.supersedingRow(of: bare) == nil)
    }

    /// A failure reported after the row is done (a late verification or enrollment
    /// error, a run stopped after its last step) leaves it done: only an unfinished
    /// row turns `failed`.
    @Test(arguments: backends)
    func aLateFailureDoesNotUndoADoneRow(backend: Backend) throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let registry = try Self.open(backend, tmp, key: try keyFile(tmp)).store
        let board = try registry.recordNewBoard(
            uds: udsA, mac: nil, usbSerial: "0672FF", registrationID: nil, firmwareVersion: nil, provisionSettings: nil,
            alsoMark: [.udsSent])
        var update = BoardUpdate()
        update.mac = try MACAddress("a4cf120b9e31")
        let done = try registry.markSteps(
            [.udsConfirmed, .versionRead, .macRead, .certificateWritten, .enrollmentWritten], boardID: board.id!, update: update)
        #expect(done.state == .done)
        let after = try registry.markFailed(boardID: board.id!, error: "DPS enrollment failed late")
        #expect(after.state == .done && after.error == nil)
        let read = try #require(try registry.board(id: board.id!))
        #expect(read.state == .done && read.error == nil)
        #expect(try registry.unfinishedBoards().isEmpty)
        // An unfinished row still fails.
        let other = try registry.recordNewBoard(
            uds: udsB, mac: nil, usbSerial: nil, registrationID: nil, firmwareVersion: nil, provisionSettings: nil, alsoMark: [])
        let failed = try registry.markFailed(boardID: other.id!, error: "unplugged")
        #expect(failed.state == .failed && failed.error == "unplugged")
    }

    @Test(arguments: backends)
    func aBackupHoldsNoClearUDS(backend: Backend) throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let opened = try Self.open(backend, tmp, key: try keyFile(tmp))
        for uds in [udsA, udsB] {
            let board = try opened.store.recordNewBoard(
                uds: uds, mac: nil, usbSerial: nil, registrationID: nil, firmwareVersion: nil, provisionSettings: nil,
                alsoMark: [.udsSent])
            try opened.store.markSteps([.udsConfirmed], boardID: board.id!, update: BoardUpdate())
        }
        let backup = try opened.backup()
        #expect(backup.count > 1000)
        #expect(bytes(backup, contain: Array("sealed1:\(opened.store.keyID)".utf8)), "the sealed values are in it")
        for uds in [udsA, udsB] {
            for needle in [uds.bytes, Array(uds.hexString.utf8), Array(uds.hexString.uppercased().utf8)] {
                #expect(!bytes(backup, contain: needle))
            }
        }
    }

    /// A handle opened without the key (`registry list`, `show` and `export` without
    /// the UDS) reads every row as a keyed one does, but with its UDS withheld; it
    /// reads no key file, so a registry whose key is lost can still be listed.
    @Test(arguments: backends)
    func aHandleWithoutTheKeyReadsTheRowsWithTheirUDSWithheld(backend: Backend) throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let opened = try Self.open(backend, tmp, key: try keyFile(tmp, "a"))
        let first = try opened.store.recordNewBoard(
            uds: udsA, mac: try MACAddress("a4cf120b9e31"), usbSerial: "0672FF", registrationID: nil,
            firmwareVersion: nil, provisionSettings: "{}", alsoMark: [.udsSent])
        try opened.store.markSteps([.udsConfirmed], boardID: try #require(first.id), update: BoardUpdate())
        try opened.store.recordNewBoard(
            uds: udsB, mac: nil, usbSerial: nil, registrationID: nil, firmwareVersion: nil, provisionSettings: nil,
            alsoMark: [])
        let keyed = try opened.store.allBoards()
        try FileManager.default.removeItem(atPath: tmp.file("a"))

        let bare = try opened.readWithoutKey()
        let read = try bare.allBoards()
        #expect(read.count == 2 && keyed.count == 2)
        for (withheld, full) in zip(read, keyed) {
            #expect(withheld.isUDSWithheld && !full.isUDSWithheld)
            var filled = withheld
            filled.uds = full.uds
            #expect(filled == full)
        }
        #expect(try bare.board(byMAC: "a4cf120b9e31")?.isUDSWithheld == true)
        #expect(try bare.board(byUSBSerial: "0672FF")?.id == first.id)
        #expect(try bare.latestConfirmedBoardIDs(usbSerial: "0672FF", mac: nil).bySerial == first.id)
    }

    /// A station's first use of a new database, and a reader after it, leave no
    /// ERROR in the server's log (a DBA reading it sees no failed statement of
    /// devkit's): the migrations table is looked for before it is read.
    @Test(.enabled(if: PostgresCluster.available, "PostgreSQL's binaries are not installed (and CI is not set)"))
    func aFirstUseLeavesNoErrorInTheServersLog() throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let cluster = try PostgresCluster.dedicated()
        defer { cluster.stop() }
        let location = try PostgresLocation(url: cluster.url(try cluster.createDatabase()))
        let key = try keyFile(tmp)
        let station = try PostgresRegistry(location: location, key: key)
        let board = try station.recordNewBoard(uds: udsA, alsoMark: [.udsSent])
        _ = try station.markSteps([.udsConfirmed], boardID: try #require(board.id), update: BoardUpdate())
        #expect(try PostgresRegistry(location: location, key: .withheld, readOnly: true).allBoards().count == 1)
        let log = try String(contentsOfFile: cluster.directory + "/server.log", encoding: .utf8)
        #expect(log.contains("database system is ready"), "\(log)")
        #expect(!log.contains("ERROR"), "\(log)")
    }

    @Test(arguments: backends)
    func theWrongKeyIsRefusedWithTheNeededID(backend: Backend) throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let opened = try Self.open(backend, tmp, key: try keyFile(tmp, "a"))
        try opened.store.recordNewBoard(
            uds: udsA, mac: nil, usbSerial: nil, registrationID: nil, firmwareVersion: nil, provisionSettings: nil,
            alsoMark: [])
        let other = try keyFile(tmp, "b")
        let otherID = try RegistryKey.load(path: other.path).id
        #expect(throws: RegistryError.wrongKey(path: other.path, keyID: otherID, neededKeyID: opened.store.keyID)) {
            try opened.reopen(other)
        }
        // No key at the default place: not created for a registry that needs another.
        let missing = RegistryKeySource.defaultFile(tmp.file("cfg/devkit/registry.key"))
        #expect(throws: RegistryError.self) { try opened.reopen(missing) }
        #expect(!FileManager.default.fileExists(atPath: missing.path))
        #expect(try opened.reopen(.file(tmp.file("a"))).board(id: 1)?.uds == udsA)
    }

    /// Every lookup the workflows and the CLI make, on rows both backends wrote the same way.
    @Test(arguments: backends)
    func looksBoardsUpByEveryKey(backend: Backend) throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let registry = try Self.open(backend, tmp, key: try keyFile(tmp)).store
        let old = try registry.recordNewBoard(
            uds: udsA, mac: try MACAddress("a4cf120b9e31"), usbSerial: "0672FF", registrationID: try RegistrationID("az-1"),
            firmwareVersion: nil, provisionSettings: nil, alsoMark: [])
        let new = try registry.recordNewBoard(
            uds: udsB, mac: try MACAddress("a4cf120b9e31"), usbSerial: "0672FF", registrationID: try RegistrationID("az-1"),
            firmwareVersion: nil, provisionSettings: nil, alsoMark: [])
        var update = BoardUpdate()
        update.certificateSHA256 = "ab12cd"
        try registry.markSteps([.udsSent], boardID: old.id!, update: update)
        try registry.markSteps([.udsSent], boardID: new.id!, update: update)
        #expect(try registry.board(byUSBSerial: "0672FF")?.id == new.id, "the newest row")
        #expect(try registry.board(byUSBSerial: "nope") == nil)
        #expect(try registry.board(byRegistrationID: "az-1")?.id == new.id)
        #expect(try registry.board(matching: "\(old.id!)")?.id == old.id)
        #expect(try registry.board(matching: "A4:CF:12:0B:9E:31")?.id == new.id)
        #expect(try registry.board(matching: "az-1")?.id == new.id)
        #expect(try registry.board(matching: "az-2") == nil)
        #expect(try registry.boards(withCertificateSHA256: "AB12CD").map(\.id) == [new.id, old.id], "any case, newest first")
        #expect(try registry.boards(withCertificateSHA256: "ffff").isEmpty)
        #expect(!registry.path.isEmpty)
    }

    @Test(arguments: backends)
    func recordsEnrollmentsVerificationsAndSupersession(backend: Backend) throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let registry = try Self.open(backend, tmp, key: try keyFile(tmp)).store
        let a = try registry.recordNewBoard(
            uds: udsA, mac: nil, usbSerial: nil, registrationID: nil, firmwareVersion: nil, provisionSettings: nil,
            alsoMark: [])
        let b = try registry.recordNewBoard(
            uds: udsB, mac: nil, usbSerial: nil, registrationID: nil, firmwareVersion: nil, provisionSettings: nil,
            alsoMark: [])
        let at = Date(timeIntervalSince1970: 1_800_000_000)
        let enrolled = BoardEnrollment(action: .created, at: at, dpsHost: "dps.example", etag: "\"e1\"", sha1Thumbprint: "AA")
        let after = try registry.recordEnrollment(boardID: a.id!, enrolled)
        #expect(after.enrollment == enrolled && after.state == a.state)
        let failed = BoardEnrollment(action: .failed, at: at, dpsHost: "dps.example", errorCode: 401002, errorMessage: "no")
        try registry.recordEnrollments([(a.id!, failed), (b.id!, enrolled)])
        #expect(try registry.board(id: a.id!)?.enrollment == failed)
        #expect(try registry.board(id: b.id!)?.enrollment == enrolled)
        // A board not found records nothing.
        #expect(throws: RegistryError.boardNotFound("999")) {
            try registry.recordEnrollments([(a.id!, enrolled), (999, enrolled)])
        }
        #expect(try registry.board(id: a.id!)?.enrollment == failed)

        let check = BoardVerification(outcome: "assigned", assignedHub: "hub.example", deviceID: "az-1", at: at)
        #expect(try registry.recordVerification(boardID: b.id!, check).verification == check)
        #expect(try registry.board(id: b.id!)?.verification == check)

        let superseded = try registry.markSuperseded(
            boardID: a.id!, by: b.id!, certificatePath: "/old/cert.pem", enrollmentPath: nil)
        #expect(superseded.supersededBy == b.id && superseded.certificatePath == "/old/cert.pem")
        #expect(try registry.board(id: a.id!)?.supersededBy == b.id)
    }

    /// A mark given the run's copy of its row (`markSteps(_:of:update:)`, as
    /// provisioning marks the UDS sent and the files written): on PostgreSQL, under
    /// the run's claims, one statement made from that copy; a row that changed
    /// since (another writer, or a background mark that was never recorded but is in
    /// the copy) is marked from what the registry holds, so that a board is never
    /// made `done` over steps its row does not record.
    @Test(arguments: backends)
    func aMarkFromTheRunsCopyFollowsTheRegistryWhenTheRowChanged(backend: Backend) throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let key = try keyFile(tmp)
        let opened = try Self.open(backend, tmp, key: key)
        let store = opened.store
        try store.claim(boards: ["usb:c1"], station: "line-1")
        defer { store.release(boards: ["usb:c1"]) }
        let recorded = try store.recordNewBoard(
            uds: udsA, mac: nil, usbSerial: "c1", registrationID: nil, firmwareVersion: nil, provisionSettings: nil,
            alsoMark: [.udsSent])
        let id = try #require(recorded.id)

        // The copy as the registry has it, plus a value only the copy holds: a mark
        // made from the copy writes the columns it changes, and no other.
        var copy = try #require(try store.board(id: id))
        copy.provisionSettings = #"{"only":"the run's copy"}"#
        let confirmed = try store.markSteps([.udsConfirmed], of: copy, update: BoardUpdate())
        var stored = try #require(try store.board(id: id))
        #expect(stored.udsConfirmedAt != nil && stored.provisionSettings == nil)
        if backend == .postgresql {
            #expect(confirmed.provisionSettings == copy.provisionSettings, "made in one statement from the run's copy")
        }

        // Another writer since: the mark follows the row the registry holds.
        let other = try opened.reopen(key)
        try other.recordVerification(boardID: id, BoardVerification(outcome: "assigned", assignedHub: "hub-1", deviceID: nil, at: Date()))
        let versionRead = try store.markSteps(
            [.versionRead], of: confirmed, update: BoardUpdate(firmwareVersion: try FirmwareVersion("1.6.2")))
        stored = try #require(try store.board(id: id))
        #expect(stored.verification?.assignedHub == "hub-1" && stored.firmwareVersion == "1.6.2")
        #expect(versionRead.verification?.assignedHub == "hub-1", "read again, not the stale copy")

        // The copy believes in a MAC mark the registry never recorded (a background
        // mark that failed): writing the files must not make the board done.
        var believed = versionRead
        believed.mac = "a4cf120b9e31"
        believed.macReadAt = Date()
        believed.updatedAt = Date()
        let files = try store.markSteps(
            [.certificateWritten, .enrollmentWritten], of: believed,
            update: BoardUpdate(certificateSHA1: "AB", certificateSHA256: "CD", certificatePath: "/x.pem", enrollmentPath: "/x.json"))
        stored = try #require(try store.board(id: id))
        #expect(stored.macReadAt == nil && stored.certificateWrittenAt != nil)
        #expect(stored.state == .inProgress && stored.nextStep == .macRead, "not done: its MAC was never recorded")
        #expect(files.state == .inProgress && files.macReadAt == nil)

        // The same after later marks made from that copy did go through: they move
        // updated_at on to the copy's, but never write the step the copy believes in.
        let second = try store.recordNewBoard(
            uds: udsA, mac: nil, usbSerial: "c1", registrationID: nil, firmwareVersion: nil, provisionSettings: nil,
            alsoMark: [.udsSent])
        var run = try #require(try store.board(id: second.id!))
        run.udsConfirmedAt = Date()  // its mark failed: not in the registry
        run.updatedAt = Date()
        run = try store.markStepsInBackground([.versionRead], of: run, update: BoardUpdate(firmwareVersion: try FirmwareVersion("1.6.2"))) { _ in }
        run = try store.markStepsInBackground([.macRead], of: run, update: BoardUpdate(mac: try MACAddress("a4cf120b9e32"))) { _ in }
        _ = try store.markSteps(
            [.certificateWritten, .enrollmentWritten], of: run,
            update: BoardUpdate(certificateSHA1: "AB", certificateSHA256: "CD", certificatePath: "/y.pem", enrollmentPath: "/y.json"))
        stored = try #require(try store.board(id: second.id!))
        #expect(stored.udsConfirmedAt == nil && stored.versionReadAt != nil && stored.macReadAt != nil)
        #expect(stored.state == .inProgress && stored.nextStep == .udsConfirmed, "not done: its UDS was never confirmed")

        // A resumed row whose files are written: the mark of its last board step,
        // sent without waiting, must not make it done over the step that is missing.
        let third = try store.recordNewBoard(
            uds: udsA, mac: nil, usbSerial: "c1", registrationID: nil, firmwareVersion: nil, provisionSettings: nil,
            alsoMark: [.udsSent])
        try store.markSteps([.macRead, .certificateWritten, .enrollmentWritten], boardID: third.id!,
                            update: BoardUpdate(mac: try MACAddress("a4cf120b9e33")))
        var resumed = try #require(try store.board(id: third.id!))
        resumed.udsConfirmedAt = Date()  // its mark failed: not in the registry
        resumed.updatedAt = Date()
        _ = try? store.markStepsInBackground([.versionRead], of: resumed, update: BoardUpdate(firmwareVersion: try FirmwareVersion("1.6.2"))) { _ in }
        stored = try #require(try store.board(id: third.id!))
        #expect(stored.state != .done && stored.udsConfirmedAt == nil, "done over a missing step: \(stored.state)")
    }

    @Test(arguments: backends)
    func backgroundMarksAreCommittedInOrder(backend: Backend) throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let registry = try Self.open(backend, tmp, key: try keyFile(tmp)).store
        var board = try registry.recordNewBoard(
            uds: udsA, mac: nil, usbSerial: nil, registrationID: nil, firmwareVersion: nil, provisionSettings: nil,
            alsoMark: [.udsSent])
        final class Results: @unchecked Sendable {
            let lock = NSLock()
            var all: [Result<BoardRecord, RegistryError>] = []
            func add(_ result: Result<BoardRecord, RegistryError>) { lock.withLock { all.append(result) } }
        }
        let results = Results()
        board = try registry.markStepsInBackground([.udsConfirmed], of: board, update: BoardUpdate()) { result in
            results.add(result)
        }
        #expect(board.lastStep == .udsConfirmed)
        var update = BoardUpdate()
        update.mac = try MACAddress("a4cf120b9e31")
        board = try registry.markStepsInBackground([.versionRead, .macRead], of: board, update: update) { result in
            results.add(result)
        }
        // A later synchronous write returns once the queued marks are committed.
        let final = try registry.markFailed(boardID: board.id!, error: "stopped")
        #expect(final.completedSteps == [.udsRecorded, .udsSent, .udsConfirmed, .versionRead, .macRead])
        #expect(final.mac == "a4cf120b9e31" && final.state == .failed)
        let reported = results.lock.withLock { results.all }
        #expect(reported.count == 2)
        #expect(reported.allSatisfy { if case .success = $0 { true } else { false } })
    }

    @Test(arguments: backends)
    func rekeyReSealsEveryUDS(backend: Backend) throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let opened = try Self.open(backend, tmp, key: try keyFile(tmp, "old"))
        for uds in [udsA, udsB] {
            try opened.store.recordNewBoard(
                uds: uds, mac: nil, usbSerial: nil, registrationID: nil, firmwareVersion: nil, provisionSettings: nil,
                alsoMark: [])
        }
        let newSource = try keyFile(tmp, "new")
        let newKey = try RegistryKey.load(path: newSource.path)
        #expect(try opened.store.rekey(to: newKey) == 2)
        let reopened = try opened.reopen(newSource)
        #expect(reopened.keyID == newKey.id)
        #expect(try reopened.allBoards().map(\.uds) == [udsA, udsB])
        #expect(throws: RegistryError.self) { try opened.reopen(.file(tmp.file("old"))) }
    }

    /// `registry migrate --to`: a station's SQLite registry copied into PostgreSQL,
    /// and copied again without a second row for any board.
    @Test(.enabled(if: PostgresCluster.available, "PostgreSQL's binaries are not installed (and CI is not set)"))
    func anSQLiteRegistryIsCopiedIntoPostgreSQLOnce() throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let key = try keyFile(tmp)
        let sqlite = try Registry(path: tmp.file("station.sqlite"), key: key)
        let first = try sqlite.recordNewBoard(uds: udsA, mac: try MACAddress("a4cf120b9e31"))
        try sqlite.markSteps([.udsSent, .udsConfirmed], boardID: first.id!)
        let second = try sqlite.recordNewBoard(uds: udsB)
        try sqlite.markSuperseded(boardID: first.id!, by: second.id!, certificatePath: "/x.pem", enrollmentPath: nil)

        let opened = try Self.open(.postgresql, tmp, key: key)
        let postgres = try #require(opened.store as? PostgresRegistry)
        #expect(try postgres.importBoards(from: sqlite) == BoardImport(copied: 2, alreadyPresent: 0, conflicts: []))
        #expect(try postgres.importBoards(from: sqlite) == BoardImport(copied: 0, alreadyPresent: 2, conflicts: []),
                "idempotent")
        let copied = try postgres.allBoards()
        #expect(copied.map(\.uds) == [udsA, udsB])
        #expect(copied[0].supersededBy == copied[1].id && copied[0].certificatePath == "/x.pem")
        #expect(copied[0].completedSteps == [.udsRecorded, .udsSent, .udsConfirmed, .macRead])
        #expect(copied[0].createdAt == (try sqlite.board(id: first.id!))?.createdAt)
    }

    /// A board another station already recorded with another UDS is two identities
    /// for one board: reported, not copied, and the rest copied all the same.
    @Test(.enabled(if: PostgresCluster.available, "PostgreSQL's binaries are not installed (and CI is not set)"))
    func aConflictingBoardIsReportedNotCopied() throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let key = try keyFile(tmp)
        let opened = try Self.open(.postgresql, tmp, key: key)
        let postgres = try #require(opened.store as? PostgresRegistry)
        let theirs = try postgres.recordNewBoard(uds: udsB, mac: try MACAddress("a4cf120b9e31"))
        let sqlite = try Registry(path: tmp.file("station.sqlite"), key: key)
        let ours = try sqlite.recordNewBoard(uds: udsA, mac: try MACAddress("a4cf120b9e31"))
        let other = try sqlite.recordNewBoard(uds: try UDS(hex: String(repeating: "77", count: 32)), mac: try MACAddress("a4cf120b9e32"))
        let conflict = BoardImport.Conflict(sourceID: ours.id!, by: .mac, value: "a4cf120b9e31", existingID: theirs.id!)
        #expect(try postgres.importBoards(from: sqlite) == BoardImport(copied: 1, alreadyPresent: 0, conflicts: [conflict]))
        #expect(try postgres.importBoards(from: sqlite) == BoardImport(copied: 0, alreadyPresent: 1, conflicts: [conflict]),
                "still reported on the next run")
        #expect(try postgres.allBoards().map(\.uds) == [udsB, other.uds])
    }

    /// Every key of a board is matched the same way: by USB serial before the MAC
    /// is known, and a UDS already there is "already present" only for the same board.
    @Test(.enabled(if: PostgresCluster.available, "PostgreSQL's binaries are not installed (and CI is not set)"))
    func importMatchesByUSBSerialAndUDSToo() throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let key = try keyFile(tmp)
        let opened = try Self.open(.postgresql, tmp, key: key)
        let postgres = try #require(opened.store as? PostgresRegistry)
        let theirs = try postgres.recordNewBoard(uds: udsB, usbSerial: "0672ff")
        let shared = try postgres.recordNewBoard(uds: try UDS(hex: String(repeating: "78", count: 32)), mac: try MACAddress("a4cf120b9e40"))
        let sqlite = try Registry(path: tmp.file("station.sqlite"), key: key)
        let ours = try sqlite.recordNewBoard(uds: udsA, usbSerial: "0672ff")
        let sameUDS = try sqlite.recordNewBoard(uds: shared.uds, mac: try MACAddress("a4cf120b9e41"))
        let result = try postgres.importBoards(from: sqlite)
        #expect(result == BoardImport(copied: 0, alreadyPresent: 0, conflicts: [
            .init(sourceID: ours.id!, by: .usbSerial, value: "0672ff", existingID: theirs.id!),
            .init(sourceID: sameUDS.id!, by: .uds, value: "a4cf120b9e40", valueKind: .mac, existingID: shared.id!),
        ]))
        #expect(try postgres.allBoards().count == 2)
    }

    /// One station at a time per board: a second handle (another station) is refused
    /// with the first one's name, and gets the board once the first lets go, or once
    /// its connection is gone (what kill -9 of a station does).
    @Test(.enabled(if: PostgresCluster.available, "PostgreSQL's binaries are not installed (and CI is not set)"))
    func aBoardIsClaimedByOneStationAtATime() throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let key = try keyFile(tmp)
        let cluster = try PostgresCluster.shared()
        let location = try PostgresLocation(url: cluster.url(try cluster.createDatabase()))
        var first: PostgresRegistry? = try PostgresRegistry(location: location, key: key)
        let second = try PostgresRegistry(location: location, key: key)
        try first!.claim(boards: ["usb:0672ff", "mac:a4cf120b9e31"], station: "line-1")
        #expect(throws: RegistryError.boardBusy(board: "with MAC a4cf120b9e31", station: "line-1")) {
            try second.claim(boards: ["mac:a4cf120b9e31"], station: "line-2")
        }
        // Refused on its second key: the first one is not kept either.
        #expect(throws: RegistryError.boardBusy(board: "with USB serial 0672ff", station: "line-1")) {
            try second.claim(boards: ["usb:other", "usb:0672ff"], station: "line-2")
        }
        try first!.claim(boards: ["usb:other"], station: "line-1")
        first!.release(boards: ["usb:other"])
        // Another board is free meanwhile; the same station may claim again.
        try second.claim(boards: ["mac:a4cf120b0002"], station: "line-2")
        first!.release(boards: ["usb:0672ff"])
        try second.claim(boards: ["usb:0672ff"], station: "line-2")
        // A board's two keys, taken and given back in one call each: both free after.
        try first!.claim(boards: ["usb:pair", "mac:a4cf120b0003"], station: "line-1")
        first!.release(boards: ["usb:pair", "mac:a4cf120b0003"])
        try second.claim(boards: ["mac:a4cf120b0003", "usb:pair"], station: "line-2")
        // The first station goes away without releasing: its connection ends, the claim with it.
        // (The server ends the session just after the socket closes: retried until it has.)
        first = nil
        var claimed = false
        for _ in 0..<600 {
            claimed = (try? second.claim(boards: ["mac:a4cf120b9e31"], station: "line-2")) != nil
            if claimed { break }
            usleep(100_000)
        }
        #expect(claimed, "the claim of a station whose connection ended was not freed")
    }

    /// Stations given different keys cannot both seal into an empty shared
    /// registry: the first seal records its key, the other station's seal is
    /// refused naming it (77), and a rekey moves the record with the secrets.
    @Test(.enabled(if: PostgresCluster.available, "PostgreSQL's binaries are not installed (and CI is not set)"))
    func stationsWithDifferentKeysCannotBothSeal() throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let keyA = try keyFile(tmp)
        let keyB = try keyFile(tmp, "b.key")
        let cluster = try PostgresCluster.shared()
        let location = try PostgresLocation(url: cluster.url(try cluster.createDatabase()))
        // Both open the empty registry: nothing sealed yet tells them apart.
        let a = try PostgresRegistry(location: location, key: keyA)
        let b = try PostgresRegistry(location: location, key: keyB)
        #expect(a.keyID != b.keyID)
        try a.recordNewBoard(uds: try UDS(hex: String(repeating: "31", count: 32)), usbSerial: "a1")
        #expect(throws: RegistryError.wrongKey(path: tmp.file("b.key"), keyID: b.keyID, neededKeyID: a.keyID)) {
            try b.recordNewBoard(uds: try UDS(hex: String(repeating: "32", count: 32)), usbSerial: "b1")
        }
        #expect(try a.allBoards().map(\.usbSerial) == ["a1"])
        // After a rekey to B's key, A's handle is the one refused.
        let keyBValue = try RegistryKey.load(path: tmp.file("b.key"))
        #expect(try a.rekey(to: keyBValue) == 1)
        try b.recordNewBoard(uds: try UDS(hex: String(repeating: "33", count: 32)), usbSerial: "b2")
        #expect(throws: RegistryError.self) { try a.recordNewBoard(uds: try UDS(hex: String(repeating: "34", count: 32)), usbSerial: "a2") }
        #expect(try b.allBoards().compactMap(\.usbSerial) == ["a1", "b2"])
    }

    /// Sessions the server ends (what a restart does to every station): the call
    /// that finds its session gone fails with 75's error or connects again, and the
    /// next one works. While a run held a claim, its calls fail until it lets go:
    /// the claim went with the claims session.
    @Test(.enabled(if: PostgresCluster.available, "PostgreSQL's binaries are not installed (and CI is not set)"))
    func aLostConnectionIsReopenedOnceNoClaimIsHeld() throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let key = try keyFile(tmp)
        let cluster = try PostgresCluster.shared()
        let database = try cluster.createDatabase()
        let location = try PostgresLocation(url: cluster.url(database))
        let registry = try PostgresRegistry(location: location, key: key)
        let station = "restart-" + UUID().uuidString.prefix(8).lowercased()
        let board = try registry.recordNewBoard(uds: try UDS(hex: String(repeating: "35", count: 32)), usbSerial: "r1")
        // The station's claims session (the one named after it), or every session it has.
        func terminate(all: Bool = false) throws {
            let which = all ? "datname = current_database() AND pid <> pg_backend_pid()" : "application_name = 'devkit station \(station)'"
            let ended = try cluster.sql(database, "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 5000)) FROM pg_stat_activity WHERE \(which)")
            #expect(all ? Int(ended) ?? 0 >= 2 : ended == "1")
        }
        // Claimed, then the session ends: the claim is gone, so the station's calls fail.
        try registry.claim(boards: ["usb:r1"], station: station)
        try terminate()
        for _ in 0..<3 {
            #expect(throws: RegistryError.self) { try registry.board(id: board.id!) }
        }
        registry.release(boards: ["usb:r1"])
        // Let go: the next call connects again (at most one more fails first).
        _ = try? registry.board(id: board.id!)
        #expect(try registry.board(id: board.id!)?.usbSerial == "r1")
        // Without a claim: one failing call at most, then it works again.
        try registry.claim(boards: ["usb:r2"], station: station)
        registry.release(boards: ["usb:r2"])
        try terminate(all: true)
        _ = try? registry.recordNewBoard(uds: try UDS(hex: String(repeating: "36", count: 32)), usbSerial: "r3")
        try registry.recordNewBoard(uds: try UDS(hex: String(repeating: "37", count: 32)), usbSerial: "r4")
        #expect(try registry.allBoards().compactMap(\.usbSerial).contains("r4"))
    }

    /// After a network cut, the server may have ended the station's claims session
    /// (its keepalive) while the station did not hear of it: a run holding claims
    /// writes nothing more, on a new session: its mark sent without waiting updates
    /// no row and is reported failed, its next call is stopped by the server's
    /// answer (its claims went with the session), and the board is free.
    @Test(.enabled(if: PostgresCluster.available, "PostgreSQL's binaries are not installed (and CI is not set)"),
          .timeLimit(.minutes(5)))
    func claimsEndedUnheardStopTheRun() throws {
        let bench = try ProxiedStations { try keyFile($0) }
        defer { bench.cleanup() }
        let (cluster, database, proxy, station, other) = (bench.cluster, bench.database, bench.proxy, bench.station, bench.other)
        let name = "cut-" + UUID().uuidString.prefix(8).lowercased()
        try station.claim(boards: ["usb:k1"], station: name)
        let board = try station.recordNewBoard(uds: try UDS(hex: String(repeating: "6a", count: 32)), usbSerial: "k1")
        proxy.cut()
        // What the server's keepalive does to a station it cannot reach.
        #expect(try cluster.sql(
            database, "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 5000)) FROM pg_stat_activity WHERE application_name = 'devkit station \(name)'"
        ) == "1")
        bench.dropIdleSessions()
        // A call of another thread (no claims) opens a new session and leaves it idle.
        let opened = DispatchSemaphore(value: 0)
        Thread {
            _ = try? station.allBoards()
            opened.signal()
        }.start()
        opened.wait()
        let reported = Mutex<[Result<BoardRecord, RegistryError>]>([])
        _ = try station.markStepsInBackground([.udsConfirmed], of: board) { result in reported.withLock { $0.append(result) } }
        let uds = try UDS(hex: String(repeating: "6b", count: 32))
        do {
            let board = try station.recordNewBoard(uds: uds, usbSerial: "k1")
            Issue.record("a run whose claims were ended carried on: recorded #\(board.id!)")
        } catch {
            guard case .serverUnavailable(_, let reason) = error else { Issue.record("\(error)"); return }
            #expect(reason.contains("claims"))
        }
        let mark = reported.withLock { $0 }
        #expect(mark.count == 1)
        if case .failure(.serverUnavailable(_, let reason))? = mark.first {
            #expect(reason.contains("claims"))
        } else {
            Issue.record("the mark sent after the claims were gone: \(mark)")
        }
        #expect(try other.allBoards().map(\.id) == [board.id], "no row recorded")
        #expect(try other.board(id: board.id!)?.udsConfirmedAt == nil, "the mark updated the row")
        try other.claim(boards: ["usb:k1"], station: "line-2")
        other.release(boards: ["usb:k1"])
        station.release(boards: ["usb:k1"])
    }

    /// A long transaction (`rekey`, `migrate --to`) of a run whose claims session
    /// the server ended unheard fails on the claims check sent with its BEGIN, and
    /// leaves no session inside that transaction for another call to find.
    @Test(.enabled(if: PostgresCluster.available, "PostgreSQL's binaries are not installed (and CI is not set)"),
          .timeLimit(.minutes(5)))
    func aFailedClaimsCheckLeavesNoTransactionOpen() throws {
        let bench = try ProxiedStations { try keyFile($0) }
        defer { bench.cleanup() }
        let (cluster, database, proxy, station) = (bench.cluster, bench.database, bench.proxy, bench.station)
        let name = "begin-" + UUID().uuidString.prefix(8).lowercased()
        try station.claim(boards: ["usb:b1"], station: name)
        proxy.cut()
        #expect(try cluster.sql(
            database, "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 5000)) FROM pg_stat_activity WHERE application_name = 'devkit station \(name)'"
        ) == "1")
        bench.dropIdleSessions()
        do {
            try station.rekey(to: RegistryKey.generate())
            Issue.record("a run whose claims were ended re-sealed the registry")
        } catch {
            guard case .serverUnavailable(_, let reason) = error else { Issue.record("\(error)"); return }
            #expect(reason.contains("claims"))
        }
        #expect(try cluster.sql(
            database, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND state LIKE 'idle in transaction%'"
        ) == "0")
        #expect(station.pool.withLock { $0.idle.count } == 0, "a session of the failed call was kept")
        station.release(boards: ["usb:b1"])
    }

    /// Lost claims are reported before a failure of a statement the call sent
    /// earlier without waiting: the earlier failure would hide why the run stops.
    @Test(.enabled(if: PostgresCluster.available, "PostgreSQL's binaries are not installed (and CI is not set)"),
          .timeLimit(.minutes(5)))
    func lostClaimsComeBeforeAnEarlierStatementsFailure() throws {
        let bench = try ProxiedStations { try keyFile($0) }
        defer { bench.cleanup() }
        let (cluster, database, proxy, station) = (bench.cluster, bench.database, bench.proxy, bench.station)
        let name = "order-" + UUID().uuidString.prefix(8).lowercased()
        try station.claim(boards: ["usb:o1"], station: name)
        proxy.cut()
        #expect(try cluster.sql(
            database, "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 5000)) FROM pg_stat_activity WHERE application_name = 'devkit station \(name)'"
        ) == "1")
        bench.dropIdleSessions()
        do {
            _ = try station.withSession { session in
                session.send("SELECT 1 / 0")
                return try session.query("SELECT 1")
            }
            Issue.record("a run whose claims were ended carried on")
        } catch {
            guard case .serverUnavailable(_, let reason) = error else { Issue.record("\(error)"); return }
            #expect(reason.contains("claims"))
        }
        station.release(boards: ["usb:o1"])
    }

    /// A claims session dropped from another call stops the runs holding claims on
    /// it at their next call, before its asynchronous close has landed (here held
    /// back by keeping the connection's event loop busy).
    @Test(.enabled(if: PostgresCluster.available, "PostgreSQL's binaries are not installed (and CI is not set)"),
          .timeLimit(.minutes(5)))
    func aDroppedClaimsSessionStopsItsRunsAtOnce() throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let cluster = try PostgresCluster.shared()
        let database = try cluster.createDatabase()
        let station = try PostgresRegistry(location: try PostgresLocation(url: cluster.url(database)), key: try keyFile(tmp))
        try station.claim(boards: ["usb:d1"], station: "dropped")
        defer { station.release(boards: ["usb:d1"]) }
        let claims = try #require(station.pool.withLock { $0.claims })
        let entered = DispatchSemaphore(value: 0), blocked = DispatchSemaphore(value: 0)
        claims.connection.eventLoop.execute { entered.signal(); blocked.wait() }
        entered.wait()
        defer { blocked.signal() }
        station.dropClaims(claims.connection)
        #expect(!claims.connection.isClosed, "the close landed before the check: the test shows nothing")
        do {
            try station.checkLease(within: .seconds(5))
            Issue.record("a run on a dropped claims session carried on")
        } catch {
            guard case .serverUnavailable(_, let reason) = error else { Issue.record("\(error)"); return }
            #expect(reason.contains("claims"))
        }
    }

    /// A fleet command claims rows on worker threads and records on its main
    /// thread: that write is checked against the claims session holding the row,
    /// so it fails, rather than go through unclaimed, once the server ended it.
    @Test(.enabled(if: PostgresCluster.available, "PostgreSQL's binaries are not installed (and CI is not set)"),
          .timeLimit(.minutes(5)))
    func aWriteToARowAnotherThreadClaimedIsChecked() throws {
        let bench = try ProxiedStations { try keyFile($0) }
        defer { bench.cleanup() }
        let (cluster, database, proxy, station) = (bench.cluster, bench.database, bench.proxy, bench.station)
        let board = try station.recordNewBoard(uds: try UDS(hex: String(repeating: "5e", count: 32)), usbSerial: "w1")
        let row = [BoardClaimKeys.row(board.id!)]
        let name = "worker-" + UUID().uuidString.prefix(8).lowercased()
        #expect(claimOnAnotherThread(station, row, station: name) == nil)
        defer { station.release(boards: row) }
        // Claims alive: the write goes through.
        _ = try station.markSteps([.certificateWritten], boardID: board.id!)
        proxy.cut()
        #expect(try cluster.sql(
            database, "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 5000)) FROM pg_stat_activity WHERE application_name = 'devkit station \(name)'"
        ) == "1")
        bench.dropIdleSessions()
        do {
            _ = try station.markSteps([.enrollmentWritten], boardID: board.id!)
            Issue.record("a write to a row whose claims were ended went through")
        } catch {
            guard case .serverUnavailable(_, let reason) = error else { Issue.record("\(error)"); return }
            #expect(reason.contains("claims"))
        }
        #expect(try cluster.sql(database, "SELECT enrollment_written_at IS NULL FROM board WHERE id = \(board.id!)") == "t")
    }

    /// The same when the writer holds claims of its own on a newer claims session:
    /// the row's claim went with the dropped one, so the write fails.
    @Test(.enabled(if: PostgresCluster.available, "PostgreSQL's binaries are not installed (and CI is not set)"),
          .timeLimit(.minutes(5)))
    func aWriterWithItsOwnClaimsStillNeedsTheRowsClaim() throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let cluster = try PostgresCluster.shared()
        let database = try cluster.createDatabase()
        let station = try PostgresRegistry(location: try PostgresLocation(url: cluster.url(database)), key: try keyFile(tmp))
        let board = try station.recordNewBoard(uds: try UDS(hex: String(repeating: "6f", count: 32)), usbSerial: "n1")
        let row = [BoardClaimKeys.row(board.id!)]
        #expect(claimOnAnotherThread(station, row, station: "newer") == nil)
        defer { station.release(boards: row) }
        let first = try #require(station.pool.withLock { $0.claims })
        station.dropClaims(first.connection)
        // This thread's own claim opens a new claims session.
        try station.claim(boards: ["usb:own"], station: "newer")
        defer { station.release(boards: ["usb:own"]) }
        #expect(station.pool.withLock { $0.claims?.connection } !== first.connection)
        do {
            _ = try station.markSteps([.enrollmentWritten], boardID: board.id!)
            Issue.record("a write to a row whose claim was dropped went through")
        } catch {
            guard case .serverUnavailable(_, let reason) = error else { Issue.record("\(error)"); return }
            #expect(reason.contains("claims"))
        }
    }

    /// Every session of the registry asks the server to give up 25 s after its data
    /// went unacknowledged (a station cut off mid-answer keeps no claim for the
    /// system's 15 minutes of retransmissions): the first with a statement, the
    /// later ones, once the server took it, in their start-up message. The test
    /// cluster listens on a Unix socket, where the value reads 0: what shows is
    /// that each session set it, and how.
    @Test(.enabled(if: PostgresCluster.available, "PostgreSQL's binaries are not installed (and CI is not set)"))
    func sessionsBoundTheServersRetransmissions() throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let cluster = try PostgresCluster.shared()
        let database = try cluster.createDatabase()
        let station = try PostgresRegistry(location: try PostgresLocation(url: cluster.url(database)), key: try keyFile(tmp))
        // How the session set it, and (for one set at start-up: a statement's value
        // does not reach reset_val) the value, which a Unix socket's setting hides.
        func setting(_ session: PostgresRegistry.Session) throws -> String? {
            try session.query("SELECT source || ' ' || reset_val AS s FROM pg_settings WHERE name = 'tcp_user_timeout'")
                .first.map { try $0.makeRandomAccess()["s"].decode(String.self) }
        }
        // The first session stays taken while the second is opened, and the claims session after both.
        let settings = try station.withSession { first in
            [try setting(first), try station.withSession { second in try setting(second) }]
        }
        #expect(settings == ["session 0", "client 25000"])
        let claims = try station.claimsSession(for: RunID.current)
        #expect(try setting(PostgresRegistry.Session(claims.connection, limit: .seconds(10))) == "client 25000")
        #expect(station.retransmissionBound.current == .atStartup)
    }

    /// Only a server that does not know the setting (PostgreSQL before 12: 42704)
    /// refuses it; any other failure (a cancel, no resources, a lost connection)
    /// says nothing about it, and the next session asks again. The first answer
    /// stands; once refused, sessions neither ask nor carry it.
    @Test func onlyAnUnknownParameterRefusesTheRetransmissionBound() {
        typealias Bound = PostgresRegistry.RetransmissionBound
        #expect(Bound.refuses(sqlState: "42704") == true)
        for other in ["57014", "53200", "57P01", "", nil] as [String?] { #expect(Bound.refuses(sqlState: other) == nil) }
        let bound = Bound()
        #expect(bound.plan.asks && bound.plan.startup == nil)
        bound.learned(refused: nil)
        #expect(bound.current == .unknown)
        bound.learned(refused: true)
        bound.learned(refused: false)
        #expect(bound.current == .refused)
        #expect(!bound.plan.asks && bound.plan.startup == nil)
        let taken = Bound()
        taken.learned(refused: false)
        #expect(!taken.plan.asks && taken.plan.startup?.name == "tcp_user_timeout" && taken.plan.startup?.value == "25000")
    }

    /// A mark sent without waiting for a row that is not there is reported as such,
    /// not as lost claims: the run's claims session stays, and the run carries on.
    @Test(.enabled(if: PostgresCluster.available, "PostgreSQL's binaries are not installed (and CI is not set)"))
    func aMarkOfAMissingRowIsNotLostClaims() throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let cluster = try PostgresCluster.shared()
        let database = try cluster.createDatabase()
        let station = try PostgresRegistry(location: try PostgresLocation(url: cluster.url(database)), key: try keyFile(tmp))
        try station.claim(boards: ["usb:m1"], station: "missing")
        defer { station.release(boards: ["usb:m1"]) }
        let board = try station.recordNewBoard(uds: try UDS(hex: String(repeating: "4d", count: 32)), usbSerial: "m1")
        var ghost = board
        ghost.id = board.id! + 1_000
        let reported = Mutex<[Result<BoardRecord, RegistryError>]>([])
        _ = try station.markStepsInBackground([.udsConfirmed], of: ghost) { result in reported.withLock { $0.append(result) } }
        // The run's next call answers the mark first, then goes on.
        #expect(try station.board(id: board.id!)?.id == board.id)
        let mark = reported.withLock { $0 }
        #expect(mark.count == 1)
        if case .failure(.boardNotFound)? = mark.first {} else { Issue.record("the mark of a missing row: \(mark)") }
        _ = try station.markSteps([.udsConfirmed], boardID: board.id!)
        #expect(try station.board(id: board.id!)?.udsConfirmedAt != nil)
    }

    /// A station's runs (threads) hold their claims on its one claims session: two
    /// runs hold theirs at once, both locks in one server session; a mark sent
    /// without waiting is committed, and reported to the run, before its next call
    /// returns, or at its release when that comes first.
    @Test(.enabled(if: PostgresCluster.available, "PostgreSQL's binaries are not installed (and CI is not set)"))
    func theStationsRunsClaimOnOneSession() throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let key = try keyFile(tmp)
        let cluster = try PostgresCluster.shared()
        let database = try cluster.createDatabase()
        let station = try PostgresRegistry(location: try PostgresLocation(url: cluster.url(database)), key: key)
        let name = "runs-" + UUID().uuidString.prefix(8).lowercased()
        let held = """
            SELECT count(DISTINCT l.pid) || ' ' || count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
            WHERE l.locktype = 'advisory' AND l.granted AND a.application_name = 'devkit station \(name)'
            """
        let claimed = DispatchSemaphore(value: 0)
        let done = DispatchSemaphore(value: 0)
        let failure = Mutex<String?>(nil)
        Thread {
            do {
                try station.claim(boards: ["usb:t2"], station: name)
                claimed.signal()
                done.wait()
                station.release(boards: ["usb:t2"])
            } catch {
                failure.withLock { $0 = "\(error)" }
                claimed.signal()
            }
            claimed.signal()
        }.start()
        claimed.wait()
        try station.claim(boards: ["usb:t1"], station: name)
        #expect(try cluster.sql(database, held) == "1 2", "sessions, locks")
        done.signal()
        claimed.wait()
        #expect(failure.withLock { $0 } == nil)
        #expect(try cluster.sql(database, held) == "1 1", "the other run's lock released")

        let board = try station.recordNewBoard(uds: try UDS(hex: String(repeating: "63", count: 32)), usbSerial: "t1")
        let reported = Mutex<[Result<BoardRecord, RegistryError>]>([])
        let expected = try station.markStepsInBackground([.udsConfirmed], of: board) { result in
            reported.withLock { $0.append(result) }
        }
        // Sent without waiting: reported at the run's next call, not in line.
        #expect(reported.withLock { $0.isEmpty })
        #expect(expected.udsConfirmedAt != nil)
        let read = try station.board(id: board.id!)
        #expect(read?.udsConfirmedAt != nil)
        #expect(reported.withLock { $0.count } == 1)
        // A mark with no call after it: reported when the run lets go of its board.
        _ = try station.markStepsInBackground([.versionRead], of: expected) { result in
            reported.withLock { $0.append(result) }
        }
        station.release(boards: ["usb:t1"])
        #expect(reported.withLock { $0.count } == 2)
        for case .failure(let error) in reported.withLock({ $0 }) { Issue.record("\(error)") }
        #expect(try station.allBoards().first?.versionReadAt != nil)
        #expect(try cluster.sql(database, held) == "0 0")
    }

    /// Another run (thread) of the same station cannot take a board this run holds,
    /// on either backend (a board replugged under a new node while its first run
    /// goes on); the holder's own claims nest, and a refused claim keeps none of
    /// its keys.
    @Test(arguments: backends)
    func anotherRunOfTheStationIsRefused(backend: Backend) throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let store = try Self.open(backend, tmp, key: try keyFile(tmp)).store
        func fromAnotherThread(_ keys: [String]) -> RegistryError? {
            let result = Mutex<RegistryError?>(nil)
            let done = DispatchSemaphore(value: 0)
            Thread {
                do throws(RegistryError) {
                    try store.claim(boards: keys, station: "line-1")
                    store.release(boards: keys)
                } catch {
                    result.withLock { $0 = error }
                }
                done.signal()
            }.start()
            done.wait()
            return result.withLock { $0 }
        }
        let busy = RegistryError.boardBusy(board: "with USB serial same", station: "line-1 (another run of this station)")
        try store.claim(boards: ["usb:same"], station: "line-1")
        try store.claim(boards: ["usb:same"], station: "line-1")
        #expect(fromAnotherThread(["usb:free", "usb:same"]) == busy)
        // The refused claim kept nothing: this run takes "usb:free".
        try store.claim(boards: ["usb:free"], station: "line-1")
        store.release(boards: ["usb:free"])
        store.release(boards: ["usb:same"])
        #expect(fromAnotherThread(["usb:same"]) == busy, "released once of twice: still held")
        store.release(boards: ["usb:same"])
        #expect(fromAnotherThread(["usb:free", "usb:same"]) == nil)
    }

    /// A burst of runs shares the station's sessions: twelve runs each claim a
    /// board, record it and mark it, and while all of them hold their claims the
    /// station has its claims session and at most ``PostgresRegistry/maxConnections``
    /// others open on the server, not one per run.
    @Test(.enabled(if: PostgresCluster.available, "PostgreSQL's binaries are not installed (and CI is not set)"),
          .timeLimit(.minutes(5)))
    func aBurstOfRunsSharesTheStationsSessions() throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let key = try keyFile(tmp)
        let cluster = try PostgresCluster.shared()
        let database = try cluster.createDatabase()
        let station = try PostgresRegistry(location: try PostgresLocation(url: cluster.url(database)), key: key)
        func sessions() throws -> Int {
            Int(try cluster.sql(
                database, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"))
                ?? -1
        }
        let locks = """
            SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted
              AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
            """
        let runs = 12
        let working = DispatchSemaphore(value: 0)
        let finish = DispatchSemaphore(value: 0)
        let released = DispatchSemaphore(value: 0)
        let failures = Mutex<[String]>([])
        for run in 0..<runs {
            Thread {
                do {
                    try station.claim(boards: ["usb:burst\(run)"], station: "burst")
                    let board = try station.recordNewBoard(
                        uds: try UDS(hex: String(repeating: "5a", count: 32)), usbSerial: "burst\(run)", alsoMark: [.udsSent])
                    _ = try station.markSteps([.udsConfirmed], boardID: board.id!)
                    working.signal()
                    finish.wait()
                    station.release(boards: ["usb:burst\(run)"])
                } catch {
                    failures.withLock { $0.append("\(error)") }
                    working.signal()
                }
                released.signal()
            }.start()
        }
        for _ in 0..<runs { working.wait() }
        let open = try sessions()
        #expect(open >= 2 && open <= 1 + PostgresRegistry.maxConnections, "\(open) sessions for \(runs) runs")
        #expect(try cluster.sql(database, locks) == "\(runs)")
        for _ in 0..<runs { finish.signal() }
        for _ in 0..<runs { released.wait() }
        #expect(failures.withLock { $0 } == [])
        #expect(try station.allBoards().filter { $0.udsConfirmedAt != nil }.count == runs)
        #expect(try cluster.sql(database, locks) == "0")
    }

    /// Once the schema is there, opening it runs no DDL: a station's database user
    /// needs no right to create tables (`CREATE TABLE IF NOT EXISTS` would ask for it).
    @Test(.enabled(if: PostgresCluster.available, "PostgreSQL's binaries are not installed (and CI is not set)"))
    func aStationUserWithoutDDLRightsOpensACurrentRegistry() throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let key = try keyFile(tmp)
        let cluster = try PostgresCluster.shared()
        let database = try cluster.createDatabase()
        let owner = try PostgresRegistry(location: try PostgresLocation(url: cluster.url(database)), key: key)
        try owner.recordNewBoard(uds: try UDS(hex: String(repeating: "51", count: 32)), usbSerial: "d1")
        let role = "station_" + UUID().uuidString.prefix(8).lowercased()
        try cluster.sql(
            database,
            "CREATE ROLE \(role) LOGIN; REVOKE CREATE ON SCHEMA public FROM PUBLIC; "
                + "GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA public TO \(role); "
                + "GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO \(role)")
        let station = try PostgresRegistry(
            location: try PostgresLocation(url: "postgresql://\(role)@/\(database)?host=\(cluster.socketDirectory)"), key: key)
        #expect(try station.allBoards().map(\.usbSerial) == ["d1"])
        try station.recordNewBoard(uds: try UDS(hex: String(repeating: "52", count: 32)), usbSerial: "d2")
        #expect(try owner.allBoards().count == 2)
    }

    /// The busy message names the station holding the claim in this registry's
    /// database, not one holding the same board key in another database of the
    /// same server (advisory locks are per database; `pg_locks` lists them all).
    @Test(.enabled(if: PostgresCluster.available, "PostgreSQL's binaries are not installed (and CI is not set)"))
    func aBusyBoardNamesTheHolderInThisDatabase() throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let key = try keyFile(tmp)
        let cluster = try PostgresCluster.shared()
        // Other registries on the same server, each with a station claiming the same board.
        var elsewhere: [PostgresRegistry] = []
        for index in 0..<6 {
            let other = try PostgresRegistry(location: try PostgresLocation(url: cluster.url(try cluster.createDatabase())), key: key)
            try other.claim(boards: ["usb:shared-db"], station: "elsewhere-\(index)")
            elsewhere.append(other)
        }
        defer { for other in elsewhere { other.release(boards: ["usb:shared-db"]) } }
        let location = try PostgresLocation(url: cluster.url(try cluster.createDatabase()))
        let holder = try PostgresRegistry(location: location, key: key)
        let second = try PostgresRegistry(location: location, key: key)
        try holder.claim(boards: ["usb:shared-db"], station: "here")
        defer { holder.release(boards: ["usb:shared-db"]) }
        do {
            try second.claim(boards: ["usb:shared-db"], station: "other")
            Issue.record("a board claimed in this database was claimed again")
        } catch {
            guard case .boardBusy(_, let station) = error else { Issue.record("\(error)"); return }
            #expect(station == "here")
        }
    }

    /// Every station must seal with the same key: a shared registry never makes one.
    @Test(.enabled(if: PostgresCluster.available, "PostgreSQL's binaries are not installed (and CI is not set)"))
    func aSharedRegistryNeverMakesAKey() throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let cluster = try PostgresCluster.shared()
        let location = try PostgresLocation(url: cluster.url(try cluster.createDatabase()))
        let missing = RegistryKeySource.defaultFile(tmp.file("cfg/devkit/registry.key"))
        #expect(throws: RegistryError.sharedKeyMissing(path: missing.path, server: location.description)) {
            try PostgresRegistry(location: location, key: missing)
        }
        #expect(throws: RegistryError.sharedKeyMissing(path: tmp.file("none.key"), server: location.description)) {
            try PostgresRegistry(location: location, key: .file(tmp.file("none.key")))
        }
        #expect(!FileManager.default.fileExists(atPath: missing.path))
    }

    /// No server there: a temporary failure naming the server, at once.
    @Test func anUnreachableServerIsATemporaryFailure() throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let location = try PostgresLocation(url: "postgresql://devkit@/registry?host=\(tmp.path)")
        do {
            _ = try PostgresRegistry(location: location, key: .file(tmp.file("k")))
            Issue.record("opened a registry with no server")
        } catch {
            guard case .serverUnavailable(let server, _) = error else {
                Issue.record("\(error)")
                return
            }
            #expect(server == location.description)
        }
    }

    /// A reading command makes no schema in a database without one (it says there
    /// is no registry there), and no command puts devkit's tables beside another
    /// program's `board` table.
    @Test(.enabled(if: PostgresCluster.available, "PostgreSQL's binaries are not installed (and CI is not set)"))
    func aDatabaseWithoutTheSchemaIsNotGivenOneByAReader() throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let key = try keyFile(tmp)
        let cluster = try PostgresCluster.shared()
        let tables = "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        let empty = try cluster.createDatabase()
        let location = try PostgresLocation(url: cluster.url(empty))
        do {
            _ = try PostgresRegistry(location: location, key: key, readOnly: true)
            Issue.record("a reader opened a database without devkit's schema")
        } catch {
            guard case .notARegistry = error else { Issue.record("\(error)"); return }
        }
        #expect(try cluster.sql(empty, tables) == "0", "no table made by a reader")
        _ = try PostgresRegistry(location: location, key: key)
        #expect(try PostgresRegistry(location: location, key: key, readOnly: true).allBoards().isEmpty)

        let foreign = try cluster.createDatabase()
        _ = try cluster.sql(foreign, "CREATE TABLE board (id int PRIMARY KEY, foo text)")
        do {
            _ = try PostgresRegistry(location: try PostgresLocation(url: cluster.url(foreign)), key: key)
            Issue.record("devkit's schema was made beside another program's board table")
        } catch {
            guard case .notARegistry = error else { Issue.record("\(error)"); return }
        }
        #expect(try cluster.sql(foreign, tables) == "1")
        // A reader is told the same, not that nothing was provisioned there.
        do {
            _ = try PostgresRegistry(location: try PostgresLocation(url: cluster.url(foreign)), key: key, readOnly: true)
            Issue.record("a reader opened a database with another program's board table")
        } catch {
            guard case .notARegistry(_, let reason) = error, reason.contains("did not make") else { Issue.record("\(error)"); return }
        }
    }

    /// A login the server refuses, or one whose password devkit did not find, says
    /// what to fix and exits 77 (permission), not 74 with postgres-nio's own word
    /// (`authMechanismRequiresPassword`).
    @Test(.enabled(if: PostgresCluster.available, "PostgreSQL's binaries are not installed (and CI is not set)"))
    func loginProblemsSayWhatToFix() throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let key = try keyFile(tmp)
        let cluster = try PostgresCluster.dedicated()
        defer { cluster.stop() }
        let database = try cluster.createDatabase()
        _ = try cluster.sql(database, "CREATE ROLE walker LOGIN PASSWORD 'pw-walker'")
        _ = try cluster.sql(database, "GRANT ALL ON SCHEMA public TO walker")
        let hba = cluster.directory + "/data/pg_hba.conf"
        let rules = try String(contentsOfFile: hba, encoding: .utf8)
        try ("local all walker scram-sha-256\n" + rules).write(toFile: hba, atomically: false, encoding: .utf8)
        _ = try cluster.sql(database, "SELECT pg_reload_conf()")
        let location = try PostgresLocation(url: "postgresql://walker@/\(database)?host=\(cluster.directory)")
        let home = ["HOME": tmp.path]
        func refusal(passwordFile: String?) -> (reason: String, errno: Int32?)? {
            do {
                _ = try PostgresRegistry(location: location, key: key, passwordFile: passwordFile, environment: home)
                return nil
            } catch {
                guard case .cannotOpen(_, let reason, let errno) = error else { return ("\(error)", nil) }
                return (reason, errno)
            }
        }
        let none = try #require(refusal(passwordFile: nil), "opened without a password")
        #expect(none.errno == EACCES && none.reason.contains("asks for a password") && none.reason.contains("~/.pgpass"), "\(none)")
        try "wrong\n".write(toFile: tmp.file("pw"), atomically: false, encoding: .utf8)
        #expect(chmod(tmp.file("pw"), 0o600) == 0)
        let wrong = try #require(refusal(passwordFile: tmp.file("pw")), "opened with a wrong password")
        #expect(wrong.errno == EACCES && wrong.reason.contains("refused the login"), "\(wrong)")
        try "pw-walker\n".write(toFile: tmp.file("pw"), atomically: false, encoding: .utf8)
        #expect(refusal(passwordFile: tmp.file("pw")) == nil)
    }

    /// TLS to a real server on loopback: verify-full with the CA that signed the
    /// server's certificate connects; another CA, a host the certificate does not
    /// name, or a server without TLS under sslmode=require each say which setting
    /// to change (74, not 75: waiting does not help).
    @Test(.enabled(if: PostgresCluster.available && FileManager.default.isExecutableFile(atPath: "/usr/bin/openssl"),
                   "PostgreSQL's binaries or openssl are not installed (and CI is not set)"))
    func tlsToARealServer() throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let key = try keyFile(tmp)
        // The server reads its certificate and key as its own user.
        #expect(chmod(tmp.path, 0o755) == 0)
        func openssl(_ arguments: String) throws {
            let status = TestProcess.shell("cd '\(tmp.path)' && /usr/bin/openssl \(arguments) >/dev/null 2>&1")
            if status != 0 { throw ClusterError("openssl \(arguments) failed (\(status))") }
        }
        let ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
        try openssl("req -x509 \(ec) -keyout ca.key -out ca.pem -days 2 -subj /CN=devkit-test-ca")
        try openssl("req -x509 \(ec) -keyout other.key -out other-ca.pem -days 2 -subj /CN=another-ca")
        try openssl("req \(ec) -keyout server.key -out server.csr -subj /CN=localhost")
        try "subjectAltName=DNS:localhost\n".write(toFile: tmp.file("san.ext"), atomically: false, encoding: .utf8)
        try openssl("x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile san.ext")
        if getuid() == 0, let server = getpwnam("postgres") {
            for file in ["server.pem", "server.key"] { _ = chown(tmp.file(file), server.pointee.pw_uid, server.pointee.pw_gid) }
        }
        #expect(chmod(tmp.file("server.key"), 0o600) == 0)
        // A free loopback port, as the kernel picks one.
        let probe = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in(
            sin_family: sa_family_t(AF_INET), sin_port: 0, sin_addr: in_addr(s_addr: inet_addr("127.0.0.1")),
            sin_zero: (0, 0, 0, 0, 0, 0, 0, 0))
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(probe, $0, length) == 0 && getsockname(probe, $0, &length) == 0
            }
        }
        close(probe)
        try #require(bound)
        let port = Int(UInt16(bigEndian: address.sin_port))
        let cluster = try PostgresCluster.dedicated(
            tls: .init(port: port, certificateFile: tmp.file("server.pem"), keyFile: tmp.file("server.key")))
        defer { cluster.stop() }
        let database = try cluster.createDatabase()
        func open(_ query: String, host: String = "localhost") -> RegistryError? {
            do {
                let location = try PostgresLocation(url: "postgresql://devkit@\(host):\(port)/\(database)?\(query)")
                _ = try PostgresRegistry(location: location, key: key, environment: ["HOME": tmp.path])
                return nil
            } catch {
                return error
            }
        }
        #expect(open("sslmode=verify-full&sslrootcert=\(tmp.file("ca.pem"))") == nil, "verify-full with its CA")
        #expect(open("sslmode=require") == nil, "require: encrypted, not checked")
        guard case .cannotOpen(_, let wrongCA, nil)? = open("sslmode=verify-full&sslrootcert=\(tmp.file("other-ca.pem"))")
        else { Issue.record("another CA: \(String(describing: open("sslmode=verify-full&sslrootcert=\(tmp.file("other-ca.pem"))")))"); return }
        #expect(wrongCA.contains("not accepted") && wrongCA.contains("sslrootcert"), "\(wrongCA)")
        guard case .cannotOpen(_, let wrongHost, nil)? = open(
            "sslmode=verify-full&sslrootcert=\(tmp.file("ca.pem"))", host: "127.0.0.1")
        else { Issue.record("another host: \(String(describing: open("sslmode=verify-full&sslrootcert=\(tmp.file("ca.pem"))", host: "127.0.0.1")))"); return }
        #expect(wrongHost.contains("does not name the URL's host"), "\(wrongHost)")
        #expect(open("sslmode=verify-ca&sslrootcert=\(tmp.file("ca.pem"))", host: "127.0.0.1") == nil, "verify-ca ignores the host")
        // TLS off on the server: sslmode=require says so.
        _ = try cluster.sql(database, "ALTER SYSTEM SET ssl = off")
        _ = try cluster.sql(database, "SELECT pg_reload_conf()")
        var noTLS: RegistryError?
        for _ in 0..<50 {
            noTLS = open("sslmode=require")
            if noTLS != nil { break }
            usleep(100_000)
        }
        guard case .cannotOpen(_, let plain, nil)? = noTLS else { Issue.record("no TLS: \(String(describing: noTLS))"); return }
        #expect(plain.contains("does not offer TLS"), "\(plain)")
    }

    @Test func postgresURLs() throws {
        let location = try PostgresLocation(url: "postgresql://station@db.lab:6543/devkit?sslmode=verify-full&sslrootcert=/etc/ca.pem")
        #expect(location.user == "station" && location.host == "db.lab" && location.port == 6543)
        #expect(location.database == "devkit" && location.sslMode == .verifyFull && location.caFile == "/etc/ca.pem")
        #expect(try PostgresLocation(url: "postgresql://u@db/x").sslMode == .require, "TLS over the network by default")
        #expect(try PostgresLocation(url: "postgresql://u@/x?host=/run/pg").socketPath == "/run/pg/.s.PGSQL.5432")
        do {
            _ = try PostgresLocation(url: "postgresql://u:hunter2@db/x")
            Issue.record("a password in the URL was taken")
        } catch {
            #expect(!"\(error)".contains("hunter2") && "\(error)".contains("pgpass"))
        }
        // A password as a query parameter is refused (and never repeated) as in the user part.
        do {
            _ = try PostgresLocation(url: "postgresql://u@db/x?sslmode=disable&password=Hunter2secret")
            Issue.record("a password in the URL's query was taken")
        } catch {
            #expect(!"\(error)".contains("Hunter2secret") && "\(error)".contains("pgpass"), "\(error)")
        }
        // A refused parameter's value is not repeated either: it may be a secret under another name.
        for url in ["postgresql://u@db/x?sslmode=disable&Password=hunter2", "postgresql://u@db/x?sslpassword=hunter2",
                    "postgresql://u:hunter2@db:54x2/x", "postgresql://u@db/x?password=hun#ter2",
                    "postgresql://u@db/x?hunter2", "postgresql://u@db/x?sslmode=disable#hunter2"] {
            do {
                _ = try PostgresLocation(url: url)
                Issue.record("\(url) was taken")
            } catch {
                #expect(!"\(error)".contains("hunter2") && !"\(error)".contains("ter2"), "\(error)")
            }
        }
        // A socket directory's port, as libpq reads it.
        #expect(try PostgresLocation(url: "postgresql://u@/x?host=/run/pg&port=6000").socketPath == "/run/pg/.s.PGSQL.6000")
        // A misspelt parameter is refused: `sslmdoe=verify-full` would leave the certificate unchecked.
        for bad in ["postgresql://db/x", "postgresql://u@db/", "postgresql://u@db/x?sslmode=maybe",
                    "postgresql://u@db/x?sslmdoe=verify-full", "postgresql://u@db/x?user=other",
                    "postgresql://u@/x?host=/run/pg&port=none"] {
            do {
                _ = try PostgresLocation(url: bad)
                Issue.record("\(bad) was taken")
            } catch {
                guard case .invalidURL = error else { Issue.record("\(bad): \(error)"); continue }
            }
        }
    }

    /// The server's certificate is checked as libpq checks it.
    @Test func sslModesCheckTheCertificateAsLibpqDoes() throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let home = ["HOME": tmp.path]
        let root = tmp.path + "/.postgresql/root.crt"
        #expect(FileManager.default.createFile(atPath: tmp.file("ca.pem"), contents: Data("ca".utf8)))
        func check(_ query: String) throws(RegistryError) -> PostgresLocation.CertificateCheck {
            try PostgresLocation(url: "postgresql://u@db.lab/x?" + query).certificateCheck(environment: home)
        }
        #expect(try check("sslmode=disable") == .unchecked)
        #expect(try check("sslmode=require") == .unchecked, "nothing to check against")
        // libpq: `require` with a CA file verifies the chain (verify-ca).
        #expect(try check("sslmode=require&sslrootcert=\(tmp.file("ca.pem"))") == .chain(caFile: tmp.file("ca.pem")))
        #expect(try check("sslmode=verify-ca&sslrootcert=\(tmp.file("ca.pem"))") == .chain(caFile: tmp.file("ca.pem")))
        #expect(try check("sslmode=verify-full&sslrootcert=\(tmp.file("ca.pem"))") == .chainAndHost(caFile: tmp.file("ca.pem")))
        // A CA file named but missing fails for `require` too (ENOENT: exit 66), as libpq does.
        for mode in ["require", "verify-ca", "verify-full"] {
            do {
                _ = try check("sslmode=\(mode)&sslrootcert=\(tmp.file("missing.pem"))")
                Issue.record("\(mode) with a missing CA file was taken")
            } catch {
                guard case .cannotOpen(_, let reason, ENOENT?) = error else { Issue.record("\(mode): \(error)"); continue }
                #expect(reason.contains("missing.pem"), "\(reason)")
            }
        }
        // verify-full without sslrootcert: ~/.postgresql/root.crt, and a clear failure without it.
        do {
            _ = try check("sslmode=verify-full")
            Issue.record("verify-full with no CA file was taken")
        } catch {
            guard case .cannotOpen(_, let reason, _) = error else { Issue.record("\(error)"); return }
            #expect(reason.contains(root) && reason.contains("sslrootcert"), "\(reason)")
        }
        try FileManager.default.createDirectory(atPath: tmp.path + "/.postgresql", withIntermediateDirectories: true)
        #expect(FileManager.default.createFile(atPath: root, contents: Data("ca".utf8)))
        #expect(try check("sslmode=verify-full") == .chainAndHost(caFile: root))
        #expect(try check("sslmode=require") == .chain(caFile: root), "libpq: a root.crt there makes require verify-ca")
    }

    @Test func passwordsComeFromPgpassOrAFile() throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let location = try PostgresLocation(url: "postgresql://station@db.lab:5432/devkit")
        #expect(FileManager.default.createFile(atPath: tmp.file("pgpass"), contents: Data("""
            # comment
            other:5432:devkit:station:nope
            db.lab:*:devkit:station:s3cr\\:et
            """.utf8)))
        _ = chmod(tmp.file("pgpass"), 0o600)
        #expect(try location.password(passwordFile: nil, environment: ["PGPASSFILE": tmp.file("pgpass")]) == "s3cr:et")
        _ = chmod(tmp.file("pgpass"), 0o644)
        #expect(try location.password(passwordFile: nil, environment: ["PGPASSFILE": tmp.file("pgpass")]) == nil,
                "a .pgpass others may read is ignored, as libpq does")
        #expect(FileManager.default.createFile(atPath: tmp.file("pw"), contents: Data("fromfile\n".utf8)))
        _ = chmod(tmp.file("pw"), 0o600)
        #expect(try location.password(passwordFile: tmp.file("pw")) == "fromfile")
        // A named password file others may read is refused, saying how to fix it.
        _ = chmod(tmp.file("pw"), 0o640)
        do {
            _ = try location.password(passwordFile: tmp.file("pw"))
            Issue.record("a password file others may read was used")
        } catch {
            guard case .cannotOpen(_, let reason, EACCES?) = error else { Issue.record("\(error)"); return }
            #expect(reason.contains("chmod 600") && !reason.contains("fromfile"), "\(reason)")
        }
        // A named password file that is not there says so, with ENOENT (exit 66).
        do {
            _ = try location.password(passwordFile: tmp.file("nowhere"))
            Issue.record("a missing password file was taken")
        } catch {
            guard case .cannotOpen(_, let reason, ENOENT?) = error else { Issue.record("\(error)"); return }
            #expect(reason.contains("nowhere") && reason.localizedCaseInsensitiveContains("no such file"), "\(reason)")
        }
        // Windows line ends: the \r is not part of the password, in either file.
        #expect(FileManager.default.createFile(atPath: tmp.file("crlf"), contents: Data("fromfile\r\nsecond\r\n".utf8)))
        _ = chmod(tmp.file("crlf"), 0o600)
        #expect(try location.password(passwordFile: tmp.file("crlf")) == "fromfile")
        #expect(FileManager.default.createFile(
            atPath: tmp.file("pgpass"), contents: Data("db.lab:5432:devkit:station:crlf\r\n".utf8)))
        _ = chmod(tmp.file("pgpass"), 0o600)
        #expect(try location.password(passwordFile: nil, environment: ["PGPASSFILE": tmp.file("pgpass")]) == "crlf")
        // A directory named as the password file is said as such, not "chmod 600" it.
        do {
            _ = try location.password(passwordFile: tmp.path)
            Issue.record("a directory was taken for a password file")
        } catch {
            guard case .cannotOpen(_, let reason, _) = error else { Issue.record("\(error)"); return }
            #expect(reason.contains("is a directory") && !reason.contains("chmod"), "\(reason)")
        }
        // An empty password file is said as such (the server would only refuse the login).
        #expect(FileManager.default.createFile(atPath: tmp.file("empty"), contents: Data("\n".utf8)))
        _ = chmod(tmp.file("empty"), 0o600)
        do {
            _ = try location.password(passwordFile: tmp.file("empty"))
            Issue.record("an empty password file was taken")
        } catch {
            guard case .cannotOpen(_, let reason, EACCES?) = error else { Issue.record("\(error)"); return }
            #expect(reason.contains("is empty"), "\(reason)")
        }
    }

    /// libpq's host rule: a socket directory matches its own path; `localhost` only
    /// the default directory's socket.
    @Test func pgpassMatchesASocketByItsDirectory() throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        // The default directory's socket is `localhost`, never its path; /tmp is not the
        // default on Debian's libpq; a password ends at its first unescaped colon.
        #expect(FileManager.default.createFile(atPath: tmp.file("pgpass"), contents: Data("""
            /var/run/postgresql:5432:devkit:station:literal-path
            localhost:5432:devkit:station:for-the-default:ignored
            /srv/pg:5432:devkit:station:for-srv
            """.utf8)))
        _ = chmod(tmp.file("pgpass"), 0o600)
        let environment = ["PGPASSFILE": tmp.file("pgpass")]
        let custom = try PostgresLocation(url: "postgresql://station@/devkit?host=/srv/pg")
        #expect(try custom.password(passwordFile: nil, environment: environment) == "for-srv")
        let standard = try PostgresLocation(url: "postgresql://station@/devkit?host=/var/run/postgresql")
        #expect(try standard.password(passwordFile: nil, environment: environment) == "for-the-default")
        for elsewhere in ["/tmp", "/tmp/elsewhere", "/run/postgresql"] {
            let other = try PostgresLocation(url: "postgresql://station@/devkit?host=\(elsewhere)")
            #expect(try other.password(passwordFile: nil, environment: environment) == nil, "\(elsewhere)")
        }
    }

    /// `--registry-password-file <(pass show db)`: a pipe is read as the other secret files are.
    /// It is read once: the next connection of the process (watch after an outage) reuses it.
    /// A device is refused before its mode is looked at (no "chmod 600 /dev/null").
    @Test func aPasswordFileMayBeAPipe() throws {
        let location = try PostgresLocation(url: "postgresql://station@db.lab:5432/devkit")
        var ends: [Int32] = [-1, -1]
        #expect(pipe(&ends) == 0)
        for end in ends { _ = fcntl(end, F_SETFD, FD_CLOEXEC) }  // not inherited by the test's other children
        defer { close(ends[0]) }
        _ = "piped\n".withCString { write(ends[1], $0, 6) }
        close(ends[1])
        #expect(try location.password(passwordFile: "/dev/fd/\(ends[0])") == "piped")
        #expect(try location.password(passwordFile: "/dev/fd/\(ends[0])") == "piped", "a second connection")
        do {
            _ = try location.password(passwordFile: "/dev/null")
            Issue.record("a device was taken for a password file")
        } catch {
            guard case .cannotOpen(_, let reason, _) = error else { Issue.record("\(error)"); return }
            #expect(reason.contains("a device") && !reason.contains("chmod"), "\(reason)")
        }
    }

    /// An IPv6 address in brackets: bare for the connection and .pgpass, bracketed when shown.
    @Test func anIPv6Address() throws {
        let location = try PostgresLocation(url: "postgresql://station@[::1]:5433/devkit?sslmode=disable")
        #expect(location.host == "::1" && location.port == 5433)
        #expect(location.description == "postgresql://station@[::1]:5433/devkit", "\(location.description)")
    }
}

/// Two stations on one database of the shared test cluster: `station` reaches it
/// through a ``StallingProxy`` and waits at most 5 s for an answer, `other`
/// directly.
struct ProxiedStations {
    let tmp: TempDir
    let cluster: PostgresCluster
    let database: String
    let proxy: StallingProxy
    let station: PostgresRegistry
    let other: PostgresRegistry

    init(keyFile: (TempDir) throws -> RegistryKeySource) throws {
        tmp = try TempDir()
        let key = try keyFile(tmp)
        cluster = try PostgresCluster.shared()
        database = try cluster.createDatabase()
        proxy = try StallingProxy(to: cluster.socketDirectory + "/.s.PGSQL.5432")
        station = try PostgresRegistry(
            location: try PostgresLocation(url: "postgresql://devkit@/\(database)?host=\(proxy.directory)"), key: key,
            answerTimeout: .seconds(5))
        other = try PostgresRegistry(location: try PostgresLocation(url: cluster.url(database)), key: key)
    }

    /// The station's idle sessions made before a ``StallingProxy/cut()`` are dead
    /// too: dropped, as the station does once it finds them reset (the proxy keeps
    /// them silent instead).
    func dropIdleSessions() {
        station.pool.withLock { pool in
            for connection in pool.idle { PostgresRegistry.close(connection) }
            pool.open -= pool.idle.count
            pool.idle = []
        }
    }

    func cleanup() {
        proxy.stop()
        tmp.cleanup()
    }
}
