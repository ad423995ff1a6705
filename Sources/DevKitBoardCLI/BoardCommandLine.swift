import ArgumentParser
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
    /// Runs `arguments` (without the program name) and exits, or replaces this
    /// process with `devkit-full` for them.
    public static func main(_ arguments: [String] = Array(CommandLine.arguments.dropFirst())) -> Never {
        answerVersion(arguments)
        guard var command = PlainBoardCommands.parsed(arguments) else { handOver() }
        unblockStopSignals()
        do {
            try command.run()
        } catch {
            exitReporting(error, for: type(of: command))
        }
        exit(ExitStatus.success.rawValue)
    }

    /// The full binary's name; it is installed beside `devkit`.
    package static let fullBinaryName = "devkit-full"

    /// execv(2) of `devkit-full` from this binary's directory (through symbolic
    /// links: /proc/self/exe names the file itself), with this process's own argument
    /// vector, program name included: `ps` and the full binary see what was typed.
    /// Signal mask, descriptors and process ID carry over, so a udev unit or a
    /// supervisor cannot tell the two apart.
    static func handOver() -> Never {
        let path = fullBinaryPath()
        let arguments = CommandLine.arguments
        var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) }
        argv.append(nil)
        execv(path, argv)
        let reason = Errno(rawValue: errno).description
        printError("devkit: error: cannot run \(escaped(path)): \(reason); devkit runs every command other than "
            + "--version, info and set-uds through it: install it beside devkit (Scripts/install.sh installs both)")
        exit(ExitStatus.config.rawValue)
    }

    /// `devkit-full` in the directory of the running binary.
    package static func fullBinaryPath() -> String {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let count = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        // Without /proc (never on a Linux that runs devkit), the search path decides.
        guard count > 0 else { return fullBinaryName }
        let path = String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        guard let slash = path.lastIndex(of: "/") else { return fullBinaryName }
        return path[...slash] + fullBinaryName
    }
}

/// `--version` alone is answered before anything is parsed: scripts ask it often and
/// it needs nothing else. The text is ArgumentParser's (the version and a newline).
package func answerVersion(_ arguments: [String]) {
    guard arguments == ["--version"] else { return }
    writeAll(STDOUT_FILENO, devkitVersion + "\n")
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
