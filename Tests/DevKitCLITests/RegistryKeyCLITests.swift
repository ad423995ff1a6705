import DevKitModel
import DevKitRegistry
import DevKitTestSupport
import Foundation
import GRDB
import Testing
import VirtualDevKit

#if canImport(Glibc)
import Glibc
#endif

/// The registry key from the command line (issue 16): `registry keygen`, `rekey`,
/// --key-file, the default key created on first use, the exit code 77 of every key
/// problem, and a registry file that holds no UDS in clear text after provisioning.
@Suite(.timeLimit(.minutes(5)))
struct RegistryKeyCLITests {
    static let udsHex = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"

    func fileMode(_ path: String) -> mode_t? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        return st.st_mode & 0o777
    }

    /// A registry at dir/registry.sqlite with one board sealed under the key dir/a.key.
    func sealedRegistry() throws -> (dir: String, db: String, keyID: String) {
        let dir = registryTestDirectory()
        let r = try RegistryCLIProcess.run(["registry", "keygen", dir + "/a.key"])
        #expect(r.status == 0, "\(r.stderr)")
        let registry = try Registry(path: dir + "/registry.sqlite", key: .file(dir + "/a.key"))
        try registry.recordNewBoard(uds: try UDS(hex: Self.udsHex), mac: try MACAddress("a4cf120b9e31"))
        return (dir, dir + "/registry.sqlite", registry.keyID)
    }

    @Test func keygenWritesA0600KeyAndNeverReplacesIt() throws {
        let dir = registryTestDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/keys/station.key"
        let r = try RegistryCLIProcess.run(["registry", "keygen", path, "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(fileMode(path) == 0o600)
        let content = try String(contentsOfFile: path, encoding: .utf8)
        #expect(content.count == 65 && content.hasSuffix("\n"), "64 hex digits and a newline")
        let out = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        #expect(out["key_id"] as? String == (try RegistryKey.load(path: path)).id)
        #expect(!r.stdout.contains(content.trimmingCharacters(in: .whitespacesAndNewlines)), "the key is never printed")
        // The directory it made is said (a typo in the path would pass unseen), once.
        #expect(r.stderr.contains("created the directory \(dir)/keys (mode 0700)"), "\(r.stderr)")
        let second = try RegistryCLIProcess.run(["registry", "keygen", dir + "/keys/other.key"])
        #expect(second.status == 0 && !second.stderr.contains("created the directory"), "\(second.stderr)")

        let again = try RegistryCLIProcess.run(["registry", "keygen", path])
        #expect(again.status == 73, "\(again.stderr)")
        #expect(again.stderr.contains("never replaces a key file"), "\(again.stderr)")
        #expect(try String(contentsOfFile: path, encoding: .utf8) == content)
    }

    /// A one-character file name in the working directory (Foundation's
    /// deletingLastPathComponent trapped on it: SIGILL, no message).
    @Test func oneCharacterNamesInTheWorkingDirectory() throws {
        let dir = registryTestDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let keygen = try TestProcess.run(
            ["/bin/sh", "-c", "cd '\(dir)' && exec '\(TestProcess.devkitBinary)' registry keygen k"], timeout: 120)
        #expect(keygen.signal == nil && keygen.status == 0, "\(keygen.stderr)")
        #expect(fileMode(dir + "/k") == 0o600)
        let registry = try Registry(path: dir + "/r", key: .file(dir + "/k"))
        try registry.recordNewBoard(uds: try UDS(hex: Self.udsHex), mac: try MACAddress("a4cf120b9e31"))
        let list = try TestProcess.run(
            ["/bin/sh", "-c", "cd '\(dir)' && exec '\(TestProcess.devkitBinary)' registry list --registry r --key-file k"],
            timeout: 120)
        #expect(list.signal == nil && list.status == 0, "\(list.stderr)")
        #expect(list.stdout.contains("a4cf120b9e31"), "\(list.stdout)")
        // And a writing open of it (the path the stations take).
        let upgrade = try TestProcess.run(
            ["/bin/sh", "-c", "cd '\(dir)' && exec '\(TestProcess.devkitBinary)' registry upgrade --registry r --key-file k"],
            timeout: 120)
        #expect(upgrade.signal == nil && upgrade.status == 0, "\(upgrade.stderr)")
    }

    @Test func everyKeyProblemExits77AndSaysWhatToDo() throws {
        let (dir, db, keyID) = try sealedRegistry()
        defer { try? FileManager.default.removeItem(atPath: dir) }

        // A --key-file that does not exist.
        var r = try RegistryCLIProcess.run(["registry", "export", "--include-secrets", "--registry", db, "--key-file", dir + "/none.key"])
        #expect(r.status == 77, "\(r.stderr)")
        #expect(r.stderr.contains("none.key") && r.stderr.contains("key \(keyID)"), "\(r.stderr)")

        // Another key.
        #expect(try RegistryCLIProcess.run(["registry", "keygen", dir + "/b.key"]).status == 0)
        r = try RegistryCLIProcess.run(["registry", "show", "1", "--show-secret", "--registry", db, "--key-file", dir + "/b.key"])
        #expect(r.status == 77, "\(r.stderr)")
        #expect(r.stderr.contains("sealed with key \(keyID)"), "\(r.stderr)")

        // The default key (a fresh XDG_CONFIG_HOME): not created for a sealed registry.
        let env = ["XDG_CONFIG_HOME": dir + "/config"]
        r = try RegistryCLIProcess.run(["registry", "export", "--include-secrets", "--registry", db], environment: env)
        #expect(r.status == 77, "\(r.stderr)")
        #expect(r.stderr.contains("key \(keyID)") && r.stderr.contains("backup"), "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/config/devkit/registry.key"))

        // A key others may read.
        _ = chmod(dir + "/a.key", 0o644)
        r = try RegistryCLIProcess.run(["registry", "export", "--include-secrets", "--registry", db, "--key-file", dir + "/a.key"])
        #expect(r.status == 77, "\(r.stderr)")
        #expect(r.stderr.contains("chmod 600 \(dir)/a.key"), "\(r.stderr)")

        _ = chmod(dir + "/a.key", 0o600)
        r = try RegistryCLIProcess.run(["registry", "export", "--include-secrets", "--registry", db, "--key-file", dir + "/a.key"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("a4cf120b9e31"))
    }

    /// `registry list`, `show` and `export` show no secret, so given no key file they
    /// read the rows with the UDS withheld: without the key they print what they
    /// print with it, byte for byte, create no key file, and their hints name no
    /// --key-file. A key file that is named is checked as before (77 when it is
    /// another registry's or missing: the hints would repeat it); `show
    /// --show-secret` and `export --include-secrets` need the key.
    @Test func readingCommandsWithoutASecretNeedNoKey() throws {
        let (dir, db, keyID) = try sealedRegistry()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(try RegistryCLIProcess.run(["registry", "keygen", dir + "/b.key"]).status == 0)
        let noKey = ["XDG_CONFIG_HOME": dir + "/config"]
        let commands = [
            ["list"], ["list", "--json"], ["list", "--unfinished"], ["show", "1"], ["show", "a4cf120b9e31", "--json"], ["export"],
            ["export", "--format", "csv"],
        ]
        for command in commands {
            let keyed = try RegistryCLIProcess.run(["registry"] + command + ["--registry", db, "--key-file", dir + "/a.key"])
            #expect(keyed.status == 0 && keyed.stdout.contains("a4cf120b9e31"), "\(command): \(keyed.stderr)")
            let r = try RegistryCLIProcess.run(["registry"] + command + ["--registry", db], environment: noKey)
            #expect(r.status == 0, "\(command): \(r.stderr)")
            #expect(r.stdout == keyed.stdout, "\(command)")
            #expect(!r.stdout.contains(Self.udsHex) && !r.stderr.contains("error"), "\(command): \(r.stderr)")
            #expect(!r.stderr.contains("--key-file"), "\(command): \(r.stderr)")
            for key in [dir + "/b.key", dir + "/none.key"] {
                let wrong = try RegistryCLIProcess.run(
                    ["registry"] + command + ["--registry", db, "--key-file", key], environment: noKey)
                #expect(wrong.status == 77 && wrong.stderr.contains("key \(keyID)"), "\(command) \(key): \(wrong.stderr)")
                #expect(wrong.stdout.isEmpty)
            }
        }
        #expect(!FileManager.default.fileExists(atPath: dir + "/config"), "a reading command created a key")
        for command in [["show", "1", "--show-secret"], ["export", "--include-secrets"]] {
            let r = try RegistryCLIProcess.run(["registry"] + command + ["--registry", db], environment: noKey)
            #expect(r.status == 77 && r.stderr.contains("key \(keyID)"), "\(command): \(r.stderr)")
            #expect(!r.stdout.contains(Self.udsHex))
        }
        let shown = try RegistryCLIProcess.run(
            ["registry", "show", "1", "--show-secret", "--registry", db, "--key-file", dir + "/a.key"])
        #expect(shown.status == 0 && shown.stdout.contains(Self.udsHex), "\(shown.stderr)")
    }

    /// `-` as --key-file or --registry-password-file is a file name, as the
    /// messages say, with what to give instead (a key is never read from a pipe; a
    /// password may be, through /dev/stdin).
    @Test func aDashForTheKeyOrPasswordFileSaysWhatToGive() throws {
        let (dir, db, _) = try sealedRegistry()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // With the key on standard input, in a directory with no file named `-`.
        let key = try TestProcess.run(
            ["/bin/sh", "-c",
             "cd '\(dir)' && exec '\(TestProcess.devkitBinary)' registry show 1 --show-secret --registry '\(db)' --key-file - < a.key"],
            timeout: 60)
        #expect(key.status == 77 && key.stderr.contains("not from standard input: give its path"), "\(key.stderr)")
        let password = try RegistryCLIProcess.run(
            ["registry", "upgrade", "--registry", "postgresql://station@127.0.0.1:1/devkit", "--registry-password-file", "-",
             "--key-file", dir + "/a.key"])
        #expect(password.status == 66, "\(password.stderr)")
        #expect(password.stderr.contains("`-` is not standard input here: give /dev/stdin"), "\(password.stderr)")
    }

    @Test func rekeyReSealsAndOnlyTheNewKeyOpens() throws {
        let (dir, db, oldID) = try sealedRegistry()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(try RegistryCLIProcess.run(["registry", "keygen", dir + "/new.key"]).status == 0)
        let newID = try RegistryKey.load(path: dir + "/new.key").id
        var r = try RegistryCLIProcess.run(
            ["registry", "rekey", "--registry", db, "--key-file", dir + "/a.key", "--new-key-file", dir + "/new.key", "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        let out = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        #expect(out["resealed"] as? Int == 1 && out["key_id"] as? String == newID && out["old_key_id"] as? String == oldID)

        r = try RegistryCLIProcess.run(["registry", "show", "1", "--show-secret", "--registry", db, "--key-file", dir + "/a.key"])
        #expect(r.status == 77, "\(r.stderr)")
        r = try RegistryCLIProcess.run(
            ["registry", "export", "--include-secrets", "--registry", db, "--key-file", dir + "/new.key"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains(Self.udsHex), "the UDS survived the rekey")
    }

    /// Zero setup on one station: the first provisioning creates the default key
    /// (0600) and says so once; the registry file and its WAL then hold no UDS, in
    /// raw bytes or hex, for any of the boards provisioned.
    @Test func provisioningCreatesTheDefaultKeyAndStoresNothingReadable() throws {
        let v = try ProvisionCLITests.vector()
        let dir = registryTestDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try (v.uds + "\n").write(toFile: dir + "/board.uds", atomically: false, encoding: .utf8)
        let env = ["XDG_CONFIG_HOME": dir + "/config"]
        let keyPath = dir + "/config/devkit/registry.key"
        let db = dir + "/registry.sqlite"

        let kits = [
            try startedKit(.init(macAddress: v.mac, firmwareVersion: v.version)),
            try startedKit(.init(macAddress: "a4cf120b9e32", firmwareVersion: v.version)),
        ]
        defer { for kit in kits { kit.stop() } }
        for (index, kit) in kits.enumerated() {
            let r = try RegistryCLIProcess.run(
                ["provision", "--port", kit.devicePath, "--bin", v.bin, "--map", v.map,
                 "--output-dir", dir + "/out\(index)", "--registry", db]
                    + (index == 0 ? ["--uds-file", dir + "/board.uds"] : ["--generate-uds"]),
                environment: env, timeout: 120)
            #expect(r.status == 0, "\(r.stderr)")
            #expect(r.stderr.contains("created the registry key") == (index == 0), "\(r.stderr)")
        }
        #expect(fileMode(keyPath) == 0o600)

        let boards = try Registry(path: db, key: .defaultFile(keyPath)).allBoards()
        #expect(boards.count == 2)
        #expect(boards.first?.uds.hexString == v.uds.lowercased())
        let files = [db, db + "-wal"].flatMap { FileManager.default.contents(atPath: $0).map(Array.init) ?? [] }
        #expect(files.count > 4096)
        for board in boards {
            for needle in [board.uds.bytes, Array(board.uds.hexString.utf8), Array(board.uds.hexString.uppercased().utf8)] {
                #expect(!contains(files, needle), "board #\(board.id!)'s UDS is readable in the registry file")
            }
        }
    }

    /// The `devkit` the tests start gets the test process's private XDG directories,
    /// never the developer's: a test that omits --key-file or --registry cannot read,
    /// create or seal with ~/.config/devkit/registry.key.
    @Test func childProcessesUseThePrivateConfigDirectory() throws {
        let home = try #require(testEnvironmentHome)
        let realHome = String(cString: getpwuid(getuid())!.pointee.pw_dir)
        let r = try TestProcess.run(
            ["/bin/sh", "-c", "printf '%s\\n' \"$XDG_CONFIG_HOME\" \"$XDG_DATA_HOME\" \"$XDG_STATE_HOME\""], timeout: 60)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdoutLines == [home + "/config", home + "/data", home + "/state"], "\(r.stdout)")
        #expect(r.stdoutLines.allSatisfy { !$0.hasPrefix(realHome + "/") })
        // And devkit itself resolves its default key there.
        let db = registryTestDirectory()
        defer { try? FileManager.default.removeItem(atPath: db) }
        let up = try RegistryCLIProcess.run(["registry", "upgrade", "--registry", db + "/none.sqlite"])
        #expect(up.status == 66, "\(up.stderr)")
        _ = try Registry(path: db + "/r.sqlite", key: .file(try makeKey(db + "/k")))
        let upgrade = try RegistryCLIProcess.run(["registry", "upgrade", "--registry", db + "/r.sqlite", "--json"])
        #expect(upgrade.status == 0, "\(upgrade.stderr)")
        let sharedKey = try RegistryKey.load(path: home + "/config/devkit/registry.key")
        #expect(upgrade.stdout.contains(sharedKey.id), "\(upgrade.stdout)")
    }

    func makeKey(_ path: String) throws -> String {
        try RegistryKey.generate().write(to: path)
        return path
    }

    /// A registry file as devkit wrote it at schema v5, before sealing: one board, UDS in clear text.
    func writeClearV5Registry(_ path: String) throws {
        let queue = try DatabaseQueue(path: path)
        try queue.writeWithoutTransaction { db in
            try db.execute(sql: "PRAGMA journal_mode = WAL")
            try db.execute(sql: """
                CREATE TABLE grdb_migrations (identifier TEXT NOT NULL PRIMARY KEY);
                INSERT INTO grdb_migrations VALUES ('v1: board'), ('v2: board_on_usb_serial'),
                    ('v3: board.superseded_by'), ('v4: board.provision_settings'), ('v5: board.enrollment_*');
                CREATE TABLE board (
                    id INTEGER PRIMARY KEY AUTOINCREMENT, mac TEXT, usb_serial TEXT, registration_id TEXT,
                    firmware_version TEXT, uds TEXT NOT NULL, certificate_sha1 TEXT, certificate_sha256 TEXT,
                    certificate_path TEXT, enrollment_path TEXT,
                    state TEXT NOT NULL CHECK (state IN ('in_progress', 'failed', 'done')), error TEXT,
                    created_at DATETIME NOT NULL, updated_at DATETIME NOT NULL,
                    uds_recorded_at DATETIME, uds_sent_at DATETIME, uds_confirmed_at DATETIME,
                    version_read_at DATETIME, mac_read_at DATETIME, certificate_written_at DATETIME,
                    enrollment_written_at DATETIME, superseded_by INTEGER REFERENCES board(id), provision_settings TEXT,
                    enrollment_action TEXT, enrollment_at DATETIME, enrollment_dps_host TEXT, enrollment_etag TEXT,
                    enrollment_sha1_thumbprint TEXT, enrollment_error_code INTEGER, enrollment_error_message TEXT,
                    enrollment_tracking_id TEXT);
                INSERT INTO board (mac, uds, state, created_at, updated_at, uds_recorded_at)
                    VALUES ('a4cf120b9e31', '\(Self.udsHex)', 'in_progress', '2026-01-02 03:04:05.000',
                            '2026-01-02 03:04:05.000', '2026-01-02 03:04:05.000');
                """)
        }
        try queue.close()
    }

    /// `registry list`, `show` and `export` only read: on a registry an older devkit
    /// wrote in clear text they change no byte of it, create no key, and say to run
    /// `registry upgrade`, which then seals it (and creates the default key).
    @Test func readingCommandsNeverUpgradeOrCreateAKey() throws {
        let dir = registryTestDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let db = dir + "/registry.sqlite"
        try writeClearV5Registry(db)
        let original = try #require(FileManager.default.contents(atPath: db))
        let env = ["XDG_CONFIG_HOME": dir + "/config"]
        for command in [["list"], ["show", "1"], ["export"], ["list", "--json"]] {
            let r = try RegistryCLIProcess.run(["registry"] + command + ["--registry", db], environment: env)
            #expect(r.status == 78, "\(command): \(r.stderr)")
            #expect(r.stderr.contains("devkit registry upgrade"), "\(command): \(r.stderr)")
            #expect(!r.stdout.contains(Self.udsHex) && !r.stderr.contains(Self.udsHex))
            #expect(FileManager.default.contents(atPath: db) == original, "\(command) changed the registry file")
            #expect(!FileManager.default.fileExists(atPath: dir + "/config"), "\(command) created a key")
        }

        let up = try RegistryCLIProcess.run(["registry", "upgrade", "--registry", db, "--json"], environment: env)
        #expect(up.status == 0, "\(up.stderr)")
        let keyID = try RegistryKey.load(path: dir + "/config/devkit/registry.key").id
        #expect(up.stdout.contains(keyID) && up.stderr.contains("created the registry key"), "\(up.stdout)\(up.stderr)")
        let files = [db, db + "-wal"].flatMap { FileManager.default.contents(atPath: $0).map(Array.init) ?? [] }
        #expect(!contains(files, Array(Self.udsHex.utf8)), "the upgrade sealed the UDS")

        let list = try RegistryCLIProcess.run(["registry", "list", "--registry", db], environment: env)
        #expect(list.status == 0 && list.stdout.contains("a4cf120b9e31"), "\(list.stderr)")
    }

    /// The key file's checks from the command line: a link and a FIFO are refused with 77.
    @Test func aKeyFileThatIsALinkOrAFIFOIsRefused() throws {
        let (dir, db, _) = try sealedRegistry()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(symlink(dir + "/a.key", dir + "/link.key") == 0)
        var r = try RegistryCLIProcess.run(["registry", "export", "--include-secrets", "--registry", db, "--key-file", dir + "/link.key"])
        #expect(r.status == 77 && r.stderr.contains("symbolic link"), "\(r.stderr)")
        #expect(mkfifo(dir + "/fifo.key", 0o600) == 0)
        r = try RegistryCLIProcess.run(
            ["registry", "export", "--include-secrets", "--registry", db, "--key-file", dir + "/fifo.key"], timeout: 60)
        #expect(r.status == 77 && r.stderr.contains("not a regular file"), "\(r.stderr)")
    }

    func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
        guard haystack.count >= needle.count else { return false }
        return (0...(haystack.count - needle.count)).contains { i in
            haystack[i] == needle[0] && haystack[i..<(i + needle.count)].elementsEqual(needle)
        }
    }
}
