import DevKitModel
import DevKitTestSupport
import Foundation
import Synchronization
import Testing

@testable import DevKitRegistry

/// PostgreSQL calls that wait out a bound (the answer timeout, the lock timeout, a
/// frozen connect), split from ``RegistryBackendTests`` so that their ~80 s of waiting
/// runs beside that suite's other cases instead of after them: serialized, each
/// with its own database or proxy, among themselves only.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct RegistryBackendTimeoutTests {
    func keyFile(_ tmp: TempDir, _ name: String = "k", bytes: [UInt8]? = nil) throws -> RegistryKeySource {
        try RegistryBackendTests().keyFile(tmp, name, bytes: bytes)
    }

    /// A server that stops answering without closing the connection (its host gone,
    /// no reset: a half-open connection) fails the call as "server unavailable" (exit
    /// 75) after the answer timeout instead of hanging it; opening fails the same way,
    /// and once the server answers again the next call connects again.
    @Test(.enabled(if: PostgresCluster.available, "PostgreSQL's binaries are not installed (and CI is not set)"),
          .timeLimit(.minutes(5)))
    func aServerThatStopsAnsweringFailsTheCallInsteadOfHanging() throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let key = try keyFile(tmp)
        let cluster = try PostgresCluster.shared()
        let database = try cluster.createDatabase()
        let proxy = try StallingProxy(to: cluster.socketDirectory + "/.s.PGSQL.5432")
        defer { proxy.stop() }
        let location = try PostgresLocation(url: "postgresql://devkit@/\(database)?host=\(proxy.directory)")
        let registry = try PostgresRegistry(location: location, key: key, answerTimeout: .seconds(5))
        let board = try registry.recordNewBoard(uds: try UDS(hex: String(repeating: "41", count: 32)), usbSerial: "h1")
        proxy.stall()
        func expectUnavailable(_ call: () throws(RegistryError) -> Void) {
            do {
                try call()
                Issue.record("the call succeeded through a stalled connection")
            } catch {
                guard case .serverUnavailable(_, let reason) = error else {
                    Issue.record("expected serverUnavailable, got \(error)")
                    return
                }
                #expect(reason.contains("did not answer"))
            }
        }
        expectUnavailable { () throws(RegistryError) in _ = try registry.board(id: board.id!) }
        expectUnavailable { () throws(RegistryError) in _ = try registry.markSteps([.udsSent], boardID: board.id!) }
        expectUnavailable { () throws(RegistryError) in _ = try PostgresRegistry(location: location, key: key, answerTimeout: .seconds(5)) }
        proxy.resume()
        #expect(try registry.board(id: board.id!)?.usbSerial == "h1")
    }

    /// A long transaction (`rekey`, bounded as a whole) whose statement the server
    /// does not answer in time ends at its bound as "server unavailable": the
    /// bound closes the connection, and the ROLLBACK sent after it fails at once
    /// (postgres-nio never answers a statement sent on a closed connection: it hung).
    @Test(.enabled(if: PostgresCluster.available, "PostgreSQL's binaries are not installed (and CI is not set)"),
          .timeLimit(.minutes(5)))
    func aLongTransactionPastItsBoundEnds() throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let key = try keyFile(tmp)
        let cluster = try PostgresCluster.shared()
        let database = try cluster.createDatabase()
        let registry = try PostgresRegistry(
            location: try PostgresLocation(url: cluster.url(database)), key: key, answerTimeout: .seconds(1))
        try registry.recordNewBoard(uds: try UDS(hex: String(repeating: "46", count: 32)), usbSerial: "s1")
        // Each row's UPDATE then takes 30 s on the server, past rekey's bound (10 x the
        // answer bound); not a lock wait, which lock_timeout would end first.
        try cluster.sql(
            database,
            "CREATE FUNCTION slow_update() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(30); RETURN NEW; END $$; "
                + "CREATE TRIGGER slow_update BEFORE UPDATE ON board FOR EACH ROW EXECUTE FUNCTION slow_update()")
        do {
            _ = try registry.rekey(to: RegistryKey.generate())
            Issue.record("a rekey outlived its bound")
        } catch {
            guard case .serverUnavailable(_, let reason) = error else { Issue.record("\(error)"); return }
            #expect(reason.contains("did not answer"))
        }
        #expect(try registry.allBoards().map(\.usbSerial) == ["s1"])
    }

    /// A connection given up on while connecting (the server accepted it and then
    /// said nothing) is closed, not left open: repeated attempts against a frozen
    /// server leave no socket behind.
    @Test(.enabled(if: PostgresCluster.available, "PostgreSQL's binaries are not installed (and CI is not set)"),
          .timeLimit(.minutes(5)))
    func aConnectGivenUpOnIsClosed() throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let key = try keyFile(tmp)
        let cluster = try PostgresCluster.shared()
        let database = try cluster.createDatabase()
        _ = try PostgresRegistry(location: try PostgresLocation(url: cluster.url(database)), key: key)
        let proxy = try StallingProxy(to: cluster.socketDirectory + "/.s.PGSQL.5432")
        defer { proxy.stop() }
        let location = try PostgresLocation(url: "postgresql://devkit@/\(database)?host=\(proxy.directory)")
        proxy.stall()
        for _ in 0..<4 {
            do {
                _ = try PostgresRegistry(location: location, key: key, answerTimeout: .seconds(2))
                Issue.record("opened a registry through a stalled connection")
            } catch {
                guard case .serverUnavailable(_, let reason) = error else { Issue.record("\(error)"); return }
                #expect(reason.contains("did not answer"))
            }
        }
        // Every attempt reached the proxy, and each closed its socket when it gave up.
        var open = proxy.connectedClients()
        for _ in 0..<600 where open > 0 {
            usleep(100_000)
            open = proxy.connectedClients()
        }
        #expect(open == 0, "sockets of abandoned connects still open")
    }

    /// A wait for a lock another session holds (here a table locked by hand, as a
    /// long `registry migrate --to` would) ends at the lock timeout with its own
    /// error (exit 75, "locked"), not as a server that does not answer; once the
    /// lock is gone the same handle works.
    @Test(.enabled(if: PostgresCluster.available, "PostgreSQL's binaries are not installed (and CI is not set)"),
          .timeLimit(.minutes(5)))
    func aLockWaitFailsAsLockedNotAsNoAnswer() throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let key = try keyFile(tmp)
        let cluster = try PostgresCluster.shared()
        let database = try cluster.createDatabase()
        let location = try PostgresLocation(url: cluster.url(database))
        let registry = try PostgresRegistry(location: location, key: key)
        let board = try registry.recordNewBoard(uds: try UDS(hex: String(repeating: "61", count: 32)), usbSerial: "l1")
        let psql = try #require(PostgresCluster.binaries).appending("/psql")
        let locker = "locker-" + UUID().uuidString.prefix(8).lowercased()
        func sql(_ text: String) throws -> String { try cluster.sql(database, text) }
        // In the background: the table locked, for longer than the test runs.
        #expect(TestProcess.shell(
            "PGAPPNAME=\(locker) '\(psql)' -h '\(cluster.socketDirectory)' -U devkit -d \(database) "
                + "-c 'BEGIN; LOCK TABLE board IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(600)' >/dev/null 2>&1 &") == 0)
        defer { _ = try? sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '\(locker)'") }
        let held = """
            SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
            WHERE a.application_name = '\(locker)' AND l.locktype = 'relation' AND l.mode = 'AccessExclusiveLock' AND l.granted
            """
        var locked = try sql(held)
        for _ in 0..<600 where locked != "1" {
            usleep(100_000)
            locked = try sql(held)
        }
        try #require(locked == "1")
        func expectLocked(_ call: () throws(RegistryError) -> Void) {
            do {
                try call()
                Issue.record("the call went through a locked table")
            } catch {
                guard case .registryLocked(let server, let seconds) = error else {
                    Issue.record("expected registryLocked, got \(error)")
                    return
                }
                #expect(server == location.description && seconds == 10)
                #expect(error.description.contains("locked by another session"))
            }
        }
        expectLocked { () throws(RegistryError) in _ = try registry.markSteps([.udsConfirmed], boardID: board.id!) }
        expectLocked { () throws(RegistryError) in _ = try registry.board(id: board.id!) }
        // A mark sent without waiting (the run holds a claim: its own connection)
        // fails the same way, and is reported to the run as failed at its next call.
        try registry.claim(boards: ["usb:l1"], station: "locked")
        let reported = Mutex<[Result<BoardRecord, RegistryError>]>([])
        _ = try registry.markStepsInBackground([.udsConfirmed], of: board) { result in reported.withLock { $0.append(result) } }
        #expect(reported.withLock { $0.isEmpty }, "answered in line, not sent without waiting")
        expectLocked { () throws(RegistryError) in _ = try registry.board(id: board.id!) }
        switch reported.withLock({ $0.first }) {
        case .failure(.registryLocked)?: break
        case let other: Issue.record("the background mark was reported as \(String(describing: other))")
        }
        registry.release(boards: ["usb:l1"])
        #expect(try sql("SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 5000)) FROM pg_stat_activity WHERE application_name = '\(locker)'") == "1")
        #expect(try registry.markSteps([.udsConfirmed], boardID: board.id!).udsConfirmedAt != nil)
    }

    /// The answer bound firing while a run holds claims: the call fails as "server
    /// unavailable" (75), the station's claims session is closed and its claims with it
    /// (another station can take the board once the server sees the session end),
    /// and the run's further calls fail until it lets go, never carrying on unclaimed.
    @Test(.enabled(if: PostgresCluster.available, "PostgreSQL's binaries are not installed (and CI is not set)"),
          .timeLimit(.minutes(5)))
    func aDeadlineWhileClaimsAreHeldEndsThem() throws {
        let bench = try ProxiedStations { try keyFile($0) }
        defer { bench.cleanup() }
        let (proxy, station, other) = (bench.proxy, bench.station, bench.other)
        let board = try station.recordNewBoard(uds: try UDS(hex: String(repeating: "62", count: 32)), usbSerial: "c1")
        try station.claim(boards: ["usb:c1", "row:\(board.id!)"], station: "line-1")
        #expect(throws: RegistryError.boardBusy(board: "with USB serial c1", station: "line-1")) {
            try other.claim(boards: ["usb:c1"], station: "line-2")
        }
        proxy.stall()
        do {
            _ = try station.markSteps([.udsConfirmed], boardID: board.id!)
            Issue.record("a write went through a stalled connection")
        } catch {
            guard case .serverUnavailable(_, let reason) = error else { Issue.record("\(error)"); return }
            #expect(reason.contains("did not answer"))
        }
        proxy.resume()
        // The session is gone on the server (once the proxy passes the close on): the board is free.
        var taken = false
        for _ in 0..<600 where !taken {
            do {
                try other.claim(boards: ["usb:c1"], station: "line-2")
                taken = true
            } catch {
                usleep(100_000)
            }
        }
        #expect(taken, "the claim outlived its connection")
        // The run that held it gets no new connection while it holds its (lost) claims.
        for _ in 0..<2 {
            do {
                _ = try station.board(id: board.id!)
                Issue.record("a run whose claims were lost carried on")
            } catch {
                guard case .serverUnavailable(_, let reason) = error else { Issue.record("\(error)"); return }
                #expect(reason.contains("claims"))
            }
        }
        station.release(boards: ["usb:c1", "row:\(board.id!)"])
        #expect(try station.board(id: board.id!)?.udsConfirmedAt == nil)
        other.release(boards: ["usb:c1"])
    }
}
