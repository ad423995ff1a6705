import ArgumentParser
import DevKitBoardCLI
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

            Exit codes follow sysexits(3): 0 success, 1 partial batch failure, a DPS \
            conflict or a `verify` outcome other than assigned, \
            64 usage, 65 bad input data, 66 input not found, 69 device unavailable, \
            70 internal error, 73 cannot create output, 74 I/O error, 75 timeout, \
            77 permission denied, 78 something must be set up or upgraded first \
            (`devkit registry upgrade`).
            """,
        version: devkitVersion,
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
        unblockStopSignals()

        let arguments = arguments ?? Array(CommandLine.arguments.dropFirst())
        // `devkit` answers a lone `--version` before it hands a line over; the same
        // here, for `devkit-full --version` (the text is ArgumentParser's).
        answerVersion(arguments)

        // `info`, `autoconfigure` and `set-uds` with plain options need no reflection, and,
        // being synchronous, no cast to learn whether they are async.
        let plain = parsedPlain(arguments)
        let command: any ParsableCommand
        do {
            command = try plain ?? parseDispatching(arguments)
        } catch {
            exitReporting(error, for: Self.self)
        }
        guard plain == nil, let asyncCommand = command as? any AsyncParsableCommand else {
            var command = command
            do {
                try command.run()
            } catch {
                exitReporting(error, for: Self.self)
            }
            exitIfStandardOutputFailed()
            return
        }
        let box = CommandBox(asyncCommand)
        let done = DispatchSemaphore(value: 0)
        Task.detached {
            do {
                try await box.command.run()
            } catch {
                exitReporting(error, for: Self.self)
            }
            done.signal()
        }
        done.wait()
        exitIfStandardOutputFailed()
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

/// Hands the parsed command to the task that runs it (parsed values, used by that
/// task alone once the main thread waits).
private final class CommandBox: @unchecked Sendable {
    var command: any AsyncParsableCommand
    init(_ command: any AsyncParsableCommand) { self.command = command }
}
