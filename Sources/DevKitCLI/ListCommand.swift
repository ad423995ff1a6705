import DevKitBoardCLI
import DevKitConsole
import DevKitSystem
import DevKitModel
import DevKitWorkflows
import ArgumentParser
import DeviceDiscovery
import Foundation
import SerialPort
import Synchronization
import SystemPackage
#if canImport(Glibc)
import Glibc
#endif

/// `devkit list [--json] [--watch | --probe [--timeout S]]`: the DevKits attached over USB.
struct ListCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "List the DevKits attached over USB.",
        usage: """
            devkit list [--json] [--watch]
            devkit list [--json] --probe [--timeout <seconds>]
            """,
        discussion: """
            Finds every serial port whose USB parent is the board's ST-LINK probe \
            (USB 0483:374b) through udev, and shows its device node, its \
            /dev/serial/by-id link (stable across replugs), the USB serial number and \
            the USB port path (stable for a socket of a hub). Other serial ports are \
            not listed. A board shows up in any mode; its console answers only in \
            configuration mode (hold A, press reset).

            Every ST Nucleo and Discovery board has the same USB ID, so a listed port \
            may be another board. Plain `list` opens no port (one may be in use). \
            --probe opens each listed port, all at once, and checks what answers the \
            way provision does before it sets anything: a `version` at the console \
            prompt, or a DevKit's user-mode output. Only a carriage return and \
            `version` are sent (read-only). The STATE column says what it found: \
            devkit (config mode, fw X.Y.Z), devkit (user mode), not a DevKit, no \
            answer (silent within --timeout: also a quiet sketch in user mode), busy \
            (another program holds it), permission denied (naming the group to \
            join). With --json each device gets a "probe" object.

            With exactly one board attached, commands that talk to a board need no \
            --port.

            --watch keeps running and prints each board as it is plugged in or \
            unplugged, until interrupted. With --json it prints one object per \
            line: first {"event":"snapshot","devices":[...]} (once it is \
            listening), then {"event":"add"|"remove","device":{...}}.

            Examples:
              devkit list
              devkit list --probe --timeout 2
              devkit list --json | jq -r '.devices[].node'
              devkit list --probe --json | jq -r '.devices[].probe.state'
              devkit list --watch --json
            """)

    @Flag(name: .long, help: "Print JSON for scripts: {\"devices\": [...]}; with --watch, one JSON object per line.")
    var json = false

    @Flag(name: .long, help: "Keep running and report boards as they are plugged in and unplugged.")
    var watch = false

    @Flag(name: .long, help: "Open each port and check that a DevKit answers (read-only; adds a STATE column).")
    var probe = false

    @Option(help: ArgumentHelp(
        "With --probe: how long each port has to answer (default 3); `version` then gets half as long again.",
        valueName: "seconds"))
    var timeout: Double?

    /// For shell completion (`--port`): the device nodes, one per line, nothing else.
    @Flag(name: .long, help: .hidden)
    var names = false

    /// --quiet / --verbose, as on every command.
    @OptionGroup var outputLevel: OutputLevelOptions

    static let defaultTimeout = 3.0

    func validate() throws {
        if watch && probe { throw ValidationError("Give --watch or --probe, not both.") }
        if timeout != nil && !probe { throw ValidationError("--timeout applies to --probe: add --probe.") }
        if let timeout, !(timeout > 0 && timeout <= 600) {
            throw ValidationError("--timeout must be more than 0 and at most 600 seconds, e.g. --timeout 3.")
        }
        if names && (json || watch || probe) { throw ValidationError("--names takes no other option.") }
    }

    func run() async throws {
        try await reportingErrors {
            if names {
                // No hint when there is none: a completion offers nothing.
                for board in try DeviceDiscovery.enumerate() { listOutput(board.devnode) }
            } else if watch {
                try await runWatch()
            } else {
                let boards = try DeviceDiscovery.enumerate()
                let probes = probe ? probeAll(boards) : nil
                if json {
                    let devices = probes.map { zip(boards, $0).map { ProbedDevice(device: $0, probe: $1) }.map(AnyEncodable.init) }
                        ?? boards.map(AnyEncodable.init)
                    listOutput(try ListOutput.json(["devices": AnyEncodable(devices)]))
                } else if boards.isEmpty {
                    printError(ListOutput.noBoardHint)
                } else {
                    listOutput(ListOutput.table(boards, probes: probes))
                    if OutputLevel.current != .quiet {
                        for note in ListOutput.notes(probes ?? []) { printError("devkit: \(note)") }
                    }
                }
            }
        }
    }

    /// Probes every board at once. A stop signal (Ctrl-C) cancels the waits, so each
    /// port is closed with its settings restored before the process dies of it.
    private func probeAll(_ boards: [DevKitDevice]) -> [ProbeResult] {
        let prober = BoardProbe(timeout: .milliseconds(Int((timeout ?? Self.defaultTimeout) * 1000))) { path, port in
            VerboseTransport.ifVerbose(port) { printError("[\(path)] \($0)") }
        }
        let paths = boards.map(\.devnode)
        guard let relay = try? SignalRelay([SIGINT, SIGTERM, SIGHUP], restartingCalls: true),
            let done = try? FileDescriptor.eventFD()
        else { return prober.probeAll(paths) }
        let results = Mutex<[ProbeResult]>([])
        let thread = Thread {
            let probed = prober.probeAll(paths)
            results.withLock { $0 = probed }
            var one: UInt64 = 1
            _ = withUnsafeBytes(of: &one) { try? done.writeSome($0) }
        }
        thread.start()
        var caught: Int32?
        while true {
            var fds = [pollfd(fd: done.rawValue, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: relay.fd, events: Int16(POLLIN), revents: 0)]
            _ = poll(&fds, 2, -1)  // EINTR: look again
            if fds[0].revents != 0 { break }
            if fds[1].revents != 0, let signal = relay.takeSignals().first {
                caught = caught ?? signal
                prober.cancel()
            }
        }
        relay.restore()
        try? done.close()
        if let caught {
            printError("devkit: stopped by \(SignalRelay.name(of: caught)); the ports' settings are restored.")
            SignalRelay.dieOf(caught)
        }
        return results.withLock { $0 }
    }

    /// Snapshot first (taken after the monitor is listening, so nothing is missed),
    /// then one line per event.
    private func runWatch() async throws {
        let monitor = try DeviceMonitor()
        defer { monitor.stop() }
        if json {
            listOutput(try ListOutput.json([
                "event": AnyEncodable("snapshot"),
                "devices": AnyEncodable(monitor.attached),
            ]))
        } else {
            if monitor.attached.isEmpty {
                printError(ListOutput.noBoardHint)
            } else {
                listOutput(ListOutput.table(monitor.attached))
            }
            printError("Watching for DevKits being plugged in or unplugged (Ctrl-C to stop)…")
        }
        for try await event in monitor.events {
            if json {
                listOutput(try ListOutput.json([
                    "event": AnyEncodable(event.action),
                    "device": AnyEncodable(event.device),
                ]))
            } else {
                let verb = event.action == "add" ? "plugged in" : "unplugged"
                var line = "\(verb): \(event.device)"
                if let link = event.device.byIDLink { line += " \(link)" }
                listOutput(escapedControlCharacters(line))
            }
        }
    }
}

/// Formatting for `devkit list`, kept apart so tests can check it.
enum ListOutput {
    static let noBoardHint =
        "No DevKit attached. Plug one in (hold A, reset to enter configuration mode); "
        + "`devkit emulate` starts a virtual one."

    /// Aligned columns: NODE, SERIAL, USB, (with probes) STATE, BY-ID ("-" when unknown).
    static func table(_ boards: [DevKitDevice], probes: [ProbeResult]? = nil) -> String {
        var header = ["NODE", "SERIAL", "USB", "BY-ID"]
        if probes != nil { header.insert("STATE", at: 3) }
        let rows = boards.enumerated().map { index, board in
            // The USB serial is the board's own text (udev passes it on): escaped.
            var row = [board.devnode, board.serialNumber ?? "-", board.usbPath ?? "-", board.byIDLink ?? "-"]
            if let probes { row.insert(summary(probes[index].outcome), at: 3) }
            return row.map { escaped($0) }
        }
        let widths = header.indices.map { column in
            ([header] + rows).map { $0[column].count }.max() ?? 0
        }
        return ([header] + rows).map { row in
            row.enumerated().map { column, cell in
                column == row.count - 1 ? cell : cell.padding(toLength: widths[column], withPad: " ", startingAt: 0)
            }.joined(separator: "  ")
        }.joined(separator: "\n")
    }

    /// The STATE column: what answered, in a few words.
    static func summary(_ outcome: ProbeOutcome) -> String {
        switch outcome {
        case .devKit(.configuration, let versions?): "devkit (config mode, fw \(versions.firmwareVersion.text))"
        case .devKit(.configuration, nil): "devkit (config mode, no prompt)"
        case .devKit(.user, _): "devkit (user mode)"
        case .devKit(.accessPoint, _): "devkit (AP mode)"
        case .notADevKit: "not a DevKit"
        case .noAnswer(0): "no answer"
        case .noAnswer(let received): "no answer (\(received) unrecognised bytes)"
        case .busy(let pid?): "busy (PID \(pid))"
        case .busy(nil): "busy"
        case .permissionDenied(let group): "permission denied (group \(group))"
        case .failed(let summary, _): "error: \(summary)"
        }
    }

    /// What to do about a port that is not a DevKit ready to provision (nil when it
    /// is one): the message the same problem gets from the other commands.
    static func note(_ outcome: ProbeOutcome, path: String) -> String? {
        switch outcome {
        case .devKit(.configuration, _?): nil
        case .devKit(let mode, _): "\(path): " + ConsoleError.wrongMode(mode).description
        case .notADevKit(let reason): "\(path): " + ConsoleError.notADevKit(reason: reason).description
        case .noAnswer(let received): "\(path): " + ConsoleError.noAnswer(receivedBytes: received).description
        case .busy(let pid): SerialPortError.inUse(path: path, pid: pid).description
        case .permissionDenied: SerialPortError.permissionDenied(path: path).description
        case .failed(_, let message): message.contains(path) ? message : "\(path): \(message)"
        }
    }

    /// What to do about the ports that are not DevKits ready to provision: one line
    /// per distinct finding, naming its ports ("/dev/ttyACM3, /dev/ttyACM4: no
    /// answer …"), in the order the ports were listed.
    static func notes(_ results: [ProbeResult]) -> [String] {
        var outcomes: [ProbeOutcome] = []
        var ports: [ProbeOutcome: [String]] = [:]
        for result in results {
            if ports[result.outcome] == nil { outcomes.append(result.outcome) }
            ports[result.outcome, default: []].append(result.path)
        }
        return outcomes.compactMap { note($0, path: ports[$0]!.joined(separator: ", ")) }
    }

    /// The `state` key of a probe in JSON.
    static func state(_ outcome: ProbeOutcome) -> String {
        switch outcome {
        case .devKit: "devkit"
        case .notADevKit: "not_a_devkit"
        case .noAnswer: "no_answer"
        case .busy: "busy"
        case .permissionDenied: "permission_denied"
        case .failed: "error"
        }
    }

    /// One line of JSON for `list --json` and each `--watch` event.
    static func json(_ object: [String: AnyEncodable]) throws -> String {
        try JSONOutput.text(object)
    }
}

/// A device of `list --probe --json`: the device's keys and `probe`.
struct ProbedDevice: Encodable {
    var device: DevKitDevice
    var probe: ProbeResult

    /// Every key present (null when not known), as for the device itself.
    struct Probe: Encodable {
        var state: String
        var summary: String
        /// configuration, user or ap, for a DevKit.
        @NullEncoded var mode: String?
        @NullEncoded var firmwareVersion: String?
        /// The process holding a busy port.
        @NullEncoded var pid: Int32?
        /// The group to join when permission was denied.
        @NullEncoded var group: String?
        /// What to do next, for every state but a DevKit in configuration mode.
        @NullEncoded var message: String?
        var elapsedMs: Int

        enum CodingKeys: String, CodingKey {
            case state, summary, mode, pid, group, message
            case firmwareVersion = "firmware_version"
            case elapsedMs = "elapsed_ms"
        }
    }

    enum CodingKeys: String, CodingKey { case probe }

    func encode(to encoder: any Encoder) throws {
        try device.encode(to: encoder)
        var container = encoder.container(keyedBy: CodingKeys.self)
        let outcome = probe.outcome
        var value = Probe(
            state: ListOutput.state(outcome), summary: ListOutput.summary(outcome),
            message: ListOutput.note(outcome, path: probe.path),
            elapsedMs: Int(probe.elapsed / .milliseconds(1)))
        switch outcome {
        case .devKit(let mode, let versions):
            value.mode = switch mode { case .configuration: "configuration"; case .user: "user"; case .accessPoint: "ap" }
            value.firmwareVersion = versions?.firmwareVersion.text
        case .busy(let pid): value.pid = pid
        case .permissionDenied(let group): value.group = group
        default: break
        }
        try container.encode(value, forKey: .probe)
    }
}

/// Writes a line to standard output at once (unbuffered), so a reader on a pipe
/// sees each `--watch` event as it happens.
private func listOutput(_ text: String) {
    writeAll(STDOUT_FILENO, text + "\n")
}
