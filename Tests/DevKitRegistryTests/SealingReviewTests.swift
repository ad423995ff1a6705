import CDevKitTestEnvironment
import DevKitModel
import Dispatch
import Foundation
import GRDB
import Synchronization
import Testing

@testable import DevKitRegistry

#if canImport(Glibc)
import Glibc
#endif

/// The key IDs of every stored UDS, and the key the registry records, read from the file.
func storedKeyIDs(_ path: String) throws -> (rows: Set<String>, recorded: String?) {
    let queue = try DatabaseQueue(path: path)
    defer { try? queue.close() }
    return try queue.read { db in
        let rows = Set(try String.fetchAll(db, sql: "SELECT uds FROM board").map { SecretSealer.keyID(of: $0) ?? "clear" })
        return (rows, try Registry.metaValue(db, Registry.Meta.keyID))
    }
}

func metaRow(_ path: String, _ name: String) throws -> String? {
    let queue = try DatabaseQueue(path: path)
    defer { try? queue.close() }
    return try queue.read { db in try Registry.metaValue(db, name) }
}

/// A registry file as devkit wrote it at schema v5 (enrollment columns, before
/// sealed secrets): one board, its UDS in clear text.
func writeV5Registry(_ path: String) throws {
    try writeV4Registry(path)
    let queue = try DatabaseQueue(path: path)
    try queue.write { db in
        try db.execute(sql: """
            ALTER TABLE board ADD COLUMN enrollment_action TEXT;
            ALTER TABLE board ADD COLUMN enrollment_at DATETIME;
            ALTER TABLE board ADD COLUMN enrollment_dps_host TEXT;
            ALTER TABLE board ADD COLUMN enrollment_etag TEXT;
            ALTER TABLE board ADD COLUMN enrollment_sha1_thumbprint TEXT;
            ALTER TABLE board ADD COLUMN enrollment_error_code INTEGER;
            ALTER TABLE board ADD COLUMN enrollment_error_message TEXT;
            ALTER TABLE board ADD COLUMN enrollment_tracking_id TEXT;
            INSERT INTO grdb_migrations VALUES ('v5: board.enrollment_*');
            """)
    }
    // devkit's registries are in WAL mode (DatabasePool).
    try queue.writeWithoutTransaction { db in _ = try db.execute(sql: "PRAGMA journal_mode = WAL") }
    try queue.close()
}

/// The fixes of the review of sealed registries (issue 16, SQLite side).
@Suite struct SealingReviewTests {
    func keyFile(_ tmp: TempDir, _ name: String) throws -> String {
        try writeKeyFile(tmp.file(name), RegistryKey.generate().key.withUnsafeBytes { Array($0) })
        return tmp.file(name)
    }

    /// The tests (and every child they start) never read or create the developer's
    /// key or registry: the test process's XDG directories are private ones.
    @Test func theTestsUseAPrivateConfigDirectory() throws {
        let home = try #require(CDevKitTestEnvironment_home().map { String(cString: $0) })
        #expect(home.hasPrefix("/") && home.contains("devkit-test-home-"))
        let realHome = String(cString: getpwuid(getuid())!.pointee.pw_dir)
        #expect(RegistryKey.defaultPath() == home + "/config/devkit/registry.key")
        #expect(Registry.defaultPath() == home + "/data/devkit/registry.sqlite")
        #expect(!RegistryKey.defaultPath().hasPrefix(realHome + "/"))
        #expect(!Registry.defaultPath().hasPrefix(realHome + "/"))
        #expect(RegistryKeySource.defaultKey() == .defaultFile(home + "/config/devkit/registry.key"))
    }

    /// Item 3: two handles that both found the registry empty, each with its own
    /// key: the first seal decides, the other gets the 77 error naming that key.
    @Test func twoHandlesWithDifferentKeysCannotBothSealAnEmptyRegistry() throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let path = tmp.file("r.sqlite")
        let (ka, kb) = (try keyFile(tmp, "a.key"), try keyFile(tmp, "b.key"))
        let a = try Registry(path: path, key: .file(ka))
        let b = try Registry(path: path, key: .file(kb))
        try a.recordNewBoard(uds: udsA)
        #expect(throws: RegistryError.wrongKey(path: kb, keyID: b.keyID, neededKeyID: a.keyID)) {
            try b.recordNewBoard(uds: udsB)
        }
        #expect(try storedKeyIDs(path) == ([a.keyID], a.keyID))
        // Opening with the other key now fails at once.
        #expect(throws: RegistryError.wrongKey(path: kb, keyID: b.keyID, neededKeyID: a.keyID)) {
            try Registry(path: path, key: .file(kb))
        }

        // At the same moment, from two threads: exactly one key wins.
        for round in 0..<5 {
            let file = tmp.file("race\(round).sqlite")
            let handles = [try Registry(path: file, key: .file(ka)), try Registry(path: file, key: .file(kb))]
            let results = Mutex<[Int: Bool]>([:])
            DispatchQueue.concurrentPerform(iterations: 2) { i in
                let ok = (try? handles[i].recordNewBoard(uds: udsA)) != nil
                results.withLock { $0[i] = ok }
            }
            let outcome = results.withLock { $0 }
            #expect(outcome.values.filter { $0 }.count == 1, "\(outcome)")
            let stored = try storedKeyIDs(file)
            #expect(stored.rows.count == 1 && stored.recorded == stored.rows.first)
        }
    }

    /// Item 2: a rekey while another handle (a provisioning run opened earlier)
    /// keeps recording boards: every secret ends under the new key; the run's writes
    /// after the rekey fail with the 77 error naming the new key.
    @Test func aRekeyRacingAWriterNeverLeavesTwoKeyIDs() throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let path = tmp.file("r.sqlite")
        let ka = try keyFile(tmp, "a.key")
        let newKey = RegistryKey.generate()
        let writer = try Registry(path: path, key: .file(ka))
        try writer.recordNewBoard(uds: udsA)
        let rekeyed = Atomic<Bool>(false)
        let counts = Mutex((recorded: 0, refused: 0, other: [String]()))
        let done = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            defer { done.signal() }
            while true {
                // Read before the attempt: the last attempt starts after the rekey returned.
                let last = rekeyed.load(ordering: .sequentiallyConsistent)
                do {
                    try writer.recordNewBoard(uds: udsB)
                    counts.withLock { $0.recorded += 1 }
                } catch {
                    if case .wrongKey(_, _, let needed) = error as? RegistryError, needed == newKey.id {
                        counts.withLock { $0.refused += 1 }
                    } else {
                        counts.withLock { $0.other.append("\(error)") }
                    }
                }
                if last { return }
                // A pause between commits: SQLite's lock is not fair, and a writer
                // committing back to back could keep the rekey out past its busy
                // timeout on a loaded machine.
                usleep(2_000)
            }
        }
        let rekeyer = try Registry(path: path, key: .file(ka))
        let resealed = try rekeyer.rekey(to: newKey)
        rekeyed.store(true, ordering: .sequentiallyConsistent)
        done.wait()

        let c = counts.withLock { $0 }
        #expect(c.other.isEmpty, "\(c.other)")
        #expect(c.refused >= 1, "the write after the rekey was refused")
        #expect(resealed >= 1)
        #expect(try storedKeyIDs(path) == ([newKey.id], newKey.id))
        try newKey.write(to: tmp.file("new.key"))
        let reopened = try Registry(path: path, key: .file(tmp.file("new.key")))
        #expect(try reopened.allBoards().count == 1 + c.recorded)
        // A second rekey from the stale handle (still the old key) is refused, nothing changed.
        #expect(throws: RegistryError.wrongKey(path: ka, keyID: writer.keyID, neededKeyID: newKey.id)) {
            try writer.rekey(to: RegistryKey.generate())
        }
        #expect(try storedKeyIDs(path) == ([newKey.id], newKey.id))
    }

    /// A registry sealed before `registry_meta` existed gets its key recorded by the migration.
    @Test func theMigrationRecordsTheKeyOfARegistrySealedBefore() throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let path = tmp.file("r.sqlite")
        let ka = try keyFile(tmp, "a.key")
        let keyID = try Registry(path: path, key: .file(ka)).recordNewBoard(uds: udsA).id!
        let queue = try DatabaseQueue(path: path)
        try queue.write { db in
            try db.execute(sql: "DROP TABLE registry_meta")
            try db.execute(sql: "DELETE FROM grdb_migrations WHERE identifier = 'v7: registry_meta'")
        }
        try queue.close()
        // Read-only, before any upgrade (no registry_meta): the sealed values name the key.
        let reader = try Registry(path: path, key: .file(ka), readOnly: true)
        #expect(try reader.board(id: keyID)?.uds == udsA)
        #expect(throws: RegistryError.self) { try Registry(path: path, key: .file(try keyFile(tmp, "b.key")), readOnly: true) }
        let reopened = try Registry(path: path, key: .file(ka))
        #expect(try metaRow(path, Registry.Meta.keyID) == reopened.keyID)
        #expect(try reopened.board(id: keyID)?.uds == udsA)
    }

    /// Item 4: a rewrite that failed after sealing (or a rekey) is recorded and
    /// finished by the next writing open; a read-only open leaves it for later.
    @Test func aFailedRewriteIsFinishedByTheNextOpen() throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let path = tmp.file("r.sqlite")
        let ka = try keyFile(tmp, "a.key")
        try writeV4Registry(path)
        // The hooks travel with the handles opened here, so no other test's rewrites count.
        let hooks = RewriteHooks(failing: true)
        do {
            _ = try Registry(path: path, key: .file(ka), readOnly: false, hooks: hooks)
            Issue.record("the failed rewrite was not reported")
        } catch {
            guard case .database(_, let reason) = error, reason.contains("the secrets are sealed") else {
                Issue.record("\(error)")
                return
            }
        }
        #expect(try metaRow(path, Registry.Meta.scrubPending) != nil)
        #expect(try storedKeyIDs(path).rows.count == 1 && !(try storedKeyIDs(path).rows.contains("clear")))
        hooks.failing.withLock { $0 = false }

        let before = hooks.finished.withLock { $0 }
        let reader = try Registry(path: path, key: .file(ka), readOnly: true, hooks: hooks)
        #expect(hooks.finished.withLock { $0 } == before, "a read-only open rewrites nothing")
        #expect(reader.owesRewrite, "the read-only open says the rewrite is owed")
        #expect(try metaRow(path, Registry.Meta.scrubPending) != nil)

        let reopened = try Registry(path: path, key: .file(ka), readOnly: false, hooks: hooks)
        #expect(hooks.finished.withLock { $0 } == before + 1)
        #expect(try metaRow(path, Registry.Meta.scrubPending) == nil)
        #expect(!reopened.owesRewrite)
        #expect(try !Registry(path: path, key: .file(ka), readOnly: true).owesRewrite)
        #expect(!holdsClearUDS(path, udsA))

        // The same after a rekey whose rewrite failed: the new key's next open finishes it.
        let newKey = RegistryKey.generate()
        try newKey.write(to: tmp.file("new.key"))
        hooks.failing.withLock { $0 = true }
        #expect(throws: RegistryError.self) { try reopened.rekey(to: newKey) }
        hooks.failing.withLock { $0 = false }
        #expect(try metaRow(path, Registry.Meta.scrubPending) != nil)
        let count = hooks.finished.withLock { $0 }
        let afterRekey = try Registry(path: path, key: .file(tmp.file("new.key")), readOnly: false, hooks: hooks)
        #expect(hooks.finished.withLock { $0 } == count + 1)
        #expect(try metaRow(path, Registry.Meta.scrubPending) == nil)
        #expect(try afterRekey.board(id: 1)?.uds == udsA)
    }

    /// Item 5: SQLite's temporary files (sorting, VACUUM's copy) stay in memory on
    /// every connection, so neither an upgrade nor a rekey writes secrets elsewhere.
    @Test func temporaryStorageStaysInMemory() throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let path = tmp.file("r.sqlite")
        let registry = try Registry(path: path, key: .file(try keyFile(tmp, "a.key")))
        let memory = 2  // PRAGMA temp_store: 0 default, 1 file, 2 memory
        #expect(try registry.pool.read { db in try Int.fetchOne(db, sql: "PRAGMA temp_store") } == memory)
        #expect(try registry.pool.write { db in try Int.fetchOne(db, sql: "PRAGMA temp_store") } == memory)
        let readOnly = try Registry(path: path, key: .file(tmp.file("a.key")), readOnly: true)
        #expect(try readOnly.pool.read { db in try Int.fetchOne(db, sql: "PRAGMA temp_store") } == memory)
    }

    /// Item 6: a key file is opened without following a link or blocking on a FIFO,
    /// and must be a regular file of this user (or root).
    @Test(.timeLimit(.minutes(5))) func keyFilesThatAreLinksFIFOsOrOthersAreRefused() throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let real = try keyFile(tmp, "real.key")
        #expect(symlink(real, tmp.file("link.key")) == 0)
        do {
            _ = try RegistryKey.load(path: tmp.file("link.key"))
            Issue.record("a symbolic link was followed")
        } catch {
            guard case .keyFileInvalid(_, let reason) = error, reason.contains("symbolic link") else {
                Issue.record("\(error)")
                return
            }
        }
        // A FIFO: refused at once (without O_NONBLOCK, open would wait for a writer forever).
        #expect(mkfifo(tmp.file("fifo.key"), 0o600) == 0)
        do {
            _ = try RegistryKey.load(path: tmp.file("fifo.key"))
            Issue.record("a FIFO was read")
        } catch {
            guard case .keyFileInvalid(_, let reason) = error, reason.contains("not a regular file (a FIFO)") else {
                Issue.record("\(error)")
                return
            }
        }
        #expect(throws: RegistryError.self) { try RegistryKey.load(path: tmp.path) }

        // Another owner: the rule, for any user.
        var st = stat()
        #expect(stat(real, &st) == 0)
        st.st_uid = 4242
        let refusal = RegistryKey.refusal(of: st, path: real, user: 1000)
        guard case .keyFileInvalid(_, let reason)? = refusal else {
            Issue.record("another user's key file was accepted: \(String(describing: refusal))")
            return
        }
        #expect(reason.contains("belongs to user 4242") && reason.contains("chown 1000"), "\(reason)")
        st.st_uid = 0
        #expect(RegistryKey.refusal(of: st, path: real, user: 1000) == nil, "root's file is accepted")
        st.st_uid = 1000
        #expect(RegistryKey.refusal(of: st, path: real, user: 1000) == nil)
    }

    /// Item 6 for real: a key file that another user owns (needs root to make one).
    @Test(.enabled(if: geteuid() == 0, "only root can give a file to another user"))
    func aKeyFileOfAnotherUserIsRefused() throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let path = try keyFile(tmp, "k")
        #expect(chown(path, 65534, 65534) == 0)
        do {
            _ = try RegistryKey.load(path: path)
            Issue.record("another user's key file was read")
        } catch {
            guard case .keyFileInvalid(_, let reason) = error, reason.contains("belongs to user 65534") else {
                Issue.record("\(error)")
                return
            }
        }
        #expect(chown(path, 0, 0) == 0)
        _ = try RegistryKey.load(path: path)
    }

    /// Item 7: a read-only open changes nothing: no key file created, no migration,
    /// no sealing, no rewrite; a registry still in clear text asks for the upgrade.
    @Test func aReadOnlyOpenChangesNothing() throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let path = tmp.file("r.sqlite")
        try writeV5Registry(path)
        let original = try #require(FileManager.default.contents(atPath: path))
        let keyPath = tmp.file("config/devkit/registry.key")
        do {
            _ = try Registry(path: path, key: .defaultFile(keyPath), readOnly: true)
            Issue.record("a clear-text registry opened read-only")
        } catch {
            guard case .needsUpgrade(let p, _) = error, p == path else { Issue.record("\(error)"); return }
        }
        #expect(FileManager.default.contents(atPath: path) == original)
        #expect(!FileManager.default.fileExists(atPath: keyPath))
        #expect(!FileManager.default.fileExists(atPath: tmp.file("config")))

        // Sealed: read-only reads it, with its key, still without writing.
        let upgraded = try Registry(path: path, key: .file(try keyFile(tmp, "a.key")))
        try upgraded.recordNewBoard(uds: udsB)
        try upgraded.pool.writeWithoutTransaction { db in _ = try db.checkpoint(.truncate) }
        let sealed = try #require(FileManager.default.contents(atPath: path))
        let reader = try Registry(path: path, key: .file(tmp.file("a.key")), readOnly: true)
        #expect(try reader.allBoards().map(\.uds) == [udsA, udsB])
        #expect(throws: RegistryError.self) { try reader.recordNewBoard(uds: udsA) }
        #expect(FileManager.default.contents(atPath: path) == sealed)

        // An empty registry and no default key: read-only opens it and creates no key.
        let empty = tmp.file("empty.sqlite")
        _ = try Registry(path: empty, key: .file(tmp.file("a.key")))
        let reading = try Registry(path: empty, key: .defaultFile(keyPath), readOnly: true)
        #expect(try reading.allBoards().isEmpty)
        #expect(!FileManager.default.fileExists(atPath: keyPath))
    }

    /// Item 8: nothing but the registry's sealing writes a board row: BoardRecord
    /// is no GRDB persistable record, its values never hold the UDS, and the UDS is
    /// no database value GRDB could bind as it is.
    @Test func noClearUDSCanReachTheDatabaseThroughBoardRecord() throws {
        let now = Date()
        let record = BoardRecord(
            id: 1, mac: nil, usbSerial: nil, registrationID: nil, firmwareVersion: nil, storedUDS: udsA,
            state: .inProgress, createdAt: now, updatedAt: now, udsRecordedAt: now)
        #expect(!((record as Any) is any MutablePersistableRecord))
        #expect(!((record as Any) is any EncodableRecord))
        #expect(!((udsA as Any) is any DatabaseValueConvertible))
        let index = try #require(BoardRecord.databaseColumns.firstIndex(of: "uds"))
        #expect(record.databaseValues[index]?.databaseValue.isNull ?? true)
        for value in record.databaseValues {
            guard let text = String.fromDatabaseValue(value?.databaseValue ?? .null) else { continue }
            #expect(!text.lowercased().contains(udsA.hexString))
        }
    }
}
