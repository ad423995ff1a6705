import DevKitBoardCLI
import DevKitBoard
import ArgumentParser
import DevKitConsole
import DevKitModel
import DevKitWorkflows

extension ConnectionStringKind: ExpressibleByArgument {}

/// `devkit set-connection-string`: store an IoT Hub or DPS connection string.
struct SetConnectionStringCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "set-connection-string",
        abstract: "Store an IoT Hub device or DPS symmetric-key connection string on the DevKit.",
        usage: """
            devkit set-connection-string [--port <path>]
                --connection-string-file <file> [--kind <kind>]
            """,
        discussion: """
            A connection string holds a key, so it is read from a file (or `-` for \
            standard input), never taken from the command line. Whitespace around it is \
            ignored; at most 511 bytes.

            `HostName=…;DeviceId=…;SharedAccessKey=…` goes to the IoT Hub slot \
            (set_az_iothub), `DPSEndpoint=…;IdScope=…;DeviceId=…;SymmetricKey=…` to the \
            DPS one (set_az_iotdps); --kind overrides the guess. Both share one slot on \
            the board: the last one stored wins.

            \(BoardHelp.modes)

            Examples:
              devkit set-connection-string --port /dev/ttyACM0 \\
                  --connection-string-file device.cs
              az iot hub device-identity connection-string show -n hub -d dev -o tsv |
                devkit set-connection-string --port /dev/ttyACM0 \\
                  --connection-string-file -

            \(BoardHelp.exitCodes)
            """)

    @OptionGroup var port: PortOptions

    @Option(
        name: .customLong("connection-string-file"),
        help: ArgumentHelp("File holding the connection string, or - for standard input.", valueName: "file"),
        completion: .file())
    var connectionStringFile: String?

    /// `--file`, the name before every command agreed on `--connection-string-file`;
    /// kept for existing scripts, hidden (ArgumentParser has no per-name visibility).
    @Option(name: .customLong("file"), help: .hidden, completion: .file())
    var fileAlias: String?

    /// Set once `validate()` passed.
    var file: String { connectionStringFile ?? fileAlias ?? "" }

    @Option(help: ArgumentHelp("Which slot: hub or dps (default: from the string's first key).", valueName: "kind"))
    var kind: ConnectionStringKind?

    @Flag(help: "Print the result as one JSON object.")
    var json = false

    /// --quiet / --verbose, as on every command.
    @OptionGroup var outputLevel: OutputLevelOptions

    func validate() throws {
        switch (connectionStringFile, fileAlias) {
        case (nil, nil): throw ValidationError("Missing expected argument '--connection-string-file <file>' (or - for standard input).")
        case (_?, _?): throw ValidationError("--file is the old name of --connection-string-file: give one of them.")
        default: return
        }
    }

    struct Result: Encodable {
        let port: String
        let kind: String
    }

    func run() throws {
        try reportingErrors {
            let path = try port.resolvedPath()
            let connectionString = try SecretFile.readConnectionString(file)
            let kind = try self.kind ?? ConnectionStringKind.detect(connectionString)
            try withConsoleSession(port) { session in
                try DevKitWorkflow(session: session, progress: progressReporter()).setConnectionString(connectionString, kind: kind)
            }
            if json {
                try printJSON(Result(port: path, kind: kind.rawValue))
            } else {
                printOutput("\(kind == .hub ? "IoT Hub" : "DPS") connection string stored on the DevKit on \(escaped(path)).")
            }
        }
    }
}
