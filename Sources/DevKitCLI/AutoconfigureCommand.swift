import DevKitBoardCLI
import ArgumentParser
import DeviceDiscovery
import DevKitSystem
import DevKitWorkflows
import Foundation

/// `devkit autoconfigure`: provision the board on one port as a profile says.
struct AutoconfigureCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "autoconfigure",
        abstract: "Provision the board on one port as a profile says (what the udev rule runs).",
        usage: """
            devkit autoconfigure [--port <path>] --profile <file> [--registry <path>]
                [--json] [<options>]
            """,
        discussion: """
            Reads the TOML profile (firmware, UDS policy, Wi-Fi, output directory, \
            registration ID scheme, DPS), then provisions the board like `devkit \
            provision`. A board the registry has already finished (same USB serial) is \
            left alone; one left unfinished is resumed with its recorded UDS.

            With connection_string_file in the profile's [dps] table, each board is \
            enrolled in DPS as the last step, as `devkit provision \
            --dps-connection-string-file` does (endpoint, ca_file and iot_hub as \
            there); a finished board whose enrollment is owed (`done, not enrolled`) \
            is enrolled when it comes back, without touching it.

            With the profile's [verify] table (enabled = true, timeout = seconds), \
            the board's registration is verified as the last step, as `devkit \
            provision --verify` does, and the outcome recorded in the registry.

            Profile example (paths relative to the profile):
            \(ProfileLoader.example)

            Examples:
              devkit autoconfigure --port /dev/ttyACM0 --profile /etc/devkit/bench.toml
              devkit autoconfigure --port /dev/devkit-0 --profile bench.toml --json

            Exit codes as for `devkit provision` (a board provisioned but not enrolled, \
            and --verify's outcomes, included); 69 when the board is not in configuration mode (hold button A \
            and press reset).
            """)

    @OptionGroup var port: PortOptions
    @OptionGroup var registry: RegistryOptions
    @OptionGroup var station: StationOptions

    @Option(help: ArgumentHelp("The provisioning profile (TOML).", valueName: "file"), completion: .file(extensions: ["toml"]))
    var profile: String

    @Flag(help: "Report each step and the result as JSON Lines on stdout.")
    var json = false

    /// --quiet / --verbose, as on every command.
    @OptionGroup var outputLevel: OutputLevelOptions

    func run() throws {
        try reportingErrors {
            let profile = try ProfileLoader.load(path: self.profile)
            let path = try port.resolvedPath()
            var provisioner = ProfileProvisioner(
                profile: profile, registry: try registry.open(profile: profile), measure: diceRIoTMeasurer(), baudRate: port.baud)
            provisioner.dpsLog = dpsRequestLog()
            provisioner.station = station.resolved(profile: profile)
            var reporter = ProvisionReporter(json: json)
            let registryWords = registry.commandWords(profile: profile)
            reporter.enrollCommand = { id, replace in
                finishEnrollmentCommand(boardID: id, dps: profile.dps, registryWords: registryWords, replace: replace)
            }
            reporter.resumeWords = registryWords + ["--port", path]
            provisioner.enrollCommand = reporter.enrollCommand
            provisioner.registryWords = registryWords
            let crash = crashHookFromEnvironment()
            // systemd stops the unit with SIGTERM when the board is unplugged
            // (BindsTo=): the failure is recorded before the process goes.
            defer { PortStopSignals.reraiseIfCaught() }
            switch try provisioner.provision(
                path: path, usbSerial: usbSerial(of: path), report: reporter.event,
                afterStep: { step, _ in crash(step.rawValue) },
                whilePortOpen: { port in
                    let signals = PortStopSignals(cancelling: port)
                    return { signals.restore() }
                },
                transport: { VerboseTransport.ifVerbose($0) })
            {
            case .provisioned(let result, _):
                // The profile's [verify]: last, the board registering.
                try finish(result, reporter: reporter) {
                    try provisioner.verify(result, path: path, report: reporter.event, hooks: .terminal(progress: { _ in }))
                }
            case .enrolled(let board, let enrollment):
                // Provisioned earlier, its enrollment owed: the enroll step's lines said how it went.
                guard enrollment.isEnrolled else {
                    let notEnrolled = NotEnrolled(boardID: board.id ?? 0, enrollment: enrollment)
                    throw NotEnrolledReport(
                        notEnrolled: notEnrolled, command: reporter.enrollCommand(board.id ?? 0, notEnrolled.needsReplace))
                }
                let message = "board #\(board.id ?? 0) (\(board.registrationID ?? "?")) was provisioned earlier; "
                    + "now enrolled in DPS (\(enrollment.outcome.action.rawValue) in \(enrollment.dpsHost))"
                if json {
                    print(try JSONOutput.text(["event": "enrolled", "message": message]))
                } else {
                    printError("devkit: \(message)")
                }
            case .alreadyProvisioned(let board):
                let message = "board #\(board.id ?? 0) (USB serial \(board.usbSerial ?? "?")) is already provisioned"
                    + " as \(board.registrationID ?? "?"); `devkit registry show \(board.id ?? 0)` shows it"
                if json {
                    print(try JSONOutput.text(["event": "skipped", "message": message]))
                } else {
                    printError("devkit: \(message)")
                }
            }
        }
    }
}

/// The USB serial of the DevKit at `path` (a node or a link to one), when udev
/// knows it: looked up by device number, without scanning every tty.
func usbSerial(of path: String) -> String? {
    (try? DeviceDiscovery.device(atPath: path))??.serialNumber
}
