import DevKitModel
import Foundation
import GRDB
import Testing

@testable import DevKitRegistry

#if canImport(Glibc)
import Glibc
#endif

/// Read-only opens of files that are not (yet) a registry, and key files that are
/// terminals (issue 16's leftovers).
@Suite struct ReadOnlyEdgeTests {
    func keyFile(_ tmp: TempDir) throws -> String {
        try writeKeyFile(tmp.file("a.key"), RegistryKey.generate().key.withUnsafeBytes { Array($0) })
        return tmp.file("a.key")
    }

    /// A 0-byte file (a writing open stopped before making the tables, or `touch`)
    /// and an SQLite database without tables read as an empty registry, unchanged.
    @Test func aFileWithoutSchemaReadsAsAnEmptyRegistry() throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let key = try keyFile(tmp)
        let empty = tmp.file("empty.sqlite")
        #expect(FileManager.default.createFile(atPath: empty, contents: nil))
        let registry = try Registry(path: empty, key: .file(key), readOnly: true)
        #expect(try registry.allBoards().isEmpty)
        #expect(try registry.unfinishedBoards().isEmpty)
        #expect(try registry.board(matching: "1") == nil)
        #expect(!registry.owesRewrite)
        #expect(try FileManager.default.attributesOfItem(atPath: empty)[.size] as? Int == 0, "nothing written")

        let noTables = tmp.file("notables.sqlite")
        let queue = try DatabaseQueue(path: noTables)
        try queue.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA user_version = 1") }
        try queue.close()
        #expect(try Registry(path: noTables, key: .file(key), readOnly: true).allBoards().isEmpty)
        // A writing run stopped after GRDB made its table of migrations, before the first one.
        let atBirth = tmp.file("atbirth.sqlite")
        let birth = try DatabaseQueue(path: atBirth)
        try birth.writeWithoutTransaction { db in
            try db.execute(sql: "CREATE TABLE grdb_migrations (identifier TEXT NOT NULL PRIMARY KEY)")
        }
        try birth.close()
        #expect(try Registry(path: atBirth, key: .file(key), readOnly: true).allBoards().isEmpty)
        // A missing default key is not created for it either.
        let defaultKey = tmp.file("config/devkit/registry.key")
        #expect(try Registry(path: empty, key: .defaultFile(defaultKey), readOnly: true).allBoards().isEmpty)
        #expect(!FileManager.default.fileExists(atPath: defaultKey))
    }

    /// Another program's SQLite database, or a file that is no database at all:
    /// refused as not a registry, never reported as needing an upgrade or as a
    /// permission problem, and left unchanged, by a writing open too (which must
    /// not add devkit's tables to it or switch it to WAL).
    @Test func otherFilesAreNotARegistry() throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let key = try keyFile(tmp)
        let other = tmp.file("other.sqlite")
        let queue = try DatabaseQueue(path: other)
        try queue.write { db in try db.execute(sql: "CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)") }
        try queue.close()
        let text = tmp.file("text.sqlite")
        try Data(repeating: 0x41, count: 8192).write(to: URL(fileURLWithPath: text))
        for (path, reason) in [(other, "without devkit's tables"), (text, "not an SQLite database")] {
            for readOnly in [true, false] {
                let before = FileManager.default.contents(atPath: path)
                do {
                    _ = try Registry(path: path, key: .file(key), readOnly: readOnly)
                    Issue.record("\(path) opened as a registry (read-only: \(readOnly))")
                } catch {
                    guard case .notARegistry(let p, let r) = error, p == path, r.contains(reason) else {
                        Issue.record("\(error)")
                        continue
                    }
                }
                #expect(FileManager.default.contents(atPath: path) == before, "read-only: \(readOnly)")
                #expect(!FileManager.default.fileExists(atPath: path + "-wal"), "read-only: \(readOnly)")
            }
        }
    }

    /// A terminal given as the key file is refused by its type before it is
    /// opened: a pty whose other side is still locked would fail its open with
    /// EIO, and a real serial port could hang up or reset a board.
    @Test(.timeLimit(.minutes(5))) func aTerminalIsRefusedWithoutOpeningIt() throws {
        // posix_openpt is not exported to Swift: a new pty from /dev/ptmx is locked
        // until TIOCSPTLCK unlocks it, which this test never does.
        let master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC)
        try #require(master >= 0)
        defer { close(master) }
        var number: UInt32 = 0
        try #require(ioctl(master, UInt(0x8004_5430), &number) == 0)  // TIOCGPTN
        let slave = "/dev/pts/\(number)"
        do {
            _ = try RegistryKey.load(path: slave)
            Issue.record("a terminal was read as a key")
        } catch {
            guard case .keyFileInvalid(_, let reason) = error, reason.contains("not a regular file (a device)") else {
                Issue.record("\(error)")
                return
            }
        }
    }
}
