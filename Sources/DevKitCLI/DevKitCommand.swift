import ArgumentParser

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
            77 permission denied.
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
            ListCommand.self,
            AutoconfigureCommand.self,
            WatchCommand.self,
            RegistryCommand.self,
            EmulateCommand.self,
        ]
    )

    public init() {}
}

@available(macOS 10.15, *)
extension DevKitCommand {
    /// Entry point for the executable. Spelled out so the async `main` is chosen:
    /// from top-level code the synchronous overload would win and refuse to run
    /// async subcommands.
    public static func runAsRoot(_ arguments: [String]? = nil) async {
        let entry: ([String]?) async -> Void = DevKitCommand.main
        await entry(arguments)
    }
}
