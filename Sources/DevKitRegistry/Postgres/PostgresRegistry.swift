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
    let sealer: SecretSealer
    public var keyID: String { sealer.key.id }
    public let createdKeyFile: String?
    private let connection: PostgresConnection
    /// One transaction at a time on the connection.
    private let lock = Mutex<Void>(())

    public init(
        location: PostgresLocation, key: RegistryKeySource = .defaultKey(), passwordFile: String? = nil,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws(RegistryError) {
        self.location = location
        let password = try location.password(passwordFile: passwordFile, environment: environment)
        var configuration: PostgresConnection.Configuration
        if let socket = location.socketPath {
            configuration = .init(unixSocketPath: socket, username: location.user, password: password, database: location.database)
        } else {
            let tls: PostgresConnection.Configuration.TLS
            do {
                switch location.sslMode {
                case .disable:
                    tls = .disable
                case .require:
                    var config = TLSConfiguration.makeClientConfiguration()
                    config.certificateVerification = .none
                    tls = .require(try NIOSSLContext(configuration: config))
                case .verifyFull:
                    var config = TLSConfiguration.makeClientConfiguration()
                    config.certificateVerification = .fullVerification
                    config.trustRoots = .file(location.caFile ?? "")
                    tls = .require(try NIOSSLContext(configuration: config))
                }
            } catch {
                throw .cannotOpen(path: location.description, reason: "TLS setup failed: \(error)")
            }
            configuration = .init(
                host: location.host, port: location.port, username: location.user, password: password,
                database: location.database, tls: tls)
        }
        do {
            connection = try PostgresConnection.connect(
                on: MultiThreadedEventLoopGroup.singleton.any(), configuration: configuration, id: 1,
                logger: Logger(label: "devkit.registry.postgres")
            ).wait()
        } catch {
            throw .cannotOpen(path: location.description, reason: Self.reason(error))
        }
        do {
            // Every commit durable before it is acknowledged, whatever the server's default.
            _ = try connection.query("SET synchronous_commit = on").wait()
            try Self.migrate(connection)
        } catch {
            _ = try? connection.close().wait()
            throw .cannotOpen(path: location.description, reason: Self.reason(error))
        }
        let needed: String?
        do {
            needed = try connection.query("SELECT uds FROM board WHERE uds LIKE 'sealed1:%' LIMIT 1").wait()
                .first.flatMap { $0.makeRandomAccess()[data: "uds"].string }.flatMap(SecretSealer.keyID(of:))
        } catch {
            _ = try? connection.close().wait()
            throw .cannotOpen(path: location.description, reason: Self.reason(error))
        }
        let resolved: (key: RegistryKey, created: Bool)
        do {
            resolved = try RegistryKey.resolve(key, neededKeyID: needed)
        } catch {
            _ = try? connection.close().wait()
            throw error
        }
        sealer = SecretSealer(key: resolved.key, keyFile: key.path)
        createdKeyFile = resolved.created ? key.path : nil
    }

    deinit { _ = try? connection.close().wait() }

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
    ]

    static func migrate(_ connection: PostgresConnection) throws {
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
    private static let insertSQL: String = {
        let columns = BoardRecord.databaseColumns
        return "INSERT INTO board (" + columns.joined(separator: ", ") + ") VALUES ("
            + columns.indices.map { "$\($0 + 1)" }.joined(separator: ", ") + ")"
    }()

    /// `body` in one transaction; rolled back if it throws.
    private func transaction<T>(_ body: (PostgresConnection) throws -> T) throws(RegistryError) -> T {
        do {
            return try lock.withLock { _ in
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
        } catch let error as RegistryError {
            throw error
        } catch {
            throw .database(path: location.description, reason: Self.reason(error))
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
        provisionSettings: String? = nil, alsoMark: [ProvisioningStep] = []
    ) throws(RegistryError) -> BoardRecord {
        let now = Date()
        var record = BoardRecord(
            id: nil, mac: mac?.hex, usbSerial: usbSerial, registrationID: registrationID?.value,
            firmwareVersion: firmwareVersion?.text, uds: uds, state: .inProgress,
            createdAt: now, updatedAt: now, provisionSettings: provisionSettings, udsRecordedAt: now,
            macReadAt: mac == nil ? nil : now)
        for step in alsoMark { record.setCompleted(step, at: now) }
        let sealer = self.sealer
        return try transaction { connection in
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

    @discardableResult
    public func markFailed(boardID: Int64, error message: String) throws(RegistryError) -> BoardRecord {
        try transaction { connection in
            var record = try fetchForUpdate(connection, id: boardID)
            record.state = .failed
            record.error = message
            record.updatedAt = Date()
            try store(record, connection)
            return record
        }
    }

    public func board(id: Int64) throws(RegistryError) -> BoardRecord? {
        try fetch("SELECT * FROM board WHERE id = $1", [PostgresData(int64: id)]).first
    }

    public func board(byMAC mac: String) throws(RegistryError) -> BoardRecord? {
        let normalized = try Registry.normalizeMAC(mac)
        return try fetch("SELECT * FROM board WHERE mac = $1 ORDER BY id DESC LIMIT 1", [PostgresData(string: normalized)]).first
    }

    public func allBoards() throws(RegistryError) -> [BoardRecord] {
        try fetch("SELECT * FROM board ORDER BY id")
    }

    public func unfinishedBoards() throws(RegistryError) -> [BoardRecord] {
        try fetch("SELECT * FROM board WHERE state <> 'done' ORDER BY id")
    }

    /// Copies the boards of `source` that are not here yet (the same UDS), keeping
    /// their order, steps and `superseded_by` links; returns how many were copied.
    /// Running it again copies nothing. One transaction.
    @discardableResult
    public func importBoards(from source: Registry) throws(RegistryError) -> Int {
        let boards = try source.allBoards()
        let sealer = self.sealer
        return try transaction { connection in
            var known = Set<[UInt8]>()
            for row in try connection.query("SELECT id, uds FROM board").wait() {
                let cells = row.makeRandomAccess()
                let id = try cells["id"].decode(Int64.self)
                known.insert(try sealer.open(try cells["uds"].decode(String.self), boardID: id, column: "uds"))
            }
            var newID: [Int64: Int64] = [:]
            var copied = 0
            for var board in boards where !known.contains(board.uds.bytes) {
                let oldID = board.id!
                guard let id = try connection.query("SELECT nextval('board_id_seq') AS id").wait().first
                    .flatMap({ try $0.makeRandomAccess()["id"].decode(Int64.self) })
                else { continue }
                newID[oldID] = id
                board.id = id
                board.supersededBy = nil  // linked below, once every row is in
                let values = zip(BoardRecord.databaseColumns, board.databaseValues).map { column, value in
                    column == "uds" ? PostgresData(string: sealer.sealUDS(board.uds, boardID: id)) : Self.bind(value)
                }
                _ = try connection.query(Self.insertSQL, values).wait()
                copied += 1
            }
            for board in boards {
                guard let old = board.supersededBy, let id = newID[board.id!], let by = newID[old] else { continue }
                _ = try connection.query(
                    "UPDATE board SET superseded_by = $1 WHERE id = $2", [PostgresData(int64: by), PostgresData(int64: id)]
                ).wait()
            }
            return copied
        }
    }

    static func reason(_ error: any Error) -> String {
        if let error = error as? PSQLError {
            if let message = error.serverInfo?[.message] { return message }
            return "\(error.code)"
        }
        return "\(error)"
    }
}
