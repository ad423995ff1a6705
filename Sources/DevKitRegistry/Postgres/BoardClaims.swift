import Crypto
import DevKitModel
import Foundation
import PostgresNIO
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// One station at a time per board (issue 16): a PostgreSQL session advisory lock
/// per board key, held by the claiming station's claims session. The server drops
/// it when that connection ends, so a station killed with -9 (or cut off) frees its
/// boards without anyone cleaning up; no table row can be left behind stale. The
/// holder's station name is its connection's `application_name`, which other
/// sessions read in `pg_stat_activity`. Every run of a station claims on the one
/// claims session (which run holds what is this process's ``ClaimTable``); each
/// call of claim (all its keys: a board's MAC and USB serial) and of release is one
/// statement, no transaction around it.
extension PostgresRegistry {
    static let applicationNamePrefix = "devkit station "

    /// The lock's 62-bit key: positive, so that `pg_locks` (two 32-bit oids) gives it back unchanged.
    static func advisoryKey(_ key: String) -> Int64 {
        let digest = Array(SHA256.hash(data: Data(("devkit board " + key).utf8)))
        let value = digest.prefix(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        return Int64(bitPattern: value & 0x3FFF_FFFF_FFFF_FFFF)
    }

    public func claim(boards keys: [String], station: String) throws(RegistryError) {
        // Claimed by this call: nested ones and those the server granted.
        var taken: [String] = []
        // Entered in the table for this run, not (yet) held on the server.
        var fresh: [String] = []
        do throws(RegistryError) {
            for key in keys {
                switch claimTable.take(key) {
                case .nested:
                    taken.append(key)
                case .heldByAnotherRun:
                    // Refused here, whichever connection that run holds it on: the
                    // table is this process's record of who holds what.
                    throw ClaimTable.busyHere(key, station: station)
                case .fresh:
                    fresh.append(key)
                }
            }
            guard !fresh.isEmpty else { return }
            // One statement for all of them (a board's MAC and USB serial): one round trip.
            let granted = try serverClaim(fresh, station: station)
            taken += zip(fresh, granted).filter(\.1).map(\.0)  // counted in this run's lease by serverClaim
            fresh = zip(fresh, granted).filter { !$0.1 }.map(\.0)
            if let refused = fresh.first {
                throw RegistryError.boardBusy(board: ClaimTable.describe(refused), station: try holder(of: refused))
            }
        } catch {
            // None taken when any is refused or fails: the caller's release never runs.
            for key in fresh { claimTable.forget(key) }
            release(boards: taken)
            throw error
        }
    }

    /// Takes `keys`' advisory locks on the station's claims session, in one
    /// statement; whether each was granted. Those granted are counted in the run's
    /// lease, which records the session its claims are on.
    private func serverClaim(_ keys: [String], station: String) throws(RegistryError) -> [Bool] {
        let owner = RunID.current
        try checkLease(owner: owner, within: answerTimeout)
        let claims = try claimsSession(for: owner)
        let connection = claims.connection
        do {
            let locks = keys.indices.map { "pg_try_advisory_lock($\($0 + 2)) AS granted\($0)" }.joined(separator: ", ")
            let cells = try Session(connection, limit: answerTimeout).query(
                "SELECT set_config('application_name', $1, false) AS name, " + locks,
                [PostgresData(string: Self.applicationNamePrefix + station)] + keys.map { PostgresData(int64: Self.advisoryKey($0)) }
            ).first?.makeRandomAccess()
            let granted = try keys.indices.map { index in try cells?["granted\(index)"].decode(Bool.self) ?? false }
            let count = granted.filter { $0 }.count
            if count > 0 {
                pool.withLock { pool in
                    // A session dropped since it was taken above (another run's
                    // failure) is closing: the new lease starts as dropped.
                    var lease = pool.leases[owner]
                        ?? Lease(session: claims, claims: 0, dropped: pool.claims?.connection !== connection)
                    lease.claims += count
                    pool.leases[owner] = lease
                }
            }
            return granted
        } catch {
            if Self.isConnectionFailure(error) { dropClaims(connection) }  // NoAnswer included
            if let error = error as? RegistryError { throw error }
            throw Self.callFailure(location.description, error, lockTimeout: lockTimeout)
        }
    }

    /// The station holding `key`'s lock, as its claims session names it.
    private func holder(of key: String) throws(RegistryError) -> String {
        let claims = try claimsSession(for: RunID.current)
        let connection = claims.connection
        do {
            let name = try Session(connection, limit: answerTimeout).query(
                """
                SELECT a.application_name AS name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
                  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                  AND ((l.classid::bigint << 32) | l.objid::bigint) = $1 AND l.pid <> pg_backend_pid()
                LIMIT 1
                """, [PostgresData(int64: Self.advisoryKey(key))]
            ).first.flatMap { try $0.makeRandomAccess()["name"].decode(String?.self) }
            return name.map { $0.hasPrefix(Self.applicationNamePrefix) ? String($0.dropFirst(Self.applicationNamePrefix.count)) : $0 }
                ?? "another station"
        } catch {
            if Self.isConnectionFailure(error) { dropClaims(connection) }  // NoAnswer included
            if let error = error as? RegistryError { throw error }
            throw Self.callFailure(location.description, error, lockTimeout: lockTimeout)
        }
    }

    public func release(boards keys: [String]) {
        // The keys whose last claim this gives back, by the session holding them:
        // unlocked in one statement per session.
        var unlocks: [(connection: PostgresConnection, keys: [String])] = []
        for key in keys {
            guard let owner = claimTable.give(key) else { continue }
            // One claim fewer (the lease ends with its last), and the run's marks
            // sent before answered and reported, as before any call of the run.
            let (connection, marks): (PostgresConnection?, [PendingMark]) = pool.withLock { pool in
                guard var lease = pool.leases[owner] else { return (nil, []) }
                let marks = lease.pending
                lease.pending = []
                lease.claims -= 1
                pool.leases[owner] = lease.claims > 0 ? lease : nil
                // A dropped session is closing: nothing to unlock on it.
                return (lease.usable ? lease.claimsConnection : nil, marks)
            }
            answer(marks, within: answerTimeout)
            guard let connection else { continue }
            if let index = unlocks.firstIndex(where: { $0.connection === connection }) {
                unlocks[index].keys.append(key)
            } else {
                unlocks.append((connection, [key]))
            }
        }
        for (connection, keys) in unlocks {
            // Best effort: a lost session has released everything already.
            guard !connection.isClosed else { continue }
            do {
                _ = try Session(connection, limit: answerTimeout).query(
                    "SELECT " + keys.indices.map { "pg_advisory_unlock($\($0 + 1)) AS released\($0)" }.joined(separator: ", "),
                    keys.map { PostgresData(int64: Self.advisoryKey($0)) })
            } catch {
                // Perhaps still locked, on the session every run of the station
                // claims on: closed, so that no board stays held by a station that
                // is done with it (the other runs' claims go with it, and their
                // calls fail until they let go, as after a lost connection).
                dropClaims(connection)
            }
        }
    }
}

/// Which run of this process holds each claimed key: a second thread of the same
/// station (a board replugged under a new node while its first run still holds
/// the old one) is refused here as "another run of this station", without a round
/// trip, and a run's own claims nest (a session may take its own lock again, and
/// the count says when the last release is). A run is its thread: a board's provisioning
/// runs on one thread from its first claim to its last release; a claim the same
/// thread already holds nests (no server round trip).
final class ClaimTable: Sendable {
    enum Take { case fresh, nested, heldByAnotherRun }
    private struct Held {
        var owner: RunID
        var count: Int
    }
    private let held = Mutex<[String: Held]>([:])

    /// `mac:…` / `usb:…` / `row:…` as a person reads it.
    static func describe(_ key: String) -> String {
        if key.hasPrefix("mac:") { return "with MAC " + key.dropFirst(4) }
        if key.hasPrefix("usb:") { return "with USB serial " + key.dropFirst(4) }
        if key.hasPrefix("row:") { return "#" + key.dropFirst(4) }
        return key
    }

    /// The error for `key` held by another run (thread) of this process.
    static func busyHere(_ key: String, station: String) -> RegistryError {
        .boardBusy(board: describe(key), station: station + " (another run of this station)")
    }

    /// Records `key` for this thread: fresh (take it on the server), nested (held
    /// by this thread already), or held by another thread here.
    func take(_ key: String) -> Take {
        let me = RunID.current
        return held.withLock { table in
            guard var entry = table[key] else {
                table[key] = Held(owner: me, count: 1)
                return .fresh
            }
            guard entry.owner == me else { return .heldByAnotherRun }
            entry.count += 1
            table[key] = entry
            return .nested
        }
    }

    /// The run (thread) holding `key`, if one of this process does.
    func owner(of key: String) -> RunID? {
        held.withLock { $0[key]?.owner }
    }

    /// Drops a fresh entry whose server claim did not happen.
    func forget(_ key: String) {
        _ = held.withLock { $0.removeValue(forKey: key) }
    }

    /// Gives back one claim of `key`; its run when it was the last (release it on the server).
    func give(_ key: String) -> RunID? {
        give(key, releasingLast: {})
    }

    /// As ``give(_:)``, calling `release` for the last claim while the entry is still
    /// there: no other thread of the process can take the key before `release` let
    /// go of what backs it (the SQLite registry's lock file, which that thread would
    /// find held by this very process).
    func give(_ key: String, releasingLast release: () -> Void) -> RunID? {
        held.withLock { table in
            guard var entry = table[key] else { return nil }
            entry.count -= 1
            if entry.count > 0 {
                table[key] = entry
                return nil
            }
            release()
            table.removeValue(forKey: key)
            return entry.owner
        }
    }
}

/// A run of this process: the thread it runs on, as a number no other thread of the
/// process is ever given. Not `pthread_t`, which the C library hands again to a
/// thread started after one ended: a run that ended without giving its claims back
/// (a bug) leaves them held by that ended run until the process ends (every other
/// run is refused them), rather than passing them to a new thread.
struct RunID: Hashable, Sendable {
    let value: UInt

    /// This thread's: numbered on its first call, kept in thread-specific data.
    static var current: RunID {
        if let stored = pthread_getspecific(runKey) { return RunID(value: UInt(bitPattern: stored)) }
        let value = nextRun.wrappingAdd(1, ordering: .relaxed).oldValue
        // Unstored, each call would be another run: its own claims refused to it.
        precondition(pthread_setspecific(runKey, UnsafeRawPointer(bitPattern: value)) == 0, "no thread-specific data left")
        return RunID(value: value)
    }

    private static let runKey: pthread_key_t = {
        var key = pthread_key_t()
        precondition(pthread_key_create(&key, nil) == 0, "no thread-specific data key left")
        return key
    }()
    /// From 1: a stored 0 would read back as "none".
    private static let nextRun = Atomic<UInt>(1)
}
