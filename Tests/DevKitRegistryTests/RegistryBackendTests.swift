import DevKitModel
import Foundation
import GRDB
import Testing

@testable import DevKitRegistry

/// The registry's behaviour on both backends (issue 16): the same cases against
/// an SQLite file and against a real PostgreSQL server (a throwaway cluster, see
/// PostgresCluster). Without PostgreSQL's binaries, and outside CI, the PostgreSQL
/// half is skipped with that said; in CI it must run.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct RegistryBackendTests {
    enum Backend: String, CaseIterable, CustomTestStringConvertible {
        case sqlite, postgresql
        var testDescription: String { rawValue }
    }

    /// A fresh, empty registry of `backend` sealed with the key in `keyFile`.
    struct Opened {
        let store: any RegistryStore
        let reopen: (RegistryKeySource) throws -> any RegistryStore
        /// Everything a backup of it holds: the SQLite file and WAL, or pg_dump's output.
        let backup: () throws -> [UInt8]
    }

    static func open(_ backend: Backend, _ tmp: TempDir, key: RegistryKeySource) throws -> Opened {
        switch backend {
        case .sqlite:
            let path = tmp.file("r.sqlite")
            return Opened(
                store: try Registry(path: path, key: key),
                reopen: { try Registry(path: path, key: $0) },
                backup: { databaseBytes(path) })
        case .postgresql:
            let cluster = try PostgresCluster.shared()
            let database = try cluster.createDatabase()
            let location = try PostgresLocation(url: cluster.url(database))
            return Opened(
                store: try PostgresRegistry(location: location, key: key),
                reopen: { try PostgresRegistry(location: location, key: $0) },
                backup: { Array(try cluster.dump(database).utf8) })
        }
    }

    static let backends: [Backend] = {
        if PostgresCluster.available { return Backend.allCases }
        print("RegistryBackendTests: PostgreSQL's server binaries are not installed and CI is not set: "
            + "only SQLite is tested (Scripts/install-deps.sh installs postgresql)")
        return [.sqlite]
    }()

    func keyFile(_ tmp: TempDir, _ name: String = "k", bytes: [UInt8]? = nil) throws -> RegistryKeySource {
        try writeKeyFile(tmp.file(name), bytes ?? RegistryKey.generate().key.withUnsafeBytes { Array($0) })
        return .file(tmp.file(name))
    }

    @Test(arguments: backends)
    func recordsMarksAndReadsBack(backend: Backend) throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let opened = try Self.open(backend, tmp, key: try keyFile(tmp))
        let registry = opened.store
        let a = try registry.recordNewBoard(
            uds: udsA, mac: try MACAddress("a4cf120b9e31"), usbSerial: "0672FF", registrationID: nil,
            firmwareVersion: nil, provisionSettings: "{}", alsoMark: [.udsSent])
        let b = try registry.recordNewBoard(
            uds: udsB, mac: nil, usbSerial: nil, registrationID: nil, firmwareVersion: nil, provisionSettings: nil,
            alsoMark: [])
        #expect(a.id != b.id)
        var update = BoardUpdate()
        update.registrationID = try RegistrationID("az-a4cf120b9e31")
        let marked = try registry.markSteps([.udsConfirmed, .versionRead], boardID: a.id!, update: update)
        #expect(marked.registrationID == "az-a4cf120b9e31" && marked.lastStep == .macRead)
        try registry.markFailed(boardID: b.id!, error: "unplugged")

        let read = try #require(try registry.board(id: a.id!))
        #expect(read.uds == udsA && read.usbSerial == "0672FF" && read.provisionSettings == "{}")
        #expect(read.completedSteps == [.udsRecorded, .udsSent, .udsConfirmed, .versionRead, .macRead])
        #expect(try registry.board(byMAC: "A4:CF:12:0B:9E:31")?.id == a.id)
        #expect(try registry.allBoards().map(\.uds) == [udsA, udsB])
        #expect(try registry.unfinishedBoards().map(\.state) == [.inProgress, .failed])
        #expect(try registry.board(id: 999) == nil)
        #expect(throws: RegistryError.boardNotFound("999")) { try registry.markSteps([.macRead], boardID: 999, update: BoardUpdate()) }
    }

    @Test(arguments: backends)
    func aBackupHoldsNoClearUDS(backend: Backend) throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let opened = try Self.open(backend, tmp, key: try keyFile(tmp))
        for uds in [udsA, udsB] {
            let board = try opened.store.recordNewBoard(
                uds: uds, mac: nil, usbSerial: nil, registrationID: nil, firmwareVersion: nil, provisionSettings: nil,
                alsoMark: [.udsSent])
            try opened.store.markSteps([.udsConfirmed], boardID: board.id!, update: BoardUpdate())
        }
        let backup = try opened.backup()
        #expect(backup.count > 1000)
        #expect(bytes(backup, contain: Array("sealed1:\(opened.store.keyID)".utf8)), "the sealed values are in it")
        for uds in [udsA, udsB] {
            for needle in [uds.bytes, Array(uds.hexString.utf8), Array(uds.hexString.uppercased().utf8)] {
                #expect(!bytes(backup, contain: needle))
            }
        }
    }

    @Test(arguments: backends)
    func theWrongKeyIsRefusedWithTheNeededID(backend: Backend) throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let opened = try Self.open(backend, tmp, key: try keyFile(tmp, "a"))
        try opened.store.recordNewBoard(
            uds: udsA, mac: nil, usbSerial: nil, registrationID: nil, firmwareVersion: nil, provisionSettings: nil,
            alsoMark: [])
        let other = try keyFile(tmp, "b")
        let otherID = try RegistryKey.load(path: other.path).id
        #expect(throws: RegistryError.wrongKey(path: other.path, keyID: otherID, neededKeyID: opened.store.keyID)) {
            try opened.reopen(other)
        }
        // No key at the default place: not created for a registry that needs another.
        let missing = RegistryKeySource.defaultFile(tmp.file("cfg/devkit/registry.key"))
        #expect(throws: RegistryError.self) { try opened.reopen(missing) }
        #expect(!FileManager.default.fileExists(atPath: missing.path))
        #expect(try opened.reopen(.file(tmp.file("a"))).board(id: 1)?.uds == udsA)
    }

    /// `registry migrate --to`: a station's SQLite registry copied into PostgreSQL,
    /// and copied again without a second row for any board.
    @Test(.enabled(if: PostgresCluster.available, "PostgreSQL's binaries are not installed (and CI is not set)"))
    func anSQLiteRegistryIsCopiedIntoPostgreSQLOnce() throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let key = try keyFile(tmp)
        let sqlite = try Registry(path: tmp.file("station.sqlite"), key: key)
        let first = try sqlite.recordNewBoard(uds: udsA, mac: try MACAddress("a4cf120b9e31"))
        try sqlite.markSteps([.udsSent, .udsConfirmed], boardID: first.id!)
        let second = try sqlite.recordNewBoard(uds: udsB)
        try sqlite.markSuperseded(boardID: first.id!, by: second.id!, certificatePath: "/x.pem", enrollmentPath: nil)

        let opened = try Self.open(.postgresql, tmp, key: key)
        let postgres = try #require(opened.store as? PostgresRegistry)
        #expect(try postgres.importBoards(from: sqlite) == 2)
        #expect(try postgres.importBoards(from: sqlite) == 0, "idempotent")
        let copied = try postgres.allBoards()
        #expect(copied.map(\.uds) == [udsA, udsB])
        #expect(copied[0].supersededBy == copied[1].id && copied[0].certificatePath == "/x.pem")
        #expect(copied[0].completedSteps == [.udsRecorded, .udsSent, .udsConfirmed, .macRead])
        #expect(copied[0].createdAt == (try sqlite.board(id: first.id!))?.createdAt)
    }

    @Test func postgresURLs() throws {
        let location = try PostgresLocation(url: "postgresql://station@db.lab:6543/devkit?sslmode=verify-full&sslrootcert=/etc/ca.pem")
        #expect(location.user == "station" && location.host == "db.lab" && location.port == 6543)
        #expect(location.database == "devkit" && location.sslMode == .verifyFull && location.caFile == "/etc/ca.pem")
        #expect(try PostgresLocation(url: "postgresql://u@db/x").sslMode == .require, "TLS over the network by default")
        #expect(try PostgresLocation(url: "postgresql://u@/x?host=/run/pg").socketPath == "/run/pg/.s.PGSQL.5432")
        do {
            _ = try PostgresLocation(url: "postgresql://u:hunter2@db/x")
            Issue.record("a password in the URL was taken")
        } catch {
            #expect(!"\(error)".contains("hunter2") && "\(error)".contains("pgpass"))
        }
        #expect(throws: RegistryError.self) { try PostgresLocation(url: "postgresql://u@db/x?sslmode=verify-full") }
        #expect(throws: RegistryError.self) { try PostgresLocation(url: "postgresql://db/x") }
    }

    @Test func passwordsComeFromPgpassOrAFile() throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let location = try PostgresLocation(url: "postgresql://station@db.lab:5432/devkit")
        FileManager.default.createFile(atPath: tmp.file("pgpass"), contents: Data("""
            # comment
            other:5432:devkit:station:nope
            db.lab:*:devkit:station:s3cr\\:et
            """.utf8))
        _ = chmod(tmp.file("pgpass"), 0o600)
        #expect(try location.password(passwordFile: nil, environment: ["PGPASSFILE": tmp.file("pgpass")]) == "s3cr:et")
        _ = chmod(tmp.file("pgpass"), 0o644)
        #expect(try location.password(passwordFile: nil, environment: ["PGPASSFILE": tmp.file("pgpass")]) == nil,
                "a .pgpass others may read is ignored, as libpq does")
        FileManager.default.createFile(atPath: tmp.file("pw"), contents: Data("fromfile\n".utf8))
        #expect(try location.password(passwordFile: tmp.file("pw")) == "fromfile")
    }
}
