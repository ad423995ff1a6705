import DevKitBoardCLI
import ArgumentParser
import Dispatch
import DeviceDiscovery
import DevKitConsole
import DevKitRegistry
import DevKitSystem
import DevKitWorkflows
import Foundation
import SerialPort

#if canImport(Glibc)
import Glibc
#endif

/// `devkit watch`: provision every DevKit plugged in, several at once.
struct WatchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "watch",
        abstract: "Provision every DevKit plugged in, as a profile says (a daemon).",
        usage: """
            devkit watch --profile <file> [--registry <path>] [--port <path> ...]
                [--verify [--verify-timeout <seconds>]] [--json] [<options>]
            """,
        discussion: """
            Listens to udev for DevKits (USB 0483:374b) appearing, and provisions each \
            on its own thread as `devkit autoconfigure` would, boards already attached \
            first. Each board has one status line, named by its port: on a terminal \
            it follows the board's steps in place; in a log (a pipe, the journal) \
            each step gets a line of its own. --json gives every step and result. A board that is not in configuration \
            mode is reported ("hold A and reset, then replug") and tried again when it \
            re-appears; a board unplugged mid-way \
            is recorded as failed in the registry and resumed when it comes back. A \
            board the registry already finished is left alone when it is known by its \
            USB serial (every DevKit's ST-LINK has one); a port without one (a virtual \
            DevKit's pseudo-terminal) cannot be told apart before its UDS is sent, so \
            such a board is given a new UDS: into another output directory it is \
            provisioned again (its earlier row shows `superseded by #N` in `devkit \
            registry list`); into the same one its certificate step stops (exit 73), \
            since the earlier row's files are not replaced without --force: `devkit \
            provision --resume N --force`, as printed, finishes it (and its DPS \
            enrollment must then be replaced).

            With connection_string_file in the profile's [dps] table each board is \
            enrolled in DPS as its last step. One DPS did not enroll (unreachable, \
            refused, a conflict) is reported `not enrolled` with the `devkit dps \
            enroll --from-registry` command that finishes it, and counts as failed; a \
            finished board whose enrollment is owed is enrolled when plugged in \
            again, without touching it.

            With the profile's [verify] table (enabled = true, timeout = seconds) or \
            --verify, each board's registration is verified as its last step, boards \
            in parallel, as `devkit verify` does: its sketch's log is followed until \
            it says how registering went. A board that booted its sketch to show its \
            MAC (before it was enrolled) is asked, on its line, for its reset button; \
            one whose MAC was known is sent `exit`. The board's \
            line ends with the outcome (`· assigned <hub>`, `· unauthorized: ...`); \
            the registry records it; a board that did not register counts as failed.

            A shared PostgreSQL registry whose server cannot be reached when watch \
            starts (a station started at boot before its database, a server \
            restarting; also a host name that does not resolve or a port nobody \
            listens on, which look the same), or that another session holds locked, \
            is waited for: watch says why on stderr (and again every 5 minutes), \
            tries again after 1, 2, 4, 8, then every 15 seconds, and starts watching \
            once it answers; Ctrl-C or SIGTERM ends the wait. A refused login or TLS \
            ends it at once. With --port it exits 75 at once instead, as the \
            one-board commands do (a script runs it again later).

            Blocks on the udev socket (no polling). SIGTERM or SIGINT stops listening, \
            lets boards in progress finish their provisioning, and exits 0; a board \
            being verified stops at once (its line says `not verified: stopped by \
            SIGTERM`, its row stays provisioned without an outcome, and `devkit \
            verify` verifies it later). With --port the same stop ends the run with \
            the signal itself, as the one-board commands do. In both modes a second \
            one (Ctrl-C twice) also ends the provisioning in progress at once, and \
            the run with that signal: those boards are recorded as failed, and \
            `devkit provision --resume` finishes them.

            Examples:
              devkit watch --profile /etc/devkit/bench.toml
              devkit watch --profile bench.toml --json > provisioning.jsonl
            """)

    @OptionGroup var registry: RegistryOptions
    @OptionGroup var station: StationOptions

    @Option(help: ArgumentHelp("The provisioning profile (TOML).", valueName: "file"), completion: .file(extensions: ["toml"]))
    var profile: String

    @Option(help: "Baud rate of the boards' serial ports.")
    var baud: Int = SerialPort.defaultBaudRate

    @Flag(help: "Report events as JSON Lines on stdout.")
    var json = false

    @Option(name: .customLong("port"), help: ArgumentHelp(
        "Provision these ports once, without listening to udev (repeatable); exit when all are done.",
        discussion: "For benches without udev events (and Scripts/bench-fleet.sh). Exit 1 when some board failed.",
        valueName: "path"),
        completion: PortOptions.portCompletion)
    var ports: [String] = []

    @Flag(help: "Verify each board's registration after provisioning it (as the profile's [verify] table does).")
    var verify = false

    @Option(help: ArgumentHelp(
        "How long to follow each board's log for an outcome (overrides the profile's verify.timeout; default 180).",
        valueName: "seconds"))
    var verifyTimeout: Int?

    /// --quiet / --verbose, as on every command.
    @OptionGroup var outputLevel: OutputLevelOptions

    func validate() throws {
        if let verifyTimeout, verifyTimeout < 1 { throw ValidationError("--verify-timeout must be at least 1 second.") }
    }

    func run() async throws {
        try await reportingErrors {
            var loaded = try ProfileLoader.load(path: self.profile)
            if verify || loaded.verify != nil {
                loaded.verify = VerifySettings(
                    timeoutSeconds: verifyTimeout ?? loaded.verify?.timeoutSeconds ?? VerifySettings.defaultTimeout)
            } else if verifyTimeout != nil {
                throw ValidationError("--verify-timeout takes effect with --verify or the profile's [verify] table.")
            }
            let profile = loaded
            var provisioner = ProfileProvisioner(
                profile: profile, registry: try await openRegistry(profile), measure: diceRIoTMeasurer(), baudRate: baud)
            provisioner.dpsLog = dpsRequestLog()
            provisioner.station = station.resolved(profile: profile)
            try provisioner.prepare()
            let boards = BoardThreads()
            let registryWords = registry.commandWords(profile: profile)
            let output = WatchOutput(json: json, registryWords: registryWords) { id, replace in
                finishEnrollmentCommand(boardID: id, dps: profile.dps, registryWords: registryWords, replace: replace)
            }
            provisioner.enrollCommand = output.enrollCommand
            provisioner.registryWords = registryWords
            if !ports.isEmpty {
                // A stop ends the boards' verification at once; provisioning in
                // progress finishes (a board is never left half-written by watch),
                // unless a second stop comes (Ctrl-C twice): that ends it too.
                try installStopSignals { signal in
                    boards.stop.cancel(signal: signal)
                    stoppingHint(signal, output: output)
                } again: { signal in
                    boards.provisioningStop.cancel(signal: signal)
                }
                for port in ports {
                    // Looked up on the board's own thread: one udev lookup each (0.1-0.3 ms),
                    // which done here in a row held the last of 16 boards back by their sum.
                    boards.start(node: port, provisioner: provisioner, output: output) {
                        DevKitDevice(devnode: port, byIDLink: nil, serialNumber: usbSerial(of: port),
                                     usbPath: nil, kernelName: (port as NSString).lastPathComponent,
                                     devpath: "", syspath: "")
                    }
                }
                boards.waitForAll()
                if let signal = boards.stop.signal { dieOfStop(signal) }
                if boards.failures > 0 { throw ExitCode(ExitStatus.partialFailure.rawValue) }
                return
            }
            let monitor = try DeviceMonitor()

            // Stop on SIGTERM/SIGINT: the monitor ends its event stream, the loop below exits.
            // Installed synchronously (sigaction), before "watching" is printed.
            try installStopSignals { signal in
                monitor.stop()
                boards.stop.cancel(signal: signal)
                if boards.inProgress > 0 { stoppingHint(signal, output: output) }
            } again: { signal in
                boards.provisioningStop.cancel(signal: signal)
            }

            output.note("devkit: watching for DevKits (profile \(self.profile)); Ctrl-C stops")
            if !DeviceMonitor.udevIsRunning {
                printWarning("udev is not running here (no /run/udev/control): boards plugged in are not seen; "
                    + "give their ports with --port")
            }
            for device in monitor.attached {
                boards.start(device, provisioner: provisioner, output: output)
            }
            for try await event in monitor.events {
                switch event {
                case .added(let device):
                    boards.start(device, provisioner: provisioner, output: output)
                case .removed(let device):
                    if boards.isActive(device.devnode) {
                        output.board(device.devnode, .unplugged, "unplugged while being provisioned; it is resumed when it comes back")
                    }
                }
            }
            output.note("devkit: stopping; waiting for boards in progress")
            boards.waitForAll()
            // Stopped twice: boards were cut short, which exit 0 would hide.
            if boards.provisioningStop.signal != nil, let signal = boards.stop.signal { dieOfStop(signal) }
        }
    }
}

extension WatchCommand {
    /// The registry, opened. Listening to udev (no --port), a station is a daemon,
    /// often started at boot before its database server answers, or running while
    /// the server restarts: a server that cannot be reached, or a registry locked by
    /// another session (a `migrate` or `rekey` in progress), is waited for instead of
    /// ending the station with 75 and leaving plugged boards unprovisioned until
    /// someone restarts it. A host name that does not resolve or a port nobody
    /// listens on looks the same as a server not up yet, so a typo is waited for
    /// too: the first message gives the reason and what to check, and a reminder
    /// follows every 5 minutes. A wrong password or login, a server refusing TLS and
    /// a malformed URL end it at once (waiting would not fix them); a wrong key is
    /// found once the server answers. Tries after 1, 2, 4, 8, then every 15 s. No
    /// handler is installed yet, so SIGTERM (and Ctrl-C on a terminal) ends the wait.
    private func openRegistry(_ profile: ProvisioningProfile) async throws -> any RegistryStore {
        guard ports.isEmpty else { return try registry.open(profile: profile) }
        var pause = Duration.seconds(1)
        var told: String?
        let started = ContinuousClock.now
        var remindedAt = started
        while true {
            do {
                let opened = try registry.open(profile: profile)
                if told != nil { printError("devkit: the registry answers again; watching") }
                return opened
            } catch let error as RegistryError where error.isTransient {
                let reason = error.description
                if reason != told {
                    let check = if case .serverUnavailable = error { "; " + RegistryError.serverCheck } else { "" }
                    printError("devkit: \(reason)\(check); waiting for it (Ctrl-C stops)")
                    told = reason
                    remindedAt = .now
                } else if ContinuousClock.now - remindedAt >= .seconds(300) {
                    let minutes = Int((ContinuousClock.now - started).components.seconds / 60)
                    printError("devkit: still waiting for the registry (\(minutes) min so far): \(reason)")
                    remindedAt = .now
                }
                try await Task.sleep(for: pause)
                pause = min(pause * 2, .seconds(15))
            }
        }
    }
}

extension RegistryError {
    /// Over once the server is back or another session lets go (75): what a
    /// starting `watch` waits for.
    var isTransient: Bool {
        switch self {
        case .serverUnavailable, .registryLocked: true
        default: false
        }
    }
}

/// The boards being provisioned, one thread each (the console I/O blocks).
final class BoardThreads: @unchecked Sendable {
    private let lock = NSLock()
    private var active: Set<String> = []
    private var failed = 0
    var failures: Int { lock.withLock { failed } }
    private let group = DispatchGroup()
    /// Cancelled by a stop signal: ends the boards' verifications at once (each
    /// would otherwise follow its board's log up to its verify timeout).
    let stop = FollowerStop()
    /// Cancelled by a second stop signal (`--port`): ends the provisioning in
    /// progress too, at once. The session's cancelled wait erases a half-sent line,
    /// the workflow records the board as failed (`--resume` finishes it), and its
    /// port gets its settings back.
    let provisioningStop = FollowerStop()

    func isActive(_ node: String) -> Bool { lock.withLock { active.contains(node) } }

    /// How many boards are being provisioned or verified now.
    var inProgress: Int { lock.withLock { active.count } }

    func start(_ device: DevKitDevice, provisioner: ProfileProvisioner, output: WatchOutput) {
        start(node: device.devnode, provisioner: provisioner, output: output) { device }
    }

    /// Starts provisioning the board at `node`, whose device `describe` gives (called
    /// on the board's thread).
    func start(
        node: String, provisioner: ProfileProvisioner, output: WatchOutput,
        describe: @escaping @Sendable () -> DevKitDevice
    ) {
        let log = output.board
        let fresh = lock.withLock { active.insert(node).inserted }
        guard fresh else { return }  // a duplicate add while it is still running
        group.enter()
        let thread = Thread { [self] in
            defer {
                lock.withLock { _ = active.remove(node) }
                group.leave()
            }
            setKernelThreadName("dk \((node as NSString).lastPathComponent)")
            let device = describe()
            log(node, .appeared, "DevKit \(device.serialNumber ?? "(no serial)") appeared")
            do {
                switch try provisioner.provision(
                    path: node, usbSerial: device.serialNumber, report: output.steps(for: node),
                    whilePortOpen: { [provisioningStop] port in
                        provisioningStop.attach(port)
                        return { provisioningStop.detach(port) }
                    },
                    transport: { VerboseTransport.ifVerbose($0) { output.exchange(node, $0) } })
                {
                case .provisioned(let result, let resumed):
                    let done = "\(resumed ? "finished" : "provisioned") \(result.registrationID): \(result.certificatePath)"
                    var milestone: WatchOutput.Milestone = resumed ? .finished : .provisioned
                    var text: String
                    if let enrollment = result.enrollment {
                        if enrollment.isEnrolled {
                            text = "\(done); enrolled in DPS (\(enrollment.outcome.action.rawValue))"
                        } else {
                            milestone = .notEnrolled
                            text = "\(done); " + notEnrolledText(result.boardID, enrollment, output)
                        }
                    } else {
                        text = "\(done); \(result.azCommand)"
                    }
                    // Last, the board registering (each board on its own thread: in parallel).
                    let verified = verify(node) {
                        try provisioner.verify(
                            result, path: node, report: output.steps(for: node),
                            transport: { VerboseTransport.ifVerbose($0) { output.exchange(node, $0) } }, stop: stop)
                    }
                    text += verified.text
                    milestone = verified.milestone ?? milestone
                    if milestone == .notEnrolled || milestone == .notRegistered { lock.withLock { failed += 1 } }
                    // JSON: the whole result, with the port.
                    output.result(node, result, verification: verified.report, verificationError: verified.error)
                    log(node, milestone, text)
                case .enrolled(let board, let enrollment):
                    let id = board.id ?? 0
                    if enrollment.isEnrolled {
                        // Enrolled only now: the board can register now, verified as a new one is.
                        let verified = verify(node) {
                            try provisioner.verify(
                                board, enrollment: enrollment, path: node, report: output.steps(for: node),
                                transport: { VerboseTransport.ifVerbose($0) { output.exchange(node, $0) } }, stop: stop)
                        }
                        if verified.milestone == .notRegistered { lock.withLock { failed += 1 } }
                        log(node, verified.milestone ?? .enrolled,
                            "provisioned earlier as \(board.registrationID ?? "?") (registry #\(id)); "
                                + "now enrolled in DPS (\(enrollment.outcome.action.rawValue))" + verified.text)
                    } else {
                        lock.withLock { failed += 1 }
                        log(node, .notEnrolled, "provisioned earlier as \(board.registrationID ?? "?"); "
                            + notEnrolledText(id, enrollment, output))
                    }
                case .alreadyProvisioned(let board):
                    log(node, .already, "already provisioned as \(board.registrationID ?? "?") (registry #\(board.id ?? 0)); left alone")
                }
            } catch SerialPortError.cancelled where provisioningStop.signal != nil {
                // Ctrl-C twice: the cancelled wait was the stop (any other error is its own).
                lock.withLock { failed += 1 }
                log(node, .failed, "failed: stopped by \(SignalRelay.name(of: provisioningStop.signal!)) while being "
                    + "provisioned; a board already recorded (see its board number above) is finished by "
                    + "`devkit provision --resume`, one not yet recorded by plugging it in again")
            } catch ConsoleError.wrongMode(let mode) {
                // Pressing reset does not re-plug the ST-LINK's USB, so no new `add`
                // comes from that alone: say that the cable must be replugged.
                lock.withLock { failed += 1 }
                log(node, .failed, "failed: the board is in \(mode.description); hold button A and press reset, then unplug and "
                    + "plug the board in again: it is provisioned when it re-appears")
            } catch ConsoleError.noAnswer(let received) {
                // Most often a board in user mode whose sketch is quiet: its banner went
                // out before the port was opened. Not called user mode (issue 12), but
                // the same remedy, replug included, comes first.
                lock.withLock { failed += 1 }
                log(node, .failed, "failed: no answer from the board (no prompt, "
                    + (received == 0 ? "nothing came back" : "\(received) unrecognised bytes")
                    + "); if it is not in configuration mode, hold button A and press reset, then unplug and plug the board in "
                    + "again: it is provisioned when it re-appears (also check the port and that no other program holds it)")
            } catch let error as CLIReportable {
                lock.withLock { failed += 1 }
                log(node, .failed, "failed: \(error.userMessage)")
            } catch {
                lock.withLock { failed += 1 }
                log(node, .failed, "failed: \(error)")
            }
        }
        thread.name = "devkit-watch \(node)"
        thread.start()
    }

    func waitForAll() { group.wait() }

    /// What a board's verification (`run`; nil: not asked) came to, for its line:
    /// the text to add, the milestone it makes the line (nil: unchanged), and the
    /// report or error for the JSON result.
    private func verify(_ node: String, _ run: () throws -> RegistrationCheck.Report?) -> (
        text: String, milestone: WatchOutput.Milestone?, report: RegistrationCheck.Report?, error: (any Error)?
    ) {
        do {
            guard let report = try run() else { return ("", nil, nil, nil) }
            let outcome = report.outcome
            let said = " · \(outcome.name)" + (report.assignedHub.map { " \($0)" } ?? "")
            return outcome.isSuccess ? (said, nil, report, nil) : (said + ": \(report.diagnosis)", .notRegistered, report, nil)
        } catch RegistrationCheckError.stopped(let signal) {
            // Not a failure of the board: the row keeps no outcome, a later `devkit verify` gives one.
            return (" · " + RegistrationCheckError.notVerified(signal: signal, port: node),
                    .notVerified, nil, RegistrationCheckError.stopped(signal: signal))
        } catch {
            return (" · not verified: " + cliMessage(error), .notRegistered, nil, error)
        }
    }
}

/// `not enrolled in DPS: <why>; `<command>` finishes it`, for a board's line.
private func notEnrolledText(_ boardID: Int64, _ enrollment: ProvisionEnrollment, _ output: WatchOutput) -> String {
    let notEnrolled = NotEnrolled(boardID: boardID, enrollment: enrollment)
    let why = enrollment.outcome.error.map { cliMessage($0) } ?? notEnrolled.description
    return "not enrolled in DPS: \(why); `\(output.enrollCommand(boardID, notEnrolled.needsReplace))` finishes it"
}

/// Names the calling thread as `ps -L`, `top -H` and perf show it (15 bytes at
/// most). Foundation's `Thread.name` does not reach the kernel here: a board's
/// thread showed the name of the concurrency thread that started it.
/// (Through /proc: pthread_setname_np and prctl are not in Swift's Glibc module.)
func setKernelThreadName(_ name: String) {
    let fd = open("/proc/thread-self/comm", O_WRONLY | O_CLOEXEC)
    guard fd >= 0 else { return }  // only a name: nothing to report
    let bytes = Array(name.utf8.prefix(15))
    _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    close(fd)
}

/// Ends watch by the stop `signal`, once the boards' ports are closed, as the
/// one-board commands end.
private func dieOfStop(_ signal: Int32) -> Never {
    printError("devkit: stopped by \(SignalRelay.name(of: signal)); the boards' ports are closed.")
    SignalRelay.dieOf(signal)
}

/// After the first stop: what a second one does (not under --json or --quiet,
/// where stderr carries errors only).
private func stoppingHint(_ signal: Int32, output: WatchOutput) {
    guard OutputLevel.current != .quiet else { return }
    output.note(
        "devkit: stopping once the boards in progress are provisioned; \(SignalRelay.name(of: signal)) "
            + "again stops them at once (they are recorded as failed; `devkit provision --resume` finishes them)")
}

/// Calls `onStop` with the signal (on its own thread) at the first SIGTERM or
/// SIGINT, and `again` at each later one that comes at least 150 ms after it.
///
/// A ``SignalRelay`` rather than a DispatchSource: a dispatch signal source is
/// armed asynchronously after `resume()`, so a signal arriving right after start-up
/// could be lost with the default action ignored. Later signals are absorbed while
/// the boards in progress finish, or passed to `again`.
private func installStopSignals(
    _ onStop: @escaping @Sendable (Int32) -> Void, again: @escaping @Sendable (Int32) -> Void = { _ in }
) throws {
    guard let relay = try? SignalRelay([SIGTERM, SIGINT], restartingCalls: true) else {
        throw ExitCode(ExitStatus.software.rawValue)
    }
    let thread = Thread {
        setKernelThreadName("dk signals")
        onStop(relay.wait())
        let first = ContinuousClock.now
        while true {  // keeps the relay (and its handler) for good
            let signal = relay.wait()
            // One Ctrl-C that reaches watch twice (the terminal's and a wrapper's
            // forwarded copy, within milliseconds) is not a second stop; a person's
            // quick double Ctrl-C (0.2-0.4 s apart) is. Half a second swallowed it.
            if ContinuousClock.now - first >= .milliseconds(150) { again(signal) }
        }
    }
    thread.name = "devkit-watch signals"
    thread.start()
}
