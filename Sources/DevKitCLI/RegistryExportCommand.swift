import DevKitBoardCLI
import ArgumentParser
import DevKitRegistry

/// `devkit registry export`: every row, for backups and spreadsheets.
struct RegistryExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Export every recorded board as JSON or CSV on standard output.",
        usage: """
            devkit registry export [--registry <path>] [--format <format>]
                [--include-secrets] [<options>]
            """,
        discussion: """
            JSON is an array of objects with the same keys as `show --json`; CSV has a \
            header line and one line per board (RFC 4180). The UDS column is included \
            only with --include-secrets: then treat the output like a key file. Only \
            --include-secrets needs the registry key (a --key-file given is checked \
            all the same).

            Examples:
              devkit registry export > boards.json
              devkit registry export --format csv --include-secrets |
                gpg -c > boards.csv.gpg
            """)

    /// --quiet / --verbose, as on every command.
    @OptionGroup var outputLevel: OutputLevelOptions

    enum Format: String, ExpressibleByArgument, CaseIterable {
        case json, csv
    }

    @OptionGroup var registry: RegistryOptions

    @Option(help: "json or csv.")
    var format: Format = .json

    @Flag(help: "Include each board's UDS.")
    var includeSecrets = false

    func run() throws {
        try reportingErrors {
            guard let opened = try registry.openReadOnly(secrets: includeSecrets) else {
                throw NoRegistryError(path: registry.resolvedPath)
            }
            let all = try opened.allBoards()
            let boards = markingLaterRows(all, all: all)
            switch format {
            case .json:
                print(try JSONOutput.text(
                    boards.map { BoardJSON(board: $0, includeSecret: includeSecrets) }, pretty: true))
            case .csv:
                print(registryCSV(boards, includeSecrets: includeSecrets), terminator: "")
            }
        }
    }
}
