import ArgumentParser
import DevKitConsole
import DevKitModel
import DevKitBoard
#if canImport(Glibc)
import Glibc
#endif

/// `devkit set-uds`: store a Unique Device Secret in the board's secure element.
package struct SetUDSCommand: ParsableCommand {
    package init() {}

    package static let configuration = CommandConfiguration(
        commandName: "set-uds",
        abstract: "Store a Unique Device Secret (UDS) in the DevKit's secure element.",
        usage: """
            devkit set-uds [--port <path>] --uds-file <file>
            devkit set-uds [--port <path>] --generate-uds [--save <file>]
            """,
        discussion: """
            The UDS is the 32-byte secret from which the board derives its DICE/RIoT \
            keys, and so its X.509 enrollment certificate. Whoever has it can compute \
            the certificate (`devkit cert`): keep it, and keep it secret.

            Give it in a file (64 hex digits, either case, whitespace around allowed), \
            or `-` for standard input; never on the command line, where every user can \
            read it. Or let devkit generate a fresh one from the system's secure random \
            generator (--generate-uds): it is written to the --save file (mode 0600, a new file, synced to \
            disk) BEFORE it is sent to the board, so it cannot be lost.

            \(BoardHelp.modes)

            Examples:
              devkit set-uds --port /dev/ttyACM0 --uds-file board7.uds
              devkit set-uds --port /dev/ttyACM0 --generate-uds --save board7.uds
              pass show devkit/board7 | devkit set-uds --port /dev/ttyACM0 --uds-file -

            \(BoardHelp.exitCodes)
            """)

    @OptionGroup package var port: PortOptions

    @OptionGroup package var udsOptions: UDSOptions
    package var udsFile: String? { udsOptions.udsFile }

    @Flag(
        name: .customLong("generate-uds"),
        help: "Generate a fresh UDS from the system CSPRNG (saved before it is sent).")
    package var generateUDS = false

    /// `--generate`, the name before `provision` and `set-uds` agreed on
    /// `--generate-uds`; kept so existing scripts work. ArgumentParser has no
    /// per-name visibility, hence a second, hidden flag.
    @Flag(name: .customLong("generate"), help: .hidden)
    package var generateAlias = false

    package var generate: Bool { generateUDS || generateAlias }

    @Option(
        help: ArgumentHelp(
            "With --generate-uds: new file to save the UDS in (default: ./uds-<UTC time>.hex).", valueName: "file"),
        completion: .file())
    package var save: String?

    @Flag(help: "Print the result as one JSON object.")
    package var json = false

    /// --quiet / --verbose, as on every command.
    @OptionGroup package var outputLevel: OutputLevelOptions

    package func validate() throws {
        if (udsFile == nil) == !generate {
            throw ValidationError("Give exactly one of --uds-file FILE (or -) and --generate-uds.")
        }
        if save != nil && !generate { throw ValidationError("--save goes with --generate-uds.") }
    }

    package struct Result: Encodable {
        let port: String
        let stored: Bool
        let generated: Bool
        @NullEncoded var udsFile: String?
        enum CodingKeys: String, CodingKey {
            case port, stored, generated
            case udsFile = "uds_file"
        }
    }

    package func run() throws {
        try reportingErrors {
            let path = try port.resolvedPath()
            // Read and check the secret before touching the board.
            let uds = try udsFile.map { try SecretFile.readUDS($0) }
            var savedTo: String?
            try withConsoleSession(port) { session in
                let workflow = DevKitWorkflow(session: session, progress: progressReporter())
                if let uds {
                    try workflow.setUDS(uds)
                } else if let save {
                    savedTo = save
                    try workflow.setGeneratedUDS(savingTo: save)
                } else {
                    // The default name is per second: a second board in the same second
                    // gets `-2` (the file is made, exclusively, before the board is touched).
                    let stamp = defaultUDSFileName()
                    for n in 1... {
                        let file = n == 1 ? stamp + ".hex" : stamp + "-\(n).hex"
                        do {
                            try workflow.setGeneratedUDS(savingTo: file)
                            savedTo = file
                            break
                        } catch WorkflowError.secretFileExists where n < 100 {
                            continue
                        }
                    }
                }
            }
            if json {
                try printJSON(Result(port: path, stored: true, generated: generate, udsFile: savedTo ?? udsFile))
            } else {
                if let savedTo { printOutput("New UDS saved to \(escaped(savedTo)) (mode 0600).") }
                printOutput("UDS stored in the secure element of the DevKit on \(escaped(path)).")
            }
        }
    }
}

/// `uds-20261128T093000Z` (`.hex`, or `-2.hex` for a second one in that second):
/// sorts by the second (within one, `ls` puts `-2` before the first).
package func defaultUDSFileName() -> String {
    var now = timespec()
    clock_gettime(CLOCK_REALTIME, &now)
    var time = now.tv_sec
    var parts = tm()
    gmtime_r(&time, &parts)
    func two(_ n: Int32) -> String { n < 10 ? "0\(n)" : "\(n)" }
    return "uds-\(parts.tm_year + 1900)\(two(parts.tm_mon + 1))\(two(parts.tm_mday))T"
        + "\(two(parts.tm_hour))\(two(parts.tm_min))\(two(parts.tm_sec))Z"
}
