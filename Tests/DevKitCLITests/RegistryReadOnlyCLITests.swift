import DevKitModel
import DevKitRegistry
import DevKitTestSupport
import Foundation
import GRDB
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `registry list|show|export` on files that are not (yet) a registry, on a registry
/// that owes its rewrite, and with a terminal as --key-file (issue 16's leftovers).
@Suite(.timeLimit(.minutes(5)))
struct RegistryReadOnlyCLITests {
    func occurrences(_ needle: String, in text: String) -> Int { text.components(separatedBy: needle).count - 1 }

    /// A 0-byte file is an empty registry (exit 0, no board); another program's
    /// database or a text file is "not a devkit registry" (66), never "upgrade" or
    /// a permission problem.
    @Test func emptyAndForeignFiles() throws {
        let dir = registryTestDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let env = ["XDG_CONFIG_HOME": dir + "/config"]
        let empty = dir + "/empty.sqlite"
        #expect(FileManager.default.createFile(atPath: empty, contents: nil))
        var r = try RegistryCLIProcess.run(["registry", "list", "--registry", empty], environment: env)
        #expect(r.status == 0 && r.stdout.contains("No boards recorded"), "\(r.stdout)\(r.stderr)")
        r = try RegistryCLIProcess.run(["registry", "export", "--registry", empty], environment: env)
        #expect(r.status == 0, "\(r.stderr)")
        #expect((try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [Any])?.isEmpty == true, "\(r.stdout)")
        r = try RegistryCLIProcess.run(["registry", "show", "1", "--registry", empty], environment: env)
        #expect(r.status == 66 && r.stderr.contains("no board '1'"), "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/config"), "no key created")

        let other = dir + "/other.sqlite"
        let queue = try DatabaseQueue(path: other)
        try queue.write { db in try db.execute(sql: "CREATE TABLE notes (id INTEGER PRIMARY KEY)") }
        try queue.close()
        let text = dir + "/notes.txt"
        #expect(FileManager.default.createFile(atPath: text, contents: Data(repeating: 0x41, count: 8192)))
        for file in [other, text] {
            for command in [["list"], ["show", "1"], ["export"]] {
                r = try RegistryCLIProcess.run(["registry"] + command + ["--registry", file], environment: env)
                #expect(r.status == 66, "\(command) \(file): \(r.stderr)")
                #expect(r.stderr.contains("is not a devkit registry") && !r.stderr.contains("upgrade"), "\(r.stderr)")
            }
        }
    }

    /// A registry that owes its rewrite is read all the same, with one warning that
    /// `registry upgrade` finishes it; after the upgrade there is none.
    @Test func anOwedRewriteIsWarnedAboutOnce() throws {
        let dir = registryTestDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let db = dir + "/registry.sqlite"
        #expect(try RegistryCLIProcess.run(["registry", "keygen", dir + "/a.key"]).status == 0)
        let registry = try Registry(path: db, key: .file(dir + "/a.key"))
        try registry.recordNewBoard(uds: try UDS(hex: String(repeating: "3c", count: 32)), mac: try MACAddress("a4cf120b9e31"))
        // What a seal or rekey leaves when its rewrite fails (RegistrySealing.swift).
        let queue = try DatabaseQueue(path: db)
        try queue.write { db in
            try db.execute(sql: "INSERT INTO registry_meta (name, value) VALUES ('scrub_pending', 'rekey test')")
        }
        try queue.close()
        let key = ["--registry", db, "--key-file", dir + "/a.key"]
        var r = try RegistryCLIProcess.run(["registry", "list"] + key)
        #expect(r.status == 0 && r.stdout.contains("a4cf120b9e31"), "\(r.stderr)")
        #expect(occurrences("warning:", in: r.stderr) == 1 && r.stderr.contains("devkit registry upgrade"), "\(r.stderr)")
        r = try RegistryCLIProcess.run(["registry", "upgrade"] + key)
        #expect(r.status == 0, "\(r.stderr)")
        r = try RegistryCLIProcess.run(["registry", "list"] + key)
        #expect(r.status == 0 && !r.stderr.contains("warning"), "\(r.stderr)")
    }

    /// A terminal as --key-file (an unlocked pty: what a tty is) is refused with 77
    /// as not a regular file, and devkit does not wait on it.
    @Test func aTerminalAsKeyFileIsRefused() throws {
        let dir = registryTestDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let db = dir + "/registry.sqlite"
        #expect(try RegistryCLIProcess.run(["registry", "keygen", dir + "/a.key"]).status == 0)
        try Registry(path: db, key: .file(dir + "/a.key")).recordNewBoard(uds: try UDS(hex: String(repeating: "3c", count: 32)))
        // posix_openpt is not exported to Swift (see ReplTestBoard).
        let master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC)
        try #require(master >= 0)
        defer { close(master) }
        var unlock: Int32 = 0
        var number: UInt32 = 0
        try #require(ioctl(master, UInt(0x4004_5431), &unlock) == 0)  // TIOCSPTLCK
        try #require(ioctl(master, UInt(0x8004_5430), &number) == 0)  // TIOCGPTN
        let r = try RegistryCLIProcess.run(
            ["registry", "export", "--include-secrets", "--registry", db, "--key-file", "/dev/pts/\(number)"], timeout: 60)
        #expect(r.status == 77 && r.stderr.contains("not a regular file (a device)"), "\(r.stderr)")
    }

    /// A read-only open in a directory this user cannot write: refused with 77 and
    /// the reason (SQLite must create the -wal and -shm files) while no run has the
    /// registry open; read while one has (its -wal and -shm are there).
    @Test(.enabled(if: ConsoleCLIValidationTests.canRunAsNobody, "needs root, setpriv, and a devkit binary that nobody may run"))
    func aRegistryInADirectoryThisUserCannotWrite() throws {
        let dir = registryTestDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(chmod(dir, 0o755) == 0)
        let db = dir + "/registry.sqlite"
        #expect(try RegistryCLIProcess.run(["registry", "keygen", dir + "/a.key"]).status == 0)
        // Made with its tables and no board, then closed (released here).
        _ = try Registry(path: db, key: .file(dir + "/a.key"))
        #expect(chmod(db, 0o644) == 0)
        #expect(!FileManager.default.fileExists(atPath: db + "-wal"), "the writer removed its WAL on closing")
        let devkit = try TestProcess.devkitBinary
        let asNobody = [ConsoleCLIValidationTests.setpriv!, "--reuid=65534", "--regid=65534", "--clear-groups", devkit,
            "registry", "list", "--registry", db]
        // The default key of a directory that does not exist: a registry with no board needs none.
        let env = ["XDG_CONFIG_HOME": "/nonexistent/config", "HOME": "/nonexistent"]
        var r = try TestProcess.run(asNobody, environment: env, timeout: 60)
        #expect(r.status == 77, "\(r.stderr)")
        #expect(r.stderr.contains("registry.sqlite-wal") && r.stderr.contains("cannot write"), "\(r.stderr)")

        // While a run has it open, its -wal and -shm are there to be read.
        let holder = try DatabasePool(path: db)
        _ = try holder.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM board") }
        r = try TestProcess.run(asNobody, environment: env, timeout: 60)
        #expect(r.status == 0 && r.stdout.contains("No boards recorded"), "\(r.stdout)\(r.stderr)")
        try holder.close()
    }
}
