import DevKitBoardCLI
import ArgumentParser
import DevKitModel
import DevKitRegistry
import DevKitWorkflows

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
            impersonate the board); only then is the registry key needed (a \
            --key-file given is checked all the same).

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
            guard let opened = try registry.openReadOnly(secrets: showSecret) else {
                throw NoRegistryError(path: registry.resolvedPath)
            }
            guard var board = try opened.board(matching: key) else {
                throw RegistryError.boardNotFound(key)
            }
            // A later row of the same board that confirmed its UDS is said (see markingLaterRows).
            if board.supersededBy == nil {
                let later = try opened.latestConfirmedBoardIDs(usbSerial: board.usbSerial, mac: board.mac)
                board.supersededBy = board.superseded(latestWithItsUSBSerial: later.bySerial, latestWithItsMAC: later.byMAC)?.boardID
            }
            if json {
                print(try JSONOutput.text(BoardJSON(board: board, includeSecret: showSecret)))
                return
            }
            var lines: [(label: String, value: String)] = [
                ("ID", board.id.map(String.init) ?? "-"),
                ("MAC address", board.mac ?? "-"),
                ("USB serial", board.usbSerial ?? "-"),
                ("Station", board.station ?? "-"),
                ("Registration ID", board.registrationID ?? "-"),
                ("Firmware version", board.firmwareVersion ?? "-"),
                ("UDS", showSecret ? board.uds.hexString : "(hidden; --show-secret shows it)"),
                ("Certificate", board.certificatePath ?? "-"),
                ("SHA-1 thumbprint", board.certificateSHA1 ?? "-"),
                ("SHA-256 thumbprint", board.certificateSHA256 ?? "-"),
                ("Enrollment file", board.enrollmentPath ?? "-"),
                ("State", stateText(board)),
            ]
            if let error = board.error { lines.append(("Error", error)) }
            if let next = board.nextStep { lines.append(("Next step", next.rawValue)) }
            lines += enrollmentLines(board)
            if let v = board.verification {
                lines.append(("Verified", "\(v.outcome), \(timestamp(v.at))"))
                if let hub = v.assignedHub { lines.append(("Assigned hub", hub)) }
                if let device = v.deviceID { lines.append(("Device ID", device)) }
            } else {
                lines.append(("Verified", "- (never: devkit verify checks it)"))
            }
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

    /// The DPS enrollment as recorded: what was done, when, where, DPS's
    /// thumbprint and etag, or DPS's error; and how to finish one that is owed.
    func enrollmentLines(_ board: BoardRecord) -> [(label: String, value: String)] {
        guard let e = board.enrollment else { return [("Enrollment", "- (DPS not configured)")] }
        var what = e.action == .pending ? "not attempted yet" : e.action.rawValue
        if e.action.enrolls && !board.isEnrolled { what += " (an older certificate; this one is not enrolled)" }
        var lines: [(label: String, value: String)] = [
            ("Enrollment", "\(what), \(timestamp(e.at))" + (e.dpsHost.map { " in \($0)" } ?? "")),
        ]
        if let sha1 = e.sha1Thumbprint { lines.append(("DPS SHA-1", sha1)) }
        if let etag = e.etag { lines.append(("DPS etag", etag)) }
        if let code = e.errorCode { lines.append(("DPS error code", String(code))) }
        if let message = e.errorMessage { lines.append(("Enrollment error", message)) }
        if let tracking = e.trackingID { lines.append(("Tracking ID", tracking)) }
        if board.awaitsEnrollment, let id = board.id {
            // With the DPS options the board was provisioned with (endpoint, CA file,
            // hub): without them the command goes to https://<HostName>, which for a
            // local DPS is the wrong place. Re-issued: DPS holds this board's older
            // certificate, which is to go (--replace).
            let recorded = (try? ProvisionSettings.recorded(in: board))??.dps(overriddenBy: DPSSettings()) ?? DPSSettings()
            var command = finishEnrollmentCommand(
                boardID: id, dps: recorded, registryWords: registry.commandWords(),
                replace: e.action.enrolls)
            if e.action == .conflict { command += " (DPS holds another certificate: --replace overwrites it)" }
            lines.append(("Finish with", command))
        }
        return lines
    }
}
