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

    @Test func unknownRegistryKeysAreRefused() {
        #expect(throws: ProfileError.self) {
            try ProfileLoader.parse(base + "[registry]\nkey = \"x\"\n", file: "/etc/devkit/p.toml")
        }
    }
}
