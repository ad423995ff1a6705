import DevKitModel
import Foundation
import GRDB
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import PostgresNIO
import Synchronization

/// The registry on a PostgreSQL server, shared by several stations (issue 16): the
/// same rows as the SQLite registry (the same columns, values stored as the same
/// text, the UDS sealed by the same ``SecretSealer``), and the same synchronous API.
///
/// Every write is one transaction committed with `synchronous_commit = on`: once a
/// method returns, the server has the row on disk (and on its synchronous
/// replicas). Reads are single statements, without a transaction around them.
///
/// Connections: one session per station for its claims (advisory locks, so that
/// they end with the station's process or its connection), and a pool of at most
/// ``maxConnections`` sessions for statements, shared by the station's runs: a call
/// takes an idle one (or opens one while fewer are open, or waits for one) and gives
/// it back after it. Opening a session costs the server a process start (about
/// 8 ms each on this project's 2-core bench when many open at once): a burst of
/// boards reuses a few instead of opening one each.
public final class PostgresRegistry: RegistryStore, Sendable {
    public let location: PostgresLocation
    /// The server's URL, for messages (it never holds a password).
    public var path: String { location.description }
    let sealer: SecretSealer
    public var keyID: String { sealer.key.id }
    public let createdKeyFile: String?
    /// How to connect again after the server went away (a restart, a network cut).
    private let configuration: PostgresConnection.Configuration
    /// Whether this station's sessions set `tcp_user_timeout` at start-up (see ``RetransmissionBound``).
    let retransmissionBound = RetransmissionBound()
    /// The station's connections, and what each run holding claims has pending.
    let pool = ConnectionPool()
    /// Serialises opening the claims session (one for the station, not one per run).
    private let claimsOpening = NSLock()
    /// Which run of this process holds each claim (BoardClaims.swift).
    let claimTable = ClaimTable()
    /// How long one statement may wait for the server's answer before the
    /// connection is closed and the call fails with
    /// ``RegistryError/serverUnavailable(server:reason:)``: a server host gone without
    /// a reset (a half-open connection) never answers, and TCP alone would wait for
    /// hours. A wait for another session's lock ends sooner (``lockTimeout``), with
    /// its own error.
    let answerTimeout: TimeAmount
    /// How long a statement waits for a lock another session holds (the server's
    /// `lock_timeout`) before it fails with ``RegistryError/registryLocked(server:seconds:)``.
    let lockTimeout: TimeAmount

    /// At most this many statement sessions per station (besides its claims
    /// session). Each write waits for its commit's flush; a few sessions let the
    /// server flush several runs' commits at once, and more than the runs that
    /// write at the same moment only cost process starts.
    static let maxConnections = 4

    struct Pool {
        /// Statement sessions not in use.
        var idle: [PostgresConnection] = []
        /// Statement sessions open or being opened (idle ones too): at most ``PostgresRegistry/maxConnections``.
        var open = 0
        /// The station's claims session: every run's advisory locks.
        var claims: ClaimsSession?
        var leases: [RunID: Lease] = [:]
    }

    /// The pool under a lock whose condition a call waiting for a session sleeps on.
    final class ConnectionPool: @unchecked Sendable {
        private let condition = NSCondition()
        private var pool = Pool()  // guarded by condition

        func withLock<T>(_ body: (inout Pool) throws -> T) rethrows -> T {
            condition.lock()
            defer { condition.unlock() }
            return try body(&pool)
        }

        /// An idle session, or nil with a slot reserved for the caller to open one;
        /// waits while ``PostgresRegistry/maxConnections`` are open and in use. Calls
        /// are bounded (each statement by the answer bound), so the wait is too.
        func take() -> PostgresConnection? {
            condition.lock()
            defer { condition.unlock() }
            while true {
                while let idle = pool.idle.popLast() {
                    if !idle.isClosed { return idle }
                    pool.open -= 1
                }
                if pool.open < PostgresRegistry.maxConnections {
                    pool.open += 1
                    return nil
                }
                condition.wait()
            }
        }

        /// Gives back a session taken with ``take()`` (nil: the one the caller
        /// reserved could not be opened); a closed one frees its slot.
        func giveBack(_ connection: PostgresConnection?) {
            condition.lock()
            defer { condition.unlock() }
            if let connection, !connection.isClosed {
                pool.idle.append(connection)
            } else {
                pool.open -= 1
            }
            condition.signal()
        }
    }

    /// Closes `connection` without waiting, keeping it until it is closed:
    /// postgres-nio asserts that a connection is closed when it goes.
    static func close(_ connection: PostgresConnection) {
        let closed: EventLoopFuture<Void> = connection.close()
        closed.whenComplete { _ in withExtendedLifetime(connection) {} }
    }
    /// A station's session for its claims, named on the server by its process ID
    /// and start time (a process ID alone may be reused): a run's statements on
    /// other sessions ask the server that this one is still there, and so still
    /// holds its advisory locks.
    struct ClaimsSession {
        let connection: PostgresConnection
        let pid: Int32
        let started: String

        /// A condition true while the session is on the server; its two values bound at `$first`, `$first + 1`.
        /// The start time goes as text with its UTC offset and is compared as a
        /// timestamp, so no session setting (TimeZone, DateStyle) can change the match.
        /// `pg_stat_get_activity(pid)`, the function under the `pg_stat_activity`
        /// view, reads that one process's entry: the view builds every session's
        /// row and joins them (0.45 ms against 0.1 ms per check, measured with
        /// pgbench on PostgreSQL 15; the check goes with most calls of a run). That
        /// function is not in PostgreSQL's documentation (the view's definition
        /// calls it; checked on PostgreSQL 15). Both read `backend_start` only for
        /// sessions of the caller's own role (or with `pg_read_all_stats`): the
        /// pool and the claims session log in as one role (one URL per station),
        /// else every check would read the claims session as gone.
        static func alive(first: Int) -> String {
            "EXISTS (SELECT 1 FROM pg_stat_get_activity($\(first)) WHERE backend_start = $\(first + 1)::timestamptz)"
        }
        var binds: [PostgresData] { [PostgresData(int32: pid), PostgresData(string: started)] }
    }
    /// A run's claims (on the claims session it took them on) and its marks sent
    /// without waiting (``markStepsInBackground(_:of:update:committed:)``).
    struct Lease {
        let session: ClaimsSession
        var claimsConnection: PostgresConnection { session.connection }
        var claims: Int
        var pending: [PendingMark] = []
        /// Its claims session was dropped (``dropClaims(_:)``): the run stops at
        /// its next call, not only once the asynchronous close has landed.
        var dropped = false
        var usable: Bool { !dropped && !claimsConnection.isClosed }
    }
    struct PendingMark {
        let connection: PostgresConnection
        /// The claims session it was sent under (closed when the mark gets no answer).
        let claims: PostgresConnection
        let answer: EventLoopFuture<PostgresQueryResult>
        let record: BoardRecord
        let committed: @Sendable (Result<BoardRecord, RegistryError>) -> Void
    }

    public init(
        location: PostgresLocation, key: RegistryKeySource = .defaultKey(), passwordFile: String? = nil,
        environment: [String: String] = ProcessInfo.processInfo.environment,
        answerTimeout: Duration = PostgresRegistry.defaultAnswerTimeout, readOnly: Bool = false
    ) throws(RegistryError) {
        // Before anything is connected or migrated: nothing could be sealed.
        precondition(readOnly || key != .withheld, "a registry opened for writing needs its key")
        self.location = location
        let limit = TimeAmount.nanoseconds(
            answerTimeout.components.seconds * 1_000_000_000 + answerTimeout.components.attoseconds / 1_000_000_000)
        self.answerTimeout = limit
        // Below the answer bound, so that a lock wait is told apart from a silent server.
        let lockLimit = min(Self.defaultLockTimeout, .nanoseconds(limit.nanoseconds / 2))
        self.lockTimeout = lockLimit
        let password = try location.password(passwordFile: passwordFile, environment: environment)
        var configuration: PostgresConnection.Configuration
        if let socket = location.socketPath {
            configuration = .init(unixSocketPath: socket, username: location.user, password: password, database: location.database)
        } else {
            let tls: PostgresConnection.Configuration.TLS
            let check = try location.certificateCheck(environment: environment)
            do {
                var config = TLSConfiguration.makeClientConfiguration()
                switch check {
                case .unchecked:
                    config.certificateVerification = .none
                case .chain(let caFile):
                    config.certificateVerification = .noHostnameVerification
                    config.trustRoots = .file(caFile)
                case .chainAndHost(let caFile):
                    config.certificateVerification = .fullVerification
                    config.trustRoots = .file(caFile)
                }
                if location.sslMode == .disable {
                    tls = .disable
                } else {
                    tls = .require(try NIOSSLContext(configuration: config))
                }
            } catch {
                throw .cannotOpen(path: location.description, reason: "TLS setup failed: \(error)")
            }
            configuration = .init(
                host: location.host, port: location.port, username: location.user, password: password,
                database: location.database, tls: tls)
        }
        // A server that does not answer fails the command, it does not hang it:
        // postgres-nio bounds the whole connect (TCP, TLS, start-up, authentication)
        // by this and closes the socket when it passes.
        configuration.options.connectTimeout = min(.seconds(Self.connectTimeoutSeconds), limit)
        // Set at start-up, no round trip of their own: every commit durable before
        // it is acknowledged, whatever the server's default; lock waits bounded;
        // a station gone without a reset (power or network cut) noticed by the
        // server's keepalive within about 25 s, not the system's two hours, so
        // its claims (advisory locks) and any transaction it left open end.
        configuration.options.additionalStartupParameters = [
            ("synchronous_commit", "on"), ("lock_timeout", "\(max(1, lockLimit.nanoseconds / 1_000_000))ms"),
            ("tcp_keepalives_idle", "10"), ("tcp_keepalives_interval", "5"), ("tcp_keepalives_count", "3"),
            ("idle_in_transaction_session_timeout", "60s"),
        ]
        self.configuration = configuration
        let connection: PostgresConnection
        do {
            connection = try Self.connect(configuration, bound: retransmissionBound)
        } catch {
            throw Self.openFailure(location.description, error, lockTimeout: lockLimit)
        }
        do {
            try Self.withDeadline(limit, closing: connection) {
                // A reading command (`registry list`, `show`, `export`) makes no schema
                // in a database that has none: nothing was provisioned into it.
                let schema = try Self.schema(connection)
                switch schema {
                case .foreign: throw Self.foreignSchema(location.description)
                case .none where readOnly:
                    throw RegistryError.notARegistry(
                        path: location.description,
                        reason: "the database holds no devkit registry (nothing was provisioned into it); "
                            + "check the database name in the URL")
                case .devkit, .none: break
                }
                try Self.migrate(connection, server: location.description, schema: schema)
            }
        } catch {
            _ = try? connection.close().wait()
            throw Self.openFailure(location.description, error, lockTimeout: lockLimit)
        }
        let needed: String?
        do {
            // The key recorded by the first seal (``checkKey(_:)``), else (a registry
            // sealed before that record) the key a sealed value names. Not asked
            // when no key is to be used.
            needed = key == .withheld ? nil : try Self.withDeadline(limit, closing: connection) {
                try connection.statement(
                    """
                    SELECT coalesce((SELECT value FROM registry_meta WHERE name = 'key_id'),
                                    (SELECT uds FROM board WHERE uds LIKE 'sealed1:%' LIMIT 1)) AS key
                    """
                ).wait().first.flatMap { $0.makeRandomAccess()[data: "key"].string }
                    .flatMap { $0.hasPrefix("sealed1:") ? SecretSealer.keyID(of: $0) : $0 }
            }
        } catch {
            _ = try? connection.close().wait()
            throw Self.openFailure(location.description, error, lockTimeout: lockLimit)
        }
        // Never a new key for a shared registry: a station that made its own would
        // seal rows no other station can open. One key file, copied to every station.
        if case .defaultFile(let path) = key, needed == nil, access(path, F_OK) != 0 {
            _ = try? connection.close().wait()
            throw .sharedKeyMissing(path: path, server: location.description)
        }
        let resolved: (key: RegistryKey, created: Bool)
        do {
            resolved = try RegistryKey.resolve(key, neededKeyID: needed)
        } catch .keyUnavailable(let path, _, let neededID, let errno) where neededID == nil && errno == ENOENT {
            _ = try? connection.close().wait()
            throw .sharedKeyMissing(path: path, server: location.description)
        } catch {
            _ = try? connection.close().wait()
            throw error
        }
        sealer = SecretSealer(key: resolved.key, source: key)
        createdKeyFile = resolved.created ? key.path : nil
        pool.withLock { pool in
            pool.idle = [connection]
            pool.open = 1
        }
    }

    deinit {
        let connections = pool.withLock { $0.idle + ($0.claims.map { [$0.connection] } ?? []) }
        for connection in connections { _ = try? connection.close().wait() }
    }

    /// A new session (its settings sent with the start-up message: see `init`).
    /// postgres-nio bounds the whole connect by `connectTimeout` and closes the
    /// socket when it passes; the timer here is a second guard on top of that, and a
    /// connection that arrives after it fired is closed, never left open.
    static func connect(
        _ configuration: PostgresConnection.Configuration, bound: RetransmissionBound
    ) throws -> PostgresConnection {
        var configuration = configuration
        let asking = bound.prepare(&configuration)
        let limit = configuration.options.connectTimeout
        let connecting = PostgresConnection.connect(
            on: MultiThreadedEventLoopGroup.singleton.any(), configuration: configuration, id: 1,
            logger: Logger(label: "devkit.registry.postgres"))
        let answered = connecting.eventLoop.makePromise(of: PostgresConnection.self)
        // Both callbacks run on the one event loop, one after the other.
        let deadline = Deadline()
        let timer = connecting.eventLoop.scheduleTask(in: limit + .seconds(1)) {
            let expired = deadline.state.withLock { state in
                guard state == .running else { return false }
                state = .expired
                return true
            }
            if expired { answered.fail(NoAnswer(seconds: limit.nanoseconds / 1_000_000_000)) }
        }
        connecting.whenComplete { result in
            timer.cancel()
            if deadline.finish() == .expired {
                // Late: nobody takes this connection.
                if case .success(let late) = result { let _: EventLoopFuture<Void> = late.close() }
                return
            }
            answered.completeWith(result)
        }
        let connection = try answered.futureResult.wait()
        if asking {
            // Sent ahead of the first call's statements, its answer not waited for
            // here: the statements after it are answered after it, in order.
            connection.statement(RetransmissionBound.statement).whenComplete { bound.learned(from: $0) }
        }
        return connection
    }

    /// The server gives up on a session 25 s after data it sent went unacknowledged
    /// (`tcp_user_timeout`), not after the system's ~15 minutes of retransmissions: a
    /// station cut off while an answer was on its way would otherwise keep its claims
    /// and open transaction that long (keepalives only cover an idle connection).
    ///
    /// A PostgreSQL before 12 does not know the setting: in a session's start-up
    /// message it would end the session. So the station's first session asks with a
    /// statement whose refusal is dropped (the session is as it was); once the server
    /// has taken it, later sessions set it at start-up, at no cost. (A `DO` block that
    /// caught the refusal in every session cost the server 1-2 ms of PL/pgSQL per
    /// session.) A server whose system has no TCP_USER_TIMEOUT takes the setting and
    /// logs that it cannot apply it; a Unix socket takes it and ignores it.
    final class RetransmissionBound: Sendable {
        enum State { case unknown, atStartup, refused }
        private let state = Mutex(State.unknown)
        static let statement = "SELECT set_config('tcp_user_timeout', '25000', false)"
        static let startupParameter = (name: "tcp_user_timeout", value: "25000")

        var current: State { state.withLock { $0 } }

        /// Whether a new session asks with ``statement`` (the answer is not known
        /// yet), and the start-up parameter it carries instead (the server took it).
        var plan: (asks: Bool, startup: (name: String, value: String)?) {
            switch current {
            case .unknown: return (true, nil)
            case .atStartup: return (false, Self.startupParameter)
            case .refused: return (false, nil)
            }
        }

        /// Adds the setting to a new session's start-up message once the server has
        /// taken it; true when the session must ask with ``statement`` instead.
        func prepare(_ configuration: inout PostgresConnection.Configuration) -> Bool {
            let plan = plan
            if let startup = plan.startup { configuration.options.additionalStartupParameters.append(startup) }
            return plan.asks
        }

        /// The server's answer to ``statement``.
        func learned(from answer: Result<PostgresQueryResult, any Error>) {
            switch answer {
            case .success: learned(refused: false)
            case .failure(let error): learned(refused: Self.refuses(sqlState: PostgresRegistry.serverError(error)?.state))
            }
        }

        /// Whether an error with this SQLSTATE (nil: no answer from the server) says
        /// the server does not know the setting: 42704, an unknown parameter. Any
        /// other (a cancel, a lack of resources, a lost connection) says nothing
        /// about it, and the next session asks again.
        static func refuses(sqlState: String?) -> Bool? {
            sqlState == "42704" ? true : nil
        }

        /// What the first answer said; `nil`, no answer (a lost connection says
        /// nothing about the setting: the next session asks again).
        func learned(refused: Bool?) {
            guard let refused else { return }
            state.withLock { if $0 == .unknown { $0 = refused ? .refused : .atStartup } }
        }
    }

    // MARK: Schema

    /// The versioned migrations, applied once each in order, under an advisory lock
    /// so that stations starting together do not apply one twice.
    static let migrations: [(String, String)] = [
        ("v1: board", """
            CREATE TABLE board (
                id bigserial PRIMARY KEY, mac text, usb_serial text, registration_id text, firmware_version text,
                uds text NOT NULL, certificate_sha1 text, certificate_sha256 text, certificate_path text,
                enrollment_path text,
                state text NOT NULL CHECK (state IN ('in_progress', 'failed', 'done')), error text,
                created_at text NOT NULL, updated_at text NOT NULL,
                uds_recorded_at text, uds_sent_at text, uds_confirmed_at text, version_read_at text,
                mac_read_at text, certificate_written_at text, enrollment_written_at text,
                superseded_by bigint REFERENCES board(id), provision_settings text,
                enrollment_action text CHECK (enrollment_action IN (\(BoardEnrollment.Action.allCases.map { "'\($0.rawValue)'" }.joined(separator: ", ")))),
                enrollment_at text, enrollment_dps_host text, enrollment_etag text,
                enrollment_sha1_thumbprint text, enrollment_error_code bigint, enrollment_error_message text,
                enrollment_tracking_id text);
            CREATE INDEX board_on_mac ON board(mac);
            CREATE INDEX board_on_registration_id ON board(registration_id);
            CREATE INDEX board_on_usb_serial ON board(usb_serial);
            """),
        // The SQLite registry's "v6: board.verification_*".
        ("v2: board.verification_*", """
            ALTER TABLE board ADD COLUMN verification_outcome text, ADD COLUMN verification_assigned_hub text,
                ADD COLUMN verification_device_id text, ADD COLUMN verification_at text
            """),
        // The SQLite registry's "v8: board.station".
        ("v3: board.station", "ALTER TABLE board ADD COLUMN station text"),
        // The SQLite registry's "v7: registry_meta": the key every secret is sealed
        // with, recorded by the first seal, so that stations given different keys
        // cannot both seal into an empty registry.
        ("v4: registry_meta", """
            CREATE TABLE registry_meta (name text PRIMARY KEY, value text NOT NULL);
            INSERT INTO registry_meta (name, value)
                SELECT 'key_id', split_part(uds, ':', 2) FROM board WHERE uds LIKE 'sealed1:%'
                GROUP BY 2 ORDER BY count(*) DESC, 2 LIMIT 1
            """),
    ]

    enum Schema { case devkit, none, foreign }

    /// Whether the database holds devkit's schema (its migrations table), none at
    /// all, or another program's table named `board` without devkit's.
    static func schema(_ connection: PostgresConnection) throws -> Schema {
        let cells = try connection.statement(
            "SELECT to_regclass('devkit_migrations') IS NOT NULL AS devkit, to_regclass('board') IS NOT NULL AS board"
        ).wait().first?.makeRandomAccess()
        if try cells?["devkit"].decode(Bool.self) == true { return .devkit }
        return try cells?["board"].decode(Bool.self) == true ? .foreign : .none
    }

    static func foreignSchema(_ server: String) -> RegistryError {
        .notARegistry(
            path: server,
            reason: "the database has a table named board that devkit did not make; give devkit a database of its own")
    }

    /// `found`: what ``schema(_:)`` found just before (a devkit schema, or none).
    static func migrate(_ connection: PostgresConnection, server: String, schema found: Schema) throws {
        // Usually every migration is there: one read, and no DDL at all, so that a
        // station's user needs no right to create tables once the schema exists
        // (`CREATE TABLE IF NOT EXISTS` checks that right even when the table is
        // there). Not there yet (the table missing, or a migration): under the lock.
        // The table is read only when ``schema(_:)`` saw it: a read of a missing
        // table would put an ERROR line in the server's log at a database's first use.
        if found == .devkit, let applied = try? connection.statement("SELECT identifier FROM devkit_migrations").wait()
            .compactMap({ $0.makeRandomAccess()[data: "identifier"].string }),
            migrations.allSatisfy({ Set(applied).contains($0.0) })
        {
            return
        }
        _ = try connection.statement("BEGIN").wait()
        do {
            _ = try connection.statement("SELECT pg_advisory_xact_lock(1616)").wait()
            // Another program's table of the same name: refused as an SQLite file of
            // another program is, before anything is created beside it.
            if try schema(connection) == .foreign { throw foreignSchema(server) }
            _ = try connection.statement(
                "CREATE TABLE IF NOT EXISTS devkit_migrations (identifier text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            ).wait()
            let applied = Set(try connection.statement("SELECT identifier FROM devkit_migrations").wait()
                .compactMap { $0.makeRandomAccess()[data: "identifier"].string })
            for (identifier, sql) in migrations where !applied.contains(identifier) {
                // One statement per message: the extended protocol takes no more.
                for statement in sql.split(separator: ";") where !statement.allSatisfy(\.isWhitespace) {
                    _ = try connection.statement(String(statement)).wait()
                }
                _ = try connection.statement(
                    "INSERT INTO devkit_migrations (identifier) VALUES ($1)", [PostgresData(string: identifier)]).wait()
            }
            _ = try connection.statement("COMMIT").wait()
        } catch {
            _ = try? connection.statement("ROLLBACK").wait()
            throw error
        }
    }

    // MARK: Rows

    /// A server row as GRDB's Row, so BoardRecord reads it exactly as it reads an SQLite row.
    static func gRDBRow(_ row: PostgresRow) throws -> Row {
        var values: [String: (any DatabaseValueConvertible)?] = [:]
        for cell in row {
            switch cell.dataType {
            case .int8, .int4, .int2: values[cell.columnName] = try cell.decode(Int64?.self)
            default: values[cell.columnName] = try cell.decode(String?.self)
            }
        }
        return Row(values)
    }

    /// A value of `BoardRecord.databaseValues` as a bind.
    static func bind(_ value: (any DatabaseValueConvertible)?) -> PostgresData {
        switch value?.databaseValue.storage {
        case .int64(let v)?: PostgresData(int64: v)
        case .string(let v)?: PostgresData(string: v)
        case .double(let v)?: PostgresData(double: v)
        case .blob(let v)?: PostgresData(bytes: [UInt8](v))
        case .null?, nil: .null
        }
    }

    private static let updateColumns = BoardRecord.databaseColumns.dropFirst().filter { $0 != "uds" }
    private static let updateSQL = "UPDATE board SET "
        + updateColumns.enumerated().map { "\($0.element) = $\($0.offset + 1)" }.joined(separator: ", ")
        + " WHERE id = $\(updateColumns.count + 1)"
    static let insertSQL: String = {
        let columns = BoardRecord.databaseColumns
        return "INSERT INTO board (" + columns.joined(separator: ", ") + ") VALUES ("
            + columns.indices.map { "$\($0 + 1)" }.joined(separator: ", ") + ")"
    }()

    /// One connection's statements for one call: each waits at most the answer
    /// bound for its own answer (a lock wait ends sooner, at `lock_timeout`).
    /// Statements sent without waiting (``send(_:_:)``) go out at once, in order;
    /// the next waited one reports the first of their failures.
    final class Session {
        let connection: PostgresConnection
        let limit: TimeAmount
        private var pending: [EventLoopFuture<PostgresQueryResult>] = []
        /// Sent with the first statement: whether the run's claims session is still there.
        private var claimsCheck: EventLoopFuture<PostgresQueryResult>?

        init(_ connection: PostgresConnection, limit: TimeAmount) {
            self.connection = connection
            self.limit = limit
        }

        /// Sends `sql` without waiting for its answer (one round trip saved).
        func send(_ sql: String, _ binds: [PostgresData] = []) {
            pending.append(connection.statement(sql, binds))
        }

        /// Asks, sent ahead of the call's statements (postgres-nio runs them one
        /// at a time, without waiting in between), whether the claims session is
        /// still on the server: the next ``query(_:_:)`` fails with ``ClaimsLost``
        /// when it is not (a session the server ended after a network cut, which
        /// the station has not noticed yet). Not exact: a backend that is ending
        /// releases its advisory locks before its `pg_stat_activity` entry goes, so
        /// a call racing that end can pass; it is the station's ended session that
        /// must fail the run, and that one's next call does.
        func checkClaims(_ claims: ClaimsSession) {
            claimsCheck = connection.statement("SELECT " + ClaimsSession.alive(first: 1) + " AS alive", claims.binds)
        }

        /// Sends `sql` and waits for its answer, and for those of the statements sent before it.
        @discardableResult
        func query(_ sql: String, _ binds: [PostgresData] = []) throws -> PostgresQueryResult {
            // Saves a trip to the event loop; ``PostgresConnection/statement(_:_:)`` checks again there.
            guard !connection.isClosed else { throw PostgresError.connectionClosed }
            let answer = connection.statement(sql, binds)
            let earlier = pending
            pending = []
            let result: Result<PostgresQueryResult, any Error>
            do {
                result = .success(try PostgresRegistry.wait(for: answer, within: limit, closing: connection))
            } catch let error as NoAnswer {
                throw error
            } catch {
                result = .failure(error)
            }
            // Answered in order, so all are done. The claims check first: lost
            // claims explain any failure after them and must not be hidden by one.
            if let check = claimsCheck {
                claimsCheck = nil
                let rows = try PostgresRegistry.wait(for: check, within: limit, closing: connection)
                guard try rows.first?.makeRandomAccess()["alive"].decode(Bool.self) == true else { throw ClaimsLost() }
            }
            // The first failure among these explains the later ones ("current transaction is aborted").
            for statement in earlier { _ = try PostgresRegistry.wait(for: statement, within: limit, closing: connection) }
            return try result.get()
        }
    }

    /// `body` on a statement session of the station's pool, taken for this call
    /// and given back after it (see ``ConnectionPool/take()``).
    ///
    /// A connection the server dropped (a restart, a network cut) fails that call
    /// with ``RegistryError/serverUnavailable(server:reason:)``; the next call
    /// connects again, so a long-running `watch` carries on once the server is
    /// back. Not for a run whose claims session was lost: its claims went with it
    /// (the server released them), so its calls fail until it has let go of them,
    /// rather than carry on unclaimed. Runs without claims are not affected.
    ///
    /// A write to rows (`writing`) that another thread of this process claimed
    /// (a fleet command claims rows on its worker threads and records on its
    /// main thread) is checked against that run's claims session too.
    /// `checkingClaims: false` for a statement that checks the run's claims itself
    /// (``markStatement(from:to:claims:asLastSeen:)``): no separate check goes out.
    func withSession<T>(
        within limit: TimeAmount? = nil, writing boardIDs: [Int64] = [], checkingClaims: Bool = true,
        _ body: (Session) throws -> T
    ) throws(RegistryError) -> T {
        let server = location.description
        let limit = limit ?? answerTimeout
        var claims = try checkLease(within: limit)
        let others = try claimsOfOtherRuns(writing: boardIDs)
        if claims == nil { claims = others }
        let connection: PostgresConnection
        do {
            if let idle = pool.take() {
                connection = idle
            } else {
                do {
                    connection = try Self.connect(configuration, bound: retransmissionBound)
                } catch {
                    pool.giveBack(nil)
                    throw error
                }
            }
        } catch {
            throw Self.callFailure(server, error, lockTimeout: lockTimeout)
        }
        do {
            let session = Session(connection, limit: limit)
            if checkingClaims, let claims { session.checkClaims(claims) }
            let value = try body(session)
            pool.giveBack(connection)
            return value
        } catch {
            // A failed connection is closed; so is one whose call ended with
            // ``ClaimsLost``: it may still be inside the call's transaction (its
            // statements ran before the check was read), and no other call may
            // take it up half-way through one.
            let discard = Self.isConnectionFailure(error) || error is ClaimsLost
            if discard { Self.close(connection) }
            // A server that stopped answering this run has most likely stopped
            // answering its claims session too: closed, so that the run stops
            // rather than carry on under claims the server may have ended.
            // A claims session found gone (``ClaimsLost``) is closed here too.
            if error is NoAnswer || error is ClaimsLost, let claims { dropClaims(claims.connection) }
            pool.giveBack(discard || connection.isClosed ? nil : connection)
            if error is ClaimsLost { throw .serverUnavailable(server: server, reason: ClaimsLost.reason) }
            if let error = error as? RegistryError { throw error }
            throw Self.callFailure(server, error, lockTimeout: lockTimeout)
        }
    }

    /// Before any call of a run: its marks sent earlier are answered (and reported),
    /// and, when it holds claims, their session must still be there (the one it
    /// gives back, for the server to confirm).
    @discardableResult
    func checkLease(owner: RunID = .current, within limit: TimeAmount) throws(RegistryError) -> ClaimsSession? {
        let marks: [PendingMark] = pool.withLock { pool in
            let marks = pool.leases[owner]?.pending ?? []
            pool.leases[owner]?.pending = []
            return marks
        }
        answer(marks, within: limit)
        // Read after the answers: a mark without one drops the claims session.
        guard let lease = pool.withLock({ $0.leases[owner] }) else { return nil }
        if !lease.usable {
            throw .serverUnavailable(server: location.description, reason: ClaimsLost.reason)
        }
        return lease.session
    }

    /// For a write to `boardIDs`' rows: the claims session of the other runs
    /// (threads) of this process that claimed any of them, if any; it fails when
    /// any of those runs' claims were lost, even if the writer holds claims of its
    /// own on a newer session. Those runs' marks stay theirs to answer. Every usable
    /// lease is on the station's current claims session, so one is checked.
    func claimsOfOtherRuns(writing boardIDs: [Int64]) throws(RegistryError) -> ClaimsSession? {
        guard !boardIDs.isEmpty else { return nil }
        let me = RunID.current
        var owners: [RunID] = []
        for id in boardIDs {
            guard let owner = claimTable.owner(of: BoardClaimKeys.row(id)), owner != me, !owners.contains(owner)
            else { continue }
            owners.append(owner)
        }
        guard !owners.isEmpty else { return nil }
        let leases = pool.withLock { pool in owners.compactMap { pool.leases[$0] } }
        guard leases.allSatisfy(\.usable) else {
            throw .serverUnavailable(server: location.description, reason: ClaimsLost.reason)
        }
        return leases.first?.session
    }

    /// Closes the claims session `connection` and, if it is still the station's
    /// current one, forgets it there at once: closing takes effect on the event
    /// loop later, and a run claiming meanwhile must open a new one, not take this.
    func dropClaims(_ connection: PostgresConnection) {
        pool.withLock { pool in
            if pool.claims?.connection === connection { pool.claims = nil }
            for (owner, lease) in pool.leases where lease.claimsConnection === connection {
                pool.leases[owner]?.dropped = true
            }
        }
        Self.close(connection)
    }

    /// A run's claims session ended: on the server, its locks went with it.
    struct ClaimsLost: Error {
        static let reason = "the connection was lost, and with it this run's claims on boards"
    }

    /// The station's claims session for `owner`: the one its claims are on, else
    /// the current one (opened when there is none, or it was lost).
    func claimsSession(for owner: RunID) throws(RegistryError) -> ClaimsSession {
        claimsOpening.lock()
        defer { claimsOpening.unlock() }
        let current: ClaimsSession? = pool.withLock { pool in
            if let lease = pool.leases[owner] { return lease.session }
            return pool.claims.flatMap { $0.connection.isClosed ? nil : $0 }
        }
        if let current { return current }
        var opened: PostgresConnection?
        do {
            let connection = try Self.connect(configuration, bound: retransmissionBound)
            opened = connection
            let row = try Session(connection, limit: answerTimeout).query(
                "SELECT pid, backend_start::text AS started FROM pg_stat_activity WHERE pid = pg_backend_pid()"
            ).first?.makeRandomAccess()
            guard let row else { throw PostgresError.protocol("this session is not in pg_stat_activity") }
            let session = ClaimsSession(
                connection: connection, pid: try row["pid"].decode(Int32.self), started: try row["started"].decode(String.self))
            pool.withLock { $0.claims = session }
            return session
        } catch {
            if let opened { Self.close(opened) }
            throw Self.callFailure(location.description, error, lockTimeout: lockTimeout)
        }
    }

    /// `body` in one transaction, rolled back if it throws; each statement bounded
    /// as in ``Session``. BEGIN goes out with the first statement, not a round trip of its own.
    func transaction<T>(writing boardIDs: [Int64] = [], _ body: (Session) throws -> T) throws(RegistryError) -> T {
        try withSession(writing: boardIDs) { session in
            session.send("BEGIN")
            do {
                let value = try body(session)
                try session.query("COMMIT")
                return value
            } catch {
                _ = try? session.query("ROLLBACK")
                throw error
            }
        }
    }

    /// `body` in one long transaction (`registry migrate --to`, `rekey`) bounded as a
    /// whole by `limit`, its lock waits too.
    func transaction<T>(within limit: TimeAmount, _ body: (PostgresConnection) throws -> T) throws(RegistryError) -> T {
        let lockLimit = "\(max(1, limit.nanoseconds / 1_000_000))ms"
        return try withSession(within: limit) { session in
            let connection = session.connection
            return try Self.withDeadline(limit, closing: connection) {
                do {
                    // Through the session: it answers the run's claims check too,
                    // and a failed check rolls back below.
                    try session.query("BEGIN")
                    _ = try connection.statement("SELECT set_config('lock_timeout', $1, true)", [PostgresData(string: lockLimit)]).wait()
                    let value = try body(connection)
                    _ = try connection.statement("COMMIT").wait()
                    return value
                } catch {
                    _ = try? connection.statement("ROLLBACK").wait()
                    throw error
                }
            }
        }
    }

    /// Waits for marks sent without waiting and tells each caller how it went.
    func answer(_ marks: [PendingMark], within limit: TimeAmount) {
        for mark in marks {
            do {
                try Self.checkMark(
                    Self.wait(for: mark.answer, within: limit, closing: mark.connection), boardID: mark.record.id ?? 0)
                mark.committed(.success(mark.record))
            } catch {
                // As in ``withSession(within:_:)``: the claims session may be gone too, or is.
                if error is NoAnswer || error is ClaimsLost { dropClaims(mark.claims) }
                mark.committed(.failure(
                    error is ClaimsLost
                        ? .serverUnavailable(server: location.description, reason: ClaimsLost.reason)
                        : (error as? RegistryError) ?? Self.callFailure(location.description, error, lockTimeout: lockTimeout)))
            }
        }
    }

    /// In the transaction of a write that seals: the registry's key must be this
    /// handle's. The first seal records it; another key means another station's
    /// key (or a rekey) came first, and the write fails naming the key needed.
    func checkKey(_ connection: PostgresConnection) throws {
        _ = try connection.statement(
            "INSERT INTO registry_meta (name, value) VALUES ('key_id', $1) ON CONFLICT (name) DO NOTHING",
            [PostgresData(string: keyID)]
        ).wait()
        let recorded = try connection.statement("SELECT value FROM registry_meta WHERE name = 'key_id' FOR SHARE").wait()
            .first.flatMap { $0.makeRandomAccess()[data: "value"].string }
        try checkKey(recorded: recorded)
    }

    private func checkKey(recorded: String?) throws {
        if let recorded, recorded != keyID {
            throw RegistryError.wrongKey(path: sealer.keyFile, keyID: keyID, neededKeyID: recorded)
        }
    }

    /// One statement, no transaction around it (a single statement is atomic).
    private func fetch(_ sql: String, _ binds: [PostgresData] = []) throws(RegistryError) -> [BoardRecord] {
        let sealer = self.sealer
        return try withSession { session in
            try session.query(sql, binds).map { try sealer.record(Self.gRDBRow($0)) }
        }
    }

    private func fetchForUpdate(_ session: Session, id: Int64) throws -> BoardRecord {
        guard let row = try session.query("SELECT * FROM board WHERE id = $1 FOR UPDATE", [PostgresData(int64: id)]).first
        else { throw RegistryError.boardNotFound("\(id)") }
        return try sealer.record(Self.gRDBRow(row))
    }

    /// Sends the row's UPDATE without waiting: the COMMIT after it reports its failure.
    private func store(_ record: BoardRecord, _ session: Session) {
        let values = zip(BoardRecord.databaseColumns, record.databaseValues).dropFirst().filter { $0.0 != "uds" }
            .map { Self.bind($0.1) }
        session.send(Self.updateSQL, values + [PostgresData(int64: record.id!)])
    }

    // MARK: RegistryStore

    @discardableResult
    public func recordNewBoard(
        uds: UDS, mac: MACAddress? = nil, usbSerial: String? = nil,
        registrationID: RegistrationID? = nil, firmwareVersion: FirmwareVersion? = nil,
        provisionSettings: String? = nil, station: String? = nil, alsoMark: [ProvisioningStep] = []
    ) throws(RegistryError) -> BoardRecord {
        let now = Date()
        var record = BoardRecord(
            id: nil, mac: mac?.hex, usbSerial: usbSerial, registrationID: registrationID?.value,
            firmwareVersion: firmwareVersion?.text, storedUDS: uds, state: .inProgress,
            createdAt: now, updatedAt: now, provisionSettings: provisionSettings, udsRecordedAt: now,
            macReadAt: mac == nil ? nil : now, station: station)
        for step in alsoMark { record.setCompleted(step, at: now) }
        let sealer = self.sealer
        return try transaction { session in
            // The id first: the sealed UDS is bound to it, and the row is written
            // once. In the same statement, the registry's key (see ``checkKey(_:)``),
            // its row locked until the commit so that a rekey waits for this write.
            let next = "SELECT nextval('board_id_seq') AS id, value FROM registry_meta WHERE name = 'key_id' FOR SHARE"
            var row = try session.query(next).first
            if row == nil {
                // The registry's first seal records its key.
                try session.query(
                    "INSERT INTO registry_meta (name, value) VALUES ('key_id', $1) ON CONFLICT (name) DO NOTHING",
                    [PostgresData(string: keyID)])
                row = try session.query(next).first
            }
            guard let cells = row?.makeRandomAccess() else {
                throw RegistryError.database(path: "", reason: "no id from board_id_seq")
            }
            try checkKey(recorded: cells[data: "value"].string)
            let id = try cells["id"].decode(Int64.self)
            record.id = id
            let values = zip(BoardRecord.databaseColumns, record.databaseValues).map { column, value in
                column == "uds" ? PostgresData(string: sealer.sealUDS(uds, boardID: id)) : Self.bind(value)
            }
            session.send(Self.insertSQL, values)
            return record
        }
    }

    @discardableResult
    public func markSteps(
        _ steps: [ProvisioningStep], boardID: Int64, update: BoardUpdate = BoardUpdate()
    ) throws(RegistryError) -> BoardRecord {
        try transaction(writing: [boardID]) { session in
            var record = try fetchForUpdate(session, id: boardID)
            Registry.advance(&record, steps, update, at: Date())
            store(record, session)
            return record
        }
    }

    /// Marks steps like ``markSteps(_:boardID:update:)``, given the row as the run
    /// last had it: when the run holds claims, one statement, one round trip (the
    /// mark of ``markStepsInBackground(_:of:update:committed:)``, answered before
    /// this returns), instead of a transaction that reads the row again (BEGIN,
    /// SELECT ... FOR UPDATE, the whole row's UPDATE, COMMIT, and a claims check:
    /// two round trips, five statements for the server to parse and plan).
    ///
    /// Made only while the row is as `board` says (its `updated_at`, which every
    /// write sets, and every step's time): a row another writer changed since, or one
    /// a failed background mark left behind `board` (even with later marks made from
    /// `board` after it), is marked the long way, from what the server holds, so
    /// that a board is never made `done` over steps that were not recorded.
    /// Without claims, the long way too.
    @discardableResult
    public func markSteps(
        _ steps: [ProvisioningStep], of board: BoardRecord, update: BoardUpdate = BoardUpdate()
    ) throws(RegistryError) -> BoardRecord {
        guard let boardID = board.id else { throw .boardNotFound("(not recorded)") }
        // Also answers the run's marks sent before: this one commits after them.
        guard let claims = try checkLease(within: answerTimeout) else {
            return try markSteps(steps, boardID: boardID, update: update)
        }
        var expected = board
        Registry.advance(&expected, steps, update, at: Date())
        let (sql, binds) = Self.markStatement(from: board, to: expected, claims: claims, asLastSeen: true)
        let made = try withSession(checkingClaims: false) { session in
            let cells = try session.query(sql, binds).first?.makeRandomAccess()
            guard try cells?["alive"].decode(Bool.self) == true else { throw ClaimsLost() }
            return try cells?["updated"].decode(Int64.self) == 1
        }
        if made { return expected }
        return try markSteps(steps, boardID: boardID, update: update)
    }

    /// Marks steps like ``markSteps(_:boardID:update:)`` without waiting, when this
    /// run holds claims and a session of the pool is idle: one UPDATE of the
    /// columns the marks change (against `board`, the run's own row: no one else
    /// writes it while the run holds its claims), sent at once, and made only while
    /// the run's claims session is still on the server. The run's next registry
    /// call (or its release) first waits for these answers, so it commits before
    /// any later write of the run; `committed` is called on the run's thread then.
    /// A second mark goes on the first one's session (answered in order), else in
    /// line. Otherwise (no claim, no idle session), in line.
    @discardableResult
    public func markStepsInBackground(
        _ steps: [ProvisioningStep], of board: BoardRecord, update: BoardUpdate = BoardUpdate(),
        committed: @escaping @Sendable (Result<BoardRecord, RegistryError>) -> Void = { _ in }
    ) throws(RegistryError) -> BoardRecord {
        guard let boardID = board.id else { throw .boardNotFound("(not recorded)") }
        var expected = board
        Registry.advance(&expected, steps, update, at: Date())
        let owner = RunID.current
        // A mark that changes the board's state (the last step of a resumed row makes
        // it `done`) goes in line, through the guarded mark: made from the run's copy
        // without a check, it would make a row `done` over a step an earlier mark
        // failed to record.
        let changesState = expected.state != board.state
        let queued: Bool = !changesState && pool.withLock { pool in
            guard var lease = pool.leases[owner], lease.usable else { return false }
            // An idle session, without waiting for one: the UPDATE goes out on it and
            // it stays idle (a later call on it queues behind the UPDATE). Behind an
            // earlier mark of the run only on that mark's session: two sessions
            // could commit them out of order.
            let earlier = lease.pending.last?.connection
            guard let connection = pool.idle.last(where: { !$0.isClosed && (earlier == nil || $0 === earlier) })
            else { return false }
            let (sql, binds) = Self.markStatement(from: board, to: expected, claims: lease.session)
            lease.pending.append(PendingMark(
                connection: connection, claims: lease.claimsConnection, answer: connection.statement(sql, binds),
                record: expected, committed: committed))
            pool.leases[owner] = lease
            return true
        }
        if queued { return expected }
        do {
            let record = try markSteps(steps, of: board, update: update)
            committed(.success(record))
            return record
        } catch {
            committed(.failure(error))
            throw error
        }
    }

    /// One statement, one answer row: whether the claims session was there (the
    /// row is updated only then) and how many rows were updated (a missing row is
    /// told apart from lost claims). Sets the columns that differ from `board` to `expected`;
    /// `asLastSeen`: only if the row is still as `board` says (else 0 updated): its
    /// `updated_at` (another writer) and every step's time (a background mark that
    /// failed is in `board` but not in the row, and a later mark made from `board`
    /// moves `updated_at` on all the same, without the failed mark's step).
    static func markStatement(
        from board: BoardRecord, to expected: BoardRecord, claims: ClaimsSession, asLastSeen: Bool = false
    ) -> (sql: String, binds: [PostgresData]) {
        let changed = zip(zip(BoardRecord.databaseColumns, board.databaseValues), expected.databaseValues).dropFirst()
            .filter { pair in pair.0.0 != "uds" && pair.0.1?.databaseValue != pair.1?.databaseValue }
        var binds = changed.map { bind($0.1) } + [PostgresData(int64: board.id!)]
        var condition = "id = $\(binds.count)"
        if asLastSeen {
            binds.append(PostgresData(string: RegistryTimestamp.text(board.updatedAt)))
            condition += " AND updated_at = $\(binds.count)"
            for step in ProvisioningStep.allCases {
                binds.append(board.completedAt(step).map { PostgresData(string: RegistryTimestamp.text($0)) } ?? .null)
                condition += " AND \(step.columnName) IS NOT DISTINCT FROM $\(binds.count)::text"
            }
        }
        let sql = "WITH claims AS (SELECT " + ClaimsSession.alive(first: binds.count + 1) + " AS alive), "
            + "changed AS (UPDATE board SET "
            + changed.enumerated().map { "\($0.element.0.0) = $\($0.offset + 1)" }.joined(separator: ", ")
            + " WHERE " + condition + " AND (SELECT alive FROM claims) RETURNING id) "
            + "SELECT (SELECT alive FROM claims) AS alive, (SELECT count(*) FROM changed) AS updated"
        return (sql, binds + claims.binds)
    }

    /// The answer of a ``markStatement(from:to:claims:)``: ``ClaimsLost`` or ``RegistryError/boardNotFound(_:)`` unless made.
    static func checkMark(_ answer: PostgresQueryResult, boardID: Int64) throws {
        let cells = answer.first?.makeRandomAccess()
        guard try cells?["alive"].decode(Bool.self) == true else { throw ClaimsLost() }
        guard try cells?["updated"].decode(Int64.self) == 1 else { throw RegistryError.boardNotFound("\(boardID)") }
    }

    /// Reads board `boardID`'s row (locked), applies `change`, and stores it as updated now.
    private func updateBoard(
        _ boardID: Int64, _ change: (inout BoardRecord) -> Void
    ) throws(RegistryError) -> BoardRecord {
        try transaction(writing: [boardID]) { session in
            var record = try fetchForUpdate(session, id: boardID)
            change(&record)
            record.updatedAt = Date()
            store(record, session)
            return record
        }
    }

    @discardableResult
    public func markFailed(boardID: Int64, error message: String) throws(RegistryError) -> BoardRecord {
        try updateBoard(boardID) { Registry.fail(&$0, message) }
    }

    @discardableResult
    public func recordEnrollment(boardID: Int64, _ enrollment: BoardEnrollment) throws(RegistryError) -> BoardRecord {
        try updateBoard(boardID) { $0.enrollment = enrollment }
    }

    public func recordEnrollments(_ enrollments: [(boardID: Int64, enrollment: BoardEnrollment)]) throws(RegistryError) {
        guard !enrollments.isEmpty else { return }
        let now = Date()
        try transaction(writing: enrollments.map(\.boardID)) { session in
            for (boardID, enrollment) in enrollments {
                var record = try fetchForUpdate(session, id: boardID)
                record.enrollment = enrollment
                record.updatedAt = now
                store(record, session)
            }
        }
    }

    @discardableResult
    public func recordVerification(boardID: Int64, _ verification: BoardVerification) throws(RegistryError) -> BoardRecord {
        try updateBoard(boardID) { $0.verification = verification }
    }

    @discardableResult
    public func markSuperseded(
        boardID old: Int64, by new: Int64, certificatePath: String?, enrollmentPath: String?
    ) throws(RegistryError) -> BoardRecord {
        try updateBoard(old) { record in
            record.supersededBy = new
            record.certificatePath = certificatePath
            record.enrollmentPath = enrollmentPath
        }
    }

    /// Re-seals every UDS under `newKey` in one transaction (the rows locked, so a
    /// station writing meanwhile waits). Every station must then use the new key:
    /// one still holding the old key is refused at its next open, and rows it writes
    /// before that would be sealed under the old key, so stop the stations first.
    /// The old values stay in the server's dead row versions and WAL until vacuumed
    /// and recycled; `VACUUM FULL board` (needs the table's owner) drops the former.
    @discardableResult
    public func rekey(to newKey: RegistryKey) throws(RegistryError) -> Int {
        let old = sealer
        let new = SecretSealer(key: newKey, keyFile: "")
        if newKey.id == keyID { return 0 }
        // Every row in one transaction: more time than one step of a run.
        let count: Int = try transaction(within: answerTimeout * 10) { connection in
            // Waits for the stations' sealing writes in progress, and holds off new ones.
            _ = try connection.statement("LOCK TABLE registry_meta IN EXCLUSIVE MODE").wait()
            try checkKey(connection)
            _ = try connection.statement(
                "UPDATE registry_meta SET value = $1 WHERE name = 'key_id'", [PostgresData(string: newKey.id)]
            ).wait()
            var count = 0
            for row in try connection.statement("SELECT id, uds FROM board ORDER BY id FOR UPDATE").wait() {
                let cells = row.makeRandomAccess()
                let id = try cells["id"].decode(Int64.self)
                let bytes = try old.open(try cells["uds"].decode(String.self), boardID: id, column: "uds")
                _ = try connection.statement(
                    "UPDATE board SET uds = $1 WHERE id = $2",
                    [PostgresData(string: new.seal(bytes, boardID: id, column: "uds")), PostgresData(int64: id)]
                ).wait()
                count += 1
            }
            return count
        }
        // Best effort, outside any transaction (VACUUM refuses one): a user that does
        // not own the table gets a warning from the server, not an error.
        _ = try? withSession(within: answerTimeout * 10) { session in try session.query("VACUUM FULL board") }
        return count
    }

    public func board(id: Int64) throws(RegistryError) -> BoardRecord? {
        try fetch("SELECT * FROM board WHERE id = $1", [PostgresData(int64: id)]).first
    }

    public func board(byMAC mac: String) throws(RegistryError) -> BoardRecord? {
        let normalized = try Registry.normalizeMAC(mac)
        return try fetch("SELECT * FROM board WHERE mac = $1 ORDER BY id DESC LIMIT 1", [PostgresData(string: normalized)]).first
    }

    public func board(byUSBSerial usbSerial: String) throws(RegistryError) -> BoardRecord? {
        try fetch("SELECT * FROM board WHERE usb_serial = $1 ORDER BY id DESC LIMIT 1", [PostgresData(string: usbSerial)]).first
    }

    public func latestBoardIDs(
        usbSerial: String?, mac: String?, confirmedOnly: Bool
    ) throws(RegistryError) -> (bySerial: Int64?, byMAC: Int64?) {
        let condition = confirmedOnly ? " AND uds_confirmed_at IS NOT NULL" : ""
        let mac = try mac.map { m throws(RegistryError) in try Registry.normalizeMAC(m) }
        // One statement: both answers in one round trip.
        return try withSession { session in
            let cells = try session.query(
                "SELECT (SELECT MAX(id) FROM board WHERE usb_serial = $1\(condition)) AS by_serial, "
                    + "(SELECT MAX(id) FROM board WHERE mac = $2\(condition)) AS by_mac",
                [usbSerial.map { PostgresData(string: $0) } ?? .null, mac.map { PostgresData(string: $0) } ?? .null]
            ).first?.makeRandomAccess()
            return (cells?[data: "by_serial"].int64, cells?[data: "by_mac"].int64)
        }
    }

    public func board(byRegistrationID registrationID: String) throws(RegistryError) -> BoardRecord? {
        try fetch(
            "SELECT * FROM board WHERE registration_id = $1 ORDER BY id DESC LIMIT 1", [PostgresData(string: registrationID)]
        ).first
    }

    public func boards(withCertificateSHA256 thumbprint: String) throws(RegistryError) -> [BoardRecord] {
        try fetch(
            "SELECT * FROM board WHERE upper(certificate_sha256) = $1 ORDER BY id DESC",
            [PostgresData(string: thumbprint.uppercased())])
    }

    public func allBoards() throws(RegistryError) -> [BoardRecord] {
        try fetch("SELECT * FROM board ORDER BY id")
    }

    public func unfinishedBoards() throws(RegistryError) -> [BoardRecord] {
        try fetch("SELECT * FROM board WHERE state <> 'done' ORDER BY id")
    }

    /// How long opening a connection may take, all of it: TCP, TLS, the start-up
    /// messages and authentication (at most the answer bound).
    static let connectTimeoutSeconds: Int64 = 10

    /// The default of ``lockTimeout`` (at most half the answer bound).
    static let defaultLockTimeout: TimeAmount = .seconds(10)

    /// The default of ``answerTimeout``: well above a busy server's slowest step
    /// (a transaction here is a handful of small statements, or a wait for another
    /// station's transaction on the same row), well below "hung".
    public static let defaultAnswerTimeout: Duration = .seconds(30)

    /// The server did not answer in time; the connection was closed.
    struct NoAnswer: Error, CustomStringConvertible {
        let seconds: Int64
        var description: String {
            "the server did not answer within \(seconds) s (a server host gone or a network cut without a reset); "
                + "the connection was closed"
        }
    }

    /// `body`, with `connection` closed if it has not returned within `limit`: the
    /// query waiting for a server that never answers then fails (and so does the
    /// call, with ``NoAnswer``) instead of waiting forever.
    ///
    /// One state decides between the timer and the body: a timer already due when
    /// it is cancelled still runs (NIO), so it closes the connection only while the
    /// body runs; a body that finishes after the timer closed it fails, even if its
    /// work committed (the session, and any claims on it, are gone).
    static func withDeadline<T>(
        _ limit: TimeAmount, closing connection: PostgresConnection, _ body: () throws -> sending T
    ) throws -> sending T {
        let deadline = Deadline()
        let timer = connection.eventLoop.scheduleTask(in: limit) {
            deadline.state.withLock { state in
                guard state == .running else { return }
                state = .expired
                let _: EventLoopFuture<Void> = connection.close()
            }
        }
        defer { timer.cancel() }
        let noAnswer = NoAnswer(seconds: limit.nanoseconds / 1_000_000_000)
        let value: T
        do {
            value = try body()
        } catch {
            if deadline.finish() == .expired { throw noAnswer }
            throw error
        }
        if deadline.finish() == .expired { throw noAnswer }
        return value
    }

    /// Waits for `future` at most `limit`; past it, `connection` is closed and the
    /// wait fails with ``NoAnswer``. Unlike ``withDeadline(_:closing:_:)`` the wait
    /// ends at the limit whatever the connection's state: a statement that went out
    /// as the connection closed may never be answered, and closing it again would
    /// end nothing. An answer that comes first wins, and the timer then closes nothing.
    static func wait<T: Sendable>(
        for future: EventLoopFuture<T>, within limit: TimeAmount, closing connection: PostgresConnection
    ) throws -> T {
        let outcome = future.eventLoop.makePromise(of: T.self)
        let deadline = Deadline()
        let noAnswer = NoAnswer(seconds: limit.nanoseconds / 1_000_000_000)
        let timer = future.eventLoop.scheduleTask(in: limit) {
            guard deadline.expire() else { return }
            // Closed first: the caller, woken by the failure, finds it closed.
            let _: EventLoopFuture<Void> = connection.close()
            outcome.fail(noAnswer)
        }
        future.whenComplete { result in
            guard deadline.finish() == .running else { return }
            timer.cancel()
            outcome.completeWith(result)
        }
        return try outcome.futureResult.wait()
    }

    private final class Deadline: Sendable {
        enum State { case running, finished, expired }
        let state = Mutex(State.running)
        /// Ends the run for the timer; false when the body had finished first.
        func expire() -> Bool {
            state.withLock { state in
                guard state == .running else { return false }
                state = .expired
                return true
            }
        }
        /// Ends the body's run; what it was (expired: the timer closed the connection).
        func finish() -> State {
            state.withLock { state in
                let was = state
                if state == .running { state = .finished }
                return was
            }
        }
    }

    /// The server's SQLSTATE and message when `error` is the server refusing a
    /// statement. postgres-nio gives it in two shapes: `PSQLError` from its newer
    /// calls, `PostgresError.server` from the `query(String, [PostgresData])` calls
    /// this file uses (its compatibility layer converts).
    static func serverError(_ error: any Error) -> (state: String, message: String)? {
        if let error = error as? PSQLError, error.code == .server, let info = error.serverInfo {
            return (info[.sqlState] ?? "", info[.message] ?? "\(error.code)")
        }
        if case .server(let message)? = error as? PostgresError {
            return (message.fields[.sqlState] ?? "", message.fields[.message] ?? "\(error)")
        }
        return nil
    }

    /// `connecting`: the error came while opening the connection (else a session that
    /// was open lost it: said so, not "cannot connect").
    static func reason(_ error: any Error, connecting: Bool = false) -> String {
        if let (_, message) = serverError(error) { return message }
        if let error = error as? PSQLError {
            if case .connectTimeout(let limit)? = error.underlying as? ChannelError {
                return "the server did not answer within \(limit.nanoseconds / 1_000_000_000) s while connecting; "
                    + "the connection was closed"
            }
            if let underlying = error.underlying {
                return connectFailure(underlying, connecting: connecting) ?? "\(error.code): \(underlying)"
            }
            return "\(error.code)"
        }
        return connectFailure(error, connecting: connecting) ?? "\(error)"
    }

    /// A failed connect in words, with what to check: NIO's own descriptions
    /// (`connectionError: connect(descriptor:addr:size:): No such file or directory
    /// (errno: 2)`, `SingleConnectionFailure(target: [IPv4]...)`) say neither.
    /// nil for any other error.
    static func connectFailure(_ error: any Error, connecting: Bool) -> String? {
        func unresolved(_ host: String) -> String {
            "cannot connect: the host name \(host) does not resolve (check its spelling, and this machine's DNS)"
        }
        func words(_ code: CInt) -> String {
            let text = String(cString: strerror(code)).lowercased()
            switch code {
            case ENOENT: return "\(text): no server socket for that port in that directory (is the server running, and are host= and port= its socket directory and port?)"
            case ECONNREFUSED: return "\(text): nothing listens there (is the server running, and on that port?)"
            case EACCES: return "\(text): this user may not open the server's socket"
            case ETIMEDOUT, EHOSTUNREACH, ENETUNREACH: return "\(text) (is the host up and reachable from here, past any firewall?)"
            default: return text
            }
        }
        if let io = error as? IOError {
            // A call may open a connection too: these errnos only come from connect(2).
            let refused = [ECONNREFUSED, ENOENT, EACCES, EHOSTUNREACH, ENETUNREACH].contains(io.errnoCode)
            guard connecting || refused else {
                return "the connection to the server was lost: " + String(cString: strerror(io.errnoCode)).lowercased()
            }
            return "cannot connect: " + words(io.errnoCode)
        }
        if let nio = error as? NIOConnectionError {
            let failures = nio.connectionErrors.map { failure -> String in
                let address = failure.target.ipAddress ?? nio.host
                let problem = (failure.error as? IOError).map { words($0.errnoCode) } ?? "\(failure.error)"
                return "\(address.contains(":") ? "[\(address)]" : address):\(failure.target.port ?? nio.port): \(problem)"
            }
            if failures.isEmpty { return unresolved(nio.host) }
            return "cannot connect to " + failures.joined(separator: "; ")
        }
        if let dns = error as? SocketAddressError, case .unknown(let host, _) = dns { return unresolved(host) }
        return nil
    }

    /// Whether `error` says the server could not be reached or went away (rather
    /// than refusing what was asked): worth retrying later.
    static func isConnectionFailure(_ error: any Error) -> Bool {
        if error is NoAnswer { return true }
        if let (state, _) = serverError(error) {
            // 57P01-57P03: shutting down or starting up; 53300: too many connections.
            return state.hasPrefix("57P") || state == "53300"
        }
        if case .connectionClosed? = error as? PostgresError { return true }
        guard let error = error as? PSQLError else {
            // NIO's own connect errors (refused, timed out, no such host).
            return error is NIOConnectionError || error is ChannelError || error is IOError
        }
        switch error.code {
        case .connectionError, .serverClosedConnection, .uncleanShutdown, .clientClosedConnection:
            return true
        default:
            return false
        }
    }

    /// The error of a call that failed on the server or on its way there.
    static func callFailure(_ server: String, _ error: any Error, lockTimeout: TimeAmount) -> RegistryError {
        // 55P03 lock_not_available: the session's lock_timeout passed.
        if serverError(error)?.state == "55P03" {
            return .registryLocked(server: server, seconds: Int(lockTimeout.nanoseconds / 1_000_000_000))
        }
        if isConnectionFailure(error) { return .serverUnavailable(server: server, reason: reason(error)) }
        return .database(path: server, reason: reason(error))
    }

    /// What is wrong with the login or the server's certificate, in words, when
    /// `error` says so: a setting to fix, not a server to wait for (not 75).
    /// `permission`: the login was refused or lacks its password (77).
    static func setupProblem(_ error: any Error) -> (reason: String, permission: Bool)? {
        if let (state, message) = serverError(error), state == "28P01" {
            return ("the server refused the login: \(message); check the user in the URL and its password in "
                + "the file given with --registry-password-file (for a profile's registry, password_file under [registry]), "
                + "or ~/.pgpass (or PGPASSFILE's file)", true)
        }
        if let (state, message) = serverError(error), state == "28000" {
            // pg_hba.conf: who may log in, from where, to which database, and whether over TLS.
            return ("the server does not let this login in: \(message); check the user in the URL (a role the "
                + "server does not have, or one that may not log in, is refused this way), and the server's "
                + "pg_hba.conf, which decides who may connect from this host and whether TLS is needed (sslmode)", true)
        }
        guard let error = error as? PSQLError else { return nil }
        switch error.code {
        case .authMechanismRequiresPassword:
            return ("the server asks for a password and none was found for this URL: put it in a file (mode 0600) "
                + "given with --registry-password-file (for a profile's registry, password_file under [registry]), "
                + "or in ~/.pgpass (host:port:database:user:password, mode 0600; one others may read is ignored, as "
                + "libpq ignores it) or the file PGPASSFILE names (the same format)", true)
        case .sslUnsupported:
            return ("the server does not offer TLS, which sslmode=require (the default over the network) and "
                + "stronger need: turn ssl on in the server's settings, or give sslmode=disable for a socket or a "
                + "trusted loopback", false)
        default:
            break
        }
        // The certificate check, refused during the TLS handshake.
        guard let underlying = error.underlying else { return nil }
        let text = "\(underlying)"
        if text.contains("failedToValidateHostname") {
            return ("the server's certificate does not name the URL's host (sslmode=verify-full checks it): give the "
                + "host name the certificate was made for, or sslmode=verify-ca to check only who signed it", false)
        }
        if text.contains("CERTIFICATE_VERIFY_FAILED") || text.contains("handshakeFailed") {
            return ("the server's certificate was not accepted: it is not signed by the CA in sslrootcert "
                + "(or ~/.postgresql/root.crt); give the CA that signed the server's certificate", false)
        }
        return nil
    }

    /// The error for a server that could not be connected to or set up.
    static func openFailure(_ server: String, _ error: any Error, lockTimeout: TimeAmount) -> RegistryError {
        if let error = error as? RegistryError { return error }
        if let (reason, permission) = setupProblem(error) {
            return .cannotOpen(path: server, reason: reason, errno: permission ? EACCES : nil)
        }
        // Waiting for another station's schema migration (its lock) past lock_timeout.
        if serverError(error)?.state == "55P03" { return callFailure(server, error, lockTimeout: lockTimeout) }
        if isConnectionFailure(error) { return .serverUnavailable(server: server, reason: reason(error, connecting: true)) }
        return .cannotOpen(path: server, reason: reason(error, connecting: true))
    }
}

extension PostgresConnection {
    /// Sends one statement, from the connection's event loop: postgres-nio never
    /// answers a statement that reaches the connection after it closed (its
    /// handler is gone, and the query's promise with it), and a check on another
    /// thread can be overtaken by the close. On the event loop, "not closed" means
    /// the statement is queued where a close fails it. Every statement of the
    /// registry goes through here, so that no wait for an answer can outlive the
    /// connection.
    func statement(_ sql: String, _ binds: [PostgresData] = []) -> EventLoopFuture<PostgresQueryResult> {
        eventLoop.flatSubmit {
            guard !self.isClosed else { return self.eventLoop.makeFailedFuture(PostgresError.connectionClosed) }
            return self.query(sql, binds)
        }
    }
}
