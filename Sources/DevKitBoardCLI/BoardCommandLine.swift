import ArgumentParser
import CDevKitLinux
import DevKitModel
import DevKitSystem
import SystemPackage
#if canImport(Glibc)
import Glibc
#endif

/// devkit's version, as `--version` prints it (both binaries).
package let devkitVersion = "0.1.0"

/// The small `devkit` binary's main: what it runs itself, and the hand-over of the
/// rest to `devkit-full`.
///
/// Why two binaries: every process start pays for what its binary links (the loader
/// relocates every module's pointers, the kernel maps their pages), and the full
/// command set links the network stack, GRDB, PostgreSQL, the DPS emulator and
/// Foundation: ~3.5 ms before `main`. `--version`, `info` and `set-uds`, what scripts
/// run per board, need none of it. Every other line, and a board command's line that
/// the plain reader declines (help, a usage error, `--name=value`, ...), goes to
/// `devkit-full` unchanged, so help, errors and exit codes stay ArgumentParser's for
/// the whole tree.
public enum BoardCommandLine {
    /// Runs the command line and exits, or replaces this process with `devkit-full`.
    public static func main() -> Never {
        let arguments = Array(CommandLine.arguments.dropFirst())
        answerVersion(arguments)
        guard var command = PlainBoardCommands.parsed(arguments) else { handOver() }
        unblockStopSignals()
        do {
            try command.run()
        } catch {
            exitReporting(error, for: type(of: command))
        }
        exitIfStandardOutputFailed()
        exit(ExitStatus.success.rawValue)
    }

    /// The full binary's name; it is installed beside `devkit`.
    package static let fullBinaryName = "devkit-full"

    /// execv(2) of `devkit-full` from this binary's directory, with this process's own
    /// argument vector as the kernel gave it (program name included, bytes unchanged):
    /// signal mask, descriptors and process ID carry over, so a udev unit or a
    /// supervisor cannot tell the two apart (`takeProgramName` keeps its name too).
    static func handOver() -> Never {
        guard let path = fullBinaryPath() else {
            failHandOver("cannot find the directory devkit runs from (/proc/self/exe is unreadable and the program "
                + "name has no directory), so not the devkit-full beside it either")
        }
        let shown = escaped(String(decoding: path.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self))
        // A devkit-full that is this very file (a link, a copy's hard link) would run
        // this hand-over again, forever.
        var target = stat()
        var running = stat()
        if stat(path, &target) == 0, stat("/proc/self/exe", &running) == 0,
           target.st_dev == running.st_dev, target.st_ino == running.st_ino {
            failHandOver("\(shown) is devkit itself, not the full binary")
        }
        execv(path, CommandLine.unsafeArgv)
        failHandOver("cannot run \(shown): \(Errno(rawValue: errno).description)")
    }

    private static func failHandOver(_ problem: String) -> Never {
        printError("devkit: error: \(problem); devkit runs every command other than --version, info and set-uds "
            + "through devkit-full: install it beside devkit (Scripts/install.sh installs both; in a checkout, "
            + "`swift build` builds both)")
        exit(ExitStatus.config.rawValue)
    }

    /// `devkit-full` (NUL-terminated, raw bytes: a directory's name need not be UTF-8)
    /// in the directory of the running file, /proc/self/exe, which names the file
    /// itself through symbolic links; when there is none there (devkit started through
    /// the dynamic loader, or from a memfd), in the directory of the program name.
    /// The first candidate when neither is executable (for the error); nil without any.
    package static func fullBinaryPath() -> [CChar]? {
        var candidates: [[CChar]] = []
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let count = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        if count > 0 { candidates.append(sibling(of: Array(buffer[..<count]))) }
        if let name = CommandLine.unsafeArgv[0] {
            let bytes = Array(UnsafeBufferPointer(start: name, count: strlen(name)))
            if bytes.contains(0x2F) { candidates.append(sibling(of: bytes)) }
        }
        return candidates.first { access($0, X_OK) == 0 } ?? candidates.first
    }

    /// `devkit-full` in the directory of `path` (the bytes up to its last '/'), NUL-terminated.
    private static func sibling(of path: [CChar]) -> [CChar] {
        let directory = path.lastIndex(of: 0x2F).map { Array(path[...$0]) } ?? []
        return directory + fullBinaryName.utf8CString
    }

    /// The kernel names a process after the file it runs, so a handed-over one would be
    /// `devkit-full` to `ps`, `pgrep -x devkit`, `killall devkit` and the port-in-use
    /// message (which names the port's holder). devkit-full calls this first: started
    /// as `devkit` (its program name, which the hand-over keeps), it takes that name.
    public static func takeProgramName() {
        guard let name = CommandLine.unsafeArgv[0] else { return }
        let base = strrchr(name, 0x2F).map { $0 + 1 } ?? name
        guard strcmp(base, "devkit") == 0 else { return }
        // For the main thread this names the process (/proc/self/comm).
        _ = CDevKitLinux_set_thread_name("devkit")
    }
}

/// `--version` alone is answered before anything is parsed: scripts ask it often and
/// it needs nothing else. The text is ArgumentParser's (the version and a newline).
package func answerVersion(_ arguments: [String]) {
    guard arguments == ["--version"] else { return }
    do throws(Errno) { try FileDescriptor(rawValue: STDOUT_FILENO).writeAll(text: devkitVersion + "\n") } catch {
        exitStandardOutputFailed(error.rawValue)
    }
    exit(ExitStatus.success.rawValue)
}

/// The main thread takes SIGINT and SIGTERM (the threads the concurrency runtime adds
/// block every signal). A mask inherited from the parent, e.g. a test runner's worker
/// thread, would otherwise leave them blocked everywhere, and `watch` would never stop
/// on SIGTERM.
package func unblockStopSignals() {
    var stopSignals = sigset_t()
    sigemptyset(&stopSignals)
    sigaddset(&stopSignals, SIGINT)
    sigaddset(&stopSignals, SIGTERM)
    pthread_sigmask(SIG_UNBLOCK, &stopSignals, nil)
}

/// `exit(withError:)` with the one error prefix: ArgumentParser renders its own usage
/// errors as `Error: ...` plus the usage; devkit's errors all start with `devkit:
/// error:`, so scripts and users meet one spelling. The exit code stays
/// ArgumentParser's (64 for usage); help and version go out unchanged. `command` is
/// the root the line was parsed from.
package func exitReporting(_ error: any Error, for command: any ParsableCommand.Type) -> Never {
    // A command's failure that reportingErrors already printed arrives as an
    // ExitCode, which ArgumentParser renders as nothing: exit with it directly.
    // Its MessageInfo (built twice below) costs a failing command ~3 million
    // instructions of protocol-conformance scans (callgrind), ~8 % of `info`.
    if let exitCode = error as? ExitCode {
        exit(exitCode.rawValue)
    }
    let code = command.exitCode(for: error)
    let message = command.fullMessage(for: error)
    guard !code.isSuccess, !message.isEmpty else { command.exit(withError: error) }
    let prefix = "Error: "
    let text = message.hasPrefix(prefix) ? "devkit: error: " + message.dropFirst(prefix.count) : message
    // ArgumentParser quotes a refused value in full ("The value '…' is invalid for
    // '--mac <mac>'"): a UDS pasted into the wrong option must not reach a log.
    printError(maskingHexRuns(text))
    exit(code.rawValue)
}
