import Crypto
import DevKitModel
import Foundation
import PostgresNIO
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// One station at a time per board (issue 16): a PostgreSQL session advisory lock
/// per board key, held by the claiming station's connection. The server drops it
/// when that connection ends, so a station killed with -9 (or cut off) frees its
/// boards without anyone cleaning up; no table row can be left behind stale. The
/// holder's station name is its connection's `application_name`, which other
/// sessions read in `pg_stat_activity`.
extension PostgresRegistry {
    static let applicationNamePrefix = "devkit station "

    /// The lock's 62-bit key: positive, so that `pg_locks` (two 32-bit oids) gives it back unchanged.
    static func advisoryKey(_ key: String) -> Int64 {
        let digest = Array(SHA256.hash(data: Data(("devkit board " + key).utf8)))
        let value = digest.prefix(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        return Int64(bitPattern: value & 0x3FFF_FFFF_FFFF_FFFF)
    }

    /// `mac:…` / `usb:…` as a person reads it.
    static func describe(_ key: String) -> String {
        if key.hasPrefix("mac:") { return "with MAC " + key.dropFirst(4) }
        if key.hasPrefix("usb:") { return "with USB serial " + key.dropFirst(4) }
        if key.hasPrefix("row:") { return "#" + key.dropFirst(4) }
        return key
    }

    public func claim(boards keys: [String], station: String) throws(RegistryError) {
        var taken: [String] = []
        do throws(RegistryError) {
            for key in keys {
                switch claimTable.take(key) {
                case .nested:
                    taken.append(key)
                    continue
                case .heldByAnotherRun:
                    // The server's lock is the session's, shared by every board thread
                    // of this station: another run here must be refused by this table.
                    throw RegistryError.boardBusy(board: Self.describe(key), station: station + " (another run of this station)")
                case .fresh:
                    break
                }
                let holder: String?
                do throws(RegistryError) {
                    holder = try serverClaim(key, station: station)
                } catch {
                    claimTable.forget(key)
                    throw error
                }
                if let holder {
                    claimTable.forget(key)
                    throw RegistryError.boardBusy(board: Self.describe(key), station: holder)
                }
                taken.append(key)  // counted by serverClaim's transaction
            }
        } catch {
            // None taken when any is refused or fails: the caller's release never runs.
            release(boards: taken)
            throw error
        }
    }

    /// Takes `key`'s advisory lock for this session; nil, or the station holding it.
    private func serverClaim(_ key: String, station: String) throws(RegistryError) -> String? {
        let lockKey = Self.advisoryKey(key)
        return try transaction(claims: { $0 == nil ? 1 : 0 }) { connection in
            let granted = try connection.query(
                "SELECT set_config('application_name', $1, false) AS name, pg_try_advisory_lock($2) AS granted",
                [PostgresData(string: Self.applicationNamePrefix + station), PostgresData(int64: lockKey)]
            ).wait().first.map { try $0.makeRandomAccess()["granted"].decode(Bool.self) } ?? false
            if granted { return nil }
            let name = try connection.query(
                """
                SELECT a.application_name AS name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
                  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                  AND ((l.classid::bigint << 32) | l.objid::bigint) = $1 AND l.pid <> pg_backend_pid()
                LIMIT 1
                """, [PostgresData(int64: lockKey)]
            ).wait().first.flatMap { try $0.makeRandomAccess()["name"].decode(String?.self) }
            return name.map { $0.hasPrefix(Self.applicationNamePrefix) ? String($0.dropFirst(Self.applicationNamePrefix.count)) : $0 }
                ?? "another station"
        }
    }

    public func release(boards keys: [String]) {
        for key in keys where claimTable.give(key) {
            // Best effort: a lost connection has released everything already.
            _ = try? transaction { connection in
                try connection.query("SELECT pg_advisory_unlock($1)", [PostgresData(int64: Self.advisoryKey(key))]).wait()
            }
            countClaims(-1)
        }
    }
}

/// Which run of this process holds each claimed key. PostgreSQL's advisory locks
/// belong to the session, which every board thread of a station shares, and a
/// session may take its own lock again: without this table a second thread of the
/// same station (a board replugged under a new node while its first run still
/// holds the old one) would be let in. A run is its thread: a board's provisioning
/// runs on one thread from its first claim to its last release; a claim the same
/// thread already holds nests (no server round trip).
final class ClaimTable: Sendable {
    enum Take { case fresh, nested, heldByAnotherRun }
    private struct Held {
        var owner: pthread_t
        var count: Int
    }
    private let held = Mutex<[String: Held]>([:])

    /// Records `key` for this thread: fresh (take it on the server), nested (held
    /// by this thread already), or held by another thread here.
    func take(_ key: String) -> Take {
        let me = pthread_self()
        return held.withLock { table in
            guard var entry = table[key] else {
                table[key] = Held(owner: me, count: 1)
                return .fresh
            }
            guard pthread_equal(entry.owner, me) != 0 else { return .heldByAnotherRun }
            entry.count += 1
            table[key] = entry
            return .nested
        }
    }

    /// Drops a fresh entry whose server claim did not happen.
    func forget(_ key: String) {
        _ = held.withLock { $0.removeValue(forKey: key) }
    }

    /// Gives back one claim of `key`; true when it was the last (release it on the server).
    func give(_ key: String) -> Bool {
        held.withLock { table in
            guard var entry = table[key] else { return false }
            entry.count -= 1
            if entry.count > 0 {
                table[key] = entry
                return false
            }
            table.removeValue(forKey: key)
            return true
        }
    }
}
