import DevKitBoardCLI
import ArgumentParser
import DevKitModel
import DevKitRegistry
import DevKitWorkflows
import Foundation

/// `devkit registry migrate --to URL`: a station's SQLite registry into the shared one.
struct RegistryMigrateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate",
        abstract: "Copy this station's SQLite registry into a shared PostgreSQL registry.",
        discussion: """
            Copies every board of the SQLite registry (--registry, default the XDG one) \
            into the PostgreSQL registry at --to, with its steps, files, enrollment and \
            verification records, re-sealing each UDS for its new row with the same \
            registry key (--key-file): the shared registry must be sealed with it too. \
            The SQLite file is not changed. Idempotent: a board already there (the same \
            UDS) is not copied again, so a second run copies nothing. A board whose MAC \
            the shared registry already records with another UDS (another station gave \
            it another identity) is not copied: it is reported, and the command exits 1 \
            once the others are copied. The board holds the UDS it was given last \
            (compare the rows' times with `devkit registry show`); no console command \
            reads a UDS back.

            Both registries are read with the one --key-file: a station whose registry \
            is sealed with its own key re-seals it with the shared key first (`devkit \
            registry rekey --registry FILE --new-key-file SHARED.key`), then migrates \
            with --key-file SHARED.key.

            Examples:
              devkit registry migrate --to postgresql://devkit@db/devkit
              devkit registry migrate --to postgresql://devkit@db/devkit --json
            """)

    @OptionGroup var registry: RegistryOptions

    @Option(
        name: .customLong("to"),
        help: ArgumentHelp(
            "The shared registry: postgresql://USER@HOST:PORT/DATABASE (no password in it).",
            discussion: "Its password: --registry-password-file, else ~/.pgpass or PGPASSFILE's file.",
            valueName: "url"))
    var destination: String

    /// The spelling before --registry-password-file (which every registry command
    /// takes), still accepted.
    @Option(name: .customLong("password-file"), help: .hidden, completion: .file())
    var passwordFile: String?

    @Flag(help: "Print the counts (copied, already_present, conflicting) and each conflict as a JSON object.")
    var json = false

    /// --quiet / --verbose, as on every command.
    @OptionGroup var outputLevel: OutputLevelOptions

    func validate() throws {
        guard PostgresLocation.isURL(destination) else {
            throw ValidationError("--to takes a PostgreSQL URL, postgresql://USER@HOST:PORT/DATABASE.")
        }
        if let path = registry.path, PostgresLocation.isURL(path) {
            throw ValidationError("--registry names the SQLite registry to copy from, not a server.")
        }
        if passwordFile != nil && registry.passwordFile != nil {
            throw ValidationError("give the --to server's password file once, with --registry-password-file.")
        }
    }

    /// `--registry` and `--key-file` of the station's SQLite registry, as given.
    private var sourceWords: [String] {
        var source = registry
        source.passwordFile = nil
        return source.commandWords()
    }

    /// The --to server's password file: --registry-password-file, else the older
    /// --password-file spelling.
    private var destinationPasswordFile: String? { registry.passwordFile ?? passwordFile }

    /// The same words for the shared registry: its URL, the key file and its password file.
    private var sharedWords: [String] {
        var destinationOptions = registry
        destinationOptions.path = destination
        destinationOptions.passwordFile = destinationPasswordFile
        return destinationOptions.commandWords()
    }

    /// This migration again, with the shared key file.
    private var againWithSharedKey: String {
        var words = ["devkit", "registry", "migrate"]
        if let path = registry.path { words += ["--registry", path] }
        words += ["--to", destination, "--key-file", "SHARED.key"]
        if let file = destinationPasswordFile { words += ["--registry-password-file", file] }
        return commandLine(words)
    }

    func run() throws {
        try reportingErrors {
            // Two registries, one key: a key error says which one it is about. The
            // password file is the --to server's, not the SQLite file's.
            var source = registry
            source.passwordFile = nil
            let opened: (any RegistryStore)?
            do {
                opened = try source.openExisting()
            } catch let error as RegistryError where MigrateSideError.needsSide(error) {
                throw MigrateSideError(
                    side: "the SQLite registry \(escaped(registry.resolvedPath))", error: error, sqlitePath: registry.resolvedPath,
                    again: againWithSharedKey)
            }
            guard let opened, let source = opened as? Registry else {
                throw NoRegistryError(path: registry.resolvedPath)
            }
            let location = try PostgresLocation(url: destination)
            let shared: PostgresRegistry
            do {
                shared = try PostgresRegistry(
                    location: location, key: registry.keySource(), passwordFile: destinationPasswordFile)
            } catch let error as RegistryError where MigrateSideError.needsSide(error) {
                throw MigrateSideError(
                    side: "the shared registry \(location)", error: error, sqlitePath: registry.resolvedPath,
                    again: againWithSharedKey)
            }
            let result = try shared.importBoards(from: source)
            let keyFile = registry.keySource().path
            if json {
                print(try JSONOutput.text(MigrateJSON(
                    source: source.path, destination: shared.path, keyID: shared.keyID, keyFile: keyFile, result)))
            } else {
                let total = result.copied + result.alreadyPresent + result.conflicts.count
                if result.copied == 0 && result.conflicts.isEmpty {
                    print("Nothing to copy: the \(total) board\(total == 1 ? "" : "s") of \(escaped(source.path)) "
                        + "\(total == 1 ? "is" : "are") already in \(shared.path).")
                } else {
                    print("Copied \(result.copied) board\(result.copied == 1 ? "" : "s") from \(escaped(source.path)) "
                        + "to \(shared.path); \(result.alreadyPresent) already there; "
                        + "\(result.conflicts.count) conflicting.")
                }
                // The key the shared registry now needs: on a new database, this station's.
                print("The shared registry's secrets are sealed with key \(shared.keyID), in \(escaped(keyFile)): every "
                    + "station needs a copy of that file (--key-file, or key_file under [registry]).")
            }
            for conflict in result.conflicts {
                let what = switch conflict.by {
                case .mac: "(MAC \(conflict.value)) is not copied: \(shared.path) records that MAC as board "
                    + "#\(conflict.existingID) with another UDS"
                case .usbSerial: "(USB serial \(escaped(conflict.value))) is not copied: \(shared.path) records that "
                    + "USB serial as board #\(conflict.existingID) with another UDS"
                case .uds: "is not copied: \(shared.path) records its UDS as board #\(conflict.existingID), a board "
                    + "with \(conflict.valueKind == .mac ? "MAC" : "USB serial") \(escaped(conflict.value))"
                }
                let here = commandLine(["devkit", "registry", "show", "\(conflict.sourceID)"] + sourceWords)
                let there = commandLine(["devkit", "registry", "show", "\(conflict.existingID)"] + sharedWords)
                printError(
                    "devkit: board #\(conflict.sourceID) \(what); the board holds the UDS it was given last "
                        + "(compare the two rows' times: `\(here)` and `\(there)`): re-provision it, or leave the "
                        + "shared row as it is")
            }
            if !result.conflicts.isEmpty { throw ExitCode(ExitStatus.partialFailure.rawValue) }
        }
    }
}

struct MigrateJSON: Encodable {
    let source: String
    let destination: String
    /// The key that seals the shared registry, and the file it was read from: every
    /// station needs that file.
    let keyID: String
    let keyFile: String
    let copied: Int
    let alreadyPresent: Int
    let conflicting: Int
    let conflicts: [ConflictJSON]

    struct ConflictJSON: Encodable {
        let board: Int64
        /// `mac`, `usb_serial` or `uds`: what the two rows share.
        let by: String
        /// The MAC or USB serial shared (by `uds`: the other board's MAC or USB serial).
        let value: String
        /// What `value` is: `mac` or `usb_serial`.
        let valueKind: String
        let mac: String?
        let existingBoard: Int64
        enum CodingKeys: String, CodingKey {
            case board, by, value, mac
            case valueKind = "value_kind"
            case existingBoard = "existing_board"
        }
    }

    init(source: String, destination: String, keyID: String, keyFile: String, _ result: BoardImport) {
        self.source = source
        self.destination = destination
        self.keyID = keyID
        self.keyFile = keyFile
        copied = result.copied
        alreadyPresent = result.alreadyPresent
        conflicting = result.conflicts.count
        conflicts = result.conflicts.map {
            ConflictJSON(
                board: $0.sourceID, by: $0.by.rawValue, value: $0.value, valueKind: $0.valueKind.rawValue,
                mac: $0.by == .mac ? $0.value : nil,
                existingBoard: $0.existingID)
        }
    }

    enum CodingKeys: String, CodingKey {
        case source, destination, copied, conflicting, conflicts
        case alreadyPresent = "already_present"
        case keyID = "key_id", keyFile = "key_file"
    }
}

/// An error of one side of `registry migrate`, named: both sides take the same key
/// file, so "sealed with key X, but lab.key is key Y" must say which registry.
struct MigrateSideError: CLIReportable {
    let side: String
    let error: RegistryError
    /// The station's registry: with the wrong key on either side, what works is
    /// re-sealing it, as the two keys' errors alone send the user from one to the other.
    let sqlitePath: String
    /// The migration to run once the station's registry is re-sealed.
    let again: String
    var exitStatus: ExitStatus { error.exitStatus }
    var userMessage: String {
        guard case .wrongKey = error else { return "\(side): \(error.userMessage)" }
        return "\(side): \(error.userMessage)\nOne key file reads the station's registry and seals the shared one: "
            + "re-seal the station's registry with the shared key first, `devkit registry rekey --registry "
            + "\(escaped(sqlitePath)) --new-key-file SHARED.key` (with --key-file naming its own key, if not the "
            + "default), then run `\(again)`."
    }

    /// The key's errors name the key file, not the registry (the others name it).
    static func needsSide(_ error: RegistryError) -> Bool {
        switch error {
        case .wrongKey, .keyUnavailable, .keyFileInsecure, .keyFileInvalid, .sharedKeyMissing, .sealedValueRejected: true
        default: false
        }
    }
}
