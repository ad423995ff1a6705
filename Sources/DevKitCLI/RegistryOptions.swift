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

    /// The database file to use.
    var resolvedPath: String { path ?? Registry.defaultPath() }

    /// Opens (creating if needed) the registry, for commands that write.
    func open() throws -> Registry { try Registry(path: resolvedPath) }

    /// Opens the registry for commands that only read; nil when it does not exist
    /// yet, so that reading never creates an empty database. A registry this user
    /// may not look at is opened all the same, so the error says "Permission denied"
    /// rather than that there is none.
    func openExisting() throws -> Registry? {
        var st = stat()
        if stat(resolvedPath, &st) != 0 && (errno == ENOENT || errno == ENOTDIR) { return nil }
        return try open()
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
