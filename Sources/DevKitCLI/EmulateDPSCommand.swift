import DevKitBoardCLI
import ArgumentParser
import DevKitSystem
import DPSEmulator
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// `devkit emulate-dps`: a local DPS service over TLS on 127.0.0.1, until Ctrl-C.
struct EmulateDPSCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "emulate-dps",
        abstract: "Run a local DPS service (HTTPS on 127.0.0.1), to try enrollment without Azure.",
        usage: """
            devkit emulate-dps [--port <port>] [--state-dir <dir>]
                [--id-scope <scope>] [--iot-hub <host>] [--json] [<fault options>]
            """,
        discussion: """
            A local Azure IoT Hub Device Provisioning Service: the service API's \
            individual enrollments (PUT, GET, DELETE with If-Match and etags; bulk \
            create, update, updateIfMatchETag and delete of up to 10; the query with \
            continuation tokens) and device registration states, with DPS's checks: the \
            SAS token (signature, expiry, policy, resource), X.509 attestation whose \
            certificate's subject CN is the registration ID, DPS's ID rules and its \
            64-character X.509 limit, and error bodies shaped like DPS's.

            It also serves the device registration API on the same port, as a board \
            calls it: PUT /<id scope>/registrations/<id>/register and the operation \
            poll, over mutual TLS. The device's certificate (a DevKit's Alias \
            certificate) is accepted without X.509 chain checks, as DPS does; its CN \
            must be the registration ID and its thumbprint the enabled enrollment's, \
            else 401 with errorCode 401002 "Invalid certificate". An assigned device \
            gets the enrollment's hub (else --iot-hub) and its registration ID as \
            device ID; `devkit dps status` then shows it. The ID scope is kept in the \
            state directory (file id-scope) unless --id-scope is given.

            On its first start it makes, in --state-dir (0700): a CA (ca.pem), a TLS \
            certificate for localhost and 127.0.0.1 signed by it, and a new random key \
            for the policy provisioningserviceowner, written as a connection string to \
            the file `connection-string` (0600; HostName=localhost). Later starts reuse \
            them and the saved enrollments (state.json, saved before each answer). The \
            default --state-dir is $XDG_STATE_HOME/devkit/dps \
            (~/.local/state/devkit/dps).

            It prints its URL, the CA file, the connection string file, the state \
            directory and the ID scope, a labelled line each (or one JSON object with --json), then serves \
            until Ctrl-C or SIGTERM and prints the requests it counted. The key is \
            never printed: clients read the file. Clients connect with the URL and \
            trust the CA file alone; the SAS resource stays `localhost`. Counters: \
            GET /_emulator/stats (not part of DPS; no token needed).

            Fault switches make it misbehave on purpose, to test clients: --throttle \
            answers the first N requests with 429 and Retry-After; --fail-5xx answers \
            the N after those with 503; --latency-ms delays every answer; \
            --expire-tokens makes every SAS token expire --token-lifetime seconds \
            (default 1) after its first use, whatever its se says, so a client that \
            signs a new token (a later se) is let in again.

            Examples (the service in one terminal, a client in another):
              devkit emulate-dps --port 8443 --state-dir /tmp/dps
              devkit dps enroll --cert az-a4cf120b9e31v1v6v2.pem \\
                  --connection-string-file /tmp/dps/connection-string \\
                  --endpoint https://127.0.0.1:8443 --ca-file /tmp/dps/ca.pem
              curl --cacert /tmp/dps/ca.pem https://127.0.0.1:8443/_emulator/stats
              # a virtual board whose UDS was stored in /tmp/kit.json (devkit set-uds
              # on `devkit emulate --state /tmp/kit.json`), then reset with SIGHUP:
              devkit emulate --mode user --state /tmp/kit.json \\
                  --dps-endpoint https://127.0.0.1:8443 --elf DevKitDPS.ino.elf \\
                  --id-scope "$(cat /tmp/dps/id-scope)" --ca-file /tmp/dps/ca.pem
              devkit emulate-dps --throttle 3 --retry-after 2
              devkit emulate-dps --fail-5xx 2 --latency-ms 50
              devkit emulate-dps --expire-tokens --token-lifetime 5
            """)

    @Option(help: ArgumentHelp("Port on 127.0.0.1 (0 picks a free one; the real one is printed).", valueName: "port"))
    var port: Int = 0

    @Option(name: .customLong("state-dir"), help: ArgumentHelp(
        "Directory for the CA, certificate, key and enrollments (made 0700).",
        discussion: "Default: $XDG_STATE_HOME/devkit/dps (~/.local/state/devkit/dps).", valueName: "dir"),
        completion: .directory)
    var stateDir: String?

    @Option(name: .customLong("id-scope"), help: ArgumentHelp(
        "The ID scope of the device API (default: one made on first start and kept in the state directory).",
        valueName: "scope"))
    var idScope: String?

    @Option(name: .customLong("iot-hub"), help: ArgumentHelp(
        "The IoT hub assigned to devices whose enrollment names none.", valueName: "host"))
    var iotHub: String = DPSEmulatorConfiguration.defaultIoTHub

    @Option(help: ArgumentHelp("Fault: answer the first N requests with 429 Too Many Requests.", valueName: "n"))
    var throttle: Int = 0

    @Option(name: .customLong("retry-after"), help: ArgumentHelp("The Retry-After seconds of a throttled answer.", valueName: "s"))
    var retryAfter: Int = 1

    @Option(name: .customLong("fail-5xx"), help: ArgumentHelp("Fault: answer N requests (after the throttled ones) with 503.", valueName: "n"))
    var fail5xx: Int = 0

    @Option(name: .customLong("latency-ms"), help: ArgumentHelp("Fault: each answer takes at least this long from its request (the emulator's own work counted in it).", valueName: "ms"))
    var latencyMs: Int = 0

    @Flag(name: .customLong("expire-tokens"), help: "Fault: a SAS token expires --token-lifetime seconds after its first use.")
    var expireTokens = false

    @Option(name: .customLong("token-lifetime"), help: ArgumentHelp(
        "With --expire-tokens: how long a token lasts after its first use (default 1).", valueName: "s"))
    var tokenLifetime: Double?

    @Flag(name: .customLong("require-if-match"), help: ArgumentHelp(
        "A PUT without If-Match on an existing enrollment gets 409 instead of replacing it.",
        discussion: "DPS's behaviour there is not documented; clients should work either way."))
    var requireIfMatch = false

    @Flag(help: "Print the URL and files as one JSON object, and the counters as one more when stopped.")
    var json = false

    /// --quiet / --verbose (each request on stderr), as on every command.
    @OptionGroup var outputLevel: OutputLevelOptions

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be 0 to 65535 (0 picks a free one).") }
        if let idScope, !DPSEmulator.isValidIDScope(idScope) {
            throw ValidationError("--id-scope must be 1 to 64 letters, digits, '-', '_' or '.', e.g. 0ne00A1B2C3.")
        }
        if iotHub.isEmpty || iotHub.contains(where: { $0 == "/" || $0 == " " }) {
            throw ValidationError("--iot-hub must be a host name, e.g. my-hub.azure-devices.net.")
        }
        if throttle < 0 { throw ValidationError("--throttle cannot be negative.") }
        if fail5xx < 0 { throw ValidationError("--fail-5xx cannot be negative.") }
        if retryAfter < 0 { throw ValidationError("--retry-after cannot be negative.") }
        if latencyMs < 0 { throw ValidationError("--latency-ms cannot be negative.") }
        if let tokenLifetime {
            if !expireTokens { throw ValidationError("--token-lifetime takes effect with --expire-tokens; give both.") }
            if !(tokenLifetime >= 0) || !tokenLifetime.isFinite {
                throw ValidationError("--token-lifetime must be a number of seconds, 0 or more.")
            }
        }
    }

    func run() async throws {
        try await reportingErrors { () async throws in try await serve() }
    }

    private func serve() async throws {
        let faults = EmulatorFaults(
            throttleFirst: throttle, retryAfterSeconds: retryAfter, failFirst5xx: fail5xx,
            latency: .milliseconds(latencyMs),
            tokenLifetime: expireTokens ? .milliseconds(Int64((tokenLifetime ?? 1) * 1000)) : nil,
            requireIfMatch: requireIfMatch)
        let directory = EmulatorStateDirectory(stateDir ?? EmulatorStateDirectory.defaultPath())
        // Take the signals before serving, so none is missed.
        let signals = try SignalRelay([SIGINT, SIGTERM], restartingCalls: true)
        var requestLog: (@Sendable (String) -> Void)?
        if OutputLevel.current == .verbose {
            requestLog = { @Sendable line in printError("devkit: " + line) }
        }
        let emulator = try DPSEmulator(
            configuration: DPSEmulatorConfiguration(
                stateDirectory: directory, port: port, faults: faults, idScope: idScope, iotHub: iotHub),
            requestLog: requestLog)
        // The relay's wait blocks: a thread of its own, not one of the concurrency pool's.
        // The first signal stops the service gracefully (open requests finish); a
        // second one, while that takes too long, ends the process at once.
        let stoppedBy = StopSignal()
        Thread {
            let signal = signals.wait()
            stoppedBy.signal.store(signal, ordering: .releasing)
            Task { await emulator.stop() }
            SignalRelay.dieOf(signals.wait())
        }.start()
        let json = self.json
        try await emulator.run { port in
            announce(emulator, port: port, json: json)
        }
        let signal = SignalRelay.name(of: stoppedBy.signal.load(ordering: .acquiring))
        let stats = await emulator.stats()
        if json {
            writeStdout(try JSONOutput.text(StoppedEvent(event: "stopped", signal: signal, stats: stats)))
        } else if OutputLevel.current != .quiet {
            printError("devkit: local DPS stopped (\(signal)): \(summary(stats)).")
        }
    }

    /// The signal that stopped the service, set by the thread that waited for it.
    private final class StopSignal: Sendable {
        let signal = Atomic<Int32>(0)
    }

    /// Where the service is and how to reach it: stdout, written at once (scripts
    /// wait for these lines before they start).
    private func announce(_ emulator: DPSEmulator, port: Int, json: Bool) {
        let directory = emulator.configuration.stateDirectory
        let url = "https://127.0.0.1:\(port)"
        if json {
            let started = StartedEvent(
                url: url, port: port, caFile: directory.caCertificate,
                connectionStringFile: directory.connectionStringFile, stateDir: directory.path,
                hostName: emulator.connectionString.hostName, idScope: emulator.idScope, pid: Int(getpid()))
            writeStdout((try? JSONOutput.text(started)) ?? "{}")
        } else {
            writeStdout(labelledLines([
                ("URL", url),
                ("CA file", directory.caCertificate),
                ("Connection string file", directory.connectionStringFile),
                ("State directory", directory.path),
                ("ID scope", emulator.idScope),
            ]))
            if OutputLevel.current != .quiet {
                printError("devkit: local DPS on \(url) (\(emulator.connectionString.policyName) key in the connection string file). Press Ctrl-C to stop.")
            }
        }
    }

    /// "42 requests (bulk 30, enrollment_put 12); answers 200: 40, 429: 2; 300 enrollments stored"
    private func summary(_ stats: EmulatorStats) -> String {
        func list(_ counts: [String: Int], _ separator: String) -> String {
            counts.sorted { $0.key < $1.key }.map { "\($0.key)\(separator)\($0.value)" }.joined(separator: ", ")
        }
        var text = "\(stats.requests) request\(stats.requests == 1 ? "" : "s")"
        if !stats.byKind.isEmpty { text += " (\(list(stats.byKind, " ")))" }
        if !stats.byStatus.isEmpty { text += "; answers \(list(stats.byStatus, ": "))" }
        return text + "; \(stats.enrollments) enrollment\(stats.enrollments == 1 ? "" : "s") stored"
    }

    private struct StartedEvent: Encodable {
        var event = "started"
        var url: String
        var port: Int
        var caFile: String
        var connectionStringFile: String
        var stateDir: String
        var hostName: String
        var idScope: String
        var pid: Int
        enum CodingKeys: String, CodingKey {
            case event, url, port, pid
            case idScope = "id_scope"
            case caFile = "ca_file"
            case connectionStringFile = "connection_string_file"
            case stateDir = "state_dir"
            case hostName = "host_name"
        }
    }

    private struct StoppedEvent: Encodable {
        var event: String
        var signal: String
        var stats: EmulatorStats
    }
}

/// Writes a line to standard output unbuffered: a script reading the first lines
/// gets them now, not when a buffer fills. (Values are escaped by `labelledLines`,
/// and JSON by its encoder.)
private func writeStdout(_ text: String) {
    writeAll(STDOUT_FILENO, text.hasSuffix("\n") ? text : text + "\n")
}
