import DevKitConsole
import DevKitModel
import DevKitTestSupport
import DeviceDiscovery
import Foundation
import SerialPort
import Testing
import VirtualDevKit

@testable import DevKitCLI
@testable import DevKitWorkflows

#if canImport(Glibc)
import Glibc
#endif

/// `devkit list --probe` end to end (issue 12 item 11): the real libudev lists the
/// ST-LINK ttys of a umockdev testbed, and each node leads to a virtual board on a
/// pty (the hotplug driver makes the testbed's node a symlink to the board's link):
/// a DevKit, another ST board with the same prompt, silent ports, one held by
/// another process. The Arduino on ttyACM1 is not an ST-LINK: never listed, never
/// opened.
@Suite("devkit list --probe against umockdev and virtual boards", .serialized, .timeLimit(.minutes(5)))
struct ListProbeTests {
    /// The boards behind the testbed's nodes, started in this process.
    final class Bench {
        let dir = consoleTestDirectory()
        var kits: [String: VirtualDevKit] = [:]

        func add(_ node: String, _ configuration: VirtualDevKitConfiguration = .init()) throws {
            var configuration = configuration
            configuration.linkPath = link(node)
            let kit = try startedKit(configuration)
            // Booted, so nothing from its boot waits in the pty for the probe.
            #expect(kit.waitUntilIdle())
            kits[node] = kit
        }

        func link(_ node: String) -> String { dir + "/" + (node as NSString).lastPathComponent }

        func stop() {
            kits.values.forEach { $0.stop() }
            consoleRemoveTree(dir)
        }
    }

    /// Runs `devkit list <arguments>` in a testbed with the bench's ttys (ttyACM0,
    /// the Arduino's ttyACM1, ttyS0, and ST-LINKs ttyACM2-5), the bench's boards
    /// behind their nodes; the driver waits for devkit to exit and prints
    /// "driver: exit status N" on stderr. Returns the result and the wall time.
    func runList(
        _ arguments: [String], bench: Bench, steps: [String] = ["exit"], asUser prefix: [String] = []
    ) throws -> (ListProcessResult, Duration) {
        let wrapper = try #require(ListTestSupport.which("umockdev-wrapper"), "umockdev-wrapper missing: apt install umockdev")
        let fixtures = ListTestSupport.fixtures
        var argv = prefix + [wrapper, "/usr/bin/python3", fixtures.appendingPathComponent("hotplug-driver.py").path,
                    "--initial", fixtures.appendingPathComponent("bench-three-ttys.umockdev").path,
                    "--initial", fixtures.appendingPathComponent("four-more-stlinks.umockdev").path,
                    "--timeout", "20", "--echo-all"]
        for node in bench.kits.keys.sorted() { argv += ["--board", "\(node)=\(bench.link(node))"] }
        argv += steps.flatMap { ["--step", $0] }
        argv += ["--", try ListTestSupport.devkitBinary, "list"] + arguments
        let start = ContinuousClock.now
        let result = try ListTestSupport.run(argv, timeout: 60)
        let elapsed = ContinuousClock.now - start
        #expect(!result.timedOut, "the driver was killed at its deadline:\n\(result.stdout)\n\(result.stderr)")
        return (result, elapsed)
    }

    /// How long devkit ran, from the driver's "exit status N after S s".
    static func runTime(_ stderr: String) -> Double? {
        guard let range = stderr.range(of: #"exit status -?\d+ after [0-9.]+ s"#, options: .regularExpression) else { return nil }
        return Double(stderr[range].split(separator: " ")[4])
    }

    struct Listed: Decodable {
        struct Device: Decodable {
            var node: String
            var probe: Probe?
        }
        struct Probe: Decodable {
            var state: String
            var summary: String
            var mode: String?
            var firmware_version: String?
            var pid: Int32?
            var group: String?
            var message: String?
            var elapsed_ms: Int
        }
        var devices: [Device]
    }

    @Test("--probe --json: a DevKit, another ST board, two silent ports and a busy one, probed at once, read-only")
    func probeJSON() throws {
        let bench = Bench()
        defer { bench.stop() }
        try bench.add("/dev/ttyACM0", .init(firmwareVersion: "1.6.2"))
        try bench.add("/dev/ttyACM2", .init(faults: .init(notADevKit: true)))
        try bench.add("/dev/ttyACM3", .init(faults: .init(silent: true)))
        try bench.add("/dev/ttyACM4", .init(faults: .init(silent: true)))
        try bench.add("/dev/ttyACM5")
        let devKitState = try #require(bench.kits["/dev/ttyACM0"]).state
        // Another program (this test) has ttyACM5's board open.
        let holder = try SerialPort(path: bench.link("/dev/ttyACM5"))
        defer { holder.close() }

        let (result, _) = try runList(["--probe", "--json", "--timeout", "4"], bench: bench)
        #expect(result.stderr.contains("driver: exit status 0 after"), "\(result.stderr)")
        let line = try #require(result.stdoutLines.first { $0.hasPrefix("{") }, "\(result.stdout)\n\(result.stderr)")
        let listed = try JSONDecoder().decode(Listed.self, from: Data(line.utf8))
        #expect(listed.devices.map(\.node) == ["/dev/ttyACM0", "/dev/ttyACM2", "/dev/ttyACM3", "/dev/ttyACM4", "/dev/ttyACM5"])
        let probes = Dictionary(uniqueKeysWithValues: listed.devices.map { ($0.node, $0.probe) })

        let devKit = try #require(probes["/dev/ttyACM0"] ?? nil)
        #expect(devKit.state == "devkit" && devKit.mode == "configuration" && devKit.firmware_version == "1.6.2")
        #expect(devKit.summary == "devkit (config mode, fw 1.6.2)")
        #expect(devKit.message == nil)

        let other = try #require(probes["/dev/ttyACM2"] ?? nil)
        #expect(other.state == "not_a_devkit" && other.summary == "not a DevKit")
        #expect(other.message?.contains("0483:374b") == true)

        for node in ["/dev/ttyACM3", "/dev/ttyACM4"] {
            let silent = try #require(probes[node] ?? nil)
            #expect(silent.state == "no_answer" && silent.summary == "no answer")
            #expect((3900...5500).contains(silent.elapsed_ms), "waited its 4 s, not much more: \(silent.elapsed_ms) ms")
        }

        let busy = try #require(probes["/dev/ttyACM5"] ?? nil)
        #expect(busy.state == "busy" && busy.pid == getpid(), "\(busy)")

        // Two silent ports one after the other would take 8 s; devkit ran (start-up
        // under umockdev's preload included) for one timeout and a bit.
        let runTime = try #require(Self.runTime(result.stderr), "\(result.stderr)")
        #expect(runTime < 7, "probed at once: devkit ran \(runTime) s")
        // Read-only: the other board saw `version` and nothing else; the DevKit kept
        // what it had; the held board got nothing.
        #expect(try #require(bench.kits["/dev/ttyACM2"]).shellLines == ["version"])
        #expect(try #require(bench.kits["/dev/ttyACM0"]).state == devKitState)
        #expect(try #require(bench.kits["/dev/ttyACM5"]).receivedByteCount == 0)
    }

    @Test("--probe: the table's STATE column, and what to do about each port on stderr")
    func probeTable() throws {
        let bench = Bench()
        defer { bench.stop() }
        try bench.add("/dev/ttyACM0", .init(firmwareVersion: "1.7.0"))
        try bench.add("/dev/ttyACM2", .init(faults: .init(notADevKit: true)))
        try bench.add("/dev/ttyACM3", .init(faults: .init(silent: true)))
        try bench.add("/dev/ttyACM4", .init(faults: .init(silent: true)))
        try bench.add("/dev/ttyACM5", .init(faults: .init(notADevKit: true)))

        let (result, _) = try runList(["--probe", "--timeout", "1"], bench: bench)
        #expect(result.stderr.contains("driver: exit status 0 after"), "\(result.stderr)")
        let lines = result.stdoutLines
        try #require(lines.count == 6, "\(result.stdout)\n\(result.stderr)")
        let header = lines[0]
        #expect(header.split(separator: " ", omittingEmptySubsequences: true) == ["NODE", "SERIAL", "USB", "STATE", "BY-ID"])
        let stateColumn = try #require(header.range(of: "STATE")).lowerBound.utf16Offset(in: header)
        let byIDColumn = try #require(header.range(of: "BY-ID")).lowerBound.utf16Offset(in: header)
        func state(_ row: String) -> String {
            let characters = Array(row)
            return String(characters[stateColumn..<byIDColumn]).trimmingCharacters(in: .whitespaces)
        }
        #expect(lines[1...].map(state) == [
            "devkit (config mode, fw 1.7.0)", "not a DevKit", "no answer", "no answer", "not a DevKit",
        ])
        #expect(!result.stdout.contains("ttyACM1"), "the Arduino is not an ST-LINK")
        // One line per finding, naming its ports.
        #expect(result.stderr.contains("devkit: /dev/ttyACM2, /dev/ttyACM5: not a DevKit:"), "\(result.stderr)")
        #expect(result.stderr.contains("devkit: /dev/ttyACM3, /dev/ttyACM4: no answer from the board:"), "\(result.stderr)")
        #expect(!result.stderr.contains("devkit: /dev/ttyACM0"))
    }

    /// Plain `list` (and `--json`, `--names`) must not open a port another program
    /// may be using: no open of the boards' ptys is seen. `list --probe` is the
    /// control: its opens are seen, so the watch works.
    @Test("plain list, --json and --names open no port; --probe does")
    func plainListOpensNothing() throws {
        let bench = Bench()
        defer { bench.stop() }
        try bench.add("/dev/ttyACM0")
        try bench.add("/dev/ttyACM2", .init(faults: .init(notADevKit: true)))
        let watched = try ["/dev/ttyACM0", "/dev/ttyACM2"].map { try #require(bench.kits[$0]).devicePath }
        let opens = try OpenWatch(watched)

        for arguments in [[], ["--json"], ["--names"]] {
            let (result, _) = try runList(arguments, bench: bench)
            #expect(result.stderr.contains("driver: exit status 0 after"), "\(arguments): \(result.stderr)")
            #expect(result.stdout.contains("/dev/ttyACM0"), "\(arguments): \(result.stdout)")
        }
        #expect(opens.take().isEmpty, "plain list opened a port")

        _ = try runList(["--probe", "--timeout", "1"], bench: bench)
        #expect(Set(opens.take()) == Set(watched), "the probe opened both")
        #expect(try #require(bench.kits["/dev/ttyACM2"]).shellLines == ["version"])
    }

    /// A normal user outside the serial group: the port cannot be opened, and the
    /// probe says so, naming the group to join (`nobody` against the board's pty,
    /// which only root may open).
    @Test("--probe as a user who may not open the port: permission denied, naming the group")
    func permissionDenied() throws {
        let setpriv = try #require(ListTestSupport.which("setpriv"), "setpriv missing: apt install util-linux")
        try #require(getuid() == 0, "switching to a normal user needs root")
        let bench = Bench()
        defer { bench.stop() }
        chmod(bench.dir, 0o755)  // the link is reachable; the pty behind it is not
        try bench.add("/dev/ttyACM0")
        let pty = try #require(bench.kits["/dev/ttyACM0"]).devicePath
        chmod(pty, 0o600)
        let (result, _) = try runList(
            ["--probe", "--json"], bench: bench,
            asUser: [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        #expect(result.stderr.contains("driver: exit status 0 after"), "\(result.stderr)")
        let line = try #require(result.stdoutLines.first { $0.hasPrefix("{") }, "\(result.stdout)\n\(result.stderr)")
        let probe = try #require(try JSONDecoder().decode(Listed.self, from: Data(line.utf8)).devices.first?.probe)
        let group = SerialPortError.serialGroup { getgrnam($0) != nil }
        #expect(probe.state == "permission_denied" && probe.group == group, "\(probe)")
        #expect(probe.summary == "permission denied (group \(group))")
        #expect(probe.message?.contains("sudo usermod -aG \(group) $USER") == true, "\(probe.message ?? "")")
    }

    @Test("--names: the attached DevKits' nodes, one per line, nothing else; none: no output at all")
    func names() throws {
        let bench = Bench()
        defer { bench.stop() }
        let (listed, _) = try runList(["--names"], bench: bench)
        #expect(listed.stdout == "/dev/ttyACM0\n/dev/ttyACM2\n/dev/ttyACM3\n/dev/ttyACM4\n/dev/ttyACM5\n")

        let umockdevRun = try #require(ListTestSupport.which("umockdev-run"), "umockdev-run missing: apt install umockdev")
        let none = try ListTestSupport.run(
            [umockdevRun, "--device", ListTestSupport.fixtures.appendingPathComponent("no-devkit.umockdev").path,
             "--", try ListTestSupport.devkitBinary, "list", "--names"], timeout: 60)
        #expect(none.status == 0)
        #expect(none.stdout.isEmpty && none.stderr.isEmpty, "\(none.stdout)\(none.stderr)")
    }

    /// Ctrl-C while ports are probed: the waits end, the ports are closed with their
    /// settings restored, and the process dies of SIGINT (as the shell expects).
    @Test("Ctrl-C during --probe ends it at once, by SIGINT, saying the ports are restored")
    func interrupted() throws {
        let bench = Bench()
        defer { bench.stop() }
        try bench.add("/dev/ttyACM3", .init(faults: .init(silent: true)))
        let (result, elapsed) = try runList(
            ["--probe", "--timeout", "15"], bench: bench, steps: ["sleep:1.5", "signal:INT", "exit"])
        #expect(result.stderr.contains("driver: exit status -2 after"), "\(result.stderr)")
        #expect(result.stderr.contains("devkit: stopped by SIGINT; the ports' settings are restored."), "\(result.stderr)")
        #expect(elapsed < .seconds(10), "\(elapsed)")
    }

    @Test("--timeout needs --probe, --probe and --watch exclude each other, --names stands alone (exit 64)",
          arguments: [["--timeout", "2"], ["--probe", "--watch"], ["--probe", "--timeout", "0"], ["--names", "--json"]])
    func usage(arguments: [String]) throws {
        let result = try ListTestSupport.run([try ListTestSupport.devkitBinary, "list"] + arguments, timeout: 120)
        #expect(result.status == 64, "\(result.stderr)")
        #expect(result.stderr.hasPrefix("devkit: error: "), "\(result.stderr)")
    }

    @Test("--help teaches --probe and its states")
    func help() throws {
        let result = try ListTestSupport.run([try ListTestSupport.devkitBinary, "list", "--help"], timeout: 120)
        #expect(result.status == 0)
        for text in ["--probe", "--timeout <seconds>", "not a DevKit", "permission denied", "devkit list --probe"] {
            #expect(result.stdout.contains(text), "\(text)")
        }
        #expect(!result.stdout.contains("--names"), "hidden: it is for completion scripts")
    }
}

/// Every STATE text, and the permission hint naming the group.
@Suite struct ListProbeOutputTests {
    @Test func summaries() {
        let versions = VersionInfoFixture.v162
        let cases: [(ProbeOutcome, String)] = [
            (.devKit(.configuration, versions: versions), "devkit (config mode, fw 1.6.2)"),
            (.devKit(.configuration, versions: nil), "devkit (config mode, no prompt)"),
            (.devKit(.user(.banner), versions: nil), "devkit (user mode)"),
            (.devKit(.accessPoint(mac: nil), versions: nil), "devkit (AP mode)"),
            (.notADevKit(reason: "no DevKitSDK version"), "not a DevKit"),
            (.noAnswer(receivedBytes: 0), "no answer"),
            (.noAnswer(receivedBytes: 12), "no answer (12 unrecognised bytes)"),
            (.busy(pid: 42), "busy (PID 42)"),
            (.busy(pid: nil), "busy"),
            (.permissionDenied(group: "uucp"), "permission denied (group uucp)"),
            (.failed(summary: "gone", message: "No serial device at /dev/ttyACM9."), "error: gone"),
        ]
        for (outcome, text) in cases { #expect(ListOutput.summary(outcome) == text) }
    }

    @Test func permissionDeniedSaysWhichGroupToJoin() throws {
        let note = try #require(ListOutput.note(.permissionDenied(group: "dialout"), path: "/dev/ttyACM0"))
        let group = SerialPortError.serialGroup { getgrnam($0) != nil }
        #expect(note.contains("Permission denied opening /dev/ttyACM0"))
        #expect(note.contains("sudo usermod -aG \(group) $USER"))
    }

    @Test func aDevKitReadyToProvisionNeedsNoNote() {
        #expect(ListOutput.note(.devKit(.configuration, versions: VersionInfoFixture.v162), path: "/dev/ttyACM0") == nil)
        #expect(ListOutput.note(.devKit(.user(.logLines), versions: nil), path: "/dev/ttyACM0")?.contains("hold button A") == true)
    }
}

enum VersionInfoFixture {
    static let v162 = VersionInfo(firmwareVersion: try! FirmwareVersion("1.6.2"))
}

/// Sees every open(2) of some files (inotify IN_OPEN), from any process.
final class OpenWatch {
    private let fd: Int32
    private var watches: [Int32: String] = [:]

    init(_ paths: [String]) throws {
        fd = inotify_init1(Int32(IN_CLOEXEC | IN_NONBLOCK))
        guard fd >= 0 else { throw POSIXError(.init(rawValue: errno) ?? .EIO) }
        for path in paths {
            let wd = inotify_add_watch(fd, path, UInt32(IN_OPEN))
            guard wd >= 0 else { throw POSIXError(.init(rawValue: errno) ?? .EIO) }
            watches[wd] = path
        }
    }

    deinit { close(fd) }

    /// The paths opened since the last call (each once per open).
    func take() -> [String] {
        var opened: [String] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            guard count > 0 else { return opened }
            var offset = 0
            while offset < count {
                let (wd, length) = buffer.withUnsafeBytes { raw -> (Int32, UInt32) in
                    let event = raw.loadUnaligned(fromByteOffset: offset, as: inotify_event.self)
                    return (event.wd, event.len)
                }
                if let path = watches[wd] { opened.append(path) }
                offset += MemoryLayout<inotify_event>.size + Int(length)
            }
        }
    }
}
