import DevKitModel
import DevKitRegistry
import DevKitTestSupport
import Foundation
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

        let again = try RegistryCLIProcess.run(["registry", "keygen", path])
        #expect(again.status == 73, "\(again.stderr)")
        #expect(again.stderr.contains("never replaces a key file"), "\(again.stderr)")
        #expect(try String(contentsOfFile: path, encoding: .utf8) == content)
    }

    @Test func everyKeyProblemExits77AndSaysWhatToDo() throws {
        let (dir, db, keyID) = try sealedRegistry()
        defer { try? FileManager.default.removeItem(atPath: dir) }

        // A --key-file that does not exist.
        var r = try RegistryCLIProcess.run(["registry", "list", "--registry", db, "--key-file", dir + "/none.key"])
        #expect(r.status == 77, "\(r.stderr)")
        #expect(r.stderr.contains("none.key") && r.stderr.contains("key \(keyID)"), "\(r.stderr)")

        // Another key.
        #expect(try RegistryCLIProcess.run(["registry", "keygen", dir + "/b.key"]).status == 0)
        r = try RegistryCLIProcess.run(["registry", "show", "1", "--registry", db, "--key-file", dir + "/b.key"])
        #expect(r.status == 77, "\(r.stderr)")
        #expect(r.stderr.contains("sealed with key \(keyID)"), "\(r.stderr)")

        // The default key (a fresh XDG_CONFIG_HOME): not created for a sealed registry.
        let env = ["XDG_CONFIG_HOME": dir + "/config"]
        r = try RegistryCLIProcess.run(["registry", "list", "--registry", db], environment: env)
        #expect(r.status == 77, "\(r.stderr)")
        #expect(r.stderr.contains("key \(keyID)") && r.stderr.contains("backup"), "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/config/devkit/registry.key"))

        // A key others may read.
        _ = chmod(dir + "/a.key", 0o644)
        r = try RegistryCLIProcess.run(["registry", "list", "--registry", db, "--key-file", dir + "/a.key"])
        #expect(r.status == 77, "\(r.stderr)")
        #expect(r.stderr.contains("chmod 600 \(dir)/a.key"), "\(r.stderr)")

        _ = chmod(dir + "/a.key", 0o600)
        r = try RegistryCLIProcess.run(["registry", "list", "--registry", db, "--key-file", dir + "/a.key"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("a4cf120b9e31"))
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

        r = try RegistryCLIProcess.run(["registry", "list", "--registry", db, "--key-file", dir + "/a.key"])
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

    func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
        guard haystack.count >= needle.count else { return false }
        return (0...(haystack.count - needle.count)).contains { i in
            haystack[i] == needle[0] && haystack[i..<(i + needle.count)].elementsEqual(needle)
        }
    }
}
