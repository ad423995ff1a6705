import DevKitBoardCLI
import ArgumentParser
import DevKitModel
import DiceRIoT
import DevKitSystem
import Dispatch
import Foundation
import SystemPackage
import VirtualDevKit
import VirtualDevKitDPS
#if canImport(Glibc)
import Glibc
#endif

/// `devkit emulate`: a virtual DevKit on a pseudo-terminal, until Ctrl-C.
struct EmulateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "emulate",
        abstract: "Run a virtual DevKit on a pseudo-terminal, to try devkit without a board.",
        usage: """
            devkit emulate [--link <path>] [--mode <mode>] [--mac <mac>]
                [--firmware-version <version>] [--json] [<fault options>]
                [--dps-endpoint <url> --id-scope <scope> [--ca-file <file>]
                 [--elf <file> | --bin <file> --map <file>]]
            """,
        discussion: """
            The virtual board speaks the AZ3166 configuration console byte for byte: \
            banner, help, echo with secret masking, every command's exact output, the \
            UDS quirk, and `exit` rebooting into user mode with the MAC address and \
            firmware version in its boot log. Like the real board it has no flow control \
            and a 256-byte receive ring: bytes that arrive while a command runs and do \
            not fit are lost.

            It prints the pseudo-terminal's path on the first line of standard output \
            (or a JSON object with --json) and runs until interrupted (Ctrl-C or \
            SIGTERM), then removes its --link. With --baud it then reports the USB \
            frame latency its replies got (output crosses USB in 1 ms frames, as with \
            the ST-LINK's bridge).

            What it stores (UDS, Wi-Fi, connection string) is kept in --state FILE \
            (mode 0600) across runs; without it, in memory only.

            Examples (the board in one terminal, a command in another):
              devkit emulate --link /tmp/ttyDevKit --state /tmp/devkit-state.json
              devkit info --port /tmp/ttyDevKit --reboot

            In user mode with --dps-endpoint and --id-scope, the board runs the DPS \
            sample as the firmware does: it derives its DeviceID and Alias keys and \
            certificate from its stored UDS and its firmware (--elf, or --bin with \
            --map; default: a small bundled sample image), exactly as `devkit cert` \
            does, registers through DPS's device API over mutual TLS presenting its \
            Alias certificate, and prints the firmware's progress and outcome lines. \
            It trusts --ca-file, else only the stock firmware's roots (Baltimore, \
            DigiCert Global Root CA), as a board with stock firmware does.
              devkit emulate --mode user --state /tmp/kit.json \\
                  --dps-endpoint https://127.0.0.1:8443 --id-scope 0ne00A1B2C3 \\
                  --ca-file /tmp/dps/ca.pem --elf DevKitDPS.ino.elf

            Signals pull the cable: SIGUSR1 unplugs the board (the pty closes, the link \
            goes), SIGUSR2 plugs it back in (a new pty, the link re-pointed, a fresh \
            boot into the --mode it started in), e.g. `kill -USR1 <pid>`; SIGHUP \
            presses reset (a fresh boot into user mode on the same pty: how to hear \
            the DPS sample's log from the start, since a boot's output is not replayed \
            to a host that opens later). A board that went to user mode (after a \
            command that rebooted it: `info --reboot`, a `provision` that read the MAC \
            or verified, `verify`; or SIGHUP) is back in the --mode it started in \
            (configuration by default) after SIGUSR1 then SIGUSR2, an unplug and a \
            replug (give hosts the --link path: the pty may change).

            Fault switches make it misbehave on purpose, to test hosts:
              devkit emulate --link /tmp/ttyDevKit --fail-eeprom-write
              devkit emulate --link /tmp/ttyDevKit --baud 115200 --se-write-delay 30
              devkit emulate --link /tmp/ttyDevKit --flood-bytes 10485760
            """)

    @Option(help: ArgumentHelp("Keep a symlink to the pty at this path (removed on exit).", valueName: "path"), completion: .file())
    var link: String?

    @Option(help: ArgumentHelp("Wi-Fi MAC address of the board (12 hex digits, separators allowed).", valueName: "mac"))
    var mac: String = "a4cf120b9e31"

    @Option(name: .customLong("firmware-version"), help: ArgumentHelp("DevKit SDK version the board reports.", valueName: "x.y.z"))
    var firmwareVersion: String = "1.6.2"

    @Option(help: ArgumentHelp("Mode at power-up: config (button A held), user, or ap (button B held).", valueName: "mode"))
    var mode: ModeArgument = .config

    @Option(
        help: ArgumentHelp("JSON file for the board's secure-element contents (created 0600).", valueName: "file"),
        completion: .file())
    var state: String?

    @Option(help: ArgumentHelp(
        "Pace every byte in both directions as on a wire at this rate (each byte takes 10/baud s); output reaches the host in 1 ms USB frames.",
        discussion: "Without it the board answers as fast as the pty allows.", valueName: "rate"))
    var baud: Int?

    @Option(name: .customLong("network"), help: ArgumentHelp("A Wi-Fi network `scan` finds (repeatable).", valueName: "ssid"))
    var networks: [String] = []

    @Flag(name: .customLong("no-networks"), help: "`scan` finds no network.")
    var noNetworks = false

    @Flag(name: .customLong("fail-eeprom-write"), help: "Fault: every secure-element write fails (ERROR: Failed to write EEPROM).")
    var failEEPROMWrite = false

    @Flag(name: .customLong("fail-verify"), help: "Fault: every secure-element write fails its read-back (ERROR: Verify failed.).")
    var failVerify = false

    @Option(name: .customLong("unplug-after"), help: ArgumentHelp("Fault: vanish (close the pty) after receiving this many bytes.", valueName: "bytes"))
    var unplugAfter: Int?

    @Option(name: .customLong("line-noise"), help: ArgumentHelp("Fault: emit this many garbage bytes before the banner at every boot.", valueName: "bytes"))
    var lineNoise: Int = 0

    @Option(name: .customLong("se-write-delay"), help: ArgumentHelp("Fault: each secure-element write (and its verify) takes this long.", valueName: "ms"))
    var seWriteDelay: Int = 0

    @Option(name: .customLong("flood-bytes"), help: ArgumentHelp(
        "Fault: answer the host's first bytes with this many bytes of output and no prompt (a board stuck printing).",
        valueName: "bytes"))
    var floodBytes: Int?

    @Flag(name: .customLong("echo-secret-in-errors"), help: "Fault: the secret commands reject their value and quote it back (Invalid <command> value: <value>).")
    var echoSecretInErrors = false

    @Flag(help: "Fault: print nothing and ignore the host (a silent port, or a board whose Wi-Fi failed in configuration mode).")
    var silent = false

    @Flag(name: .customLong("sketch-without-mac"), help: "Fault: the user-mode sketch does not log its MAC address.")
    var sketchWithoutMAC = false

    @Flag(name: .customLong("not-a-devkit"), help: "Fault: be another ST board's shell (same prompt bytes, no DevKit commands).")
    var notADevKit = false

    @Option(name: .customLong("dps-endpoint"), help: ArgumentHelp(
        "User mode: register with the DPS device API at this URL, e.g. https://127.0.0.1:8443.", valueName: "url"))
    var dpsEndpoint: String?

    @Option(name: .customLong("id-scope"), help: ArgumentHelp("The DPS ID scope to register under (with --dps-endpoint).", valueName: "scope"))
    var idScope: String?

    @Option(name: .customLong("ca-file"), help: ArgumentHelp(
        "PEM roots the board trusts for DPS (default: the stock firmware's Baltimore and DigiCert G1 roots).", valueName: "file"),
        completion: .file())
    var caFile: String?

    @OptionGroup var firmware: FirmwareOptions

    @Option(name: .customLong("dps-timeout"), help: ArgumentHelp(
        "Seconds the DPS client keeps trying before it reports a timeout.", valueName: "s"))
    var dpsTimeout: Int = 30

    @Option(name: .customLong("log-style"), help: ArgumentHelp(
        "The sketch's log prefix: timestamped (YYYY-mm-dd HH:MM:SS INFO:) or sdk (Info: / Error: Time:...).", valueName: "style"))
    var logStyle: LogStyleArgument = .timestamped

    @Flag(name: .customLong("no-wifi"), help: "Fault: the user-mode sketch finds no Wi-Fi (>>>No Wi-Fi.).")
    var noWiFi = false

    @Flag(name: .customLong("uds-unreadable"), help: "Fault: the DPS sketch cannot read the UDS from the secure element.")
    var udsUnreadable = false

    @Flag(name: .customLong("dice-init-failure"), help: "Fault: the DPS sketch's DiceInit fails (DiceInit failed!).")
    var diceInitFailure = false

    @Flag(help: "Print the device path and settings as one JSON object, then one per event (replugged; stopped, with the USB latency of the replies).")
    var json = false

    /// --quiet / --verbose, as on every command.
    @OptionGroup var outputLevel: OutputLevelOptions

    enum ModeArgument: String, ExpressibleByArgument, CaseIterable {
        case config, user, ap
    }

    enum LogStyleArgument: String, ExpressibleByArgument, CaseIterable {
        case timestamped, sdk
    }

    func validate() throws {
        if normalizedMAC == nil {
            throw ValidationError("--mac must be 12 hex digits, e.g. a4cf120b9e31 or A4:CF:12:0B:9E:31.")
        }
        if let baud, baud <= 0 { throw ValidationError("--baud must be a positive rate, e.g. 115200.") }
        if let unplugAfter, unplugAfter < 1 { throw ValidationError("--unplug-after must be at least 1 byte.") }
        if lineNoise < 0 { throw ValidationError("--line-noise cannot be negative.") }
        if seWriteDelay < 0 { throw ValidationError("--se-write-delay cannot be negative.") }
        if let floodBytes, floodBytes < 1 { throw ValidationError("--flood-bytes must be at least 1 byte.") }
        if noNetworks && !networks.isEmpty { throw ValidationError("Give --network or --no-networks, not both.") }
        if (dpsEndpoint == nil) != (idScope == nil) {
            throw ValidationError("Give --dps-endpoint and --id-scope together (the DPS sample needs both).")
        }
        if dpsEndpoint == nil && (caFile != nil || firmware.isGiven) {
            throw ValidationError("--ca-file and the firmware options take effect with --dps-endpoint and --id-scope.")
        }
        if let dpsEndpoint, URL(string: dpsEndpoint)?.scheme?.lowercased() != "https" || URL(string: dpsEndpoint)?.host == nil {
            throw ValidationError("--dps-endpoint must be an https URL, e.g. https://127.0.0.1:8443.")
        }
        if dpsTimeout < 1 { throw ValidationError("--dps-timeout must be at least 1 second.") }
    }

    /// The MAC in the board's own spelling: lower-case, no separators.
    var normalizedMAC: String? {
        (try? MACAddress(mac))?.hex
    }

    func run() async throws {
        try await reportingErrors {
            var configuration = VirtualDevKitConfiguration(
                mode: { switch mode { case .config: .configuration; case .user: .user; case .ap: .ap } }(),
                macAddress: normalizedMAC ?? mac,
                firmwareVersion: firmwareVersion,
                stateFile: state,
                linkPath: link,
                pacingBaudRate: baud)
            if noNetworks { configuration.networks = [] } else if !networks.isEmpty { configuration.networks = networks }
            configuration.faults = .init(
                eepromWriteFailure: failEEPROMWrite, verifyFailure: failVerify,
                unplugAfterReceivedBytes: unplugAfter, lineNoiseBytes: lineNoise,
                secureElementWriteDelay: .milliseconds(seWriteDelay), floodBytes: floodBytes,
                echoSecretInErrors: echoSecretInErrors, silent: silent, sketchWithoutMACLog: sketchWithoutMAC,
                notADevKit: notADevKit, noWiFi: noWiFi, udsUnreadable: udsUnreadable, diceInitFailure: diceInitFailure)
            configuration.logStyle = logStyle == .sdk ? .sdk : .timestamped
            let sketch = try dpsSketch()

            // Take the signals before the board exists, so none is missed.
            let signals = try SignalRelay([SIGINT, SIGTERM, SIGUSR1, SIGUSR2, SIGHUP], restartingCalls: true)
            let kit = try VirtualDevKit(configuration: configuration, sketch: sketch)
            kit.start()
            // Announce the port once the board has booted (its boot output is not
            // replayed to hosts that open later, as on a real board). A DPS sketch
            // keeps the board busy until its outcome (up to --dps-timeout): not
            // waited for, so that the path comes at once.
            _ = kit.waitUntilIdle(timeout: sketch == nil ? .seconds(30) : .milliseconds(500))
            if json {
                var object: [String: Any] = [
                    "device": kit.devicePath, "mode": mode.rawValue, "mac": configuration.macAddress,
                    "firmware_version": firmwareVersion, "pid": Int(getpid()),
                ]
                if let link { object["link"] = link }
                if let state { object["state"] = state }
                if let baud { object["baud"] = baud }
                let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
                printOut(String(decoding: data, as: UTF8.self))
            } else {
                printOut(kit.devicePath)
                printError(
                    "devkit: virtual DevKit (\(mode.rawValue) mode, MAC \(configuration.macAddress), firmware \(firmwareVersion)) on \(kit.devicePath)"
                        + (link.map { " (link \($0))" } ?? "") + ". Press Ctrl-C to stop.")
            }
            var signal: Int32
            repeat {
                signal = await nextSignal(signals)
                switch signal {
                case SIGUSR1:
                    kit.unplug()
                    if !json { printError("devkit: virtual DevKit unplugged.") }
                case SIGHUP:
                    // The reset button (no button held): a fresh boot into user mode,
                    // heard by a host that has the port open (e.g. the DPS sample's log).
                    kit.reset(into: .user)
                    if json {
                        printOut(#"{"device":"\#(kit.devicePath)","event":"reset"}"#)
                    } else {
                        printError("devkit: virtual DevKit reset.")
                    }
                case SIGUSR2:
                    try kit.replug()
                    _ = kit.waitUntilIdle(timeout: sketch == nil ? .seconds(30) : .milliseconds(500))
                    if json {
                        printOut(#"{"device":"\#(kit.devicePath)","event":"replugged"}"#)
                    } else {
                        printOut(kit.devicePath)
                        printError("devkit: virtual DevKit plugged in again on \(kit.devicePath).")
                    }
                default:
                    break
                }
            } while signal == SIGUSR1 || signal == SIGUSR2 || signal == SIGHUP
            kit.stop()
            let latency = kit.usbReplyLatency
            let ms = Double(latency.total.components.attoseconds) / 1e15 + Double(latency.total.components.seconds) * 1000
            if json {
                printOut(#"{"event":"stopped","usb_reply_latency_ms":\#(String(format: "%.3f", ms)),"replies":\#(latency.replies)}"#)
            } else {
                printError("devkit: virtual DevKit stopped (\(signal == SIGINT ? "SIGINT" : "SIGTERM")).")
                if latency.replies > 0 {
                    printError(String(format: "devkit: USB frame latency at the end of replies: %.3f ms over %d replies.", ms, latency.replies))
                }
            }
        }
    }
}

extension EmulateCommand {
    /// The DPS sample, when --dps-endpoint is given: its firmware image and trust
    /// read now, so that a bad file fails at start rather than at the board's boot.
    func dpsSketch() throws -> DPSSampleSketch? {
        guard let dpsEndpoint, let idScope, let url = URL(string: dpsEndpoint) else { return nil }
        let image: DiceRIoT.RIoTImage
        if firmware.isGiven {
            image = try firmware.source.load()
        } else {
            do { image = try DPSSampleSketch.sampleImage() } catch { throw CertError.firmware(error) }
        }
        var ca: String?
        if let caFile { ca = String(decoding: try readWholeFile(caFile, limit: .certificate), as: UTF8.self) }
        return DPSSampleSketch(settings: .init(
            endpoint: url, idScope: idScope, trustedCAPEM: ca, image: image, timeout: .seconds(dpsTimeout)))
    }
}

/// The next relayed signal (or the oldest that already came), waited for on a
/// thread of its own rather than one of the concurrency pool's.
private func nextSignal(_ relay: SignalRelay) async -> Int32 {
    await withCheckedContinuation { continuation in
        Thread { continuation.resume(returning: relay.wait()) }.start()
    }
}

/// Writes a line to standard output, unbuffered (scripts read the first line at once).
private func printOut(_ message: String) {
    let line = message.hasSuffix("\n") ? message : message + "\n"
    try? FileDescriptor.standardOutput.writeAll(bytes: Array(line.utf8))
}
