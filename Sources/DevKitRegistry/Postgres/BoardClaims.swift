import Crypto
import DevKitModel
import Foundation
import PostgresNIO

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
        return key
    }

    public func claim(boards keys: [String], station: String) throws(RegistryError) {
        var taken: [String] = []
        for key in keys {
            let lockKey = Self.advisoryKey(key)
            let holder: String? = try transaction { connection in
                let granted = try connection.query(
                    "SELECT set_config('application_name', $1, false) AS name, pg_try_advisory_lock($2) AS granted",
                    [PostgresData(string: Self.applicationNamePrefix + station), PostgresData(int64: lockKey)]
                ).wait().first.map { try $0.makeRandomAccess()["granted"].decode(Bool.self) } ?? false
                if granted { return nil }
                let name = try connection.query(
                    """
                    SELECT a.application_name AS name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                    WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                      AND ((l.classid::bigint << 32) | l.objid::bigint) = $1 AND l.pid <> pg_backend_pid()
                    LIMIT 1
                    """, [PostgresData(int64: lockKey)]
                ).wait().first.flatMap { try $0.makeRandomAccess()["name"].decode(String?.self) }
                return name.map { $0.hasPrefix(Self.applicationNamePrefix) ? String($0.dropFirst(Self.applicationNamePrefix.count)) : $0 }
                    ?? "another station"
            }
            if let holder {
                release(boards: taken)
                throw .boardBusy(board: Self.describe(key), station: holder)
            }
            countClaims(1)
            taken.append(key)
        }
    }

    public func release(boards keys: [String]) {
        for key in keys {
            // Best effort: a lost connection has released everything already.
            _ = try? transaction { connection in
                try connection.query("SELECT pg_advisory_unlock($1)", [PostgresData(int64: Self.advisoryKey(key))]).wait()
            }
            countClaims(-1)
        }
    }
}
