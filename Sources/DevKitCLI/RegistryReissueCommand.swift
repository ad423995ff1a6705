import DevKitBoardCLI
import ArgumentParser
import DevKitModel
import DevKitRegistry
import DevKitWorkflows
import Foundation

/// `devkit registry reissue`: new certificates for recorded boards after a firmware
/// update. `devkit cert --from-registry` runs the same code
/// (``reissueFromRegistry(registry:firmware:firmwareVersion:outputDirectory:boards:json:enroll:jobs:)``).
struct RegistryReissueCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reissue",
        abstract: "Re-issue certificates for recorded boards from new firmware.",
        usage: """
            devkit registry reissue (--elf <file> | --bin <file> --map <file>)
                [--firmware-version <version>] [--board <board> ...]
                [--output-dir <dir>] [--enroll --dps-connection-string-file <file>]
                [--json] [<options>]
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
            some failed. Without --board, rows whose provisioning never finished (and \
            older rows of boards provisioned again) are skipped with a note saying how \
            to finish them, not counted as failures; named with --board they fail.

            --enroll then pushes the new certificates to DPS (the options as for \
            `devkit provision --dps-connection-string-file`): each re-issued board's \
            enrollment is created, or updated with If-Match when it holds another \
            certificate (its old one: --enroll implies `dps enroll --replace` for the \
            boards re-issued in this run, and for no other). Each outcome is recorded \
            in the registry; a board whose files were written but whose enrollment \
            failed is `done, not enrolled`, and the exit code is 1. Without --enroll \
            the boards read `done, not enrolled` (an older certificate is enrolled) \
            until `devkit dps enroll --from-registry --replace` pushes them.

            Examples:
              devkit registry reissue --bin New.ino.bin --map New.ino.map \\
                  --firmware-version 1.6.3 --output-dir enrollments-1.6.3
              devkit registry reissue --elf New.ino.elf --board 3 --board 7 --json
              devkit registry reissue --elf New.ino.elf --firmware-version 1.6.3 \\
                  --enroll --dps-connection-string-file dps.cs
            """)

    @OptionGroup var registry: RegistryOptions

    @OptionGroup var firmware: FirmwareOptions

    /// --quiet / --verbose, as on every command.
    @OptionGroup var outputLevel: OutputLevelOptions

    @Option(
        help: ArgumentHelp("The new firmware's DevKitSDK version (default: each board's recorded one).", valueName: "X.Y.Z"),
        transform: argument(FirmwareVersion.init))
    var firmwareVersion: FirmwareVersion?

    @OptionGroup var output: OutputOptions

    @Option(name: .customLong("board"), help: ArgumentHelp("Only this board (row id, MAC or registration ID); repeatable.", valueName: "board"))
    var boards: [String] = []

    @Flag(help: "One JSON object per board on stdout.")
    var json = false

    @Flag(help: "Enroll the re-issued boards in DPS, replacing the certificates their enrollments hold.")
    var enroll = false

    @Option(
        help: ArgumentHelp(
            "Boards certified at once (default, and at most: the number of cores).",
            discussion: "The output is in the registry's order whatever the number.",
            valueName: "n"))
    var jobs: Int?

    @OptionGroup var dps: DPSEnrollOptions

    func validate() throws {
        try firmware.requireGiven()
        if let jobs, jobs < 1 { throw ValidationError("--jobs must be at least 1") }
        if enroll && dps.dpsConnectionStringFile == nil {
            throw ValidationError("--enroll needs --dps-connection-string-file FILE (the DPS policy's connection string).")
        }
        if !enroll && dps.dpsConnectionStringFile != nil {
            throw ValidationError("--dps-connection-string-file is used with --enroll; give --enroll too.")
        }
    }

    func run() throws {
        try reportingErrors {
            try reissueFromRegistry(
                registry: registry, firmware: firmware.source,
                firmwareVersion: firmwareVersion, outputDirectory: output.outputDir, boards: boards, json: json,
                enroll: enroll ? dps.settings() : nil, jobs: jobThreads(jobs))
        }
    }
}

/// The threads for `--jobs N` (`cert --batch`, `--from-registry`, `registry
/// reissue`): N, at most the cores this process may run on, and those cores when
/// N is not given. The work is CPU-bound, so more threads would only contend (the
/// Dispatch pool used before capped them the same way), and each is a real thread
/// (`runOnThreads`): `--jobs 100000` must not try to make 100,000 of them.
func jobThreads(_ jobs: Int?) -> Int {
    let cores = max(ProcessInfo.processInfo.activeProcessorCount, 1)
    return min(jobs ?? cores, cores)
}

/// Shared by `devkit registry reissue` and `devkit cert --from-registry`: prints one
/// line (or JSON object) per board; throws ExitCode(1) when some boards failed.
func reissueFromRegistry(
    registry options: RegistryOptions, firmware: DevKitWorkflows.FirmwareSource, firmwareVersion: FirmwareVersion?,
    outputDirectory: String, boards keys: [String], json: Bool, enroll: DPSSettings? = nil, jobs: Int = 1
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
    // The DPS is checked (connection string, endpoint, trust anchors) before any file is written.
    let target = try enroll.map { try DPSEnrollmentTarget($0, log: dpsRequestLog()) }
    defer { target?.close() }
    // A shared registry: each board's row is claimed from before it is read until
    // its new files (and enrollment) are recorded, a batch of rows at a time; a
    // board another station holds fails alone, naming it.
    let claims = RowClaims(registry: registry, station: StationOptions.hostName)
    defer { claims.releaseAll() }
    var reissue = CertificateReissue(registry: registry, factory: factory)
    reissue.claims = claims
    let registryWords = options.commandWords()
    let enrollCommand = { (id: Int64, replace: Bool) in
        finishEnrollmentCommand(boardID: id, dps: enroll ?? DPSSettings(), registryWords: registryWords, replace: true)
    }
    var failures = 0
    var busy = 0
    var seen = 0
    // Each batch is enrolled, recorded and printed before the next is claimed.
    try reissue.run(
        firmwareVersion: firmwareVersion, outputDirectory: outputDirectory, dps: enroll ?? DPSSettings(), boardIDs: ids,
        jobs: jobs
    ) { items in
        seen += items.count
        var enrollments: [Int64: ProvisionEnrollment] = [:]
        if let target {
            let reissued = items.compactMap { item -> (boardID: Int64, registrationID: RegistrationID, certificatePEM: String)? in
                guard case .success(let r) = item.result, let id = try? RegistrationID(r.registrationID),
                      let pem = try? String(contentsOfFile: r.certificatePath, encoding: .utf8)
                else { return nil }
                return (r.boardID, id, pem)
            }
            enrollments = target.enroll(reissued, replace: true, recordingIn: registry)
        }
        for item in items {
            switch item.result {
            case .success(var r):
                r.enrollment = enrollments[r.boardID]
                if enroll != nil && r.enrollment?.isEnrolled != true { failures += 1 }
                if json {
                    print(try JSONOutput.text(ProvisionReporter.ResultJSON(r, enrollCommand: enrollCommand)))
                } else {
                    var line = "#\(r.boardID) \(r.registrationID): \(escaped(r.certificatePath)) (SHA-1 \(r.certificateSHA1))"
                    if let e = r.enrollment, e.isEnrolled { line += "; enrolled in DPS (\(e.outcome.action.rawValue))" }
                    printOutput(line)
                    if let e = r.enrollment, !e.isEnrolled {
                        let why = e.outcome.error.map { cliMessage($0) } ?? e.outcome.message ?? "not enrolled"
                        printError("devkit: error: #\(r.boardID) \(r.registrationID): written but not enrolled in DPS: \(why); "
                            + "`\(enrollCommand(r.boardID, true))` finishes it")
                    } else if enroll != nil && r.enrollment == nil {
                        printError("devkit: error: #\(r.boardID) \(r.registrationID): written but not enrolled in DPS "
                            + "(its certificate file could not be read back); `\(enrollCommand(r.boardID, true))` finishes it")
                    }
                }
            case .failure(let error) where error.superseded || (ids == nil && error.unfinished):
                // An earlier record of a board provisioned again, or (when every board is
                // re-issued) a row whose provisioning never finished: said, not a failure.
                // Otherwise an abandoned row would fail every re-issue of the fleet.
                let message = error.superseded ? error.description : "skipped: " + error.userMessage(registryWords: registryWords)
                if json {
                    print(try JSONOutput.text(ReissueNotice(event: "skipped", boardID: item.boardID, message: message)))
                } else {
                    printError("devkit: #\(item.boardID): \(message)")
                }
            case .failure(let error):
                failures += 1
                if case .busy? = error.remedy { busy += 1 }
                if json {
                    print(try JSONOutput.text(ReissueNotice(event: "error", boardID: item.boardID, message: error.userMessage(registryWords: registryWords))))
                } else {
                    printError("devkit: error: #\(item.boardID): \(error.userMessage(registryWords: registryWords))")
                }
            }
        }
    }
    if seen == 0 && !json { printError("devkit: no boards recorded in \(registry.path)") }
    // Only boards other stations hold: 75, as for one busy board (run it again later).
    if failures > 0 { throw ExitCode((failures == busy ? ExitStatus.tempFail : ExitStatus.partialFailure).rawValue) }
}

extension CertificateReissue.ReissueError {
    /// The board's provisioning never finished (its row cannot be re-issued until it is).
    var unfinished: Bool { if case .finishProvisioning? = remedy { true } else { false } }

    /// The library's facts, and the command that fixes them (with the registry and
    /// key of this run, ``RegistryOptions/commandWords(profile:)``).
    func userMessage(registryWords: [String]) -> String {
        switch remedy {
        case .finishProvisioning(let id)?:
            return description + "; plug the board in and finish it with `\(resumeCommand(boardID: id, registryWords + ["--port", "PORT"]))` first"
        case .giveFirmwareVersion?: return description + "; give --firmware-version"
        case .filesOfAnotherBoard?: return description + "; re-issue it into another --output-dir"
        case .busy?: return description + "; let it finish there, then run this again for it (`--board ID`)"
        case nil: return description
        }
    }
}

/// A board the re-issue skipped or failed, as a JSON Lines event: `board_id` a
/// number, as in the `result` events.
private struct ReissueNotice: Encodable {
    let event: String
    let boardID: Int64
    let message: String
    enum CodingKeys: String, CodingKey { case event, boardID = "board_id", message }
}
