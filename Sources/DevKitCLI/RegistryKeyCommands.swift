import DevKitBoardCLI
import ArgumentParser
import DevKitModel
import DevKitSystem
import DevKitRegistry
import Foundation

/// `devkit registry keygen FILE`: a new registry key.
struct RegistryKeygenCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keygen",
        abstract: "Write a new registry key to a file (mode 0600).",
        discussion: """
            The registry key seals (AES-256-GCM) the UDS of every board the registry \
            records. The file gets 32 random bytes as 64 hex digits, mode 0600; an \
            existing file is never replaced. Keep a copy somewhere safe (a password \
            manager, an offline medium): without the key, the recorded UDS cannot be \
            read and certificates cannot be re-issued.

            Use it with --key-file FILE (or `key_file` under [registry] in a profile), \
            or give it to `devkit registry rekey --new-key-file FILE` to re-seal an \
            existing registry under it.

            Examples:
              devkit registry keygen ~/.config/devkit/station-b.key
              devkit registry rekey --new-key-file ~/.config/devkit/station-b.key
            """)

    @Argument(help: ArgumentHelp("The key file to create.", valueName: "file"), completion: .file())
    var file: String

    @Flag(help: "Print the key file and key ID as a JSON object.")
    var json = false

    /// --quiet / --verbose, as on every command.
    @OptionGroup var outputLevel: OutputLevelOptions

    func run() throws {
        try reportingErrors {
            let key = RegistryKey.generate()
            // The directories it makes are said: a typo in the path must not pass unseen.
            var missing: [String] = []
            var directory = parentDirectory(of: file)
            while !directory.isEmpty && directory != "/" && access(directory, F_OK) != 0 {
                missing.insert(directory, at: 0)
                directory = parentDirectory(of: directory)
            }
            try key.write(to: file)
            for made in missing { printError("devkit: created the directory \(escaped(made)) (mode 0700) for the key") }
            if json {
                print(try JSONOutput.text(KeyFileJSON(path: file, keyID: key.id)))
            } else {
                print("Wrote registry key \(key.id) to \(escaped(file)) (mode 0600). Back it up: without it the "
                    + "UDS sealed with it cannot be read.")
            }
        }
    }
}

/// `devkit registry rekey --new-key-file F`: re-seals every secret under another key.
struct RegistryRekeyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rekey",
        abstract: "Re-seal every secret in the registry under a new key.",
        discussion: """
            Opens the registry with its current key (--key-file, or the default key), \
            re-seals every board's UDS under the key in --new-key-file in one \
            transaction, and rewrites the database file so that nothing sealed under \
            the old key remains. Afterwards only the new key opens the registry: use \
            it with --key-file. The default key may seal other registries too: \
            keep it while any of them needs it. Run again with the same key to \
            retry a rewrite that failed. Stop other devkit runs on this registry \
            first: one that opened it before holds the old key, and its next new \
            board fails (exit code 77, naming the new key) instead of being sealed \
            under the old one. The re-sealing waits for their writes in progress.

            Examples:
              devkit registry keygen new.key
              devkit registry rekey --new-key-file new.key
              devkit registry list --key-file new.key
            """)

    @OptionGroup var registry: RegistryOptions

    @Option(
        name: .customLong("new-key-file"),
        help: ArgumentHelp("The key to re-seal under (made by `devkit registry keygen`).", valueName: "file"),
        completion: .file())
    var newKeyFile: String

    @Flag(help: "Print the outcome as a JSON object.")
    var json = false

    /// --quiet / --verbose, as on every command.
    @OptionGroup var outputLevel: OutputLevelOptions

    func run() throws {
        try reportingErrors {
            let newKey = try RegistryKey.load(path: newKeyFile)
            guard let opened = try registry.openExisting() else {
                throw NoRegistryError(path: registry.resolvedPath)
            }
            let oldKeyID = opened.keyID
            // The same key only rewrites the file (a retry of a rewrite that failed).
            let count = try opened.rekey(to: newKey)
            if json {
                print(try JSONOutput.text(RekeyJSON(resealed: count, keyID: newKey.id, oldKeyID: oldKeyID)))
                return
            }
            let shared = PostgresLocation.isURL(opened.path)
            if newKey.id == oldKeyID {
                print("The registry is already sealed with key \(newKey.id)"
                    + (shared ? ": nothing to do." : ": the file is rewritten, nothing else to do."))
                return
            }
            let source = registry.keySource()
            var next = "from now on open it with --key-file \(escaped(newKeyFile))"
            if case .defaultFile(let path) = source {
                next += ", or make it the default key once no other registry is sealed with the old one "
                    + "(keep a copy of \(escaped(path)) first)"
            }
            // A shared registry: every station's --key-file must change too. And the server's
            // write-ahead log, archives and backups keep the old sealed values (under the old key).
            let stations = shared
                ? " Give every station a copy of \(escaped(newKeyFile)) (its --key-file or key_file under [registry]); "
                    + "the server's write-ahead log, archives and backups still hold the secrets sealed under the old key: "
                    + "keep or destroy that key as you keep or destroy them."
                : ""
            print("Re-sealed \(count) secret\(count == 1 ? "" : "s") under key \(newKey.id) (was \(oldKeyID)); "
                + next + ". The old key no longer opens this registry." + stations)
        }
    }
}

struct KeyFileJSON: Encodable {
    let path: String
    let keyID: String
    enum CodingKeys: String, CodingKey {
        case path
        case keyID = "key_id"
    }
}

struct RekeyJSON: Encodable {
    let resealed: Int
    let keyID: String
    let oldKeyID: String
    enum CodingKeys: String, CodingKey {
        case resealed
        case keyID = "key_id"
        case oldKeyID = "old_key_id"
    }
}

/// `devkit registry upgrade`: what a writing open does to a registry, on its own.
struct RegistryUpgradeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "upgrade",
        abstract: "Bring a registry up to this devkit: migrate it, seal clear-text secrets, finish a rewrite.",
        discussion: """
            Every command that writes to the registry does this on its way; `list`, \
            `show` and `export` only read, and ask for it when a registry written by an \
            older devkit still holds UDS in clear text (exit 78), and warn when a \
            rewrite is owed. Migrates the schema, seals every \
            clear UDS with the registry key (--key-file, else the default key, created \
            if the registry has none yet), then rewrites the file so that no clear copy \
            stays in free pages or the write-ahead log. Also finishes such a rewrite \
            that failed before (a full disk, a busy file). Back up the key it names.

            Examples:
              devkit registry upgrade
              devkit registry upgrade --registry /var/lib/devkit/registry.sqlite
              devkit registry upgrade --key-file station.key --json
            """)

    @OptionGroup var registry: RegistryOptions

    @Flag(help: "Print the registry and key ID as a JSON object.")
    var json = false

    /// --quiet / --verbose, as on every command.
    @OptionGroup var outputLevel: OutputLevelOptions

    func run() throws {
        try reportingErrors {
            // The writing open is the upgrade; it never creates a registry that is not there.
            guard let opened = try registry.openExisting() else { throw NoRegistryError(path: registry.resolvedPath) }
            if json {
                print(try JSONOutput.text(UpgradeJSON(path: opened.path, keyID: opened.keyID)))
            } else {
                print("The registry \(escaped(opened.path)) is up to date; it seals with key \(opened.keyID).")
            }
        }
    }
}

struct UpgradeJSON: Encodable {
    let path: String
    let keyID: String
    enum CodingKeys: String, CodingKey {
        case path
        case keyID = "key_id"
    }
}
