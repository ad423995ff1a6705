import DevKitModel
import Foundation
import GRDB

// How the registry keeps its secrets sealed (issue 16): the UDS column holds
// `sealed1:…` text made by SecretSealer, bound to its row; the row is inserted with
// a placeholder and sealed in the same transaction, once its id is known. A
// registry whose rows an older devkit stored in clear text is sealed in place on
// first open, and its file rewritten (VACUUM, WAL truncated) so the clear bytes do
// not stay behind in free pages or the write-ahead log.

extension Registry {
    /// The key ID of the registry's sealed secrets, or nil when it holds none yet.
    static func sealedKeyID(_ pool: DatabasePool, path: String) throws(RegistryError) -> String? {
        do {
            return try pool.read { db in
                try String.fetchOne(db, sql: "SELECT uds FROM board WHERE uds LIKE 'sealed1:%' LIMIT 1")
                    .flatMap(SecretSealer.keyID(of:))
            }
        } catch {
            throw .cannotOpen(path: path, reason: "\(error)")
        }
    }

    /// Seals every UDS stored in clear text, in one transaction, then rewrites the
    /// file so that no free page or WAL frame keeps the clear bytes. Nothing to do
    /// (one cheap query) once the registry is sealed.
    static func sealClearSecrets(_ pool: DatabasePool, _ sealer: SecretSealer, path: String) throws(RegistryError) {
        do {
            let sealed = try pool.writeWithoutTransaction { db -> Int in
                try db.execute(sql: "PRAGMA synchronous = FULL")
                // Zeroes what the updates free, besides the VACUUM below.
                try db.execute(sql: "PRAGMA secure_delete = ON")
                defer {
                    try? db.execute(sql: "PRAGMA synchronous = NORMAL")
                    try? db.execute(sql: "PRAGMA secure_delete = OFF")
                }
                var count = 0
                try db.inTransaction(.immediate) {
                    let clear = try Row.fetchAll(db, sql: "SELECT id, uds FROM board WHERE uds NOT LIKE 'sealed1:%'")
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
                    count = clear.count
                    return .commit
                }
                return count
            }
            if sealed > 0 {
                do { try scrub(pool) } catch {
                    // Committed: the rows are sealed; only their old clear copies may remain.
                    throw RegistryError.database(
                        path: path,
                        reason: "the secrets are sealed, but rewriting the file to drop their clear copies failed (\(error)); "
                            + "free space or stop the other devkit runs, then run `devkit registry rekey --new-key-file` "
                            + "with the same key to rewrite it")
                }
            }
        } catch let error as RegistryError {
            throw error
        } catch {
            throw .database(path: path, reason: "sealing the secrets stored in clear text failed: \(error)")
        }
    }

    /// Rewrites the database file from its live rows (VACUUM) and empties the WAL,
    /// so values replaced a moment ago are in neither.
    static func scrub(_ pool: DatabasePool) throws {
        try pool.vacuum()
        try pool.writeWithoutTransaction { db in _ = try db.checkpoint(.truncate) }
    }

    /// Inserts a new row with its UDS sealed: first with a placeholder, as the
    /// sealed value is bound to the row id SQLite assigns, then sealed, in the
    /// caller's transaction (nothing else ever sees the placeholder).
    static func insert(_ record: inout BoardRecord, _ sealer: SecretSealer, _ db: Database) throws {
        let values = zip(BoardRecord.databaseColumns, record.databaseValues).dropFirst()
            .map { (column, value) -> (any DatabaseValueConvertible)? in column == "uds" ? "" : value }
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

    /// Re-seals every secret under `newKey`, in one transaction, and rewrites the
    /// file so the values sealed under the old key are gone. Returns the number of
    /// secrets re-sealed. This handle still holds the old key: open the registry
    /// again with the new one.
    @discardableResult
    public func rekey(to newKey: RegistryKey) throws(RegistryError) -> Int {
        let old = sealer
        let new = SecretSealer(key: newKey, keyFile: "")
        // The same key: only the rewrite (retrying one that failed after its commit).
        if newKey.id == keyID {
            do { try Self.scrub(pool) } catch {
                throw .database(path: path, reason: "rewriting the file failed: \(error)")
            }
            return 0
        }
        let count: Int
        do {
            count = try pool.writeWithoutTransaction { db -> Int in
                try db.execute(sql: "PRAGMA synchronous = FULL")
                defer { try? db.execute(sql: "PRAGMA synchronous = NORMAL") }
                var count = 0
                try db.inTransaction(.immediate) {
                    for row in try Row.fetchAll(db, sql: "SELECT id, uds FROM board") {
                        let id: Int64 = row["id"]
                        let bytes = try old.open(row["uds"], boardID: id, column: "uds")
                        try db.execute(
                            sql: "UPDATE board SET uds = ? WHERE id = ?",
                            arguments: [new.seal(bytes, boardID: id, column: "uds"), id])
                        count += 1
                    }
                    return .commit
                }
                return count
            }
        } catch let error as RegistryError {
            throw error
        } catch {
            throw .database(path: path, reason: "re-sealing under the new key failed, nothing changed: \(error)")
        }
        do { try Self.scrub(pool) } catch {
            // Committed: every secret is under the new key now, whatever the rewrite did.
            throw .database(
                path: path,
                reason: "every secret is re-sealed under the new key \(newKey.id): keep that key, the old one no "
                    + "longer opens this registry; but rewriting the file to drop the old values failed (\(error)): "
                    + "run the same rekey again to retry the rewrite")
        }
        return count
    }
}

extension SecretSealer {
    /// A row of `board`, its UDS opened.
    func record(_ row: Row) throws -> BoardRecord {
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
