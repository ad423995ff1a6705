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
/// replicas). Calls from several threads are serialized over one connection.
public final class PostgresRegistry: RegistryStore, Sendable {
    public let location: PostgresLocation
    /// The server's URL, for messages (it never holds a password).
    public var path: String { location.description }
    let sealer: SecretSealer
    public var keyID: String { sealer.key.id }
    public let createdKeyFile: String?
    /// How to connect again after the server went away (a restart, a network cut).
    private let configuration: PostgresConnection.Configuration
    /// The connection (nil once lost) and how many boards it holds claims on; one
    /// transaction at a time on it.
    private let state: Mutex<Link>
    /// Which run of this process holds each claim (BoardClaims.swift).
    let claimTable = ClaimTable()
    /// How long one transaction (or opening the connection) may wait for the
    /// server's answers before the connection is closed and the call fails with
    /// ``RegistryError/serverUnavailable(server:reason:)``: a server host gone without
    /// a reset (a half-open connection) never answers, and TCP alone would wait for
    /// hours.
    let answerTimeout: TimeAmount
    struct Link {
        var connection: PostgresConnection?
        var claims = 0
    }

    public init(
        location: PostgresLocation, key: RegistryKeySource = .defaultKey(), passwordFile: String? = nil,
        environment: [String: String] = ProcessInfo.processInfo.environment,
        answerTimeout: Duration = PostgresRegistry.defaultAnswerTimeout
    ) throws(RegistryError) {
        self.location = location
        let limit = TimeAmount.nanoseconds(
            answerTimeout.components.seconds * 1_000_000_000 + answerTimeout.components.attoseconds / 1_000_000_000)
        self.answerTimeout = limit
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
        // A server that does not answer fails the command, it does not hang it.
        configuration.options.connectTimeout = .seconds(Self.connectTimeoutSeconds)
        self.configuration = configuration
        let connection: PostgresConnection
        do {
            connection = try Self.connect(configuration, within: limit)
        } catch {
            throw Self.openFailure(location.description, error)
        }
        do {
            try Self.withDeadline(limit, closing: connection) { try Self.migrate(connection) }
        } catch {
            _ = try? connection.close().wait()
            throw Self.openFailure(location.description, error)
        }
        let needed: String?
        do {
            // The key recorded by the first seal (``checkKey(_:)``), else (a registry
            // sealed before that record) the key a sealed value names.
            needed = try Self.withDeadline(limit, closing: connection) {
                try connection.query(
                    """
                    SELECT coalesce((SELECT value FROM registry_meta WHERE name = 'key_id'),
                                    (SELECT uds FROM board WHERE uds LIKE 'sealed1:%' LIMIT 1)) AS key
                    """
                ).wait().first.flatMap { $0.makeRandomAccess()[data: "key"].string }
                    .flatMap { $0.hasPrefix("sealed1:") ? SecretSealer.keyID(of: $0) : $0 }
            }
        } catch {
            _ = try? connection.close().wait()
            throw Self.openFailure(location.description, error)
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
        sealer = SecretSealer(key: resolved.key, keyFile: key.path)
        createdKeyFile = resolved.created ? key.path : nil
        state = Mutex(Link(connection: connection))
    }

    deinit {
        let connection = state.withLock { $0.connection }
        _ = try? connection?.close().wait()
    }

    /// A new session, every commit in it durable before it is acknowledged,
    /// whatever the server's default.
    static func connect(_ configuration: PostgresConnection.Configuration, within limit: TimeAmount) throws -> PostgresConnection {
        // The connect timeout covers TCP's handshake only; a server that accepts
        // and then never answers the start-up messages must not hang us either.
        let connecting = PostgresConnection.connect(
            on: MultiThreadedEventLoopGroup.singleton.any(), configuration: configuration, id: 1,
            logger: Logger(label: "devkit.registry.postgres"))
        let answered = connecting.eventLoop.makePromise(of: PostgresConnection.self)
        // Both callbacks run on the one event loop, one after the other.
        let deadline = Deadline()
        let timer = connecting.eventLoop.scheduleTask(in: limit) {
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
        do {
            try withDeadline(limit, closing: connection) {
                _ = try connection.query("SET synchronous_commit = on").wait()
            }
        } catch {
            _ = try? connection.close().wait()
            throw error
        }
        return connection
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

    static func migrate(_ connection: PostgresConnection) throws {
        // Usually every migration is there: one read, and no DDL at all, so that a
        // station's user needs no right to create tables once the schema exists
        // (`CREATE TABLE IF NOT EXISTS` checks that right even when the table is
        // there). Not there yet (the table missing, or a migration): under the lock.
        if let applied = try? connection.query("SELECT identifier FROM devkit_migrations").wait()
            .compactMap({ $0.makeRandomAccess()[data: "identifier"].string }),
            migrations.allSatisfy({ Set(applied).contains($0.0) })
        {
            return
        }
        _ = try connection.query("BEGIN").wait()
        do {
            _ = try connection.query("SELECT pg_advisory_xact_lock(1616)").wait()
            _ = try connection.query(
                "CREATE TABLE IF NOT EXISTS devkit_migrations (identifier text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            ).wait()
            let applied = Set(try connection.query("SELECT identifier FROM devkit_migrations").wait()
                .compactMap { $0.makeRandomAccess()[data: "identifier"].string })
            for (identifier, sql) in migrations where !applied.contains(identifier) {
                // One statement per message: the extended protocol takes no more.
                for statement in sql.split(separator: ";") where !statement.allSatisfy(\.isWhitespace) {
                    _ = try connection.query(String(statement)).wait()
                }
                _ = try connection.query(
                    "INSERT INTO devkit_migrations (identifier) VALUES ($1)", [PostgresData(string: identifier)]).wait()
            }
            _ = try connection.query("COMMIT").wait()
        } catch {
            _ = try? connection.query("ROLLBACK").wait()
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

    /// `body` in one transaction; rolled back if it throws.
    ///
    /// A connection the server dropped (a restart, a network cut) fails that call
    /// with ``RegistryError/serverUnavailable(server:reason:)``; the next call
    /// connects again, so a long-running `watch` carries on once the server is
    /// back. Not while this station holds claims on boards: they went with the old
    /// session (the server released them), so the runs holding them must fail
    /// rather than carry on unclaimed; once they have let go, it reconnects.
    ///
    /// `claims`: how many claims the committed result took (a granted advisory
    /// lock), counted before the station's lock is let go, so that no other call
    /// can reconnect in between as if this session held none.
    func transaction<T>(
        within limit: TimeAmount? = nil, claims: ((T) -> Int)? = nil, _ body: (PostgresConnection) throws -> T
    ) throws(RegistryError) -> T {
        let server = location.description
        let configuration = self.configuration
        let limit = limit ?? answerTimeout
        do {
            return try state.withLock { link in
                if link.connection == nil || link.connection?.isClosed == true {
                    link.connection = nil
                    if link.claims > 0 {
                        throw RegistryError.serverUnavailable(
                            server: server, reason: "the connection was lost, and with it this station's claims on boards")
                    }
                    link.connection = try Self.connect(configuration, within: limit)
                }
                let connection = link.connection!
                do {
                    let value = try Self.withDeadline(limit, closing: connection) {
                        _ = try connection.query("BEGIN").wait()
                        do {
                            let value = try body(connection)
                            _ = try connection.query("COMMIT").wait()
                            return value
                        } catch {
                            _ = try? connection.query("ROLLBACK").wait()
                            throw error
                        }
                    }
                    if let claims { link.claims += claims(value) }
                    return value
                } catch {
                    if Self.isConnectionFailure(error) {
                        _ = try? connection.close().wait()
                        link.connection = nil
                    }
                    throw error
                }
            }
        } catch let error as RegistryError {
            throw error
        } catch {
            if Self.isConnectionFailure(error) {
                throw .serverUnavailable(server: server, reason: Self.reason(error))
            }
            throw .database(path: server, reason: Self.reason(error))
        }
    }

    /// Counts the boards this station holds claims on (``claim(boards:station:)``).
    func countClaims(_ delta: Int) {
        state.withLock { $0.claims = max(0, $0.claims + delta) }
    }

    /// In the transaction of a write that seals: the registry's key must be this
    /// handle's. The first seal records it; another key means another station's
    /// key (or a rekey) came first, and the write fails naming the key needed.
    func checkKey(_ connection: PostgresConnection) throws {
        _ = try connection.query(
            "INSERT INTO registry_meta (name, value) VALUES ('key_id', $1) ON CONFLICT (name) DO NOTHING",
            [PostgresData(string: keyID)]
        ).wait()
        let recorded = try connection.query("SELECT value FROM registry_meta WHERE name = 'key_id' FOR SHARE").wait()
            .first.flatMap { $0.makeRandomAccess()[data: "value"].string }
        if let recorded, recorded != keyID {
            throw RegistryError.wrongKey(path: sealer.keyFile, keyID: keyID, neededKeyID: recorded)
        }
    }

    private func fetch(_ sql: String, _ binds: [PostgresData] = []) throws(RegistryError) -> [BoardRecord] {
        let sealer = self.sealer
        return try transaction { connection in
            try connection.query(sql, binds).wait().map { try sealer.record(Self.gRDBRow($0)) }
        }
    }

    private func fetchForUpdate(_ connection: PostgresConnection, id: Int64) throws -> BoardRecord {
        guard let row = try connection.query("SELECT * FROM board WHERE id = $1 FOR UPDATE", [PostgresData(int64: id)])
            .wait().first
        else { throw RegistryError.boardNotFound("\(id)") }
        return try sealer.record(Self.gRDBRow(row))
    }

    private func store(_ record: BoardRecord, _ connection: PostgresConnection) throws {
        let values = zip(BoardRecord.databaseColumns, record.databaseValues).dropFirst().filter { $0.0 != "uds" }
            .map { Self.bind($0.1) }
        _ = try connection.query(Self.updateSQL, values + [PostgresData(int64: record.id!)]).wait()
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
            firmwareVersion: firmwareVersion?.text, uds: uds, state: .inProgress,
            createdAt: now, updatedAt: now, provisionSettings: provisionSettings, udsRecordedAt: now,
            macReadAt: mac == nil ? nil : now, station: station)
        for step in alsoMark { record.setCompleted(step, at: now) }
        let sealer = self.sealer
        return try transaction { connection in
            try checkKey(connection)
            // The id first: the sealed UDS is bound to it, and the row is written once.
            guard let id = try connection.query("SELECT nextval('board_id_seq') AS id").wait().first
                .flatMap({ try $0.makeRandomAccess()["id"].decode(Int64.self) })
            else { throw RegistryError.database(path: "", reason: "no id from board_id_seq") }
            record.id = id
            let values = zip(BoardRecord.databaseColumns, record.databaseValues).map { column, value in
                column == "uds" ? PostgresData(string: sealer.sealUDS(uds, boardID: id)) : Self.bind(value)
            }
            _ = try connection.query(Self.insertSQL, values).wait()
            return record
        }
    }

    @discardableResult
    public func markSteps(
        _ steps: [ProvisioningStep], boardID: Int64, update: BoardUpdate = BoardUpdate()
    ) throws(RegistryError) -> BoardRecord {
        try transaction { connection in
            var record = try fetchForUpdate(connection, id: boardID)
            Registry.advance(&record, steps, update, at: Date())
            try store(record, connection)
            return record
        }
    }

    /// Marks steps like ``markSteps(_:boardID:update:)``, committed before it returns.
    /// On SQLite these marks are queued so that a board need not wait for a local
    /// commit; here the station has one connection and one transaction at a time on
    /// it, so a queue would only move the same round trip to another thread while
    /// making the "queued marks commit before any later write" order a second
    /// mechanism to keep right. In line, that order holds by construction.
    @discardableResult
    public func markStepsInBackground(
        _ steps: [ProvisioningStep], of board: BoardRecord, update: BoardUpdate = BoardUpdate(),
        committed: @escaping @Sendable (Result<BoardRecord, RegistryError>) -> Void = { _ in }
    ) throws(RegistryError) -> BoardRecord {
        guard let boardID = board.id else { throw .boardNotFound("(not recorded)") }
        do {
            let record = try markSteps(steps, boardID: boardID, update: update)
            committed(.success(record))
            return record
        } catch {
            committed(.failure(error))
            throw error
        }
    }

    /// Reads board `boardID`'s row (locked), applies `change`, and stores it as updated now.
    private func updateBoard(
        _ boardID: Int64, _ change: (inout BoardRecord) -> Void
    ) throws(RegistryError) -> BoardRecord {
        try transaction { connection in
            var record = try fetchForUpdate(connection, id: boardID)
            change(&record)
            record.updatedAt = Date()
            try store(record, connection)
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
        try transaction { connection in
            for (boardID, enrollment) in enrollments {
                var record = try fetchForUpdate(connection, id: boardID)
                record.enrollment = enrollment
                record.updatedAt = now
                try store(record, connection)
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
            _ = try connection.query("LOCK TABLE registry_meta IN EXCLUSIVE MODE").wait()
            try checkKey(connection)
            _ = try connection.query(
                "UPDATE registry_meta SET value = $1 WHERE name = 'key_id'", [PostgresData(string: newKey.id)]
            ).wait()
            var count = 0
            for row in try connection.query("SELECT id, uds FROM board ORDER BY id FOR UPDATE").wait() {
                let cells = row.makeRandomAccess()
                let id = try cells["id"].decode(Int64.self)
                let bytes = try old.open(try cells["uds"].decode(String.self), boardID: id, column: "uds")
                _ = try connection.query(
                    "UPDATE board SET uds = $1 WHERE id = $2",
                    [PostgresData(string: new.seal(bytes, boardID: id, column: "uds")), PostgresData(int64: id)]
                ).wait()
                count += 1
            }
            return count
        }
        // Best effort, outside any transaction (VACUUM refuses one): a user that does
        // not own the table gets a warning from the server, not an error.
        let limit = answerTimeout * 10
        state.withLock { link in
            guard let connection = link.connection else { return }
            _ = try? Self.withDeadline(limit, closing: connection) { try connection.query("VACUUM FULL board").wait() }
        }
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

    /// How long to wait for the server to accept a connection.
    static let connectTimeoutSeconds: Int64 = 10

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

    private final class Deadline: Sendable {
        enum State { case running, finished, expired }
        let state = Mutex(State.running)
        /// Ends the body's run; what it was (expired: the timer closed the connection).
        func finish() -> State {
            state.withLock { state in
                let was = state
                if state == .running { state = .finished }
                return was
            }
        }
    }

    static func reason(_ error: any Error) -> String {
        if let error = error as? PSQLError {
            if let message = error.serverInfo?[.message] { return message }
            if let underlying = error.underlying { return "\(error.code): \(underlying)" }
            return "\(error.code)"
        }
        return "\(error)"
    }

    /// Whether `error` says the server could not be reached or went away (rather
    /// than refusing what was asked): worth retrying later.
    static func isConnectionFailure(_ error: any Error) -> Bool {
        if error is NoAnswer { return true }
        guard let error = error as? PSQLError else {
            // NIO's own connect errors (refused, timed out, no such host).
            return error is NIOConnectionError || error is ChannelError || error is IOError
        }
        switch error.code {
        case .connectionError, .serverClosedConnection, .uncleanShutdown, .clientClosedConnection:
            return true
        case .server:
            // 57P01-57P03: shutting down or starting up; 53300: too many connections.
            let state = error.serverInfo?[.sqlState] ?? ""
            return state.hasPrefix("57P") || state == "53300"
        default:
            return false
        }
    }

    /// The error for a server that could not be connected to or set up.
    static func openFailure(_ server: String, _ error: any Error) -> RegistryError {
        if let error = error as? RegistryError { return error }
        if isConnectionFailure(error) { return .serverUnavailable(server: server, reason: reason(error)) }
        return .cannotOpen(path: server, reason: reason(error))
    }
}
