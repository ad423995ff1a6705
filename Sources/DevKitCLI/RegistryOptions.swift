import ArgumentParser
import DevKitModel
import DevKitRegistry
import Foundation

/// The `--registry PATH` option shared by every command that reads or writes the registry.
struct RegistryOptions: ParsableArguments {
    @Option(
        name: .customLong("registry"),
        help: ArgumentHelp(
            "The registry database.",
            discussion: "Default: $XDG_DATA_HOME/devkit/registry.sqlite (~/.local/share/devkit/registry.sqlite).",
            valueName: "path"),
        completion: .file())
    var path: String?

    @Option(
        name: .customLong("key-file"),
        help: ArgumentHelp(
            "The registry key that seals the UDS of every board in the registry.",
            discussion: """
                Default: $XDG_CONFIG_HOME/devkit/registry.key (~/.config/devkit/registry.key), \
                created (mode 0600) the first time a registry is used. Mode 0600; \
                `devkit registry keygen FILE` makes one.
                """,
            valueName: "file"),
        completion: .file())
    var keyFile: String?

    /// The database file to use.
    var resolvedPath: String { path ?? Registry.defaultPath() }

    /// Where the registry key comes from: --key-file, else `profileKeyFile` (the
    /// profile's `[registry] key_file`), else the default file.
    func keySource(profileKeyFile: String? = nil) -> RegistryKeySource {
        if let file = keyFile ?? profileKeyFile { return .file(file) }
        return .defaultKey()
    }

    /// Opens (creating if needed) the registry, for commands that write. Says once
    /// on stderr when it created the default key file.
    func open(profileKeyFile: String? = nil) throws -> Registry {
        let registry = try Registry(path: resolvedPath, key: keySource(profileKeyFile: profileKeyFile))
        if let created = registry.createdKeyFile {
            printError(
                "devkit: created the registry key \(escaped(created)) (key \(registry.keyID)), which seals every "
                    + "board's UDS in the registry; back it up: without it the recorded UDS cannot be read")
        }
        return registry
    }

    /// Opens the registry for commands that only read; nil when it does not exist
    /// yet, so that reading never creates an empty database. A registry this user
    /// may not look at is opened all the same, so the error says "Permission denied"
    /// rather than that there is none.
    func openExisting(profileKeyFile: String? = nil) throws -> Registry? {
        var st = stat()
        if stat(resolvedPath, &st) != 0 && (errno == ENOENT || errno == ENOTDIR) { return nil }
        return try open(profileKeyFile: profileKeyFile)
    }
}

extension RegistryOptions {
    /// Opens the registry for commands that only read (`registry list`, `show`,
    /// `export`): read-only, so they never create a key file, migrate, seal or
    /// rewrite the file; nil when there is no registry file.
    func openReadOnly(profileKeyFile: String? = nil) throws -> Registry? {
        var st = stat()
        if stat(resolvedPath, &st) != 0 && (errno == ENOENT || errno == ENOTDIR) { return nil }
        return try Registry(path: resolvedPath, key: keySource(profileKeyFile: profileKeyFile), readOnly: true)
    }
}

/// A command that needs recorded boards found no registry file at all (a wrong
/// --registry path, or the systemd unit's registry read from a user account).
struct NoRegistryError: CLIReportable {
    let path: String
    var exitStatus: ExitStatus { .noInput }
    var userMessage: String {
        "no registry at \(escaped(path)): nothing was provisioned with it; give the right one with --registry "
            + "(devkit-autoconfigure@ keeps /var/lib/devkit/registry.sqlite)"
    }
}
