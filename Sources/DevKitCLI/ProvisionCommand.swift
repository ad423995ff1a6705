import DevKitBoardCLI
import ArgumentParser
import DevKitConsole
import DevKitModel
import DevKitRegistry
import DevKitWorkflows
import DiceRIoT
import DevKitSystem
import Foundation

/// `devkit provision`: one board from blank to enrollment file.
struct ProvisionCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "provision",
        abstract: "Provision a DevKit end to end: UDS, Wi-Fi, certificate, DPS enrollment.",
        usage: """
            devkit provision (--elf <file> | --bin <file> --map <file>)
                (--uds-file <file> | --generate-uds) [--port <path>]
                [--wifi-ssid <ssid> --wifi-password-file <file>]
                [--output-dir <dir>] [--dps-connection-string-file <file>]
                [--verify [--verify-timeout <seconds>]] [--json] [<options>]
            devkit provision --resume <board> [--force] [<options>]
            """,
        discussion: """
            Checks every input first (firmware measured, secrets read, output directory \
            writable), then records the UDS in the registry (synced to disk) BEFORE it is \
            sent, stores it on the board (and Wi-Fi if asked), reads the firmware \
            version, reboots the board to read its MAC from the boot log (unless --mac \
            is given), computes the Alias certificate and writes <id>.pem and \
            <id>.enrollment.json (the body of a DPS individual-enrollment request), and \
            prints the equivalent `az iot dps enrollment create` command.

            With --dps-connection-string-file (a DPS shared access policy's connection \
            string, with EnrollmentRead and EnrollmentWrite; never an argument) the board is also \
            enrolled in DPS, as the last step, once its files are written and its row \
            says done: an individual X.509 enrollment is created (`created`), one \
            holding this certificate already is left alone (`unchanged`), and one \
            holding another certificate is a conflict, reported and NOT replaced \
            (`devkit dps enroll --replace` does that). The file is read, and the \
            endpoint and --dps-ca-file checked, before the board is touched. The \
            outcome is recorded in the registry. If DPS cannot be reached or refuses \
            (after retries), nothing is lost: the files stay, the row stays done and \
            reads `done, not enrolled`, and the printed `devkit dps enroll \
            --from-registry --id N ...` finishes it. Such a run exits with the code \
            `devkit dps enroll` gives for the same failure (below), not 0: the board \
            cannot register until it is enrolled, and a script must not go on as if \
            it could.

            Each step is reported as it happens (one line on stderr; with --json, one \
            JSON object per line on stdout, the last one the result). The registry row \
            is updated at each step, so a board interrupted at any point (crash, unplug) \
            can be finished with --resume <row id | MAC>: the recorded UDS is reused and \
            only the missing steps run. The row also records the firmware files (with \
            their SHA-256), the output directory, the DPS name and resource group and \
            the Wi-Fi settings' source (never the password), so --resume needs no other \
            option; options given override them, and a firmware file that changed since \
            is refused. A Wi-Fi password (or DPS connection string) read from standard \
            input is not kept: --resume must be given it again on standard input, as the \
            printed --resume command says.

            If <id>.pem or <id>.enrollment.json holds another board's certificate (the \
            same board provisioned again; told by the certificate's SHA-256 against the \
            registry), nothing is overwritten: the run stops with exit 73, before the \
            board gets a new UDS when the registration ID is known by then (--mac, \
            --registration-id, a resume with a recorded MAC, or a board whose USB serial \
            a recorded row has). --force marks that row \
            superseded and keeps its files as <id>.row<N>.pem and \
            <id>.row<N>.enrollment.json (<id>.row<N>.2.pem… when those are taken), and \
            says where they went.

            With --verify, the last step watches the board register, as `devkit \
            verify` does: its sketch's log is followed (up to --verify-timeout, \
            default 180 s) and classified (assigned, \
            unauthorized, timeout, ...), with a diagnosis. The result (human and \
            --json) holds the outcome, the assigned hub, the device ID (asked from \
            DPS when a connection string file is given) and the diagnosis; the \
            registry records it (`devkit registry list`'s VERIFIED column). In \
            --json, `verification` is null without --verify or when the board was \
            left not enrolled; a verification \
            that came to no outcome has `"outcome": "error"` (or `"stopped"`) and an \
            `error`. A board \
            still at its prompt (--mac given) is sent `exit`; one that booted its \
            sketch to show its MAC tried to register before it was enrolled, so \
            devkit asks for its reset button and counts from that boot on. A board \
            left not enrolled is not verified (it cannot register).

            \(BoardHelp.modes)

            Examples:
              devkit provision --port /dev/ttyACM0 --bin DevKitDPS.ino.bin \\
                  --map DevKitDPS.ino.map --generate-uds --output-dir enrollments
              devkit provision --elf DevKitDPS.ino.elf --uds-file board7.uds \\
                  --wifi-ssid bench --wifi-password-file wifi.secret --json
              devkit provision --resume 7
              devkit provision --elf DevKitDPS.ino.elf --generate-uds \\
                  --dps-connection-string-file dps.cs

            Exit codes: 64 invalid input, 65 bad firmware or boot log, 66 file not found, \
            69 board not in configuration mode, 73 cannot write output (or the files \
            are another board's), 74 board or link \
            error, 75 timeout. Provisioned but not enrolled (`done, not enrolled`): \
            1 a conflict, 65 DPS refused the data, 69 DPS cannot be reached, 75 DPS \
            timed out or throttled past the retries, 77 DPS refused the key. Provisioned \
            (and enrolled) with --verify: 0 assigned or hub_connected, 1 another \
            outcome, 69 the board was unplugged, 75 no outcome before the timeout.
            """)

    @OptionGroup var port: PortOptions
    @OptionGroup var registry: RegistryOptions
    @OptionGroup var station: StationOptions

    @OptionGroup var firmware: FirmwareOptions
    @OptionGroup var udsOptions: UDSOptions
    var udsFile: String? { udsOptions.udsFile }
    @Flag(help: "Generate a fresh UDS (kept in the registry).")
    var generateUDS = false

    @Option(
        help: ArgumentHelp("Registration ID (default: az-<mac>v<version>, what the firmware derives).", valueName: "id"),
        transform: argument(RegistrationID.init))
    var registrationID: RegistrationID?
    @Option(
        help: ArgumentHelp("The board's MAC, if known: skips the reboot that reads it.", valueName: "mac"),
        transform: argument(MACAddress.init))
    var mac: MACAddress?

    @Option(help: ArgumentHelp("Wi-Fi SSID to store (with --wifi-password-file).", valueName: "ssid"))
    var wifiSSID: String?
    @Option(help: ArgumentHelp("File holding the Wi-Fi password ('-': standard input).", valueName: "file"), completion: .file())
    var wifiPasswordFile: String?

    @OptionGroup var output: OutputOptions
    var outputDir: String { output.outputDir }

    @Option(help: ArgumentHelp("DPS name for the printed az command.", valueName: "name"))
    var dpsName: String?
    @Option(help: ArgumentHelp("Resource group for the printed az command.", valueName: "group"))
    var resourceGroup: String?

    @OptionGroup var dps: DPSEnrollOptions

    @Option(help: ArgumentHelp("Finish a board recorded earlier (row id or MAC).", valueName: "board"))
    var resume: String?

    @Flag(help: ArgumentHelp(
        "Replace the board whose certificate is in these files: its row is marked superseded and its files are renamed <id>.row<N>.pem / .enrollment.json (or the first such free names)."))
    var force = false

    @Flag(help: "Last, watch the board register with DPS (as `devkit verify`) and record the outcome.")
    var verify = false

    @Option(help: ArgumentHelp("With --verify: how long to follow the board's log for an outcome.", valueName: "seconds"))
    var verifyTimeout: Int?

    @Flag(help: "Report each step and the result as JSON Lines on stdout.")
    var json = false

    /// --quiet / --verbose, as on every command.
    @OptionGroup var outputLevel: OutputLevelOptions

    /// A new provisioning of a board the registry knows (by `--mac` or its USB
    /// serial) as having confirmed a UDS: said before it gets another one, since the
    /// earlier row's certificate and DPS enrollment would no longer match it. A
    /// warning, not a refusal: provisioning a board again is a legitimate choice (its
    /// files, if in the same directory, are guarded by --force). Never stops the run:
    /// an earlier row that cannot be read (another key, a damaged row) only loses the
    /// warning. Under the board's claim.
    private func warnIfProvisionedBefore(_ registry: any RegistryStore, usbSerial: String?) {
        guard let earlier = try? registry.latestConfirmedBoardIDs(usbSerial: usbSerial, mac: mac?.hex) else { return }
        let bySerial = earlier.bySerial.map { (id: $0, name: "with USB serial \(escaped(usbSerial ?? ""))") }
        let byMAC = earlier.byMAC.map { (id: $0, name: mac?.hex ?? "") }
        guard let match = [bySerial, byMAC].compactMap({ $0 }).max(by: { $0.id < $1.id }),
              let board = try? registry.board(id: match.id) else { return }
        let id = match.id
        var losing: [String] = []
        if board.certificatePath != nil { losing.append("certificate") }
        if board.enrollment != nil { losing.append("DPS enrollment") }
        let station = board.station.map { ", station \(escaped($0))" } ?? ""
        let state = board.state == .done ? "finished provisioning" : "confirmed a UDS (row left unfinished)"
        printWarning(
            "board \(match.name) \(state) before, as #\(id)\(station): this run gives it a UDS of its own (unless "
                + "--uds-file holds the same one)"
                + (losing.isEmpty ? "" : ", and #\(id)'s \(losing.joined(separator: " and ")) would no longer match it")
                + "; `\(commandLine(["devkit", "registry", "show", "\(id)"] + self.registry.commandWords()))` shows it")
    }

    func validate() throws {
        if resume == nil && (udsFile == nil) == !generateUDS {
            throw ValidationError("Give exactly one of --uds-file FILE and --generate-uds.")
        }
        if resume == nil { try firmware.requireGiven() }
        if resume != nil && (udsFile != nil || generateUDS) {
            throw ValidationError("--resume reuses the UDS in the registry; drop --uds-file/--generate-uds.")
        }
        if let verifyTimeout {
            guard verify else { throw ValidationError("--verify-timeout takes effect with --verify.") }
            guard verifyTimeout >= 1 else { throw ValidationError("--verify-timeout must be at least 1 second.") }
        }
        if (wifiSSID == nil) != (wifiPasswordFile == nil) {
            throw ValidationError("Give --wifi-ssid and --wifi-password-file together.")
        }
        let fromStandardInput = [
            ("--uds-file", udsFile), ("--wifi-password-file", wifiPasswordFile),
            ("--dps-connection-string-file", dps.dpsConnectionStringFile),
        ].filter { $0.1 == "-" }.map(\.0)
        if fromStandardInput.count > 1 {
            throw ValidationError(
                "Only one secret can come from standard input ('-'), not \(fromStandardInput.joined(separator: " and ")); "
                    + "give the others as files.")
        }
    }

    func request(firmware: FirmwareSource) -> ProvisionRequest {
        ProvisionRequest(
            firmware: firmware,
            uds: udsFile.map { .file($0) } ?? .generate,
            registrationID: registrationID, mac: mac,
            wifi: wifiSSID.map { WiFiSettings(ssid: $0, passwordFile: wifiPasswordFile!) },
            outputDirectory: outputDir,
            dps: dps.settings(over: DPSSettings(name: dpsName, resourceGroup: resourceGroup)))
    }

    func run() throws {
        try reportingErrors {
            var reporter = ProvisionReporter(json: json)
            let registry: any RegistryStore
            do { registry = try self.registry.open() } catch {
                // With --json, a failed step on stdout as for any other stage (a script
                // reading the last line got nothing), and the error on stderr as always.
                if json { reporter.event(ProvisionEvent(stage: .record, status: .failed, message: cliMessage(error), error: error)) }
                throw error
            }
            let attachedSerial = (try? port.resolvedPath()).flatMap { usbSerial(of: $0) }
            let stationName = station.resolved()
            // A shared registry: the board (and a resumed row) is claimed before its
            // row is read or its port opened; a board another station is working on
            // is left to it untouched. The workflow's own claims nest in these.
            var claimed: [String] = []
            defer { registry.release(boards: claimed) }
            func claim(_ keys: [String], boardID: Int64? = nil) throws {
                try registry.claim(keys, station: stationName, boardID: boardID, reporting: reporter.event)
                claimed += keys
            }
            var request: ProvisionRequest
            var resumed: BoardRecord?
            if let resume {
                // Which row (the key may be a MAC or registration ID), then the row
                // claimed, then what it says, read again under the claim.
                guard let id = try registry.board(matching: resume)?.id else { throw RegistryError.boardNotFound(resume) }
                try claim([BoardClaimKeys.row(id)], boardID: id)
                guard let board = try registry.board(id: id) else { throw RegistryError.boardNotFound(resume) }
                try claim(BoardClaimKeys.board(mac: board.mac ?? mac?.hex, usbSerial: board.usbSerial ?? attachedSerial), boardID: id)
                // A row the board was provisioned again since is refused before its
                // inputs are asked for (fixing them would not help).
                try ProvisionWorkflow.refuseSuperseded(board, in: registry, registryWords: self.registry.commandWords())
                request = try ProvisionWorkflow.finishedResult(board) != nil ? finishedRequest(board) : resumeRequest(board)
                if let attachedSerial { request.usbSerial = attachedSerial }
                resumed = board
            } else {
                try claim(BoardClaimKeys.board(mac: mac?.hex, usbSerial: attachedSerial))
                request = self.request(firmware: firmware.source)
                request.usbSerial = attachedSerial
                warnIfProvisionedBefore(registry, usbSerial: attachedSerial)
            }
            request.force = force
            let dpsSettings = request.dps
            let registryWords = self.registry.commandWords()
            reporter.enrollCommand = { id, replace in
                finishEnrollmentCommand(boardID: id, dps: dpsSettings, registryWords: registryWords, replace: replace)
            }
            reporter.resumeWords = registryWords + (self.port.port.map { ["--port", $0] } ?? [])
            // A secret read from standard input is not kept: the printed --resume must
            // be given it again the same way while the row still needs it, or it fails.
            let wifiSSIDFromStandardInput = request.wifi.flatMap { $0.passwordFile == "-" ? $0.ssid : nil }
            let dpsFromStandardInput = request.dps.connectionStringFile == "-"
            let rows = registry
            reporter.standardInputWords = { id in
                var words: [String] = []
                // Wi-Fi is set with the board steps, before the version is read (as
                // resumeRequest decides); a row that cannot be read keeps the words.
                if let ssid = wifiSSIDFromStandardInput, ((try? rows.board(id: id)) ?? nil)?.versionReadAt == nil {
                    words += [Self.wifiSSIDWord(ssid), "--wifi-password-file", "-"]
                }
                if dpsFromStandardInput { words += ["--dps-connection-string-file", "-"] }
                return words
            }
            let crash = crashHookFromEnvironment()
            var workflow = ProvisionWorkflow(registry: registry, measure: diceRIoTMeasurer(), report: reporter.event)
            workflow.afterStep = { step, _ in crash(step.rawValue) }
            workflow.dpsLog = dpsRequestLog()
            workflow.station = stationName
            workflow.registryWords = self.registry.commandWords()
            let result: ProvisionResult
            if let board = resumed {
                if ProvisionWorkflow.resumeNeedsBoard(board, givenMAC: mac) {
                    result = try withConsoleSession(port) { session in
                        try workflow.resume(boardID: board.id!, request: request, session: session)
                    }
                } else {
                    result = try workflow.resume(boardID: board.id!, request: request, session: nil)
                }
            } else {
                result = try withConsoleSession(port) { session in
                    try workflow.run(request, session: session)
                }
            }
            try finish(result, reporter: reporter, afterResult: { printWarning(fixedNonceWarning) }) {
                // A board DPS did not enroll cannot register: not verified.
                guard verify, result.enrollment?.isEnrolled ?? true else { return nil }
                var hooks = RegistrationCheck.Hooks.terminal(progress: { _ in })
                hooks.station = stationName
                hooks.enrollCommand = reporter.enrollCommand
                return try RegistrationCheck.afterProvisioning(
                    result, path: try port.resolvedPath(), baudRate: port.baud,
                    settings: VerifySettings(timeoutSeconds: verifyTimeout ?? VerifySettings.defaultTimeout),
                    dps: request.dps, registry: registry, report: reporter.event, hooks: hooks)
            }
        }
    }

    /// The request of a resume of `board`, which has finished provisioning: the
    /// workflow does nothing to it and gives its recorded result, so its firmware,
    /// Wi-Fi password and connection string are not needed (nor checked: a firmware
    /// file rebuilt since must not make "nothing to do" an error). Options that
    /// would change it are refused or said to have no effect.
    func finishedRequest(_ board: BoardRecord) throws -> ProvisionRequest {
        let id = board.id!
        let registryWords = registry.commandWords()
        if verify {
            let given = dps.settings(over: DPSSettings())
            var words = ["devkit", "verify", "--port", port.port ?? "PORT"] + registryWords
            if let file = given.connectionStringFile { words += ["--connection-string-file", file] }
            if let endpoint = given.endpoint { words += ["--endpoint", endpoint] }
            if let ca = given.caFile { words += ["--ca-file", ca] }
            throw ProvisionError.cannotResume(
                "board #\(id) has finished provisioning: nothing to resume; `\(commandLine(words))` "
                    + "checks that it registers")
        }
        if dps.dpsConnectionStringFile != nil, board.enrollment == nil {
            let command = finishEnrollmentCommand(boardID: id, dps: dps.settings(over: DPSSettings()), registryWords: registryWords)
            throw ProvisionError.cannotResume(
                "board #\(id) has finished provisioning without DPS; `\(command)` enrolls it")
        }
        // Options for steps that will not run: said, not silently dropped.
        let given = dps.settings(over: DPSSettings())
        let ignored = [
            ("--output-dir", output.outputDirGiven != nil), ("--force", force), ("the firmware options", firmware.isGiven),
            ("--wifi-ssid", wifiSSID != nil), ("--mac", mac != nil), ("--registration-id", registrationID != nil),
            ("--dps-connection-string-file", dps.dpsConnectionStringFile != nil), ("--iot-hub", given.iotHubHostName != nil),
        ].filter(\.1).map(\.0)
        if !ignored.isEmpty {
            let reissue = commandLine(["devkit", "registry", "reissue", "--board", "\(id)", "--elf", "NEW.elf"] + registryWords)
            printWarning("board #\(id) has finished provisioning: nothing is done to it, so \(ignored.joined(separator: ", ")) "
                + "\(ignored.count == 1 ? "has" : "have") no effect; after a firmware update `\(reissue)` writes a new certificate")
        }
        // Not measured or read: nothing is certified again.
        let recorded = try? ProvisionSettings.recorded(in: board)
        let source: FirmwareSource = recorded?.firmwareElf.map(FirmwareSource.elf) ?? .elf("")
        var request = self.request(firmware: source)
        // The recorded DPS settings alone: the result's az line says what was enrolled.
        if let recorded { request.dps = recorded.dps(overriddenBy: DPSSettings()) }
        return request
    }

    /// `--wifi-ssid=SSID` as one word: an SSID that starts with `-` would be read as
    /// an option if it stood on its own in a printed command.
    static func wifiSSIDWord(_ ssid: String) -> String { "--wifi-ssid=" + ssid }

    /// The request that finishes `board`: what was recorded with it (firmware,
    /// checked unchanged; output directory; registration-ID scheme; Wi-Fi settings
    /// source), each overridden by the options given now.
    func resumeRequest(_ board: BoardRecord) throws -> ProvisionRequest {
        let id = board.id!
        let recorded = try ProvisionSettings.recorded(in: board)
        let source: FirmwareSource
        if firmware.isGiven {
            source = firmware.source
        } else if let recorded {
            source = try recorded.firmware(boardID: id)
        } else {
            throw ProvisionError.cannotResume(
                "board #\(id) was recorded without its firmware (by an older devkit); "
                    + "give it with --bin FILE --map FILE or --elf FILE")
        }
        var request = self.request(firmware: source)
        guard let recorded else { return request }
        if output.outputDirGiven == nil { request.outputDirectory = recorded.outputDirectory }
        request.scheme = try recorded.scheme()
        request.dps = recorded.dps(overriddenBy: request.dps)
        if dps.dpsConnectionStringFile == nil, request.dps.connectionStringFile == "-" {
            // Standard input is read once; the connection string is never stored.
            throw ProvisionError.cannotResume(
                "board #\(id)'s DPS connection string came from standard input, which devkit never stores; give it "
                    + "again: `devkit provision --resume \(id) --dps-connection-string-file -` (or a file)")
        }
        if wifiSSID == nil, let ssid = recorded.wifiSSID, let file = recorded.wifiPasswordFile {
            // Wi-Fi is set with the board steps, before the version is read.
            let wifiPending = board.versionReadAt == nil
            if file != "-" {
                request.wifi = WiFiSettings(ssid: ssid, passwordFile: file)
            } else if wifiPending {
                // Standard input is read once and a password is never stored: without
                // it the resume would finish the board without Wi-Fi.
                throw ProvisionError.cannotResume(
                    "board #\(id)'s Wi-Fi password came from standard input, which devkit never stores, and Wi-Fi "
                        + "is not set on the board yet; give it again: `devkit provision --resume \(id) "
                        + "\(shellQuote(Self.wifiSSIDWord(ssid))) --wifi-password-file -` (or a file)")
            }
        }
        return request
    }
}

/// Ends a run whose board is provisioned (`provision`, `autoconfigure`): runs
/// `verify`, the optional last step, then prints the result with its outcome and
/// exits as `devkit verify` would. The board is provisioned whatever the step does,
/// so its result is printed before an error or a stop signal ends the run.
func finish(
    _ result: ProvisionResult, reporter: ProvisionReporter, afterResult: () -> Void = {},
    verify: () throws -> RegistrationCheck.Report?
) throws {
    let verification: RegistrationCheck.Report?
    do {
        verification = try verify()
    } catch RegistrationCheckError.stopped(let signal) {
        reporter.result(result, verificationError: RegistrationCheckError.stopped(signal: signal))
        printError("devkit: stopped by \(SignalRelay.name(of: signal)); the port's settings are restored.")
        SignalRelay.dieOf(signal)
    } catch {
        reporter.result(result, verificationError: error)
        if case RegistrationCheckError.boardGone(let path) = error { throw BoardGone(path: path) }
        throw error
    }
    reporter.result(result, verification: verification)
    afterResult()
    try throwIfNotEnrolled(result, reporter: reporter)
    if let outcome = verification?.outcome, !outcome.isSuccess {
        throw ExitCode(verificationExitStatus(outcome).rawValue)
    }
}

/// The `devkit: error:` that ends a run whose board is provisioned but not enrolled
/// (its exit code: see ``NotEnrolledReport``).
func throwIfNotEnrolled(_ result: ProvisionResult, reporter: ProvisionReporter) throws {
    guard let enrollment = result.enrollment, !enrollment.isEnrolled else { return }
    let notEnrolled = NotEnrolled(boardID: result.boardID, enrollment: enrollment)
    throw NotEnrolledReport(
        notEnrolled: notEnrolled, command: reporter.enrollCommand(result.boardID, notEnrolled.needsReplace),
        // The human result ends with "Finish the enrollment with: <command>".
        commandShownAbove: !reporter.json && outputAndErrorShareATerminal())
}

/// `--verbose`: each DPS request (method, path, status, time; never a header) on stderr.
func dpsRequestLog() -> (@Sendable (String) -> Void)? {
    guard OutputLevel.current == .verbose else { return nil }
    return { (line: String) in printError("devkit: \(line)") }
}
