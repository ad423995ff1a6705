import DevKitBoardCLI
import ArgumentParser
import DevKitModel
import DevKitRegistry
import DevKitWorkflows
import Foundation

/// The `--registry PATH|URL` option shared by every command that reads or writes
/// the registry: an SQLite file (the default) or a shared PostgreSQL server.
struct RegistryOptions: ParsableArguments {
    @Option(
        name: .customLong("registry"),
        help: ArgumentHelp(
            "The registry: an SQLite file, or a shared PostgreSQL server's URL.",
            discussion: """
                Default: $XDG_DATA_HOME/devkit/registry.sqlite (~/.local/share/devkit/registry.sqlite), \
                or, for commands that take --profile, the profile's `url` under [registry]. Several \
                stations share one registry with postgresql://USER@HOST:5432/DATABASE (also postgres://; \
                ?sslmode=disable|require|verify-ca|verify-full, &sslrootcert=CA.pem for the verify modes; \
                ?host=/run/postgresql&port=5432 for a Unix socket; no other parameter). The password comes \
                from --registry-password-file, else (for commands that take --profile) the profile's \
                `password_file` under [registry], else ~/.pgpass (mode 0600) or the file PGPASSFILE names; \
                never from the URL. A shared registry needs the same --key-file on every station.
                """,
            valueName: "path"),
        completion: .file())
    var path: String?

    @Option(
        name: .customLong("key-file"),
        help: ArgumentHelp(
            "The registry key that seals the UDS of every board in the registry.",
            discussion: """
                Default: $XDG_CONFIG_HOME/devkit/registry.key (~/.config/devkit/registry.key), \
                created (mode 0600) the first time an SQLite registry is used; never created for \
                a PostgreSQL registry, whose stations must all have the same key. Mode 0600; \
                `devkit registry keygen FILE` makes one.
                """,
            valueName: "file"),
        completion: .file())
    var keyFile: String?

    @Option(
        name: .customLong("registry-password-file"),
        help: ArgumentHelp(
            "A file whose first line is the PostgreSQL registry's password (mode 0600).",
            discussion: """
                For a registry on a PostgreSQL server (--registry postgresql://...). Default: the \
                profile's `password_file` under [registry] (commands that take --profile), else the \
                matching line of ~/.pgpass or of the file PGPASSFILE names.
                """,
            valueName: "file"),
        completion: .file())
    var passwordFile: String?

    /// The password file for `target`'s server: --registry-password-file, else the
    /// profile's. A password file for an SQLite registry is a mistake said at once
    /// (64), not ignored: the user meant some server.
    func passwordFile(for target: String, profile: ProvisioningProfile? = nil) throws -> String? {
        if passwordFile != nil && !PostgresLocation.isURL(target) {
            throw RegistryUsageError(
                message: "--registry-password-file is for a registry on a PostgreSQL server (--registry "
                    + "postgresql://...); \(escaped(target)) is an SQLite file, which has no password")
        }
        return givenPasswordFile(profile: profile)
    }

    /// Checks a target that is not a PostgreSQL URL before it is used as an SQLite
    /// file: one that looks like a mistyped URL is refused (64, its password masked),
    /// and so is a password file (an SQLite file has no password).
    private func checkSQLiteTarget(_ target: String) throws {
        if PostgresLocation.isMistypedURL(target) {
            throw RegistryUsageError(
                // Only its start is shown: a URL this mangled cannot be parsed to find its password.
                message: "'\(escaped(String(target.prefix { $0 != ":" && $0 != "/" })))…' is not a registry devkit can use: a shared "
                    + "registry's URL starts with postgresql:// or postgres:// (in lower case, nothing before it), "
                    + "and this looks like a mistyped one rather than an SQLite file's path; nothing was recorded "
                    + "(a file whose name starts so: give it as ./NAME)")
        }
        _ = try passwordFile(for: target)
    }

    /// --registry-password-file, else the profile's `password_file`.
    private func givenPasswordFile(profile: ProvisioningProfile?) -> String? {
        passwordFile ?? profile?.registryPasswordFile
    }

    /// For commands that read a registry only with --from-registry: its options
    /// without it are said rather than ignored.
    func requireFromRegistry(_ fromRegistry: Bool) throws {
        if (path != nil || keyFile != nil || passwordFile != nil) && !fromRegistry {
            throw ValidationError("--registry, --key-file and --registry-password-file go with --from-registry.")
        }
    }

    /// The database file or server URL to use (the profile's URL when --registry is not given).
    func resolvedPath(profile: ProvisioningProfile? = nil) -> String {
        path ?? profile?.registryURL ?? Registry.defaultPath()
    }

    /// The database file to use.
    var resolvedPath: String { resolvedPath() }

    /// `--registry` and `--key-file` as a command devkit prints for the user to run
    /// next needs them to reach this registry with this key: the ones given, or the
    /// profile's (the printed command has no profile). None for the defaults.
    func commandWords(profile: ProvisioningProfile? = nil) -> [String] {
        var words: [String] = []
        if path != nil || profile?.registryURL != nil { words += ["--registry", resolvedPath(profile: profile)] }
        if let file = keyFile ?? profile?.registryKeyFile { words += ["--key-file", file] }
        // The printed command has no profile: it names the profile's password file itself.
        if PostgresLocation.isURL(resolvedPath(profile: profile)), let file = givenPasswordFile(profile: profile) {
            // A descriptor (`<(pass show db)` is /dev/fd/63) is gone when the printed
            // command is run: it names the option, for the user to fill in.
            let gone = file.hasPrefix("/dev/fd/") || file.hasPrefix("/proc/") || file == "/dev/stdin"
            words += ["--registry-password-file", gone ? "PASSWORD-FILE" : file]
        }
        return words
    }

    /// Where the registry key comes from: --key-file, else `profileKeyFile` (the
    /// profile's `[registry] key_file`), else the default file.
    func keySource(profileKeyFile: String? = nil) -> RegistryKeySource {
        if let file = keyFile ?? profileKeyFile { return .file(file) }
        return .defaultKey()
    }

    /// The key of a command that only reads: the key file named (--key-file, the
    /// profile's), used and checked as by any command (the user asked for it, and
    /// the commands printed for what to do next repeat it: a wrong one is said, 77);
    /// none named and no UDS to show (`secrets: false`), none at all
    /// (``RegistryKeySource/withheld``): the default key file is not read.
    func readingKeySource(profileKeyFile: String?, secrets: Bool) -> RegistryKeySource {
        secrets || keyFile != nil || profileKeyFile != nil ? keySource(profileKeyFile: profileKeyFile) : .withheld
    }

    /// Opens (creating if needed) the registry, for commands that write. Says once
    /// on stderr when it created the default key file (SQLite only).
    /// `readOnly`: a server's database without devkit's schema is refused (66), not
    /// given one, and the key is ``readingKeySource(profileKeyFile:secrets:)``'s.
    func open(profile: ProvisioningProfile? = nil, readOnly: Bool = false, secrets: Bool = true) throws -> any RegistryStore {
        let key = readOnly
            ? readingKeySource(profileKeyFile: profile?.registryKeyFile, secrets: secrets)
            : keySource(profileKeyFile: profile?.registryKeyFile)
        let target = resolvedPath(profile: profile)
        let registry: any RegistryStore
        if PostgresLocation.isURL(target) {
            registry = try PostgresRegistry(
                location: try PostgresLocation(url: target), key: key,
                passwordFile: try passwordFile(for: target, profile: profile), readOnly: readOnly)
        } else {
            try checkSQLiteTarget(target)
            registry = try Registry(path: target, key: key, readOnly: readOnly)
        }
        if let created = registry.createdKeyFile {
            printError(
                "devkit: created the registry key \(escaped(created)) (key \(registry.keyID)), which seals every "
                    + "board's UDS in the registry; back it up: without it the recorded UDS cannot be read")
        }
        return registry
    }

    /// Opens the registry for writing, for commands that need boards recorded
    /// before (`registry upgrade`, `rekey`, `reissue`, `migrate`, `dps enroll
    /// --from-registry`, `verify`): nil when an SQLite file does not exist, so that
    /// they never create an empty database (the commands that only read use
    /// ``openReadOnly(profileKeyFile:secrets:)``). A registry this user may not look at is
    /// opened all the same, so the error says "Permission denied" rather than that
    /// there is none. A server is always opened (its schema is created if needed:
    /// that is no file left behind).
    func openExisting(profile: ProvisioningProfile? = nil) throws -> (any RegistryStore)? {
        let target = resolvedPath(profile: profile)
        if !PostgresLocation.isURL(target) {
            // Before a missing file's nil: a password file for SQLite, or a mistyped
            // URL, is a mistake either way.
            try checkSQLiteTarget(target)
            var st = stat()
            if stat(target, &st) != 0 && (errno == ENOENT || errno == ENOTDIR) { return nil }
        }
        return try open(profile: profile)
    }
}

extension RegistryOptions {
    /// Opens the registry for commands that only read (`registry list`, `show`,
    /// `export`): an SQLite file read-only, so they never create a key file,
    /// migrate, seal or rewrite it; nil when there is no registry file. Says on
    /// stderr when the file still owes the rewrite that drops old copies of secrets
    /// (it reads all the same). A file with no schema (0 bytes) reads as an empty
    /// registry; another program's file is refused (66). A server's database
    /// without devkit's schema is refused too (66), and none is made in it; one
    /// whose schema an older devkit made is brought up to date, as any station's
    /// first call would. No key is ever made for a server.
    ///
    /// `secrets`: whether the command shows a UDS (`show --show-secret`, `export
    /// --include-secrets`); without, and without a key file named, the registry is
    /// opened without its key (``readingKeySource(profileKeyFile:secrets:)``: someone
    /// who may read the registry needs none to list it).
    func openReadOnly(profileKeyFile: String? = nil, secrets: Bool) throws -> (any RegistryStore)? {
        let target = resolvedPath
        if PostgresLocation.isURL(target) { return try open(readOnly: true, secrets: secrets) }
        try checkSQLiteTarget(target)
        var st = stat()
        if stat(target, &st) != 0 && (errno == ENOENT || errno == ENOTDIR) { return nil }
        let registry = try Registry(
            path: target, key: readingKeySource(profileKeyFile: profileKeyFile, secrets: secrets), readOnly: true)
        if registry.owesRewrite {
            // Readable as it is, but old copies of secrets may remain in the file until a writing open.
            printError(
                "devkit: warning: the registry \(escaped(target)) may still hold old copies of secrets (in clear "
                    + "text, or sealed under a replaced key) in its free space: a rewrite after sealing or rekey "
                    + "failed; `devkit registry upgrade` (or any command that writes to it) finishes it")
        }
        return registry
    }
}

/// Registry options that do not go together, found once the registry is known
/// (it may come from the profile): 64, said without ArgumentParser's generic usage.
struct RegistryUsageError: CLIReportable {
    let message: String
    var exitStatus: ExitStatus { .usage }
    var userMessage: String { message }
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
