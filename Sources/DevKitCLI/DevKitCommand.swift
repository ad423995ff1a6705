import ArgumentParser
import DevKitModel
import DevKitSystem
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The root `devkit` command. Subcommands live one per file in this module.
@available(macOS 10.15, *)
public struct DevKitCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "devkit",
        abstract: "Provision MXChip AZ3166 IoT DevKits for Azure IoT Hub DPS (X.509 / DICE).",
        discussion: """
            Hold button A, reset the board and plug it in: the board's configuration \
            console is then reachable on its USB serial port (/dev/ttyACM*).

            Without a board, `devkit emulate` starts a virtual DevKit on a pseudo-terminal.

            Exit codes follow sysexits(3): 0 success, 1 partial batch failure, \
            64 usage, 65 bad input data, 66 input not found, 69 device unavailable, \
            70 internal error, 73 cannot create output, 74 I/O error, 75 timeout, \
            77 permission denied, 78 something must be set up or upgraded first \
            (`devkit registry upgrade`).
            """,
        version: "0.1.0",
        subcommands: [
            // The whole flow first, then the single steps, then the bench and tools.
            ProvisionCommand.self,
            ConsoleREPLCommand.self,
            InfoCommand.self,
            SetUDSCommand.self,
            SetWiFiCommand.self,
            SetConnectionStringCommand.self,
            CertCommand.self,
            VerifyCommand.self,
            ListCommand.self,
            MonitorCommand.self,
            AutoconfigureCommand.self,
            WatchCommand.self,
            RegistryCommand.self,
            DPSCommand.self,
            // emulate last: its abstract's second line starts with "devkit", which
            // the examples check (OptionSpellingTests) would take for an example
            // if another command's line followed it.
            EmulateDPSCommand.self,
            EmulateCommand.self,
        ]
    )

    public init() {}
}

@available(macOS 10.15, *)
extension DevKitCommand {
    /// Entry point for the executable, as ArgumentParser's async `main` but run
    /// from a synchronous `main.swift`: most subcommands are synchronous and then
    /// run on the main thread without the concurrency runtime ever starting (an
    /// async top level costs every run a hop to a new worker thread, ~0.8 ms). The
    /// few async ones (watch, list --watch, emulate) run as a task while the main
    /// thread waits; nothing here is isolated to the main actor.
    public static func runAsRoot(_ arguments: [String]? = nil) {
        // The main thread takes SIGINT and SIGTERM (the threads the concurrency
        // runtime adds block every signal). A mask inherited from the parent, e.g.
        // a test runner's worker thread, would otherwise leave them blocked
        // everywhere, and `watch` would never stop on SIGTERM.
        var stopSignals = sigset_t()
        sigemptyset(&stopSignals)
        sigaddset(&stopSignals, SIGINT)
        sigaddset(&stopSignals, SIGTERM)
        pthread_sigmask(SIG_UNBLOCK, &stopSignals, nil)

        let arguments = arguments ?? Array(CommandLine.arguments.dropFirst())
        // `devkit --version` alone is answered before ArgumentParser builds the command
        // tree (it reflects on every command's properties first): scripts ask it often
        // and it needs nothing else. The text is ArgumentParser's (the version + newline).
        if arguments == ["--version"] {
            writeAll(STDOUT_FILENO, configuration.version + "\n")
            Glibc.exit(0)
        }

        // `info`, `autoconfigure` and `set-uds` with plain options need no reflection, and,
        // being synchronous, no cast to learn whether they are async.
        let plain = parsedPlain(arguments)
        let command: any ParsableCommand
        do {
            command = try plain ?? parseDispatching(arguments)
        } catch {
            exitReporting(error)
        }
        guard plain == nil, let asyncCommand = command as? any AsyncParsableCommand else {
            var command = command
            do {
                try command.run()
            } catch {
                exitReporting(error)
            }
            return
        }
        let box = CommandBox(asyncCommand)
        let done = DispatchSemaphore(value: 0)
        Task.detached {
            do {
                try await box.command.run()
            } catch {
                exitReporting(error)
            }
            done.signal()
        }
        done.wait()
    }
}

@available(macOS 10.15, *)
extension DevKitCommand {
    /// `parseAsRoot`, but a top-level command without subcommands of its own
    /// (`info`, `cert`, `watch`, ...) named by the first argument is parsed by that
    /// command alone: ArgumentParser then reflects only its properties, not the
    /// whole tree's, and each (type, protocol) pair it asks the runtime about for the
    /// first time scans every protocol-conformance record of the binary (see
    /// Docs/certificate.md, Start-up). Anything that does not parse that way
    /// (help, version, completion scripts, usage errors; `help`, groups such as
    /// `registry`, unknown names) is parsed again from the root, so every help and
    /// error text, with its `devkit <command>` usage, and every exit code stay
    /// ArgumentParser's own for the whole tree.
    static func parseDispatching(_ arguments: [String]) throws -> any ParsableCommand {
        if let name = arguments.first,
           let leaf = configuration.subcommands.first(where: {
               $0.configuration.subcommands.isEmpty && $0.configuration.commandName == name
           }),
           let command = try? leaf.parseAsRoot(Array(arguments.dropFirst())),
           ObjectIdentifier(type(of: command)) == ObjectIdentifier(leaf)
        {
            return command
        }
        return try parseAsRoot(arguments)
    }
}

@available(macOS 10.15, *)
extension DevKitCommand {
    /// `exit(withError:)` with the one error prefix: ArgumentParser renders its own
    /// usage errors as `Error: ...` plus the usage; devkit's errors all start with
    /// `devkit: error:`, so scripts and users meet one spelling. The exit code
    /// stays ArgumentParser's (64 for usage); help and version go out unchanged.
    static func exitReporting(_ error: any Error) -> Never {
        // A command's failure that reportingErrors already printed arrives as an
        // ExitCode, which ArgumentParser renders as nothing: exit with it directly.
        // Its MessageInfo (built twice below) costs a failing command ~3 million
        // instructions of protocol-conformance scans (callgrind), ~8 % of `info`.
        if let exitCode = error as? ExitCode {
            Glibc.exit(exitCode.rawValue)
        }
        let code = exitCode(for: error)
        let message = fullMessage(for: error)
        guard !code.isSuccess, !message.isEmpty else { exit(withError: error) }
        let prefix = "Error: "
        let text = message.hasPrefix(prefix) ? "devkit: error: " + message.dropFirst(prefix.count) : message
        // ArgumentParser quotes a refused value in full ("The value '…' is invalid for
        // '--mac <mac>'"): a UDS pasted into the wrong option must not reach a log.
        printError(maskingHexRuns(text))
        Glibc.exit(code.rawValue)
    }
}

/// Hands the parsed command to the task that runs it (parsed values, used by that
/// task alone once the main thread waits).
private final class CommandBox: @unchecked Sendable {
    var command: any AsyncParsableCommand
    init(_ command: any AsyncParsableCommand) { self.command = command }
}
