import ArgumentParser
import DevKitModel
import DevKitRegistry
import DevKitWorkflows
import Foundation

/// `devkit registry reissue`: new certificates for recorded boards after a firmware
/// update. `devkit cert --from-registry` runs the same code
/// (``reissueFromRegistry(registry:firmware:firmwareVersion:outputDirectory:boards:json:)``).
struct RegistryReissueCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reissue",
        abstract: "Re-issue certificates for recorded boards from new firmware.",
        usage: """
            devkit registry reissue (--elf <file> | --bin <file> --map <file>)
                [--firmware-version <version>] [--board <board> ...]
                [--output-dir <dir>] [--json] [<options>]
            """,
        discussion: """
            The Alias certificate depends on the firmware image, so after flashing new \
            firmware every board needs a new certificate (and enrollment). This measures \
            the new image once and computes each recorded board's certificate from its \
            recorded UDS: no board needs to be connected. Boards whose registration ID \
            was the derived az-<mac>v<version> get the ID for --firmware-version; other \
            IDs are kept. Each board's <id>.pem and <id>.enrollment.json are written \
            and its registry row updated; a file that holds another board's certificate \
            (by its SHA-256 in the registry) is never replaced: that board fails instead. \
            A board that fails is reported and the others go on; the exit code is 1 when \
            some failed.

            Examples:
              devkit registry reissue --bin New.ino.bin --map New.ino.map \\
                  --firmware-version 1.6.3 --output-dir enrollments-1.6.3
              devkit registry reissue --elf New.ino.elf --board 3 --board 7 --json
            """)

    @OptionGroup var registry: RegistryOptions

    @OptionGroup var firmware: FirmwareOptions

    /// --quiet / --verbose, as on every command.
    @OptionGroup var outputLevel: OutputLevelOptions

    func validate() throws { try firmware.requireGiven() }

    @Option(
        help: ArgumentHelp("The new firmware's DevKitSDK version (default: each board's recorded one).", valueName: "X.Y.Z"),
        transform: argument(FirmwareVersion.init))
    var firmwareVersion: FirmwareVersion?

    @OptionGroup var output: OutputOptions

    @Option(name: .customLong("board"), help: ArgumentHelp("Only this board (row id, MAC or registration ID); repeatable.", valueName: "board"))
    var boards: [String] = []

    @Flag(help: "One JSON object per board on stdout.")
    var json = false

    func run() throws {
        try reportingErrors {
            try reissueFromRegistry(
                registry: registry, firmware: firmware.source,
                firmwareVersion: firmwareVersion, outputDirectory: output.outputDir, boards: boards, json: json)
        }
    }
}

/// Shared by `devkit registry reissue` and `devkit cert --from-registry`: prints one
/// line (or JSON object) per board; throws ExitCode(1) when some boards failed.
func reissueFromRegistry(
    registry options: RegistryOptions, firmware: DevKitWorkflows.FirmwareSource, firmwareVersion: FirmwareVersion?,
    outputDirectory: String, boards keys: [String], json: Bool
) throws {
    guard let registry = try options.openExisting() else { throw NoRegistryError(path: options.resolvedPath) }
    var ids: [Int64]?
    if !keys.isEmpty {
        ids = try keys.map { key in
            guard let id = try registry.board(matching: key)?.id else { throw RegistryError.boardNotFound(key) }
            return id
        }
    }
    let factory = try diceRIoTMeasurer()(firmware)
    let items = try CertificateReissue(registry: registry, factory: factory)
        .run(firmwareVersion: firmwareVersion, outputDirectory: outputDirectory, boardIDs: ids)
    var failures = 0
    for item in items {
        switch item.result {
        case .success(let r):
            if json {
                print(try JSONOutput.text(ProvisionReporter.ResultJSON(r)))
            } else {
                printOutput("#\(r.boardID) \(r.registrationID): \(escaped(r.certificatePath)) (SHA-1 \(r.certificateSHA1))")
            }
        case .failure(let error) where error.superseded:
            // An earlier record of a board provisioned again: said, not a failure.
            if json {
                print(try JSONOutput.text(["event": "skipped", "board_id": "\(item.boardID)", "message": error.description]))
            } else {
                printError("devkit: #\(item.boardID): \(error.description)")
            }
        case .failure(let error):
            failures += 1
            if json {
                print(try JSONOutput.text(["event": "error", "board_id": "\(item.boardID)", "message": error.userMessage]))
            } else {
                printError("devkit: error: #\(item.boardID): \(error.userMessage)")
            }
        }
    }
    if items.isEmpty && !json { printError("devkit: no boards recorded in \(registry.path)") }
    if failures > 0 { throw ExitCode(ExitStatus.partialFailure.rawValue) }
}

extension CertificateReissue.ReissueError {
    /// The library's facts, and the command that fixes them.
    var userMessage: String {
        switch remedy {
        case .finishProvisioning(let id)?: return description + "; finish it with `devkit provision --resume \(id)` first"
        case .giveFirmwareVersion?: return description + "; give --firmware-version"
        case .filesOfAnotherBoard?: return description + "; re-issue it into another --output-dir"
        case nil: return description
        }
    }
}
