import DevKitWorkflows
import Testing

@testable import DevKitCLI

/// The profile's `[registry] key_file` (issue 16): resolved against the profile's
/// directory like its other paths, used when --key-file is not given.
@Suite struct ProfileRegistryKeyTests {
    let base = """
        [firmware]
        elf = "fw.elf"
        [uds]
        policy = "generate"

        """

    @Test func keyFileIsResolvedAgainstTheProfile() throws {
        let profile = try ProfileLoader.parse(base + "[registry]\nkey_file = \"keys/registry.key\"\n", file: "/etc/devkit/p.toml")
        #expect(profile.registryKeyFile == "/etc/devkit/keys/registry.key")
        #expect(try ProfileLoader.parse(base, file: "/etc/devkit/p.toml").registryKeyFile == nil)
    }

    @Test func theOptionWinsOverTheProfile() throws {
        var options = try RegistryOptions.parse(["--key-file", "/k/option.key"])
        #expect(options.keySource(profileKeyFile: "/k/profile.key") == .file("/k/option.key"))
        options = try RegistryOptions.parse([])
        #expect(options.keySource(profileKeyFile: "/k/profile.key") == .file("/k/profile.key"))
        guard case .defaultFile = options.keySource() else {
            Issue.record("no --key-file and no profile: the default key")
            return
        }
    }

    /// `url`, `password_file` (resolved like key_file) and `station`: the shared
    /// registry a profile names, and what --registry and --station override.
    @Test func urlPasswordFileAndStation() throws {
        let profile = try ProfileLoader.parse(
            base + "[registry]\nurl = \"postgresql://devkit@db/devkit\"\npassword_file = \"pg.pw\"\nstation = \"line-2\"\n",
            file: "/etc/devkit/p.toml")
        #expect(profile.registryURL == "postgresql://devkit@db/devkit")
        #expect(profile.registryPasswordFile == "/etc/devkit/pg.pw")
        #expect(profile.station == "line-2")
        #expect(try RegistryOptions.parse([]).resolvedPath(profile: profile) == "postgresql://devkit@db/devkit")
        #expect(try RegistryOptions.parse(["--registry", "/r.sqlite"]).resolvedPath(profile: profile) == "/r.sqlite")
        #expect(try StationOptions.parse([]).resolved(profile: profile) == "line-2")
        #expect(try StationOptions.parse(["--station", "bench"]).resolved(profile: profile) == "bench")
        #expect(try StationOptions.parse([]).resolved() == StationOptions.hostName && !StationOptions.hostName.isEmpty)
        #expect(throws: (any Error).self) { try StationOptions.parse(["--station", ""]) }
    }

    /// --registry-password-file over the profile's `password_file`; the commands
    /// devkit prints (which have no profile) name the file that was used, and only
    /// for a server; a password file for an SQLite registry is refused.
    @Test func registryPasswordFile() throws {
        let profile = try ProfileLoader.parse(
            base + "[registry]\nurl = \"postgresql://devkit@db/devkit\"\npassword_file = \"pg.pw\"\n", file: "/etc/devkit/p.toml")
        let none = try RegistryOptions.parse([])
        #expect(try none.passwordFile(for: "postgresql://devkit@db/devkit", profile: profile) == "/etc/devkit/pg.pw")
        #expect(none.commandWords(profile: profile) == ["--registry", "postgresql://devkit@db/devkit", "--registry-password-file", "/etc/devkit/pg.pw"])
        let given = try RegistryOptions.parse(["--registry-password-file", "/run/pw"])
        #expect(try given.passwordFile(for: "postgresql://devkit@db/devkit", profile: profile) == "/run/pw")
        #expect(given.commandWords(profile: profile).suffix(2) == ["--registry-password-file", "/run/pw"])
        // The profile's server replaced by an SQLite file: no password words, and a
        // password file given for it is a mistake.
        let sqlite = try RegistryOptions.parse(["--registry", "/r.sqlite"])
        #expect(sqlite.commandWords(profile: profile) == ["--registry", "/r.sqlite"])
        let both = try RegistryOptions.parse(["--registry", "/r.sqlite", "--registry-password-file", "/run/pw"])
        #expect(throws: (any Error).self) { try both.passwordFile(for: "/r.sqlite") }
        #expect(both.commandWords() == ["--registry", "/r.sqlite"])
    }

    @Test func unknownRegistryKeysAreRefused() {
        #expect(throws: ProfileError.self) {
            try ProfileLoader.parse(base + "[registry]\nkey = \"x\"\n", file: "/etc/devkit/p.toml")
        }
    }
}
