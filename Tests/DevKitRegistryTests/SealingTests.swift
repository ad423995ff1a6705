import DevKitModel
import Foundation
import GRDB
import Testing

@testable import DevKitRegistry

#if canImport(Glibc)
import Glibc
#endif

/// Whether `haystack` holds `needle` anywhere.
func bytes(_ haystack: [UInt8], contain needle: [UInt8]) -> Bool {
    guard !needle.isEmpty, haystack.count >= needle.count else { return false }
    let first = needle[0]
    var i = 0
    while i <= haystack.count - needle.count {
        if haystack[i] == first && Array(haystack[i..<(i + needle.count)]) == needle { return true }
        i += 1
    }
    return false
}

/// The bytes of the database file and its WAL (missing files read as nothing).
func databaseBytes(_ path: String) -> [UInt8] {
    [path, path + "-wal"].flatMap { FileManager.default.contents(atPath: $0).map(Array.init) ?? [] }
}

/// Whether the registry files hold `uds` readable: its raw bytes, or its hex in either case.
func holdsClearUDS(_ path: String, _ uds: UDS) -> Bool {
    let all = databaseBytes(path)
    return bytes(all, contain: uds.bytes) || bytes(all, contain: Array(uds.hexString.utf8))
        || bytes(all, contain: Array(uds.hexString.uppercased().utf8))
}

/// A key file with `key`, written as `format`, mode 0600.
func writeKeyFile(_ path: String, _ raw: [UInt8], format: String = "hex") throws {
    let content: [UInt8] = switch format {
    case "raw": raw
    case "base64": Array((Data(raw).base64EncodedString() + "\n").utf8)
    default: Array(("  " + Hex.encode(raw, uppercase: true) + "\r\n").utf8)
    }
    #expect(FileManager.default.createFile(atPath: path, contents: Data(content), attributes: [.posixPermissions: 0o600]))
    _ = chmod(path, 0o600)
}

@Suite struct SealingTests {
    let keyBytes: [UInt8] = (0..<32).map { UInt8($0 * 7 & 0xFF) }

    @Test func sealedValuesOpenOnlyForTheirRowColumnAndKey() throws {
        let sealer = SecretSealer(key: try RegistryKey(bytes: keyBytes))
        let sealed = sealer.seal(udsA.bytes, boardID: 7, column: "uds")
        #expect(sealed.hasPrefix("sealed1:\(sealer.key.id):"))
        #expect(!sealed.contains(udsA.hexString) && !sealed.lowercased().contains(udsA.hexString))
        #expect(try sealer.open(sealed, boardID: 7, column: "uds") == udsA.bytes)
        // A fresh nonce each time: the same secret never seals to the same text.
        #expect(sealer.seal(udsA.bytes, boardID: 7, column: "uds") != sealed)

        // Moved to another row or column: does not authenticate.
        #expect(throws: RegistryError.self) { try sealer.open(sealed, boardID: 8, column: "uds") }
        #expect(throws: RegistryError.self) { try sealer.open(sealed, boardID: 7, column: "wifi_password") }
        // One bit of the ciphertext flipped.
        var box = Array(Data(base64Encoded: String(sealed.split(separator: ":")[2]))!)
        box[20] ^= 1
        let tampered = "sealed1:\(sealer.key.id):" + Data(box).base64EncodedString()
        do {
            _ = try sealer.open(tampered, boardID: 7, column: "uds")
            Issue.record("a tampered value opened")
        } catch {
            guard case .sealedValueRejected(let board, let column, _) = error, board == 7, column == "uds" else {
                Issue.record("\(error)")
                return
            }
        }
        // Another key: says which key is needed.
        let other = SecretSealer(key: RegistryKey.generate(), keyFile: "/k")
        #expect(throws: RegistryError.wrongKey(path: "/k", keyID: other.key.id, neededKeyID: sealer.key.id)) {
            try other.open(sealed, boardID: 7, column: "uds")
        }
    }

    @Test func keyIDIsAFingerprint() throws {
        let key = try RegistryKey(bytes: keyBytes)
        #expect(key.id.count == 16 && key.id.utf8.allSatisfy(Hex.isHexDigit))
        #expect(key.id == (try RegistryKey(bytes: keyBytes)).id)
        #expect(key.id != RegistryKey.generate().id)
    }

    @Test(arguments: ["raw", "hex", "base64"])
    func keyFileFormats(format: String) throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        try writeKeyFile(tmp.file("k"), keyBytes, format: format)
        #expect(try RegistryKey.load(path: tmp.file("k")).id == (try RegistryKey(bytes: keyBytes)).id)
    }

    @Test func keyFilesThatAreRefused() throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let path = tmp.file("k")
        try writeKeyFile(path, keyBytes)
        for bits: mode_t in [0o640, 0o604, 0o644] {
            _ = chmod(path, bits)
            #expect(throws: RegistryError.keyFileInsecure(path: path, mode: bits)) { try RegistryKey.load(path: path) }
        }
        #expect(RegistryError.keyFileInsecure(path: path, mode: 0o644).description.contains("chmod 600 \(path)"))
        _ = chmod(path, 0o600)
        for bad in ["short", String(repeating: "ab", count: 31), String(repeating: "g", count: 64), Data(keyBytes.prefix(31)).base64EncodedString()] {
            #expect(FileManager.default.createFile(atPath: path, contents: Data(bad.utf8)))
            _ = chmod(path, 0o600)
            #expect(throws: RegistryError.self) { try RegistryKey.load(path: path) }
        }
        do {
            _ = try RegistryKey.load(path: tmp.file("missing"))
            Issue.record("a missing key file loaded")
        } catch {
            guard case .keyUnavailable(_, _, nil, let code) = error, code == ENOENT else { Issue.record("\(error)"); return }
        }
    }

    @Test func keygenWritesAPrivateFileAndNeverReplacesOne() throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let path = tmp.file("new/dir/registry.key")
        let key = RegistryKey.generate()
        try key.write(to: path)
        #expect(mode(path) == 0o600)
        #expect(mode(tmp.file("new/dir")) == 0o700)
        #expect(try RegistryKey.load(path: path).id == key.id)
        do {
            try RegistryKey.generate().write(to: path)
            Issue.record("an existing key file was replaced")
        } catch {
            guard case .keyFileNotWritten(let p, _, let code) = error, p == path, code == EEXIST else {
                Issue.record("\(error)")
                return
            }
        }
        #expect(try RegistryKey.load(path: path).id == key.id, "the first key is still there")
    }

    @Test func theDefaultKeyIsCreatedOnceWhenNothingIsSealedYet() throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let keyPath = tmp.file("config/devkit/registry.key")
        let first = try Registry(path: tmp.file("r.sqlite"), key: .defaultFile(keyPath))
        #expect(first.createdKeyFile == keyPath)
        #expect(mode(keyPath) == 0o600)
        let id = try #require(try first.recordNewBoard(uds: udsA).id)
        let again = try Registry(path: tmp.file("r.sqlite"), key: .defaultFile(keyPath))
        #expect(again.createdKeyFile == nil && again.keyID == first.keyID)
        #expect(try again.board(id: id)?.uds == udsA)

        // The default key lost: never replaced by a new one, the needed key named.
        try FileManager.default.removeItem(atPath: keyPath)
        do {
            _ = try Registry(path: tmp.file("r.sqlite"), key: .defaultFile(keyPath))
            Issue.record("opened without its key")
        } catch {
            guard case .keyUnavailable(let p, _, let needed, let code) = error,
                p == keyPath, needed == first.keyID, code == ENOENT
            else {
                Issue.record("\(error)")
                return
            }
        }
        #expect(!FileManager.default.fileExists(atPath: keyPath))
    }

    @Test func anExplicitKeyFileMustExist() throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        do {
            _ = try Registry(path: tmp.file("r.sqlite"), key: .file(tmp.file("none.key")))
            Issue.record("opened with a missing --key-file")
        } catch {
            guard case .keyUnavailable(_, _, nil, let code) = error, code == ENOENT else { Issue.record("\(error)"); return }
        }
        #expect(!FileManager.default.fileExists(atPath: tmp.file("none.key")))
        // Nor is a registry file left behind the error (walkthrough helper-96: an empty
        // 40 KB registry was).
        #expect(!FileManager.default.fileExists(atPath: tmp.file("r.sqlite")))
        // The same for a default key file that is there but unusable (readable by others).
        try writeKeyFile(tmp.file("default.key"), keyBytes)
        _ = chmod(tmp.file("default.key"), 0o644)
        #expect(throws: RegistryError.self) { try Registry(path: tmp.file("r2.sqlite"), key: .defaultFile(tmp.file("default.key"))) }
        #expect(!FileManager.default.fileExists(atPath: tmp.file("r2.sqlite")))
    }

    @Test func aWrongKeyIsRefusedWithTheNeededKeyID() throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        try writeKeyFile(tmp.file("a.key"), keyBytes)
        try writeKeyFile(tmp.file("b.key"), Array(keyBytes.reversed()))
        let a = try Registry(path: tmp.file("r.sqlite"), key: .file(tmp.file("a.key")))
        try a.recordNewBoard(uds: udsA)
        let bID = try RegistryKey.load(path: tmp.file("b.key")).id
        #expect(throws: RegistryError.wrongKey(path: tmp.file("b.key"), keyID: bID, neededKeyID: a.keyID)) {
            try Registry(path: tmp.file("r.sqlite"), key: .file(tmp.file("b.key")))
        }
    }

    @Test func storedRowsHoldNoClearUDSAndReadBack() throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        try writeKeyFile(tmp.file("k"), keyBytes)
        let registry = try Registry(path: tmp.file("r.sqlite"), key: .file(tmp.file("k")))
        let a = try registry.recordNewBoard(uds: udsA, mac: try MACAddress("a4cf120b9e31"), alsoMark: [.udsSent])
        let b = try registry.recordNewBoard(uds: udsB)
        try registry.markStep(.udsConfirmed, boardID: a.id!)
        #expect(try registry.board(id: a.id!)?.uds == udsA)
        #expect(try registry.board(byMAC: "a4cf120b9e31")?.uds == udsA)
        #expect(try registry.allBoards().map(\.uds) == [udsA, udsB])
        #expect(try registry.unfinishedBoards().count == 2)
        let stored = try DatabaseQueue(path: tmp.file("r.sqlite")).read { db in
            try String.fetchAll(db, sql: "SELECT uds FROM board ORDER BY id")
        }
        #expect(stored.allSatisfy { $0.hasPrefix("sealed1:\(registry.keyID):") })
        #expect(!holdsClearUDS(tmp.file("r.sqlite"), udsA) && !holdsClearUDS(tmp.file("r.sqlite"), udsB))

        // A sealed UDS copied onto another row does not open there.
        try DatabaseQueue(path: tmp.file("r.sqlite")).write { db in
            try db.execute(sql: "UPDATE board SET uds = ? WHERE id = ?", arguments: [stored[0], b.id!])
        }
        do {
            _ = try registry.board(id: b.id!)
            Issue.record("a UDS moved to another row opened")
        } catch {
            guard case .sealedValueRejected(let board, _, _) = error, board == b.id else {
                Issue.record("\(error)")
                return
            }
        }
    }

    /// A registry as devkit wrote it before secrets were sealed (the same schema, the
    /// UDS as clear hex) is sealed on first open, and its file no longer holds the
    /// clear bytes: neither in the live pages, the free pages nor the WAL.
    @Test func aClearTextRegistryIsSealedInPlace() throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let path = tmp.file("r.sqlite")
        try writeKeyFile(tmp.file("k"), keyBytes)
        do {
            let registry = try Registry(path: path, key: .file(tmp.file("k")))
            try registry.recordNewBoard(uds: udsA, mac: try MACAddress("a4cf120b9e31"))
            try registry.recordNewBoard(uds: udsB)
        }
        // What the previous release stored: the UDS as 64 lower-case hex digits.
        let queue = try DatabaseQueue(path: path)
        try queue.write { db in
            try db.execute(sql: "UPDATE board SET uds = ? WHERE id = 1", arguments: [udsA.hexString])
            try db.execute(sql: "UPDATE board SET uds = ? WHERE id = 2", arguments: [udsB.hexString])
        }
        try queue.writeWithoutTransaction { db in _ = try db.checkpoint(.truncate) }
        try queue.close()
        #expect(holdsClearUDS(path, udsA), "the fixture holds the UDS in clear text")

        let upgraded = try Registry(path: path, key: .file(tmp.file("k")))
        #expect(try upgraded.allBoards().map(\.uds) == [udsA, udsB])
        #expect(!holdsClearUDS(path, udsA) && !holdsClearUDS(path, udsB))
        let stored = try DatabaseQueue(path: path).read { db in try String.fetchAll(db, sql: "SELECT uds FROM board") }
        #expect(stored.allSatisfy { SecretSealer.keyID(of: $0) == upgraded.keyID })
    }

    /// The older schema of EnrollmentRecordTests (v4, no enrollment columns), clear
    /// UDS: migrated and sealed by one open, with the default key created for it.
    @Test func anOldRegistryGetsTheDefaultKeyAndIsSealed() throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let path = tmp.file("r.sqlite")
        try writeV4Registry(path)
        let keyPath = tmp.file("cfg/devkit/registry.key")
        let registry = try Registry(path: path, key: .defaultFile(keyPath))
        #expect(registry.createdKeyFile == keyPath)
        #expect(try registry.board(id: 1)?.uds == udsA)
        #expect(!holdsClearUDS(path, udsA))
    }

    @Test func rekeyReSealsEverythingAndTheOldKeyNoLongerOpens() throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let path = tmp.file("r.sqlite")
        try writeKeyFile(tmp.file("old.key"), keyBytes)
        let old = try Registry(path: path, key: .file(tmp.file("old.key")))
        for uds in [udsA, udsB] { try old.recordNewBoard(uds: uds) }
        let oldSealed = try DatabaseQueue(path: path).read { db in try String.fetchAll(db, sql: "SELECT uds FROM board") }
        let newKey = RegistryKey.generate()
        try newKey.write(to: tmp.file("new.key"))
        #expect(try old.rekey(to: newKey) == 2)

        let reopened = try Registry(path: path, key: .file(tmp.file("new.key")))
        #expect(reopened.keyID == newKey.id)
        #expect(try reopened.allBoards().map(\.uds) == [udsA, udsB])
        #expect(throws: RegistryError.wrongKey(path: tmp.file("old.key"), keyID: old.keyID, neededKeyID: newKey.id)) {
            try Registry(path: path, key: .file(tmp.file("old.key")))
        }
        // Nothing sealed under the old key is left in the file for it to open.
        let all = databaseBytes(path)
        for sealed in oldSealed { #expect(!bytes(all, contain: Array(sealed.utf8))) }
        #expect(!holdsClearUDS(path, udsA))

        // The same key again only rewrites the file (the retry of a failed rewrite):
        // nothing re-sealed, every secret still opens.
        let sealedNow = try DatabaseQueue(path: path).read { db in try String.fetchAll(db, sql: "SELECT uds FROM board") }
        #expect(try reopened.rekey(to: newKey) == 0)
        #expect(try DatabaseQueue(path: path).read { db in try String.fetchAll(db, sql: "SELECT uds FROM board") } == sealedNow)
        #expect(try Registry(path: path, key: .file(tmp.file("new.key"))).allBoards().map(\.uds) == [udsA, udsB])
    }
}

/// A registry file of schema v4 with one board, its UDS in clear text, as devkit
/// wrote it before DPS enrollments and sealed secrets.
func writeV4Registry(_ path: String) throws {
    let queue = try DatabaseQueue(path: path)
    try queue.write { db in
        try db.execute(sql: """
            CREATE TABLE grdb_migrations (identifier TEXT NOT NULL PRIMARY KEY);
            INSERT INTO grdb_migrations VALUES ('v1: board'), ('v2: board_on_usb_serial'),
                ('v3: board.superseded_by'), ('v4: board.provision_settings');
            CREATE TABLE board (
                id INTEGER PRIMARY KEY AUTOINCREMENT, mac TEXT, usb_serial TEXT, registration_id TEXT,
                firmware_version TEXT, uds TEXT NOT NULL, certificate_sha1 TEXT, certificate_sha256 TEXT,
                certificate_path TEXT, enrollment_path TEXT,
                state TEXT NOT NULL CHECK (state IN ('in_progress', 'failed', 'done')), error TEXT,
                created_at DATETIME NOT NULL, updated_at DATETIME NOT NULL,
                uds_recorded_at DATETIME, uds_sent_at DATETIME, uds_confirmed_at DATETIME, version_read_at DATETIME,
                mac_read_at DATETIME, certificate_written_at DATETIME, enrollment_written_at DATETIME,
                superseded_by INTEGER REFERENCES board(id), provision_settings TEXT);
            CREATE INDEX board_on_mac ON board(mac);
            CREATE INDEX board_on_registration_id ON board(registration_id);
            CREATE INDEX board_on_usb_serial ON board(usb_serial);
            INSERT INTO board (mac, uds, state, created_at, updated_at, uds_recorded_at)
                VALUES ('a4cf120b9e31', '\(udsA.hexString)', 'in_progress', '2026-01-02 03:04:05.000',
                        '2026-01-02 03:04:05.000', '2026-01-02 03:04:05.000');
            """)
    }
}
