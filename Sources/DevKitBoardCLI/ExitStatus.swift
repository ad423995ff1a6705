import CDevKitLinux
import DevKitModel
import DevKitSystem
import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif

/// Process exit codes, from sysexits(3), so scripts can tell failures apart.
public enum ExitStatus: Int32, Sendable {
    case success = 0
    /// Some items of a batch failed; the others succeeded.
    case partialFailure = 1
    case usage = 64
    case dataError = 65
    case noInput = 66
    case unavailable = 69
    case software = 70
    case cannotCreate = 73
    case ioError = 74
    case tempFail = 75
    case noPermission = 77
    /// Something must be set up or upgraded first (e.g. `devkit registry upgrade`):
    /// unlike 75, running the same command again alone does not help.
    case config = 78
}

extension ExitStatus {
    /// The one rule from the errno of a failed file or directory creation or write
    /// (registry, output directory, secret and certificate files) to sysexits(3):
    /// not allowed is 77, a path that cannot be created is 73, any other failure of
    /// the I/O itself (disk full, EIO) is 74.
    package init(fileErrno: Int32) {
        switch fileErrno {
        case EACCES, EPERM: self = .noPermission
        case EROFS, ENOENT, ENOTDIR, EEXIST, EISDIR, ENAMETOOLONG, ELOOP: self = .cannotCreate
        default: self = .ioError
        }
    }
}

/// An error that knows its exit status and a one-line message for the user.
///
/// Library modules stay free of CLI concerns; this module gives their error types
/// a conformance each.
public protocol CLIReportable: Error {
    var exitStatus: ExitStatus { get }
    /// What happened and what to do next, on one line, without secrets.
    var userMessage: String { get }
}

/// What the user is told about `error`: its CLI rendering (with the flags and next
/// steps) when it has one, else its own description.
@Sendable package func cliMessage(_ error: any Error) -> String {
    (error as? CLIReportable)?.userMessage ?? "\(error)"
}

/// Before a successful exit: standard output flushed, and 74 if anything written to
/// it was lost (`devkit cert ... > /dev/full`, a full disk); a reader that went away
/// (EPIPE) ends it as SIGPIPE would have. Swift's `print` and the C library's exit-time flush
/// drop a failed write silently, so the command used to exit 0 with its output gone.
package func exitIfStandardOutputFailed() {
    let code = CDevKitLinux_flush_stdout()
    if code != 0 { exitStandardOutputFailed(code) }
}

/// Says that standard output could not be written (`code`: the errno, 0 when not
/// known) and exits 74 (73/77 by the file rule for the rarer errnos); EPIPE (the
/// reader went away) quietly, as a death by SIGPIPE.
package func exitStandardOutputFailed(_ code: Int32) -> Never {
    if code == EPIPE {
        // The reader went away (`| head`): the shell expects a quiet death by SIGPIPE,
        // which SwiftNIO turns into EPIPE by ignoring SIGPIPE once any socket is open
        // (a PostgreSQL registry, the DPS client). Dies the same way, without a word.
        signal(SIGPIPE, SIG_DFL)
        var pipe = sigset_t()
        sigemptyset(&pipe)
        sigaddset(&pipe, SIGPIPE)
        sigprocmask(SIG_UNBLOCK, &pipe, nil)
        raise(SIGPIPE)
        exit(128 + SIGPIPE)
    }
    let reason = code == 0 ? "a write failed" : String(cString: strerror(code)).lowercased()
    printError("devkit: error: cannot write standard output: \(reason); what was printed is incomplete "
        + "(is the disk full, or the file or pipe it goes to closed?)")
    exit(code == 0 ? ExitStatus.ioError.rawValue : ExitStatus(fileErrno: code).rawValue)
}

/// Writes to standard error (unbuffered, so it interleaves correctly with stdout).
/// Control characters a message quotes from input (a path, a key, a batch line)
/// are escaped, so they cannot reach the terminal.
package func printError(_ message: String) {
    let safe = escapedControlCharacters(message)
    let line = safe.hasSuffix("\n") ? safe : safe + "\n"
    writeAll(STDERR_FILENO, line)
}

/// Runs a command body, turning any error into a message on stderr and the mapped
/// exit code. ArgumentParser's own usage errors keep their exit code 64.
package func reportingErrors<T>(_ body: () async throws -> T) async throws -> T {
    do {
        return try await body()
    } catch {
        throw reported(error)
    }
}

/// The same for commands that run synchronously (most of them: see `DevKitCommand.runAsRoot`).
package func reportingErrors<T>(_ body: () throws -> T) throws -> T {
    do {
        return try body()
    } catch {
        throw reported(error)
    }
}

/// Prints what went wrong and returns the error to exit with.
private func reported(_ error: any Error) -> any Error {
    switch error {
    case let error as CLIReportable:
        printError("devkit: error: \(error.userMessage)")
        return ExitCode(error.exitStatus.rawValue)
    case is ExitCode, is CleanExit, is ValidationError:
        return error
    default:
        printError("devkit: error: \(error)")
        return ExitCode(ExitStatus.software.rawValue)
    }
}

