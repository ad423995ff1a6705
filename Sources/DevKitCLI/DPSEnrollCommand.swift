import DevKitBoardCLI
import ArgumentParser
import DPSModel
import DPSService
import DevKitModel
import DevKitRegistry
import DevKitSystem
import DevKitWorkflows
import Foundation

/// `devkit dps enroll`: create or check individual X.509 enrollments.
struct DPSEnrollCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "enroll",
        abstract: "Create individual X.509 enrollments for boards, idempotently.",
        usage: """
            devkit dps enroll (--cert <file> | --enrollment-file <file> |
                --from-registry [--id <board> ...] [--registry <path>])
                --connection-string-file <file> [--replace] [--json] [<options>]
            """,
        discussion: """
            One source of boards: --cert PEM (the registration ID is the certificate's \
            subject CN), --enrollment-file (the <id>.enrollment.json devkit provision \
            writes), or --from-registry (every board provisioned to the end whose \
            certificate file is still the recorded one, its latest row only; --id \
            chooses boards; of several rows with one registration ID the first is \
            enrolled and the others fail).

            An enrollment that already holds the same certificate is left alone \
            (unchanged: nothing is written); if it is disabled, or assigns another \
            hub or device ID than --iot-hub/--device-id ask for, a warning says so, \
            and --replace writes the settings given. One that holds another certificate is a \
            conflict and is left alone, unless --replace: then it is updated with \
            If-Match on the etag just read (its initial twin and other settings are \
            kept); if someone changed it in between, that board fails and nothing \
            more is written to it. An absent one is created. Several boards go \
            through the bulk API, 10 per request, --parallel requests at once.

            Each result is a line: registration ID, action (created, updated, \
            unchanged, conflict, failed) and the SHA-1 thumbprint DPS reports; \
            --json prints one object per board instead. With --from-registry each \
            board's outcome is also recorded in the registry (`devkit registry list` \
            shows it as ENROLLED): this is what finishes a board left `done, not \
            enrolled` by `devkit provision`.

            \(DPSHelp.connection)

            Examples:
              devkit dps enroll --cert out/az-a4cf120b9e31v1v6v2.pem \\
                  --connection-string-file dps.cs
              devkit dps enroll --enrollment-file out/board.enrollment.json \\
                  --connection-string-file - --replace < dps.cs
              devkit dps enroll --from-registry --id 3 --id 7 \\
                  --connection-string-file dps.cs --json

            \(DPSHelp.exitCodes)
            """)

    @Option(help: ArgumentHelp("The board's Alias certificate, PEM.", valueName: "file"), completion: .file(extensions: ["pem"]))
    var cert: String?

    @Option(
        name: .customLong("enrollment-file"),
        help: ArgumentHelp("An <id>.enrollment.json written by devkit provision.", valueName: "file"),
        completion: .file(extensions: ["json"]))
    var enrollmentFile: String?

    @Flag(name: .customLong("from-registry"), help: "Every recorded board whose certificate is current.")
    var fromRegistry = false

    @Option(
        name: .customLong("id"),
        help: ArgumentHelp("With --from-registry: only this board (row id, MAC or registration ID); repeatable.", valueName: "board"))
    var ids: [String] = []

    @OptionGroup var registry: RegistryOptions

    @Option(
        name: .customLong("registration-id"),
        help: ArgumentHelp("With --cert: must equal the certificate's CN (a check).", valueName: "id"))
    var registrationID: String?

    @OptionGroup var connection: DPSConnectionOptions

    @Option(
        name: .customLong("device-id"),
        help: ArgumentHelp("The IoT Hub device ID (default: the registration ID); one board only.", valueName: "id"))
    var deviceID: String?

    @Option(
        name: .customLong("iot-hub"),
        help: ArgumentHelp("Assign to this IoT Hub (default: the DPS's allocation policy).", valueName: "host"))
    var iotHub: String?

    @Flag(help: "Create the enrollments disabled (provisioningStatus disabled).")
    var disabled = false

    @Flag(help: "Update an enrollment that holds another certificate (with If-Match).")
    var replace = false

    @Option(help: ArgumentHelp("Requests in flight at once for several boards.", valueName: "n"))
    var parallel = 4

    @Flag(help: "One JSON object per board on stdout.")
    var json = false

    /// --quiet / --verbose, as on every command.
    @OptionGroup var outputLevel: OutputLevelOptions

    func validate() throws {
        let sources = [cert != nil, enrollmentFile != nil, fromRegistry].filter { $0 }.count
        guard sources == 1 else {
            throw ValidationError(
                sources == 0
                    ? "Give the boards to enroll: --cert FILE, --enrollment-file FILE or --from-registry."
                    : "Give one source of boards: --cert, --enrollment-file or --from-registry, not several.")
        }
        if !ids.isEmpty && !fromRegistry { throw ValidationError("--id chooses boards of --from-registry; give --from-registry too.") }
        try registry.requireFromRegistry(fromRegistry)
        if registrationID != nil && cert == nil { throw ValidationError("--registration-id goes with --cert (an enrollment file names its ID).") }
        if deviceID != nil && fromRegistry { throw ValidationError("--device-id names one board's device: not with --from-registry.") }
        guard (1...64).contains(parallel) else { throw ValidationError("--parallel takes 1 to 64 requests at once.") }
        if cert?.isEmpty == true || enrollmentFile?.isEmpty == true { throw ValidationError("Give a file path.") }
    }

    func run() async throws {
        try await reportingErrors {
            var settings = EnrollmentSettings(
                deviceId: deviceID, iotHubHostName: iotHub, provisioningStatus: disabled ? .disabled : .enabled,
                replace: replace, parallel: parallel)
            if fromRegistry {
                try await enrollFromRegistry(settings)
                return
            }
            let item: EnrollmentItem
            if let cert {
                let certificate = try readCertificate(cert)
                guard let cn = certificate.commonName else {
                    throw DPSInputError.certificate(path: cert, reason: "its subject has no CN (DPS matches the device by it)")
                }
                if let given = registrationID, DPSRegistrationIDRules.key(given) != DPSRegistrationIDRules.key(cn) {
                    throw DPSInputError.mismatch(
                        "--registration-id is '\(escaped(given))' but the certificate's CN is '\(escaped(cn))'; "
                            + "DPS matches the device by its CN: drop --registration-id or give the right certificate")
                }
                item = EnrollmentItem(registrationId: cn, certificate: certificate)
            } else {
                let (fileItem, fileSettings) = try readEnrollmentFile(enrollmentFile!)
                item = fileItem
                // The file's settings, unless given here.
                if iotHub == nil { settings.iotHubHostName = fileSettings.iotHubHostName }
                if !disabled, let status = fileSettings.provisioningStatus { settings.provisioningStatus = status }
                if deviceID == nil { settings.deviceId = fileSettings.deviceId }
            }
            let reporter = EnrollmentReporter(json: json, total: 1)
            reporter.start()
            let outcomes = try await withDPSClient(connection, parallel: parallel) { client in
                await EnrollmentWorkflow(client: client, settings: settings).enroll([item]) { reporter.report($0) }
            }
            try exit(for: outcomes, busy: [])
        }
    }

    /// --from-registry: the boards to enroll are listed, then taken a batch
    /// (``RowClaims/batch``) at a time: each board's row claimed (a shared registry)
    /// and read again under the claim, the batch enrolled, its outcomes recorded,
    /// and its claims given back before the next batch is claimed. A fleet so never
    /// holds more than a batch of rows, and no DPS connection is made when no board
    /// qualifies.
    private func enrollFromRegistry(_ settings: EnrollmentSettings) async throws {
        guard let store = try self.registry.openExisting() else { throw NoRegistryError(path: self.registry.resolvedPath) }
        let listed = try registryBoards(store)
        // Two rows with one registration ID (a custom ID given twice, or --id
        // naming two rows of one board): an older row of a board whose later row
        // is also given fails naming it; of the rest, the first is enrolled and
        // the others fail, whichever batches they fall in (the workflow's own
        // check sees one batch).
        let latestGiven = LatestBoardRecords(listed)
        var boardIDs: [String: Int64] = [:]
        var boards: [BoardRecord] = []
        // Each with its own row: its registration ID leads to another one.
        var duplicates: [(outcome: EnrollmentOutcome, board: Int64?)] = []
        for board in listed {
            let id = Self.registrationID(board)
            func fail(_ message: String) { duplicates.append((Self.refused(id, message), board.id)) }
            if let newer = latestGiven.newer(than: board) {
                fail(Self.provisionedAgain(board, as: newer.boardID))
            } else if let first = boardIDs[DPSRegistrationIDRules.key(id)] {
                fail(first == board.id
                    ? "given twice (board #\(first))"
                    : "given twice: board #\(board.id ?? 0) has the registration ID of board #\(first), to which it "
                        + "is left; give one of them another ID")
            } else {
                boardIDs[DPSRegistrationIDRules.key(id)] = board.id ?? 0
                boards.append(board)
            }
        }
        let reporter = EnrollmentReporter(json: json, total: listed.count, boardIDs: boardIDs)
        reporter.start()
        for duplicate in duplicates { reporter.report(duplicate.outcome, board: duplicate.board) }
        let claims = RowClaims(registry: store, station: StationOptions.hostName)
        defer { claims.releaseAll() }
        var client: DPSClient?
        var outcomes = duplicates.map(\.outcome)
        var busy: Set<String> = []
        // A duplicate shares its first row's key, but is no reason to try later.
        let duplicateKeys = Set(duplicates.map { DPSRegistrationIDRules.key($0.outcome.registrationId) })
        do {
            for range in RowClaims.batches(boards.indices) {
                defer { claims.releaseAll() }
                let (items, early, refused) = try claimedItems(boards[range], store, claims: claims)
                for outcome in early { reporter.report(outcome) }
                outcomes += early
                busy.formUnion(refused.subtracting(duplicateKeys))
                if items.isEmpty { continue }
                if client == nil { client = try connection.client(parallel: parallel) }
                var workflow = EnrollmentWorkflow(client: client!, settings: settings)
                workflow.bulkProgress = { reporter.written($0) }
                let enrolled = await workflow.enroll(items) { reporter.report($0) }
                outcomes += enrolled
                try record(enrolled, dpsHost: client!.configuration.connectionString.hostName, boardIDs: boardIDs, in: store)
            }
        } catch {
            await client?.shutdown()
            throw error
        }
        await client?.shutdown()
        if outcomes.isEmpty && !json {
            printError("devkit: no board of the registry has a current certificate to enroll")
        }
        try exit(for: outcomes, busy: busy)
    }

    /// Records each board's outcome in the registry (what `registry list` shows as
    /// ENROLLED); boards refused before anything was sent are not recorded.
    private func record(
        _ outcomes: [EnrollmentOutcome], dpsHost: String, boardIDs: [String: Int64], in registry: any RegistryStore
    ) throws {
        let recorded = outcomes.compactMap { outcome in
            boardIDs[DPSRegistrationIDRules.key(outcome.registrationId)].map { (boardID: $0, outcome: outcome) }
        }
        try EnrollmentRecording.record(recorded, dpsHost: dpsHost, in: registry)
    }

    /// 0 when every board is enrolled; one board that failed: its error's code; a
    /// whole fleet that failed for one reason of the service's (unreachable 69,
    /// throttled or timed out 75, refused credentials 77): that code, so a script can
    /// tell "try later" or "fix the key" from "some boards failed"; a conflict, or
    /// other failures in a fleet: 1. Boards left alone because another station holds
    /// them (`busy`, by registration-ID key) and no other failure: 75, try again later.
    private func exit(for outcomes: [EnrollmentOutcome], busy: Set<String>) throws {
        if outcomes.allSatisfy(\.isEnrolled) { return }
        if !busy.isEmpty, outcomes.allSatisfy({ $0.isEnrolled || busy.contains(DPSRegistrationIDRules.key($0.registrationId)) }) {
            throw ExitCode(ExitStatus.tempFail.rawValue)
        }
        if !fromRegistry, outcomes.count == 1, outcomes[0].action == .failed, let error = outcomes[0].error {
            throw ExitCode(error.exitStatus.rawValue)
        }
        let statuses = outcomes.map { $0.action == .failed ? $0.error?.exitStatus : nil }
        if let first = statuses.first, let status = first, statuses.allSatisfy({ $0 == status }),
           [.unavailable, .tempFail, .noPermission].contains(status) {
            throw ExitCode(status.rawValue)
        }
        throw ExitCode(ExitStatus.partialFailure.rawValue)
    }

    private func readCertificate(_ path: String) throws -> EnrollmentCertificate {
        let bytes: [UInt8]
        do { bytes = try InputFile.read(path, limit: Self.certificateLimit) } catch {
            throw CertificateFileError(path: path, error: error)
        }
        do { return try EnrollmentCertificate(pem: String(decoding: bytes, as: UTF8.self)) } catch {
            throw DPSInputError.certificate(path: path, reason: error.description)
        }
    }

    static let certificateLimit = InputLimit.certificate

    /// The board and settings of an `<id>.enrollment.json`.
    private func readEnrollmentFile(_ path: String) throws -> (EnrollmentItem, IndividualEnrollment) {
        let bytes: [UInt8]
        do { bytes = try InputFile.read(path, limit: Self.certificateLimit) } catch {
            throw CertificateFileError(path: path, error: error)
        }
        let enrollment: IndividualEnrollment
        do { enrollment = try JSONDecoder().decode(IndividualEnrollment.self, from: Data(bytes)) } catch {
            throw DPSInputError.enrollmentFile(path: path, reason: "it is not a DPS individual enrollment (JSON)")
        }
        guard let pem = enrollment.primaryCertificatePEM else {
            throw DPSInputError.enrollmentFile(path: path, reason: "it has no X.509 primary certificate")
        }
        let certificate: EnrollmentCertificate
        do { certificate = try EnrollmentCertificate(pem: pem) } catch {
            throw DPSInputError.enrollmentFile(path: path, reason: "its certificate: \(error.description)")
        }
        return (EnrollmentItem(registrationId: enrollment.registrationId, certificate: certificate), enrollment)
    }

    /// The registry's boards to enroll, as listed: provisioned to the end and not
    /// superseded (nor an older row of a board provisioned again), or those chosen
    /// with --id (which fail later if they do not qualify; others are skipped, with
    /// a warning).
    private func registryBoards(_ registry: any RegistryStore) throws -> [BoardRecord] {
        guard ids.isEmpty else {
            return try ids.map { key in
                guard let board = try registry.board(matching: key) else { throw RegistryError.boardNotFound(key) }
                return board
            }
        }
        let all = try registry.allBoards()
        // Superseded: marked so (its files moved aside), or an older row of a board
        // provisioned again, maybe on another station (files elsewhere).
        let latest = LatestBoardRecords(all)
        let boards = all.filter { $0.state == .done && $0.supersededBy == nil && latest.newer(than: $0) == nil }
        let skipped = all.count - boards.count
        if skipped > 0 {
            printWarning("\(skipped) board\(skipped == 1 ? "" : "s") of the registry skipped: not provisioned to the end, "
                + "or provisioned again since (`devkit registry list` shows them)")
        }
        return boards
    }

    /// The registration ID a listed board is enrolled (and reported) under.
    private static func registrationID(_ board: BoardRecord) -> String {
        board.registrationID ?? "board-\(board.id ?? 0)"
    }

    /// A board refused before anything is sent to DPS.
    private static func refused(_ registrationID: String, _ message: String) -> EnrollmentOutcome {
        let error = DPSServiceError(kind: .invalidRequest, operation: "enroll \(registrationID)", message: message)
        return EnrollmentOutcome(registrationId: registrationID, action: .failed, error: error, message: message)
    }

    /// `devkit registry reissue --board N --elf FILE` with this run's registry and key.
    private func reissue(_ id: Int64) -> String {
        commandLine(["devkit", "registry", "reissue", "--board", "\(id)", "--elf", "FILE"] + registry.commandWords())
    }

    /// Why an older row of a board provisioned again is not enrolled.
    private static func provisionedAgain(_ board: BoardRecord, as newer: Int64) -> String {
        "board #\(board.id ?? 0) was provisioned again as #\(newer); enroll #\(newer)"
    }

    /// A batch of listed boards, each claimed (`claims`) and read again under the
    /// claim: those to enroll (with their current certificate), those that fail
    /// before anything is sent, and those another station holds (failures naming
    /// it, also given by registration-ID key); the others go on.
    private func claimedItems(
        _ boards: ArraySlice<BoardRecord>, _ registry: any RegistryStore, claims: RowClaims
    ) throws -> ([EnrollmentItem], [EnrollmentOutcome], Set<String>) {
        var items: [EnrollmentItem] = []
        var failed: [EnrollmentOutcome] = []
        var busy: Set<String> = []
        for listed in boards {
            let id = Self.registrationID(listed)
            func fail(_ message: String) { failed.append(Self.refused(id, message)) }
            let refusal: RegistryError?
            do {
                try claims.take(listed)
                refusal = nil
            } catch {
                refusal = error
            }
            if let refusal {
                guard case .boardBusy(let what, let station) = refusal else { throw refusal }
                fail("board \(escaped(what)) is being provisioned by station \(escaped(station)) right now: not enrolled; "
                    + "let it finish there, then run this again")
                busy.insert(DPSRegistrationIDRules.key(id))
                continue
            }
            guard let board = try listed.id.flatMap({ try registry.board(id: $0) }) else {
                fail("board #\(listed.id ?? 0) is no longer in the registry")
                continue
            }
            // Provisioned again since it was listed (a batch is claimed long after the
            // listing): its certificate is no longer the board's. Asked first: such a row
            // is not resumed either, so an unfinished one gets no resume command.
            if let newer = try board.supersededBy ?? registry.supersedingRow(of: board)?.boardID {
                // As when listing: the whole registry skips it; a board chosen with --id fails.
                if ids.isEmpty {
                    printWarning("board #\(board.id ?? 0) skipped: it was provisioned again as #\(newer) since it was listed")
                } else {
                    fail(Self.provisionedAgain(board, as: newer))
                }
                continue
            }
            guard board.state == .done, let path = board.certificatePath, board.registrationID != nil else {
                let resume = resumeCommand(boardID: board.id ?? 0, self.registry.commandWords() + ["--port", "PORT"])
                fail("board #\(board.id ?? 0) is not provisioned to the end; finish it with `\(resume)`")
                continue
            }
            let certificate: EnrollmentCertificate
            do { certificate = try readCertificate(path) } catch {
                fail("its certificate \(escaped(path)) cannot be read (\(cliMessage(error))); re-issue it with `\(reissue(board.id ?? 0))`")
                continue
            }
            if let recorded = board.certificateSHA256, recorded.uppercased() != certificate.sha256Thumbprint {
                fail("\(escaped(path)) no longer holds the certificate recorded for board #\(board.id ?? 0); "
                    + "re-issue it with `\(reissue(board.id ?? 0))`")
                continue
            }
            items.append(EnrollmentItem(registrationId: id, certificate: certificate))
        }
        return (items, failed, busy)
    }
}

/// A certificate or enrollment file that cannot be read.
struct CertificateFileError: Error, CLIReportable {
    let path: String
    let error: InputFileError
    var exitStatus: ExitStatus {
        switch error {
        case .cannotOpen(let e) where e == .permissionDenied: .noPermission
        case .cannotOpen, .isDirectory, .notAFile: .noInput
        case .tooLarge: .dataError
        case .cannotRead: .ioError
        }
    }
    var userMessage: String { "cannot read \(escaped(path)): \(error.reason)" }
}
