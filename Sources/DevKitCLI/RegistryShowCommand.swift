import ArgumentParser
import DevKitModel
import DevKitRegistry

/// `devkit registry show`: everything recorded about one board.
struct RegistryShowCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show",
        abstract: "Show everything recorded about one board.",
        usage: """
            devkit registry show <board> [--registry <path>] [--show-secret]
                [--json] [<options>]
            """,
        discussion: """
            BOARD is the row id from `devkit registry list`, the MAC (any spelling) or \
            the registration ID; the most recent row wins. The UDS is shown only with \
            --show-secret (it is the board's root secret: anyone holding it can \
            impersonate the board).

            Examples:
              devkit registry show 3
              devkit registry show A4:CF:12:0B:9E:31 --json
              devkit registry show az-a4cf120b9e31v1v6v2 --show-secret
            """)

    @OptionGroup var registry: RegistryOptions

    @Argument(help: ArgumentHelp("Row id, MAC or registration ID.", valueName: "board"))
    var key: String

    @Flag(help: "Also print the UDS.")
    var showSecret = false

    @Flag(help: "Print one JSON object.")
    var json = false

    /// --quiet / --verbose, as on every command.
    @OptionGroup var outputLevel: OutputLevelOptions

    func run() throws {
        try reportingErrors {
            guard let opened = try registry.openExisting() else {
                throw NoRegistryError(path: registry.resolvedPath)
            }
            guard let board = try opened.board(matching: key) else {
                throw RegistryError.boardNotFound(key)
            }
            if json {
                print(try JSONOutput.text(BoardJSON(board: board, includeSecret: showSecret)))
                return
            }
            var lines: [(label: String, value: String)] = [
                ("ID", board.id.map(String.init) ?? "-"),
                ("MAC address", board.mac ?? "-"),
                ("USB serial", board.usbSerial ?? "-"),
                ("Registration ID", board.registrationID ?? "-"),
                ("Firmware version", board.firmwareVersion ?? "-"),
                ("UDS", showSecret ? board.uds.hexString : "(hidden; --show-secret shows it)"),
                ("Certificate", board.certificatePath ?? "-"),
                ("SHA-1 thumbprint", board.certificateSHA1 ?? "-"),
                ("SHA-256 thumbprint", board.certificateSHA256 ?? "-"),
                ("Enrollment file", board.enrollmentPath ?? "-"),
                ("State", board.state.rawValue),
            ]
            if let error = board.error { lines.append(("Error", error)) }
            if let next = board.nextStep { lines.append(("Next step", next.rawValue)) }
            lines.append(("Created", timestamp(board.createdAt)))
            lines.append(("Updated", timestamp(board.updatedAt)))
            for step in ProvisioningStep.allCases {
                lines.append(("  " + step.rawValue, board.completedAt(step).map(timestamp) ?? "-"))
            }
            // Every value escaped: the error text, paths and USB serial came from a
            // board, a file or an older devkit, and reach the terminal here.
            print(labelledLines(lines))
        }
    }
}
