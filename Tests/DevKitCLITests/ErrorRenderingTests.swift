import DevKitBoard
@testable import DevKitBoardCLI
import DPSService
@testable import DevKitCLI
import DevKitConsole
import DevKitModel
import DevKitRegistry
import DevKitWorkflows
import DeviceDiscovery
import Foundation
import SerialPort
import Testing
import VirtualDevKit

/// The libraries say what happened; the CLI's `userMessage` adds the option or
/// command to use. What the user reads is unchanged, word for word.
@Suite("Error messages: facts in the library, flags in the CLI")
struct ErrorRenderingTests {
    struct Case: Sendable, CustomStringConvertible {
        var error: any CLIReportable & Sendable
        var exitStatus: DevKitBoardCLI.ExitStatus
        /// What `devkit: error:` prints, as it did before the flags moved to the CLI.
        var userMessage: String
        var description: String { userMessage }
    }

    static let board = DevKitDevice(
        devnode: "/dev/ttyACM0", serialNumber: "S1", kernelName: "ttyACM0",
        devpath: "/devices/x/tty/ttyACM0", syspath: "/sys/devices/x/tty/ttyACM0")

    static let cases: [Case] = [
        Case(error: WorkflowError.cannotWriteSecret(path: "/ro/u", reason: "Read-only file system"), exitStatus: .cannotCreate,
             userMessage: "cannot write /ro/u: Read-only file system; choose a writable path with --save (nothing was sent to the board)"),
        Case(error: WorkflowError.secretFileExists(path: "u.hex"), exitStatus: .cannotCreate,
             userMessage: "u.hex exists already and may hold another board's secret: choose a new path with --save (nothing was sent to the board)"),
        Case(error: WorkflowError.unknownConnectionString(reason: "it starts with x"), exitStatus: .usage,
             userMessage: "not a connection string devkit knows: it starts with x; an IoT Hub one starts `HostName=`, "
                + "a DPS one `DPSEndpoint=` (or pass --kind hub|dps)"),
        Case(error: ProvisionError.templateNeedsSerial(template: "lab-{serial}"), exitStatus: .usage,
             userMessage: "the registration ID template 'lab-{serial}' needs the board's USB serial, which is unknown (a port "
                + "without one, such as a virtual DevKit's); in the profile set registration_id = \"derived\" or a "
                + "template without {serial}, or provision the board with `devkit provision ... --registration-id ID`"),
        Case(error: ProvisionError.serialUnknown(directory: "/etc/uds"), exitStatus: .usage,
             userMessage: "the UDS policy reads /etc/uds/<USB serial>.uds, but this board's USB serial is unknown (a port "
                + "without one, such as a virtual DevKit's); in the profile use [uds] policy = \"generate\", or "
                + "provision the board with `devkit provision ... "
                + "--uds-file FILE`"),
        Case(error: ProvisionError.outputDirectory(path: "out", reason: "is not writable"), exitStatus: .cannotCreate,
             userMessage: "output directory out: is not writable; create it, or choose another (--output-dir, or output_dir in a profile)"),
        Case(error: ProvisionError.macNotInBootLog, exitStatus: .dataError,
             userMessage: "the board rebooted but its boot log showed no `DevKit MAC Address:` line (is the DPS sample sketch flashed?); "
                + "give the MAC with --mac, read from the screen in configuration mode"),
        Case(error: ProvisionError.resumeOnAnotherBoard(boardID: 3, recordedSerial: "AAA", attachedSerial: "BBB"), exitStatus: .usage,
             userMessage: "board #3 is the board with USB serial AAA, but the board on the port has BBB; "
                + "plug in board #3, or provision this one without --resume"),
        Case(error: ProvisionError.resumeNeedsBoard(boardID: 3, nextStep: "mac_read"), exitStatus: .usage,
             userMessage: "board #3 still needs mac_read on the board itself; connect it with --port"),
        Case(error: RegistryError.cannotCreateDirectory(path: "/ro/d", reason: "Permission denied"), exitStatus: .cannotCreate,
             userMessage: "cannot create the registry directory /ro/d: Permission denied; choose another place with --registry PATH"),
        Case(error: RegistryError.cannotOpen(path: "r.sqlite", reason: "Permission denied"), exitStatus: .ioError,
             userMessage: "cannot open the registry r.sqlite: Permission denied; check its permissions or choose another file with --registry PATH"),
        Case(error: RegistryError.boardNotFound("42"), exitStatus: .noInput,
             userMessage: "no board '42' in the registry; `devkit registry list` shows the recorded boards"),
        Case(error: DiscoveryError.udevFailed(operation: "udev_new", errno: 12), exitStatus: .unavailable,
             userMessage: "libudev udev_new failed: Cannot allocate memory. Device discovery needs Linux "
                + "with /sys mounted; name the board's serial device with --port instead."),
        Case(error: DiscoveryError.noBoardAttached, exitStatus: .unavailable,
             userMessage: "No DevKit found (no USB serial device 0483:374b). "
                + "Plug in a DevKit (hold A, reset) and try again, or name its port with --port."
                + " A virtual DevKit (`devkit emulate`) is not found by discovery: pass its pty path with --port."),
        Case(error: DiscoveryError.multipleBoards([board, board]), exitStatus: .usage,
             userMessage: "2 DevKits are attached: \(board); \(board). Choose one with --port, e.g. --port \(board.preferredPath)."),
        Case(error: VirtualDevKitError.linkInUse(path: "/tmp/l", target: "/dev/pts/7"), exitStatus: .cannotCreate,
             userMessage: "The link /tmp/l points at /dev/pts/7, which is open: another virtual DevKit may be using it. "
                + "Stop that one or choose another --link (if the link is stale, remove it)."),
        Case(error: VirtualDevKitError.stateFile(path: "s.json", reason: "is not a virtual DevKit state file (bad JSON)"),
             exitStatus: .dataError,
             userMessage: "The state file s.json is not a virtual DevKit state file (bad JSON). Fix or remove it, or pass another --state path."),
    ]

    /// The --resume printed after a sketch showed no MAC gives it (`--mac MAC`);
    /// after other failures, the command as it is. A sketch without the MAC line is
    /// a console error of its own (75, as `info --reboot` said before), with words
    /// that do not send the user back to configuration mode.
    @Test func theResumeAfterANoMACSketchAsksForTheMAC() {
        var reporter = ProvisionReporter(json: false, live: false)
        reporter.resumeWords = ["--port", "/dev/ttyACM0"]
        let hint = reporter.resumeHint(6, after: ProvisionError.macNotInBootLog)
        #expect(hint == "board #6 is recorded with its UDS; `devkit provision --resume 6 --port /dev/ttyACM0 --mac MAC` "
            + "(the MAC off the board's screen in configuration mode) finishes it", "\(hint)")
        #expect(reporter.resumeHint(6, after: nil).hasSuffix("--resume 6 --port /dev/ttyACM0` finishes it"))
        let console = ConsoleError.bootLogWithoutMAC(after: .seconds(30))
        #expect(console.exitStatus == .tempFail)
        #expect(console.userMessage.contains("the board booted its sketch, which printed no MAC in that time")
            && !console.userMessage.contains("still in configuration mode"), "\(console.userMessage)")
    }

    @Test("the user reads the same message, with the option to use, and the same exit status", arguments: cases)
    func cliRendering(_ c: Case) {
        #expect(c.error.userMessage == c.userMessage)
        #expect(c.error.userMessage.contains("--") || c.error.userMessage.contains("`devkit "))
        #expect(c.error.exitStatus == c.exitStatus)
    }

    @Test("the library's own description names no option and no devkit command", arguments: cases)
    func libraryDescription(_ c: Case) {
        let description = "\(c.error)"
        #expect(!description.contains("--"), "\(description)")
        #expect(!description.contains("`devkit "), "\(description)")
        // The facts stay in the library: the CLI's message starts with its first clause.
        let facts = description.components(separatedBy: ". ")[0].prefix { $0 != ";" && $0 != "(" }
            .trimmingCharacters(in: .whitespaces)
        #expect(facts.count > 10)
        #expect(c.userMessage.hasPrefix(facts), "\(facts)")
    }

    /// The cases that never named an option, and the console's and the port's errors:
    /// their descriptions (what a library user reads) stay free of CLI words too.
    static let otherErrors: [any Error & Sendable] = [
        WorkflowError.cannotReadSecret(path: "u.hex", reason: "No such file or directory"),
        WorkflowError.invalidSecret(path: "-", reason: "is empty"),
        WorkflowError.rebootedIntoConfigurationMode,
        ProvisionError.firmware("not an ELF file"),
        RegistryError.database(path: "r.sqlite", reason: "disk I/O error"),
        RegistryError.invalidMAC("zz"),
        DiscoveryError.monitorFailed(operation: "udev_monitor_new_from_netlink", errno: 1),
        VirtualDevKitError.invalidConfiguration("bad MAC"),
        ConsoleError.wrongMode(.configuration),
        ConsoleError.timeout(expected: "# ", after: .seconds(5), command: "help"),
        ConsoleError.invalidCommand(name: "set_dps_uds"),
        ConsoleError.notSynchronized,
        SerialPortError.notFound(path: "/dev/ttyACM9"),
        SerialPortError.permissionDenied(path: "/dev/ttyACM0"),
        SerialPortError.inUse(path: "/dev/ttyACM0", pid: 42),
        SerialPortError.disconnected(path: "/dev/ttyACM0"),
    ]

    @Test("no library description names an option", arguments: 0..<otherErrors.count)
    func otherDescriptions(_ index: Int) {
        let description = "\(Self.otherErrors[index])"
        #expect(!description.isEmpty)
        #expect(!description.contains(" --") && !description.contains("`devkit "), "\(description)")
    }
}

/// Re-issue failures: the library names the facts, the CLI the command that fixes them.
@Suite struct ReissueErrorRenderingTests {
    @Test func remediesNameTheirCommand() {
        let unfinished = CertificateReissue.ReissueError(
            description: "board #3 has no MAC recorded", remedy: .finishProvisioning(boardID: 3))
        #expect(unfinished.userMessage(registryWords: ["--registry", "/var/lib/devkit/r.sqlite"])
            == "board #3 has no MAC recorded; plug the board in and finish it with "
            + "`devkit provision --resume 3 --registry /var/lib/devkit/r.sqlite --port PORT` first")
        let noVersion = CertificateReissue.ReissueError(
            description: "board #4 has no firmware version recorded", remedy: .giveFirmwareVersion)
        #expect(noVersion.userMessage(registryWords: []).hasSuffix("; give --firmware-version"))
        #expect(CertificateReissue.ReissueError(description: "x").userMessage(registryWords: []) == "x")
    }
}

/// One rule from a failed file write's errno to sysexits(3), for every file devkit writes.
@Suite struct FileErrnoExitStatusTests {
    @Test(arguments: [
        (EACCES, DevKitBoardCLI.ExitStatus.noPermission), (EPERM, .noPermission),
        (EROFS, .cannotCreate), (ENOENT, .cannotCreate), (ENOTDIR, .cannotCreate), (EEXIST, .cannotCreate),
        (EISDIR, .cannotCreate), (ENOSPC, .ioError), (EIO, .ioError),
    ])
    func rule(errno: Int32, status: DevKitBoardCLI.ExitStatus) {
        #expect(DevKitBoardCLI.ExitStatus(fileErrno: errno) == status)
    }

    @Test func everyFileErrorFollowsIt() {
        let denied: [any CLIReportable] = [
            RegistryError.cannotOpen(path: "r.sqlite", reason: "Permission denied", errno: EACCES),
            RegistryError.cannotCreateDirectory(path: "/d", reason: "Permission denied", errno: EACCES),
            ProvisionError.outputDirectory(path: "out", reason: "is not writable", errno: EACCES),
            WorkflowError.cannotWriteSecret(path: "u", reason: "Permission denied", errno: EACCES),
            OutputFileError(path: "x.pem", reason: "Permission denied", errno: EACCES),
            CertError.output(path: "out", reason: "permission denied", errno: EACCES),
        ]
        for error in denied { #expect(error.exitStatus == .noPermission, "\(error)") }
        let readOnly: [any CLIReportable] = [
            RegistryError.cannotOpen(path: "r.sqlite", reason: "Read-only file system", errno: EROFS),
            ProvisionError.outputDirectory(path: "out", reason: "x", errno: ENOTDIR),
            CertError.output(path: "out", reason: "x", errno: ENOENT),
        ]
        for error in readOnly { #expect(error.exitStatus == .cannotCreate, "\(error)") }
    }
}

/// A board left `done, not enrolled`: the error names the command that finishes it,
/// unless the result printed it just above on the same terminal (a walkthrough read
/// the long command twice in a row).
@Test func notEnrolledNamesTheCommandOnceOnASharedTerminal() {
    let enrollment = ProvisionEnrollment(
        outcome: EnrollmentOutcome(registrationId: "dev-1", action: .conflict, message: "DPS holds another certificate for dev-1"),
        dpsHost: "dps.example")
    let command = "devkit dps enroll --from-registry --id 7 --connection-string-file cs --replace"
    var report = NotEnrolledReport(notEnrolled: NotEnrolled(boardID: 7, enrollment: enrollment), command: command)
    let suffix = " (--replace puts this board's certificate in place of the one DPS holds)"
    #expect(report.userMessage == "board #7 is provisioned (its files are written) but not enrolled in DPS: "
        + "DPS holds another certificate for dev-1; `\(command)` finishes it" + suffix)
    report.commandShownAbove = true
    #expect(report.userMessage == "board #7 is provisioned (its files are written) but not enrolled in DPS: "
        + "DPS holds another certificate for dev-1; the command above finishes it" + suffix)
}
