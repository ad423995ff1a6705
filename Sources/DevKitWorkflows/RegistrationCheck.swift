import DevKitBoard
import DPSModel
import DPSService
import DevKitConsole
import DevKitModel
import DevKitRegistry
import DevKitSystem
import SerialPort
import UserModeLog

/// Watching a board register with DPS: gets its sketch to boot, follows its
/// user-mode log into the classifier, then says what came of it and records it in
/// the registry. The one home of `devkit verify`, `provision --verify` and a
/// profile's `[verify]` (`autoconfigure`, `watch`).
public enum RegistrationCheck {
    /// What the caller sees and adds along the way (the CLI's terminal and signals).
    public struct Hooks {
        /// What the console session talks through, given the open port (`--verbose` wraps it).
        public var transport: (SerialPort) -> any ConsoleTransport = { $0 }
        /// Called with the port while the console part runs (before the follower,
        /// which handles stop signals itself); what it returns is called after.
        public var whileConsole: ((SerialPort) -> () -> Void)?
        /// Called after the console part, once the port's settings are back (the
        /// CLI dies there of a stop signal that came meanwhile).
        public var afterConsole: () -> Void = {}
        /// The board was in configuration mode and is sent `exit`.
        public var exitSent: () -> Void = {}
        /// The board is running its sketch already: only its reset button makes it
        /// register again (within `deadline`).
        public var inUserMode: (_ deadline: ContinuousClock.Instant) -> Void = { _ in }
        /// Each line the board printed, masked.
        public var line: (LogLine) -> Void = { _ in }
        /// Whether stop signals end the following (see ``BoardLogFollower/Settings/relaysStopSignals``).
        public var followerRelaysStopSignals = true
        /// Where the caller handles stop signals itself (`watch`): cancelling it ends
        /// the check, console part and following alike, as ``RegistrationCheckError/stopped(signal:)``
        /// or ``BoardLogFollower/End/signal(_:)``.
        public var stop: FollowerStop?
        /// This station's name, with which the board's row is claimed while the
        /// outcome is recorded (a shared registry).
        public var station: String?
        /// The `dps enroll --from-registry` command for a row (`replace`: over another
        /// certificate), with the caller's registry, key and DPS: what a diagnosis names.
        public var enrollCommand: (@Sendable (_ boardID: Int64, _ replace: Bool) -> String)?

        public init() {}
    }

    /// Gets the sketch on `path` to boot (a board at its prompt is sent `exit`),
    /// then follows its log until an outcome, `deadline`, a stop signal or the
    /// board staying unplugged for `reconnectTimeout`.
    ///
    /// - Parameter freshBootOnly: a board found running its sketch counts only
    ///   from its next boot (its MAC line) on: what it printed before is an
    ///   earlier attempt. Provisioning's MAC step boots the sketch, which then
    ///   tries to register before the certificate is enrolled; that refusal is
    ///   not the outcome.
    /// - Throws: opening the port, or the console's errors other than the board
    ///   being in user mode (or quiet).
    public static func observe(
        path: String, baudRate: Int = SerialPort.defaultBaudRate, deadline: ContinuousClock.Instant,
        reconnectTimeout: Duration = .seconds(5), freshBootOnly: Bool = false, hooks: Hooks = Hooks()
    ) throws -> (RegistrationClassifier, BoardLogFollower.End) {
        // Stopped before it began (watch told to stop while this board was provisioned):
        // the port is not even opened, which could reset or wake the board.
        if let signal = hooks.stop?.signal { throw RegistrationCheckError.stopped(signal: signal) }
        let serial = try SerialPort(path: path, baudRate: baudRate)
        var splitter = LineSplitter()
        var classifier = RegistrationClassifier()
        // Whether the lines are from a boot devkit saw start (after `exit`, or the
        // MAC line of a boot that came later): until then they are shown, not judged.
        var fresh = true
        // Every line, from the prompt search and the follower alike, goes through here:
        // a reset pressed while devkit was still looking for a prompt starts a fresh
        // boot just as one pressed later does.
        func take(_ line: LogLine) {
            hooks.line(line)
            if !fresh {
                // The first line of a new boot that says who the board is.
                var probe = RegistrationClassifier()
                probe.take(line)
                guard probe.identity.mac != nil else { return }
                fresh = true
                classifier = RegistrationClassifier()
            }
            classifier.take(line)
        }
        func take(_ bytes: [UInt8]) { for text in splitter.feed(bytes) { take(LogLine(text)) } }
        let release = hooks.whileConsole?(serial)
        hooks.stop?.attach(serial)
        let session = ConsoleSession(transport: hooks.transport(serial))
        // A board in user mode may be registering while devkit looks for a prompt:
        // what it printed then is its log too.
        nonisolated(unsafe) var seen: [UInt8] = []
        session.receiveObserver = { bytes in if seen.count < 1 << 20 { seen += bytes } }
        do {
            try session.synchronize()
            hooks.exitSent()
            _ = try session.execute(.exit)
            // What came after `Reboot`: the boot log's first lines.
            take(session.takeUnread())
        } catch ConsoleError.wrongMode(.user), ConsoleError.noAnswer {
            fresh = !freshBootOnly
            take(seen)
            // Decided by what it printed meanwhile: no reset to ask for.
            if classifier.outcome == nil { hooks.inUserMode(deadline) }
        } catch SerialPortError.disconnected where hooks.stop?.signal == nil {
            // Unplugged while devkit looked for a prompt: the follower waits for the
            // board to come back (``Settings/reconnectTimeout``), as it does for an
            // unplug later on, rather than this ending in configuration-mode advice.
            fresh = !freshBootOnly
            take(seen)
        } catch {
            hooks.stop?.detach(serial)
            release?()
            serial.close()
            hooks.afterConsole()
            // A cancelled wait (whatever the console made of it) is the stop's.
            if let signal = hooks.stop?.signal { throw RegistrationCheckError.stopped(signal: signal) }
            throw error
        }
        hooks.stop?.detach(serial)
        release?()
        hooks.afterConsole()
        // The lines from here on come whole from the follower; a line cut at the
        // hand-over is completed by the follower's first line.
        var carried = splitter.pending
        // Decided already (while devkit looked for a prompt): nothing to follow.
        if classifier.outcome != nil {
            serial.close()
            return (classifier, .stopped)
        }
        // The follower takes the open port (and closes it), handling the stop signals itself.
        let end = try BoardLogFollower.follow(
            port: serial,
            .init(path: path, baudRate: baudRate, reconnectTimeout: reconnectTimeout,
                  relaysStopSignals: hooks.followerRelaysStopSignals, stop: hooks.stop),
            deadline: deadline
        ) { event in
            switch event {
            case .line(let text):
                take(LogLine(carried.isEmpty ? text : LogMasking.mask(String(decoding: carried, as: UTF8.self) + text)))
                carried = []
            case .disconnected:
                // A line cut by an unplug is not completed by the next boot's first one.
                carried = []
            default:
                break
            }
            return classifier.outcome == nil
        }
        return (classifier, end)
    }

    /// The registry's row for the board that printed `classifier`'s lines, and the
    /// registration ID to report: `registrationID` if given, else the one the board
    /// used, the row's, or the one its MAC and version make.
    public struct Subject: Sendable {
        public var record: BoardRecord?
        public var settings: ProvisionSettings?
        public var registrationID: String?
    }

    /// Finds the board's row: by `boardID` (provisioning knows it), the
    /// registration ID, or the MAC the board printed.
    public static func subject(
        classifier: RegistrationClassifier, registry: (any RegistryStore)?, boardID: Int64? = nil, registrationID: String? = nil
    ) throws(RegistryError) -> Subject {
        let identity = classifier.identity
        var record: BoardRecord?
        if let registry {
            if let boardID { record = try registry.board(id: boardID) }
            if record == nil, let id = registrationID ?? identity.registrationID { record = try registry.board(byRegistrationID: id) }
            // A row whose MAC is not the one the board printed is another board's
            // (a mistyped --registration-id; another board on the same port).
            if let printed = identity.mac?.hex, let recorded = record?.mac, recorded != printed { record = nil }
            if record == nil, let mac = identity.mac { record = try registry.board(byMAC: mac.hex) }
        }
        let settings = record.flatMap { try? ProvisionSettings.recorded(in: $0) }
        var id = registrationID ?? identity.registrationID ?? record?.registrationID
        if id == nil, let mac = identity.mac, let v = identity.firmwareVersion, let version = try? FirmwareVersion(v) {
            id = (try? RegistrationID(mac: mac, firmwareVersion: version))?.value
        }
        return Subject(record: record, settings: settings, registrationID: id)
    }

    /// What came of it, said for people and scripts.
    public struct Report: Sendable {
        public var outcome: RegistrationOutcome
        public var registrationID: String?
        public var assignedHub: String?
        public var deviceID: String?
        public var diagnosis: String
        /// The log lines that decided it (masked).
        public var evidence: [String]
        /// The registry row it was recorded in, if any.
        public var boardID: Int64?
        /// Why it is not recorded in that row, if it is not.
        public var recordingFailure: String?
    }

    /// The report on `outcome`, with what DPS says of the registration if it was
    /// asked (`dpsState`: the assigned hub and device ID), recorded in the board's
    /// registry row when there is one. A failure to record is the report's, not thrown:
    /// the outcome is what the user came for. On a shared registry the row is claimed
    /// for the record (`station`): a board another station is provisioning or
    /// changing right now is not recorded (its run decides the row), which the
    /// report's ``Report/recordingFailure`` says, naming that station.
    public static func report(
        _ outcome: RegistrationOutcome, classifier: RegistrationClassifier, subject: Subject,
        dpsState: DeviceRegistrationState? = nil, enrollment: DPSEnrollmentFinding? = nil,
        enrollCommand: (@Sendable (_ boardID: Int64, _ replace: Bool) -> String)? = nil,
        recordingIn registry: (any RegistryStore)?, station: String? = nil
    ) -> Report {
        var hub = outcome.hub
        var deviceID: String?
        // Only for a registration the board reports as made: after a refusal DPS still
        // holds the state of an earlier, successful one, which is not this outcome's.
        if let dpsState, outcome.isSuccess {
            hub = dpsState.assignedHub ?? hub
            deviceID = dpsState.deviceId
        }
        let diagnosis = RegistrationDiagnosis.explain(
            outcome, classifier: classifier, record: subject.record, settings: subject.settings, enrollment: enrollment,
            enrollCommand: enrollCommand)
        var report = Report(
            outcome: outcome, registrationID: subject.registrationID, assignedHub: hub, deviceID: deviceID,
            diagnosis: diagnosis, evidence: classifier.evidence, boardID: subject.record?.id)
        if let registry, let record = subject.record, let id = record.id {
            let claims = RowClaims(registry: registry, station: station)
            defer { claims.releaseAll() }
            do {
                try claims.take(record)
                try registry.recordVerification(
                    boardID: id, BoardVerification(outcome: outcome.name, assignedHub: hub, deviceID: deviceID))
            } catch {
                report.recordingFailure = "\(error)"
            }
        }
        return report
    }

    /// Asks DPS for the registration's state (blocking; never from a task): the
    /// assigned hub and device ID. Nil when DPS does not know it or cannot be asked:
    /// the board's own log already gave the outcome.
    public static func dpsState(_ target: DPSEnrollmentTarget, registrationID: String) -> DeviceRegistrationState? {
        let client = target.client
        return waitFor { try? await client.registrationState(registrationID) }
    }

    /// The time to `deadline` as a person reads it: whole seconds ("12 s"), at least 1.
    public static func secondsLeft(until deadline: ContinuousClock.Instant) -> String {
        "\(max(1, Int(((deadline - .now) / .seconds(1)).rounded()))) s"
    }

    /// Asks DPS for the enrollment of a refused board (blocking; never from a task).
    /// Nil when DPS cannot be asked: the diagnosis then speaks of the board's side only.
    public static func dpsEnrollment(_ target: DPSEnrollmentTarget, registrationID: String) -> DPSEnrollmentFinding? {
        let client = target.client
        return waitFor {
            do { return DPSEnrollmentFinding(try await client.get(registrationID)) } catch { return nil }
        }
    }
}

/// Why a verification ended without an outcome from the board.
public enum RegistrationCheckError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The board's port went away and did not come back in time (unplugged).
    case boardGone(path: String)
    /// A stop signal came (its number); the port is closed and its settings restored.
    case stopped(signal: Int32)
    /// The board that booted on the port printed another MAC than the one provisioned.
    case differentBoard(path: String, expected: String, printed: String)

    public var description: String {
        switch self {
        case .boardGone(let path):
            "the board's port \(WorkflowError.name(path)) went away while devkit followed its log (unplugged?): "
                + "plug it in and run `devkit verify` again"
        case .stopped(let signal): "stopped by \(SignalRelay.name(of: signal))"
        case .differentBoard(let path, let expected, let printed):
            "the board on \(WorkflowError.name(path)) printed MAC \(printed), not the provisioned board's \(expected): "
                + "another board was plugged in; plug the provisioned one back in and run `devkit verify --port` on it"
        }
    }

    /// What a board's line and a JSON result say of a verification a stop signal
    /// ended, with the command that verifies the board later: the one wording
    /// (watch's board lines, provision's and watch's JSON results).
    public static func notVerified(signal: Int32, port: String?) -> String {
        "not verified: \(Self.stopped(signal: signal)); `devkit verify --port \(port.map(WorkflowError.name) ?? "<port>")` "
            + "verifies it"
    }
}

extension RegistrationCheck {
    /// Verifies a board provisioning just finished, as its last step (`provision
    /// --verify`, a profile's `[verify]`): boots its sketch, follows its log for
    /// `settings.timeoutSeconds`, asks DPS for the registration's state when `dps`
    /// can enroll (hub, device ID), and records the outcome in the board's row.
    /// Reported as the `verify` step.
    /// - Throws: ``RegistrationCheckError`` (board gone, stop signal), or the port's
    ///   and console's errors.
    public static func afterProvisioning(
        _ result: ProvisionResult, path: String, baudRate: Int = SerialPort.defaultBaudRate, settings: VerifySettings,
        dps: DPSSettings, registry: any RegistryStore, report: @escaping (ProvisionEvent) -> Void, hooks: Hooks = Hooks()
    ) throws -> Report {
        try afterProvisioning(
            boardID: result.boardID, mac: result.mac, path: path, baudRate: baudRate, settings: settings, dps: dps,
            registry: registry, report: report, hooks: hooks)
    }

    /// The same for the board in row `boardID`, whose recorded MAC is `mac` (`watch`
    /// finishing an owed enrollment of a board provisioned earlier).
    public static func afterProvisioning(
        boardID: Int64, mac: String, path: String, baudRate: Int = SerialPort.defaultBaudRate, settings: VerifySettings,
        dps: DPSSettings, registry: any RegistryStore, report: @escaping (ProvisionEvent) -> Void, hooks: Hooks = Hooks()
    ) throws -> Report {
        report(ProvisionEvent(
            stage: .verify, status: .started,
            message: "following the board's log for up to \(settings.timeoutSeconds) s to see it register", boardID: boardID))
        let deadline = ContinuousClock.now + .seconds(settings.timeoutSeconds)
        var hooks = hooks
        // Reading the MAC booted the sketch, which tried to register before the
        // certificate was enrolled: only a reset makes it try again.
        // A virtual board's reset button is a signal: say which, or the wait just ends.
        let press = SerialPort.isPseudoTerminal(path: path)
            ? "press its reset button (not A; on a virtual DevKit, send `devkit emulate` SIGHUP: kill -HUP <its pid>)"
            : "press its reset button (not A)"
        hooks.inUserMode = { deadline in
            report(ProvisionEvent(
                stage: .verify, status: .started,
                message: "the board is running its sketch (it booted to show its MAC, before it was enrolled): \(press) "
                    + "to see it register; waiting up to \(secondsLeft(until: deadline))", boardID: boardID))
        }
        let classifier: RegistrationClassifier
        do {
            let (observed, end) = try observe(
                path: path, baudRate: baudRate, deadline: deadline, freshBootOnly: true, hooks: hooks)
            switch end {
            case .gone: throw RegistrationCheckError.boardGone(path: path)
            case .signal(let signal): throw RegistrationCheckError.stopped(signal: signal)
            case .stopped, .deadline: classifier = observed
            }
        } catch {
            report(ProvisionEvent(stage: .verify, status: .failed, message: "\(error)", boardID: boardID, error: error))
            throw error
        }
        let outcome = classifier.outcome ?? .timeout
        // Another board booted on this port (the provisioned one swapped for the next):
        // its log says nothing of the board provisioned, and is not recorded for it.
        if let printed = classifier.identity.mac, let provisioned = try? MACAddress(mac), printed != provisioned {
            let error = RegistrationCheckError.differentBoard(path: path, expected: provisioned.hex, printed: printed.hex)
            report(ProvisionEvent(stage: .verify, status: .failed, message: "\(error)", boardID: boardID, error: error))
            throw error
        }
        let subject: Subject
        do {
            subject = try Self.subject(classifier: classifier, registry: registry, boardID: boardID)
        } catch {
            report(ProvisionEvent(stage: .verify, status: .failed, message: "\(error)", boardID: boardID, error: error))
            throw error
        }
        var state: DeviceRegistrationState?
        var enrollment: DPSEnrollmentFinding?
        var refused = false
        if case .unauthorized = outcome { refused = true }
        // Standard input was read once, for the enrollment: not asked again.
        if outcome.isSuccess || refused, dps.enrolls, dps.connectionStringFile != "-", let id = subject.registrationID,
           let target = try? DPSEnrollmentTarget(dps)
        {
            if refused { enrollment = dpsEnrollment(target, registrationID: id) } else { state = dpsState(target, registrationID: id) }
            target.close()
        }
        let verification = self.report(
            outcome, classifier: classifier, subject: subject, dpsState: state, enrollment: enrollment,
            enrollCommand: hooks.enrollCommand, recordingIn: registry, station: hooks.station)
        if let failure = verification.recordingFailure {
            report(ProvisionEvent(
                stage: .verify, status: .started, message: "warning: the outcome is not recorded in the registry: \(failure)",
                boardID: boardID))
        }
        let said = outcome.name + (verification.assignedHub.map { " to \($0)" } ?? "")
            + (verification.deviceID.map { " as \($0)" } ?? "")
        report(ProvisionEvent(
            stage: .verify, status: outcome.isSuccess ? .done : .failed,
            message: outcome.isSuccess ? said : "\(said): \(verification.diagnosis)", boardID: boardID,
            error: outcome.isSuccess ? nil : NotRegistered(report: verification)))
        return verification
    }
}

/// The board did not register (the `verify` step's failed event carries it).
public struct NotRegistered: Error, Sendable, CustomStringConvertible {
    public let report: RegistrationCheck.Report
    public var description: String { "\(report.outcome.name): \(report.diagnosis)" }
}
