import DevKitModel
import Foundation
import GRDB
import Synchronization

// How the registry keeps its secrets sealed (issue 16): the UDS column holds
// `sealed1:…` text made by SecretSealer, bound to its row; the row is inserted with
// a placeholder and sealed in the same transaction, once its id is known. A
// registry whose rows an older devkit stored in clear text is sealed in place on
// first open, and its file rewritten (VACUUM, WAL truncated) so the clear bytes do
// not stay behind in free pages or the write-ahead log.
//
// The table `registry_meta` (schema v7) holds the ID of the one key the registry's
// secrets are sealed with (`key_id`) and whether a rewrite is owed (`scrub_pending`).
// Every write that seals checks `key_id` in its own transaction, claiming it when
// the registry has none yet: two processes with different keys, or a process that
// opened the registry before a rekey, can never leave secrets sealed under two
// keys; the one that comes second gets the error naming the key it needs.

extension Registry {
    /// Names of the rows of `registry_meta`.
    enum Meta {
        /// The ID of the key every secret is sealed with; absent until the first seal.
        static let keyID = "key_id"
        /// Present while the file may still hold clear or old-key copies of secrets
        /// (a rewrite after sealing or rekey failed): the next writing open rewrites it.
        static let scrubPending = "scrub_pending"
    }

    /// What an open needs to know before it resolves the key.
    struct SealingState {
        /// The key the registry's secrets are sealed with (nil: none sealed yet).
        var keyID: String?
        /// Some UDS is stored in clear text (an older devkit's row).
        var holdsClearSecrets: Bool
    }

    static func sealingState(_ pool: DatabasePool, path: String) throws(RegistryError) -> SealingState {
        do {
            return try pool.read { db in
                // A read-only open of an older schema has no registry_meta: the sealed values say.
                let recorded = try metaValue(db, Meta.keyID)
                let sealed = try String.fetchOne(db, sql: "SELECT uds FROM board WHERE uds LIKE 'sealed1:%' LIMIT 1")
                    .flatMap(SecretSealer.keyID(of:))
                let clear = try Bool.fetchOne(
                    db, sql: "SELECT EXISTS (SELECT 1 FROM board WHERE uds NOT LIKE 'sealed1:%')") ?? false
                return SealingState(keyID: recorded ?? sealed, holdsClearSecrets: clear)
            }
        } catch {
            throw .cannotOpen(path: path, reason: "\(error)")
        }
    }

    /// A row of `registry_meta`, or nil (also when the table does not exist yet).
    static func metaValue(_ db: Database, _ name: String) throws -> String? {
        guard try db.tableExists("registry_meta") else { return nil }
        return try String.fetchOne(
            db.cachedStatement(sql: "SELECT value FROM registry_meta WHERE name = ?"), arguments: [name])
    }

    static func setMeta(_ db: Database, _ name: String, _ value: String?) throws {
        if let value {
            try db.cachedStatement(sql: "INSERT OR REPLACE INTO registry_meta (name, value) VALUES (?, ?)")
                .execute(arguments: [name, value])
        } else {
            try db.cachedStatement(sql: "DELETE FROM registry_meta WHERE name = ?").execute(arguments: [name])
        }
    }

    /// In the transaction of a write that seals with `sealer`: the registry's key
    /// must be the sealer's. Claims it when the registry has none yet (the first
    /// seal decides); otherwise another key means a rekey or another process's key
    /// came first, and the write fails naming the key the registry needs.
    static func checkKey(_ db: Database, _ sealer: SecretSealer) throws {
        try db.cachedStatement(sql: "INSERT OR IGNORE INTO registry_meta (name, value) VALUES ('key_id', ?)")
            .execute(arguments: [sealer.key.id])
        let recorded = try String.fetchOne(
            db.cachedStatement(sql: "SELECT value FROM registry_meta WHERE name = 'key_id'"))
        if let recorded, recorded != sealer.key.id {
            throw RegistryError.wrongKey(path: sealer.keyFile, keyID: sealer.key.id, neededKeyID: recorded)
        }
    }

    /// Runs `change`, which rewrites sealed values and returns how many, in one
    /// exclusive transaction: synced, and what it frees zeroed (besides the VACUUM
    /// that follows). The one way sealing and rekey write secrets.
    static func rewriteSecrets(_ pool: DatabasePool, _ change: @escaping (Database) throws -> Int) throws -> Int {
        try pool.writeWithoutTransaction { db -> Int in
            try db.execute(sql: "PRAGMA synchronous = FULL")
            try db.execute(sql: "PRAGMA secure_delete = ON")
            defer {
                try? db.execute(sql: "PRAGMA synchronous = NORMAL")
                try? db.execute(sql: "PRAGMA secure_delete = OFF")
            }
            var count = 0
            try db.inTransaction(.exclusive) {
                count = try change(db)
                return .commit
            }
            return count
        }
    }

    /// Seals every UDS stored in clear text, in one transaction that also records
    /// the key and that a rewrite is owed, then rewrites the file so that no free
    /// page or WAL frame keeps the clear bytes.
    static func sealClearSecrets(
        _ pool: DatabasePool, _ sealer: SecretSealer, path: String, _ hooks: RewriteHooks?
    ) throws(RegistryError) {
        let sealed: Int
        do {
            sealed = try rewriteSecrets(pool) { db in
                // Another devkit may have sealed them meanwhile, with this key or
                // another: checked even then, so that this open fails with the key needed.
                let clear = try Row.fetchAll(db, sql: "SELECT id, uds FROM board WHERE uds NOT LIKE 'sealed1:%'")
                try checkKey(db, sealer)
                guard !clear.isEmpty else { return 0 }
                for row in clear {
                    let id: Int64 = row["id"]
                    let text: String = row["uds"] ?? ""
                    // A value that is not a UDS (edited by hand) is sealed as it is:
                    // reading that board then says it holds a value devkit cannot use.
                    let bytes = (try? UDS(hex: text))?.bytes ?? Array(text.utf8)
                    try db.execute(
                        sql: "UPDATE board SET uds = ? WHERE id = ?",
                        arguments: [sealer.seal(bytes, boardID: id, column: "uds"), id])
                }
                try setMeta(db, Meta.scrubPending, "sealing " + UUID().uuidString)
                return clear.count
            }
        } catch let error as RegistryError {
            throw error
        } catch {
            throw .database(path: path, reason: "sealing the secrets stored in clear text failed: \(error)")
        }
        guard sealed > 0 else { return }
        do { try scrub(pool, path: path, hooks) } catch {
            // Committed: the rows are sealed; only their old clear copies may remain.
            throw RegistryError.database(
                path: path,
                reason: "the secrets are sealed, but rewriting the file to drop their clear copies failed (\(error)); "
                    + "free space or stop the other devkit runs: the next devkit command that writes to this "
                    + "registry (e.g. `devkit registry upgrade`) rewrites it")
        }
    }

    /// Whether a previous seal or rekey recorded a rewrite it could not do.
    static func rewriteOwed(_ pool: DatabasePool, path: String) throws(RegistryError) -> Bool {
        do { return try pool.read { db in try metaValue(db, Meta.scrubPending) } != nil } catch {
            throw .cannotOpen(path: path, reason: "\(error)")
        }
    }

    /// Finishes a rewrite that a previous seal or rekey recorded as owed and could not do.
    static func finishPendingScrub(_ pool: DatabasePool, path: String, _ hooks: RewriteHooks?) throws(RegistryError) {
        let pending: String?
        do { pending = try pool.read { db in try metaValue(db, Meta.scrubPending) } } catch {
            throw .cannotOpen(path: path, reason: "\(error)")
        }
        guard pending != nil else { return }
        do { try scrub(pool, path: path, hooks) } catch {
            throw .database(
                path: path,
                reason: "the file may still hold old copies of secrets (clear, or sealed under a previous key), and "
                    + "rewriting it failed again (\(error)); free space or stop the other devkit runs on it, then "
                    + "run `devkit registry upgrade`")
        }
    }

    /// Rewrites the database file from its live rows (VACUUM) and empties the WAL,
    /// so values replaced a moment ago are in neither; then clears `scrub_pending`.
    static func scrub(_ pool: DatabasePool, path: String, _ hooks: RewriteHooks?) throws {
        if hooks?.failing.withLock({ $0 }) == true {
            throw RegistryError.database(path: path, reason: "the rewrite failed (test hook)")
        }
        // Cleared below only if no other seal or rekey recorded a rewrite of its own meanwhile.
        let owed = try pool.read { db in try metaValue(db, Meta.scrubPending) }
        try pool.vacuum()
        try pool.writeWithoutTransaction { db in _ = try db.checkpoint(.truncate) }
        // Written after the rewrite, in a page of its own (no secret in it).
        if let owed {
            try pool.write { db in
                try db.execute(
                    sql: "DELETE FROM registry_meta WHERE name = ? AND value = ?", arguments: [Meta.scrubPending, owed])
            }
        }
        hooks?.finished.withLock { $0 += 1 }
        try? pool.writeWithoutTransaction { db in _ = try db.checkpoint(.truncate) }
    }

    /// Inserts a new row with its UDS sealed: first with a placeholder, as the
    /// sealed value is bound to the row id SQLite assigns, then sealed, in the
    /// caller's transaction (nothing else ever sees the placeholder).
    static func insert(_ record: inout BoardRecord, _ sealer: SecretSealer, _ db: Database) throws {
        let values = zip(BoardRecord.databaseColumns, record.databaseValues).dropFirst()
            .map { (column, value) -> (any DatabaseValueConvertible)? in column == "uds" ? "" : value }
        try checkKey(db, sealer)
        try db.cachedStatement(sql: insertRow).execute(arguments: StatementArguments(values))
        let id = db.lastInsertedRowID
        try db.cachedStatement(sql: "UPDATE board SET uds = ? WHERE id = ?")
            .execute(arguments: [sealer.sealUDS(record.uds, boardID: id), id])
        record.id = id
    }

    private static let insertRow: String = {
        let columns = BoardRecord.databaseColumns.dropFirst()
        return "INSERT INTO board (" + columns.joined(separator: ", ") + ") VALUES ("
            + columns.map { _ in "?" }.joined(separator: ", ") + ")"
    }()

    /// Re-seals every secret under `newKey`, in one exclusive transaction that also
    /// records the new key, and rewrites the file so the values sealed under the old
    /// key are gone. Returns the number of secrets re-sealed. This handle still holds
    /// the old key: open the registry again with the new one.
    ///
    /// The transaction waits for other writers (up to the busy timeout); a devkit run
    /// that opened the registry before and seals afterwards gets the error naming
    /// the new key (``checkKey(_:_:)``), so no secret is ever left under the old key.
    @discardableResult
    public func rekey(to newKey: RegistryKey) throws(RegistryError) -> Int {
        guard !readOnly else { throw .database(path: path, reason: "opened read-only: rekey needs a writing open") }
        let old = sealer
        let new = SecretSealer(key: newKey, keyFile: "")
        let count: Int
        do {
            count = try Self.rewriteSecrets(pool) { db in
                // Another rekey may have come first: this handle's key no longer opens anything.
                if let recorded = try Self.metaValue(db, Meta.keyID), recorded != old.key.id {
                    throw RegistryError.wrongKey(path: old.keyFile, keyID: old.key.id, neededKeyID: recorded)
                }
                var count = 0
                // The same key: only the rewrite (retrying one that failed after its commit).
                if newKey.id != old.key.id {
                    for row in try Row.fetchAll(db, sql: "SELECT id, uds FROM board") {
                        let id: Int64 = row["id"]
                        let bytes = try old.open(row["uds"], boardID: id, column: "uds")
                        try db.execute(
                            sql: "UPDATE board SET uds = ? WHERE id = ?",
                            arguments: [new.seal(bytes, boardID: id, column: "uds"), id])
                        count += 1
                    }
                }
                try Self.setMeta(db, Meta.keyID, newKey.id)
                try Self.setMeta(db, Meta.scrubPending, "rekey " + UUID().uuidString)
                return count
            }
        } catch let error as RegistryError {
            throw error
        } catch {
            throw .database(path: path, reason: "re-sealing under the new key failed, nothing changed: \(error)")
        }
        do { try Self.scrub(pool, path: path, hooks) } catch {
            if newKey.id == old.key.id {
                throw .database(path: path, reason: "rewriting the file failed: \(error)")
            }
            // Committed: every secret is under the new key now, whatever the rewrite did.
            throw .database(
                path: path,
                reason: "every secret is re-sealed under the new key \(newKey.id): keep that key, the old one no "
                    + "longer opens this registry; but rewriting the file to drop the old values failed (\(error)): "
                    + "the next devkit command that writes to it with the new key finishes the rewrite")
        }
        return count
    }
}

/// The tests' view of the file rewrite (scrub), given to one handle at its opening
/// by tests only (the initializer that takes it is internal): production handles
/// have none, so the library keeps no mutable state for tests.
final class RewriteHooks: Sendable {
    /// While true, rewrites through the handle fail (as on a full disk).
    let failing: Mutex<Bool>
    /// Rewrites finished through the handle.
    let finished = Mutex(0)

    init(failing: Bool = false) { self.failing = Mutex(failing) }
}

extension SecretSealer {
    /// A row of `board`, its UDS opened (or withheld, by a sealer without the key).
    func record(_ row: Row) throws -> BoardRecord {
        if withholds { return try BoardRecord(row: row, uds: nil) }
        let id: Int64 = row["id"]
        return try BoardRecord(row: row, uds: openUDS(row["uds"] ?? "", boardID: id))
    }
}

extension QueryInterfaceRequest<BoardRecord> {
    /// The rows, their secrets opened by `sealer`.
    func fetchAll(_ db: Database, _ sealer: SecretSealer) throws -> [BoardRecord] {
        try Row.fetchAll(db, self).map(sealer.record)
    }

    func fetchOne(_ db: Database, _ sealer: SecretSealer) throws -> BoardRecord? {
        try Row.fetchOne(db, self).map(sealer.record)
    }
}
