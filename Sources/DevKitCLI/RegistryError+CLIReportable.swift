import DevKitBoardCLI
import DevKitModel
import DevKitRegistry
#if canImport(Glibc)
import Glibc
#endif

extension RegistryError: CLIReportable {
    public var exitStatus: ExitStatus {
        switch self {
        case .cannotCreateDirectory(_, _, let errno): errno.map(ExitStatus.init(fileErrno:)) ?? .cannotCreate
        // A PostgreSQL registry's missing input (the CA file sslmode needs).
        case .cannotOpen(let path, _, ENOENT?) where PostgresLocation.isURL(path): .noInput
        // A directory given as the password file: a wrong input, not something to create.
        case .cannotOpen(let path, _, EISDIR?) where PostgresLocation.isURL(path): .noInput
        case .cannotOpen(_, _, let errno?): ExitStatus(fileErrno: errno)
        case .cannotOpen, .database: .ioError
        case .claimFailed(_, _, let errno): ExitStatus(fileErrno: errno)
        case .invalidStoredValue: .dataError
        case .invalidMAC: .usage
        case .boardNotFound: .noInput
        // Without the right key nothing sealed can be read: one code for every key problem.
        case .keyUnavailable, .keyFileInsecure, .keyFileInvalid, .wrongKey: .noPermission
        case .keyFileNotWritten(_, _, let errno): ExitStatus(fileErrno: errno)
        case .sealedValueRejected: .dataError
        // Retrying alone does not help: the upgrade must run first (EX_CONFIG).
        case .needsUpgrade: .config
        // As a registry that is not there at all (NoRegistryError).
        case .notARegistry: .noInput
        // Worth retrying once the server is back (sysexits' EX_TEMPFAIL).
        case .serverUnavailable: .tempFail
        // The other session's transaction ends; the step can be run again.
        case .registryLocked: .tempFail
        // The other station will be done soon (or its connection ends when it dies).
        case .boardBusy: .tempFail
        case .sharedKeyMissing: .noPermission
        case .invalidURL: .usage
        }
    }

    /// What to look at when a server cannot be reached.
    static let serverCheck =
        "check that the server runs and accepts connections from this host (host, port, firewall, pg_hba.conf, sslmode)"

    public var userMessage: String {
        switch self {
        case .cannotCreateDirectory:
            description + "; choose another place with --registry PATH"
        case .cannotOpen(let path, _, nil) where PostgresLocation.isURL(path):
            description + "; check the URL given with --registry (`url` under [registry], --to of `registry migrate`)"
        case .cannotOpen(let path, _, _) where PostgresLocation.isURL(path):
            // A file or a login to fix (a password or CA file, the password itself):
            // the reason says which; the URL is not the problem.
            description
        case .cannotOpen:
            description + " or choose another file with --registry PATH"
        case .claimFailed(_, _, let errno) where errno == EMFILE || errno == ENFILE:
            description + "; raise the limit of open files (`ulimit -n`): each board claimed holds one"
        case .claimFailed:
            description + "; devkit keeps one file per board claimed there, owned by the registry file's owner: "
                + "check the directory's owner and permissions"
        case .boardNotFound:
            description + "; `devkit registry list` shows the recorded boards"
        case .database, .invalidStoredValue, .invalidMAC, .keyFileInsecure:
            description
        case .keyUnavailable("-", _, _, let errno) where errno == ENOENT:
            // A key is never read from a pipe (``RegistryKey/load(path:)``: a regular file, mode 0600).
            description + "; the registry key is read from a file (mode 0600), not from standard input: give its path"
        case .keyUnavailable(_, _, let needed?, _), .wrongKey(_, _, let needed):
            description + "; give the key file holding key \(needed) with --key-file FILE (restore it from "
                + "your backup: without it the recorded UDS cannot be read)"
        case .keyUnavailable(_, _, nil, let errno) where errno == ENOENT:
            description + "; create one with `devkit registry keygen FILE`, or leave out --key-file to use the default key"
        case .keyUnavailable, .keyFileInvalid:
            description + "; give the registry key file with --key-file FILE (`devkit registry keygen FILE` makes one)"
        case .keyFileNotWritten(_, _, let errno) where errno == EEXIST:
            description + "; devkit never replaces a key file (it may be the only copy of a key): choose another name"
        case .keyFileNotWritten:
            description
        case .sealedValueRejected:
            description + "; the registry was changed outside devkit: restore it from a backup"
        case .notARegistry(let path, _) where PostgresLocation.isURL(path):
            description  // the reason says what to change in the URL
        case .notARegistry:
            description + "; give the registry's file with --registry PATH"
        case .needsUpgrade(let path, _):
            description + "; run `devkit registry upgrade --registry \(escaped(path))` (with the same --key-file, if "
                + "any), or any command that writes to it, then this command again"
        case .serverUnavailable:
            description + "; " + Self.serverCheck + ", then run the command again (for `provision`: the "
                + "`--resume` command printed for the board, if one was, which keeps its UDS)"
        case .registryLocked:
            description + "; nothing of this step was written: retry once it has finished"
        case .boardBusy:
            description + "; let it finish there (its claim ends with its run, even if it is killed), then look "
                + "at the board with `devkit registry list` (the same --registry and --key-file): done there, it needs "
                + "nothing more (provisioning it anew would give it another UDS); unfinished, `devkit provision --resume "
                + "N` finishes it"
        case .invalidURL:
            description + "; check the URL given with --registry (or `url` under [registry])"
        case .sharedKeyMissing:
            description + "; make one with `devkit registry keygen FILE` on one station, copy that same file "
                + "(mode 0600) to every station, and give it with --key-file FILE or `key_file` under [registry]"
        }
    }
}
