import DevKitModel
import Foundation
import Synchronization
import GRDB
import Testing

@testable import DevKitRegistry

#if canImport(Glibc)
import Glibc
#endif

/// A unique temporary directory, removed by `cleanup()`.
struct TempDir {
    let path: String
    init() throws {
        var template = Array((NSTemporaryDirectory() + "devkit-registry-XXXXXX").utf8CString)
        guard let p = mkdtemp(&template) else { throw POSIXError(.EIO) }
        path = String(cString: p)
    }
    func file(_ name: String) -> String { (path as NSString).appendingPathComponent(name) }
    func cleanup() { try? FileManager.default.removeItem(atPath: path) }
}

func mode(_ path: String) -> mode_t? {
    var st = stat()
    guard stat(path, &st) == 0 else { return nil }
    return st.st_mode & 0o7777
}

let udsAHex = "0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789ABCDEF"
let udsA = try! UDS(hex: udsAHex)
let udsB = try! UDS(hex: String(repeating: "5a", count: 32))

@Suite struct RegistryTests {
    @Test func defaultPathFollowsXDG() {
        #expect(
            Registry.defaultPath(environment: ["XDG_DATA_HOME": "/x/data", "HOME": "/home/u"])
                == "/x/data/devkit/registry.sqlite")
        // Unset, empty or relative XDG_DATA_HOME falls back to ~/.local/share.
        for env in [["HOME": "/home/u"], ["XDG_DATA_HOME": "", "HOME": "/home/u"],
                    ["XDG_DATA_HOME": "rel/dir", "HOME": "/home/u"]] {
            #expect(Registry.defaultPath(environment: env) == "/home/u/.local/share/devkit/registry.sqlite")
        }
    }

    /// A row is read later from any directory: a relative path given at record time
    /// is stored resolved against the directory devkit ran in then.
    @Test func recordsFilePathsAsAbsolutePaths() throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let registry = try Registry(path: tmp.file("registry.sqlite"))
        let id = try registry.recordNewBoard(uds: udsA).id!
        let cwd = FileManager.default.currentDirectoryPath
        try registry.markStep(
            .certificateWritten, boardID: id,
            update: BoardUpdate(certificatePath: "out/./az-x.pem", enrollmentPath: "/abs/az-x.enrollment.json"))
        let row = try #require(try registry.allBoards().first)
        #expect(row.certificatePath == (cwd as NSString).appendingPathComponent("out/az-x.pem"))
        #expect(row.enrollmentPath == "/abs/az-x.enrollment.json")
    }

    /// Who owns a certificate file is found by its thumbprint, whatever path the row
    /// stored (`./<id>.pem`, or a path relative to another directory by an earlier
    /// release), in any case, newest row first.
    @Test func boardsWithACertificateThumbprintAreFoundWhateverTheirPaths() throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let registry = try Registry(path: tmp.file("registry.sqlite"))
        let thumbprint = String(repeating: "AB", count: 32)
        var ids: [Int64] = []
        for path in ["./az-x.pem", "elsewhere/az-x.pem"] {
            let id = try registry.recordNewBoard(uds: udsA).id!
            try registry.markStep(
                .certificateWritten, boardID: id,
                update: BoardUpdate(certificateSHA256: thumbprint, certificatePath: path))
            ids.append(id)
        }
        _ = try registry.recordNewBoard(uds: udsB)
        #expect(try registry.boards(withCertificateSHA256: thumbprint.lowercased()).map(\.id) == ids.reversed())
        #expect(try registry.boards(withCertificateSHA256: String(repeating: "CD", count: 32)).isEmpty)
    }

    @Test func createsPrivateDirectoryAndFile() throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let dbPath = tmp.file("a/b/devkit/registry.sqlite")
        let registry = try Registry(path: dbPath)
        try registry.recordNewBoard(uds: udsA)
        #expect(mode(tmp.file("a")) == 0o700)
        #expect(mode(tmp.file("a/b/devkit")) == 0o700)
        #expect(mode(dbPath) == 0o600)
        // The WAL holds the UDS too: it must be as private as the database.
        #expect(mode(dbPath + "-wal") == 0o600)
    }

    @Test func tightensAnExistingWorldReadableFile() throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let dbPath = tmp.file("registry.sqlite")
        #expect(FileManager.default.createFile(atPath: dbPath, contents: nil,
                                               attributes: [.posixPermissions: 0o644]))
        _ = try Registry(path: dbPath)
        #expect(mode(dbPath) == 0o600)
    }

    @Test func usesWAL() throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let dbPath = tmp.file("r.sqlite")
        _ = try Registry(path: dbPath)
        // The database header says WAL (bytes 18 and 19 are 2 in WAL mode).
        let header = try Data(contentsOf: URL(fileURLWithPath: dbPath)).prefix(20)
        #expect(header.count == 20 && header[18] == 2 && header[19] == 2)
    }

    /// Steps whose results became durable together are marked by one commit: both
    /// get the same time, and the last one finishes the board.
    @Test func marksSeveralStepsInOneCommit() throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let registry = try Registry(path: tmp.file("r.sqlite"))
        let id = try #require(try registry.recordNewBoard(uds: udsA).id)
        for step in [ProvisioningStep.udsSent, .udsConfirmed, .versionRead, .macRead] {
            try registry.markStep(step, boardID: id)
        }
        let board = try registry.markSteps(
            [.certificateWritten, .enrollmentWritten], boardID: id,
            update: BoardUpdate(certificatePath: "/o/x.pem", enrollmentPath: "/o/x.enrollment.json"))
        #expect(board.state == .done)
        #expect(board.completedSteps == ProvisioningStep.allCases)
        #expect(board.certificateWrittenAt != nil && board.certificateWrittenAt == board.enrollmentWrittenAt)
        let stored = try #require(try Registry(path: tmp.file("r.sqlite")).board(id: id))
        #expect(stored.state == .done && stored.enrollmentPath == "/o/x.enrollment.json")
    }

    @Test func recordAndMarkEveryStep() throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let registry = try Registry(path: tmp.file("r.sqlite"))
        var board = try registry.recordNewBoard(uds: udsA, usbSerial: "0672FF485550755187121525")
        let id = try #require(board.id)
        #expect(board.uds.hexString == udsAHex.lowercased())
        #expect(board.state == .inProgress)
        #expect(board.completedSteps == [.udsRecorded])
        #expect(board.nextStep == .udsSent)
        #expect(board.lastStep == .udsRecorded)

        // A MAC given up front is marked at once, but the board got no further than
        // it did: the last step is the end of the unbroken run.
        let given = try Registry(path: tmp.file("given.sqlite"))
            .recordNewBoard(uds: udsB, mac: try MACAddress("a4cf120b9e31"), alsoMark: [.udsSent])
        #expect(given.completedSteps == [.udsRecorded, .udsSent, .macRead])
        #expect(given.lastStep == .udsSent && given.nextStep == .udsConfirmed)

        board = try registry.markStep(.udsSent, boardID: id)
        board = try registry.markStep(.udsConfirmed, boardID: id)
        board = try registry.markStep(.versionRead, boardID: id, update: BoardUpdate(firmwareVersion: try FirmwareVersion("1.6.2")))
        board = try registry.markStep(
            .macRead, boardID: id,
            update: BoardUpdate(mac: try MACAddress("A4:CF:12:0B:9E:31"), registrationID: try RegistrationID("az-a4cf120b9e31v1v6v2")))
        #expect(board.mac == "a4cf120b9e31")
        #expect(try registry.unfinishedBoards().map(\.id) == [id])
        board = try registry.markStep(
            .certificateWritten, boardID: id,
            update: BoardUpdate(certificateSHA1: "AA", certificateSHA256: "BB", certificatePath: "/o/x.pem"))
        #expect(board.state == .inProgress)
        board = try registry.markStep(.enrollmentWritten, boardID: id, update: BoardUpdate(enrollmentPath: "/o/x.enrollment.json"))
        #expect(board.state == .done)
        #expect(board.completedSteps == ProvisioningStep.allCases)
        #expect(board.nextStep == nil)
        #expect(try registry.unfinishedBoards().isEmpty)

        // Everything survives reopening.
        let reopened = try Registry(path: tmp.file("r.sqlite"))
        let stored = try #require(try reopened.board(id: id))
        #expect(stored.firmwareVersion == "1.6.2")
        #expect(stored.certificatePath == "/o/x.pem")
        #expect(stored.certificateSHA1 == "AA")
        #expect(stored.usbSerial == "0672FF485550755187121525")
        #expect(stored.state == .done)
        #expect(try reopened.board(byMAC: "a4-cf-12-0b-9e-31")?.id == id)
        #expect(try reopened.board(byRegistrationID: "az-a4cf120b9e31v1v6v2")?.id == id)
        #expect(try reopened.board(matching: "\(id)")?.id == id)
        #expect(try reopened.board(matching: "A4CF120B9E31")?.id == id)
        #expect(try reopened.board(matching: "az-a4cf120b9e31v1v6v2")?.id == id)
        #expect(try reopened.board(matching: "nope") == nil)
    }

    @Test func failureIsRecordedAndClearedByTheNextStep() throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let registry = try Registry(path: tmp.file("r.sqlite"))
        let id = try #require(try registry.recordNewBoard(uds: udsB).id)
        var board = try registry.markFailed(boardID: id, error: "ERROR: Verify failed.")
        #expect(board.state == .failed)
        #expect(board.error == "ERROR: Verify failed.")
        #expect(try registry.unfinishedBoards().map(\.id) == [id])
        board = try registry.markStep(.udsSent, boardID: id)
        #expect(board.state == .inProgress)
        #expect(board.error == nil)
    }

    @Test func rejectsBadInputWithoutWriting() throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let registry = try Registry(path: tmp.file("r.sqlite"))
        // A bad UDS or MAC cannot reach the registry: it is refused when parsed.
        #expect(throws: InputError.udsLength(3)) { try registry.recordNewBoard(uds: UDS(hex: "abc")) }
        #expect(throws: InputError.udsCharacter(position: 1)) {
            try registry.recordNewBoard(uds: UDS(hex: String(repeating: "g", count: 64)))
        }
        #expect(throws: InputError.macFormat("a4cf12")) {
            try registry.recordNewBoard(uds: udsA, mac: MACAddress("a4cf12"))
        }
        #expect(throws: RegistryError.invalidMAC("a4cf12")) { try registry.board(byMAC: "a4cf12") }
        #expect(throws: RegistryError.boardNotFound("42")) { try registry.markStep(.udsSent, boardID: 42) }
        #expect(try registry.allBoards().isEmpty)
        // The error message never contains the secret.
        #expect(!RegistryError.invalidStoredValue(board: 1, .udsLength(3)).description.contains(udsAHex))
        #expect(!"\(udsA)".lowercased().contains(udsAHex.lowercased()))
    }

    @Test func latestRowWinsForAReprovisionedBoard() throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let registry = try Registry(path: tmp.file("r.sqlite"))
        let first = try registry.recordNewBoard(uds: udsA, mac: try MACAddress("a4cf120b9e31"))
        let second = try registry.recordNewBoard(uds: udsB, mac: try MACAddress("a4cf120b9e31"))
        #expect(first.macReadAt != nil)
        #expect(try registry.board(byMAC: "a4cf120b9e31")?.id == second.id)
        #expect(try registry.allBoards().map(\.id) == [first.id, second.id])
    }

    /// `watch` finds a replugged board by its ST-LINK's USB serial: the latest row.
    @Test func latestRowByUSBSerial() throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let registry = try Registry(path: tmp.file("r.sqlite"))
        let first = try registry.recordNewBoard(uds: udsA, usbSerial: "0669FF555052836687031914")
        _ = try registry.recordNewBoard(uds: udsB, usbSerial: "066DFF000000000000000000")
        let third = try registry.recordNewBoard(uds: udsB, usbSerial: "0669FF555052836687031914")
        #expect(first.id != third.id)
        #expect(try registry.board(byUSBSerial: "0669FF555052836687031914")?.id == third.id)
        #expect(try registry.board(byUSBSerial: "nope") == nil)
    }

    @Test func normalizesMACSpellings() throws {
        for s in ["a4cf120b9e31", "A4:CF:12:0B:9E:31", "a4-cf-12-0b-9e-31", " A4CF120B9E31 "] {
            #expect(try Registry.normalizeMAC(s) == "a4cf120b9e31")
        }
        for s in ["a4:cf:12:0b:9e", "a4cf120b9e3g", "a4:cf-12:0b:9e:31", ""] {
            #expect(throws: RegistryError.self) { try Registry.normalizeMAC(s) }
        }
    }

    @Test func twoHandlesShareOneDatabase() throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let a = try Registry(path: tmp.file("r.sqlite"))
        let b = try Registry(path: tmp.file("r.sqlite"))
        let id = try #require(try a.recordNewBoard(uds: udsA).id)
        try b.markStep(.udsSent, boardID: id)
        #expect(try a.board(id: id)?.completedSteps == [.udsRecorded, .udsSent])
    }

    @Test func concurrentTasksEachGetTheirOwnRow() async throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let registry = try Registry(path: tmp.file("r.sqlite"))
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<16 {
                group.addTask {
                    let id = try registry.recordNewBoard(uds: udsA).id!
                    for step in ProvisioningStep.allCases.dropFirst() {
                        try registry.markStep(step, boardID: id)
                    }
                }
            }
            try await group.waitForAll()
        }
        let boards = try registry.allBoards()
        #expect(boards.count == 16)
        #expect(boards.allSatisfy { $0.state == .done })
    }

    /// Writes arriving while a commit runs share the next one: 16 callers, the first
    /// commit held until the other 15 are queued, make exactly two commits, and
    /// each caller returns only after the commit that holds its job.
    @Test(.timeLimit(.minutes(5))) func overlappingWritesShareOneCommit() throws {
        let group = GroupCommit()
        let committed = Mutex<Set<ObjectIdentifier>>([])
        let early = Mutex(0)
        let commit: @Sendable ([GroupCommit.Job]) -> Void = { batch in
            if group.commitCount == 1 {
                let deadline = Date().addingTimeInterval(120)
                while group.queuedCount < 15 && Date() < deadline { usleep(1000) }
            }
            committed.withLock { for job in batch { $0.insert(ObjectIdentifier(job)) } }
        }
        let done = DispatchGroup()
        for _ in 0..<16 {
            done.enter()
            Thread {
                let job = GroupCommit.Job { _ in }
                group.run(job, commit: commit)
                if !committed.withLock({ $0.contains(ObjectIdentifier(job)) }) { early.withLock { $0 += 1 } }
                done.leave()
            }.start()
        }
        done.wait()
        #expect(group.commitCount == 2)
        #expect(committed.withLock { $0.count } == 16)
        #expect(early.withLock { $0 } == 0)
    }

    /// Submitted jobs are committed with no caller waiting (on a background thread),
    /// in the order they were queued; a caller's write queued after them returns
    /// only once they are committed too.
    @Test(.timeLimit(.minutes(5))) func submittedJobsCommitInOrderBeforeLaterWrites() throws {
        let group = GroupCommit()
        let jobs = (0..<7).map { _ in GroupCommit.Job { _ in } }
        let index = Dictionary(uniqueKeysWithValues: jobs.enumerated().map { (ObjectIdentifier($1), $0) })
        let order = Mutex<[[Int]]>([])
        let release = DispatchSemaphore(value: 0)
        let holding = DispatchSemaphore(value: 0)
        let commit: @Sendable ([GroupCommit.Job]) -> Void = { batch in
            // The commit holding job 4 says so and waits until released.
            if batch.contains(where: { $0 === jobs[4] }) {
                holding.signal()
                release.wait()
            }
            order.withLock { $0.append(batch.map { index[ObjectIdentifier($0)]! }) }
        }
        let completed = DispatchSemaphore(value: 0)
        for job in jobs[0..<4] {
            job.completion = { _ in completed.signal() }
            group.submit(job, commit: commit)
        }
        for _ in 0..<4 { completed.wait() }
        #expect(order.withLock { $0 }.joined().map { $0 } == [0, 1, 2, 3])

        // A waited-for write (6) queued while submitted ones (4, 5) are committing.
        order.withLock { $0.removeAll() }
        group.submit(jobs[4], commit: commit)
        group.submit(jobs[5], commit: commit)
        holding.wait()
        Thread {
            let deadline = Date().addingTimeInterval(120)
            while group.queuedCount < 1 && Date() < deadline { usleep(1000) }
            release.signal()
        }.start()
        group.run(jobs[6], commit: commit)
        let batches = order.withLock { $0 }
        #expect(batches.joined().map { $0 } == [4, 5, 6])
        #expect(batches.last == [6] || batches.last == [5, 6], "\(batches)")
    }

    /// Through the registry: background marks return the row as it will be, commit
    /// in order, report failures, and a waited-for mark after them sees them all.
    @Test(.timeLimit(.minutes(5))) func backgroundMarks() throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let registry = try Registry(path: tmp.file("r.sqlite"))
        var board = try registry.recordNewBoard(uds: udsA, alsoMark: [.udsSent])
        #expect(board.completedSteps == [.udsRecorded, .udsSent])
        let seen = Mutex<[ProvisioningStep]>([])
        board = try registry.markStepsInBackground([.udsConfirmed], of: board) { result in
            if case .success(let row) = result { seen.withLock { $0.append(row.lastStep!) } }
        }
        board = try registry.markStepsInBackground([.versionRead], of: board, update: BoardUpdate(firmwareVersion: try FirmwareVersion("1.6.2"))) {
            result in if case .success(let row) = result { seen.withLock { $0.append(row.lastStep!) } }
        }
        board = try registry.markStepsInBackground([.macRead], of: board, update: BoardUpdate(mac: try MACAddress("A4:CF:12:0B:9E:31"))) {
            result in if case .success(let row) = result { seen.withLock { $0.append(row.lastStep!) } }
        }
        // The returned row is what the commits leave.
        #expect(board.mac == "a4cf120b9e31" && board.firmwareVersion == "1.6.2" && board.lastStep == .macRead)
        let done = try registry.markSteps([.certificateWritten, .enrollmentWritten], boardID: board.id!)
        #expect(seen.withLock { $0 } == [.udsConfirmed, .versionRead, .macRead])
        #expect(done.state == .done && done.mac == "a4cf120b9e31" && done.firmwareVersion == "1.6.2")
        let stored = try #require(try registry.board(id: board.id!))
        #expect(RegistryTimestamp.text(stored.macReadAt!) == RegistryTimestamp.text(board.macReadAt!))

        // A mark of a row that is gone fails through its callback.
        var ghost = board
        ghost.id = 9999
        let failure = Mutex<RegistryError?>(nil)
        let reported = DispatchSemaphore(value: 0)
        try registry.markStepsInBackground([.udsConfirmed], of: ghost) { result in
            if case .failure(let error) = result { failure.withLock { $0 = error } }
            reported.signal()
        }
        reported.wait()
        #expect(failure.withLock { $0 } == .boardNotFound("9999"))
    }

    /// In one shared transaction, a job that fails is undone alone: the others commit.
    @Test func aFailingJobDoesNotUndoTheOthers() throws {
        let db = try DatabaseQueue()
        try db.write { try $0.execute(sql: "CREATE TABLE t (x INTEGER NOT NULL)") }
        let jobs = [1, nil, 3].map { value in
            GroupCommit.Job { db in
                try db.execute(sql: "INSERT INTO t (x) VALUES (?)", arguments: [value])
                try db.execute(sql: "INSERT INTO t (x) VALUES (?)", arguments: [(value ?? 0) + 10])
            }
        }
        GroupCommit.commit(jobs, in: db, synced: true)
        #expect(jobs[0].error == nil && jobs[2].error == nil)
        #expect(jobs[1].error != nil)
        #expect(try db.read { try Int.fetchAll($0, sql: "SELECT x FROM t ORDER BY x") } == [1, 3, 11, 13])

        // Alone in its batch (no savepoint), a failing job leaves nothing behind either.
        let alone = GroupCommit.Job { db in
            try db.execute(sql: "INSERT INTO t (x) VALUES (99)")
            try db.execute(sql: "INSERT INTO t (x) VALUES (NULL)")
        }
        GroupCommit.commit([alone], in: db, synced: false)
        #expect(alone.error != nil)
        #expect(try db.read { try Int.fetchAll($0, sql: "SELECT x FROM t ORDER BY x") } == [1, 3, 11, 13])
    }

    /// Through the registry: overlapping callers each get their own durable row.
    @Test func overlappingNewBoardsAreEachRecorded() throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let registry = try Registry(path: tmp.file("r.sqlite"))
        let returned = Mutex<[UDS: Int64]>([:])
        DispatchQueue.concurrentPerform(iterations: 16) { i in
            let uds = try! UDS(hex: String(format: "%064x", i + 1))
            if let id = try? registry.recordNewBoard(uds: uds).id { returned.withLock { $0[uds] = id } }
        }
        let stored = Dictionary(uniqueKeysWithValues: try registry.allBoards().map { ($0.uds, $0.id!) })
        #expect(stored.count == 16)
        #expect(returned.withLock { $0 } == stored)
    }
}
