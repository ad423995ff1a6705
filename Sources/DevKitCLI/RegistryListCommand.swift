import DevKitBoardCLI
import ArgumentParser
import DevKitModel
import DevKitRegistry
import DevKitWorkflows

/// `devkit registry list`: one line per recorded board.
struct RegistryListCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "List the recorded boards, one per line.",
        usage: """
            devkit registry list [--registry <path>] [--unfinished] [--json]
                [--station <name>] [<options>]
            """,
        discussion: """
            Shows each board's row id, MAC, registration ID, firmware version, state, \
            the last step completed and its DPS enrollment (ENROLLED: `created 12:01`, \
            `unchanged`, `updated`; `conflict` when DPS holds another certificate; \
            `failed 401002` with DPS's error code; `not enrolled` when it is owed; \
            `old certificate` after a re-issue; `-` when DPS was not configured). \
            VERIFIED is the outcome of the board's last registration check (`devkit \
            verify`, `provision --verify`) and its assigned hub: `assigned my-hub...`, \
            `unauthorized`, `timeout`; `-` when never verified or when its certificate \
            was re-issued since. A board whose files are written but whose enrollment is owed is \
            `done, not enrolled`: `devkit dps enroll --from-registry --id N` finishes \
            it. --unfinished shows only boards whose provisioning \
            did not complete. STATION is the station that recorded the board \
            (`--station`, default its host name); --station NAME shows only its boards. \
            Never shows the UDS, so needs no registry key (a --key-file given is \
            checked all the same: 77 when it is not the registry's key).

            Examples:
              devkit registry list
              devkit registry list --unfinished --json
              devkit registry list --station line-2
            """)

    @OptionGroup var registry: RegistryOptions

    @Flag(help: "Only boards whose provisioning has not finished.")
    var unfinished = false

    @Option(help: ArgumentHelp("Only boards recorded by this station (`--station` of provision, watch, autoconfigure).", valueName: "name"))
    var station: String?

    @Flag(help: "Print a JSON array of board objects (no UDS).")
    var json = false

    /// --quiet / --verbose, as on every command.
    @OptionGroup var outputLevel: OutputLevelOptions

    func run() throws {
        try reportingErrors {
            // As `show`, `export` and `reissue`: a registry that is not there is a wrong path, not an empty list.
            guard let opened = try registry.openReadOnly(secrets: false) else {
                throw NoRegistryError(path: registry.resolvedPath)
            }
            // One read: the later rows are found among all of them.
            let all = try opened.allBoards()
            var boards = markingLaterRows(unfinished ? all.filter { $0.state != .done } : all, all: all)
            if let station { boards = boards.filter { $0.station == station } }
            if json {
                print(try JSONOutput.text(boards.map { BoardJSON(board: $0, includeSecret: false) }))
                return
            }
            if boards.isEmpty, let station {
                print("No \(unfinished ? "unfinished " : "")boards recorded by station \(escaped(station)) in \(escaped(opened.path)).")
                return
            }
            if boards.isEmpty {
                print(unfinished
                    ? "No unfinished boards in \(escaped(registry.resolvedPath)): every recorded board has finished provisioning."
                    : "No boards recorded in \(escaped(registry.resolvedPath)).")
                return
            }
            // Cells escaped: the values came from boards and files (a raw control
            // character would reach the terminal, a newline would start a fake row).
            let rows = boards.map { b in
                [b.id.map(String.init) ?? "", b.mac ?? "-", b.registrationID ?? "-",
                 b.firmwareVersion ?? "-", stateText(b), b.lastStep?.rawValue ?? "-", enrollmentCell(b),
                 verificationCell(b), b.station ?? "-", timestamp(b.updatedAt)].map { escaped($0) }
            }
            print(textTable(
                ["ID", "MAC", "REGISTRATION ID", "FIRMWARE", "STATE", "LAST STEP", "ENROLLED", "VERIFIED", "STATION", "UPDATED"],
                rows))
            // What to do with an unfinished one (on stderr: stdout stays the table). Not
            // for a row a later row of the same board superseded (its UDS would replace
            // the board's new one), nor when that cannot be asked.
            func isLatest(_ board: BoardRecord) -> Bool {
                guard board.supersededBy == nil else { return false }
                do { return try opened.supersedingRow(of: board) == nil } catch { return false }
            }
            if OutputLevel.current != .quiet, let id = boards.lazy.filter({ $0.state != .done }).first(where: isLatest)?.id {
                let words = registry.commandWords()
                printError("devkit: a board whose provisioning did not finish keeps its UDS in the registry: unless a station "
                    + "is working on it now, plug it in and `\(resumeCommand(boardID: id, words + ["--port", "PORT"]))` "
                    + "finishes it (`\(commandLine(["devkit", "registry", "show", "\(id)"] + words))` says where it stopped)")
            }
        }
    }
}
