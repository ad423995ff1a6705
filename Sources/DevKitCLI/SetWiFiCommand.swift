import DevKitBoardCLI
import DevKitBoard
import ArgumentParser
import DevKitConsole
import DevKitModel
import DevKitWorkflows

/// `devkit set-wifi`: store the Wi-Fi network the sketch joins.
struct SetWiFiCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "set-wifi",
        abstract: "Store the Wi-Fi SSID and password on the DevKit.",
        usage: """
            devkit set-wifi [--port <path>] --ssid <ssid> --wifi-password-file <file>
            devkit set-wifi [--port <path>] --ssid <ssid> --open
            """,
        discussion: """
            The SSID (1 to 31 bytes) is not secret and goes on the command line. The \
            password (at most 63 bytes) is read from a file, or `-` for standard input: \
            the file's one line (a second line is refused), spaces kept, the line end \
            dropped. For an open network \
            use --open instead. The board echoes the password as `*`, and devkit never \
            prints it.

            \(BoardHelp.modes)

            Examples:
              devkit set-wifi --port /dev/ttyACM0 --ssid Lab --wifi-password-file lab.pw
              printf '%s' "$WIFI_PW" |
                devkit set-wifi --port /dev/ttyACM0 --ssid Lab --wifi-password-file -

            \(BoardHelp.exitCodes)
            """)

    @OptionGroup var port: PortOptions

    @Option(help: ArgumentHelp("Name of the Wi-Fi network (1 to 31 bytes).", valueName: "ssid"))
    var ssid: String

    @Option(
        name: .customLong("wifi-password-file"),
        help: ArgumentHelp("File holding the password on one line, or - for standard input.", valueName: "file"),
        completion: .file())
    var wifiPasswordFile: String?

    /// `--password-file`, the name before every command agreed on
    /// `--wifi-password-file`; kept for existing scripts, hidden (ArgumentParser has
    /// no per-name visibility).
    @Option(name: .customLong("password-file"), help: .hidden, completion: .file())
    var passwordFileAlias: String?

    var passwordFile: String? { wifiPasswordFile ?? passwordFileAlias }

    @Flag(help: "The network has no password (clears the stored one).")
    var open = false

    @Flag(help: "Print the result as one JSON object.")
    var json = false

    /// --quiet / --verbose, as on every command.
    @OptionGroup var outputLevel: OutputLevelOptions

    func validate() throws {
        if wifiPasswordFile != nil && passwordFileAlias != nil {
            throw ValidationError("--password-file is the old name of --wifi-password-file: give one of them.")
        }
        if (passwordFile == nil) == !open {
            throw ValidationError("Give exactly one of --wifi-password-file FILE (or -) and --open.")
        }
    }

    struct Result: Encodable {
        let port: String
        let ssid: String
        let passwordSet: Bool
        enum CodingKeys: String, CodingKey {
            case port, ssid
            case passwordSet = "password_set"
        }
    }

    func run() throws {
        try reportingErrors {
            let path = try port.resolvedPath()
            let password = try passwordFile.map { try SecretFile.readWiFiPassword($0) } ?? WiFiPassword.openNetwork
            try withConsoleSession(port) { session in
                try DevKitWorkflow(session: session, progress: progressReporter()).setWiFi(ssid: ssid, password: password)
            }
            if json {
                try printJSON(Result(port: path, ssid: ssid, passwordSet: !password.isEmpty))
            } else {
                printOutput("Wi-Fi set on the DevKit on \(escaped(path)): SSID \"\(escaped(ssid))\", "
                    + (password.isEmpty ? "no password." : "password stored."))
            }
        }
    }
}
