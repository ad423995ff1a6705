import Foundation
import Testing

@testable import DeviceDiscovery

#if canImport(Glibc)
import Glibc
#endif

/// libudev reads the real /sys and /run/udev; umockdev replaces them through its
/// LD_PRELOAD library, which only works from process start. So each test here
/// re-runs this test bundle, filtered to `umockdevChildProbe`, inside a testbed
/// (`umockdev-run`, or the hotplug driver under `umockdev-wrapper`); the probe
/// calls the real DeviceDiscovery API and reports what it saw, and the test
/// checks that.
enum Probe {
    static let modeKey = "DEVKIT_DISCOVERY_PROBE"
    static let outputKey = "DEVKIT_DISCOVERY_PROBE_OUT"
    static let eventCountKey = "DEVKIT_DISCOVERY_PROBE_EVENTS"
    static var mode: String? { ProcessInfo.processInfo.environment[modeKey] }
    static let linePrefix = "PROBE:"

    static func encode<T: Encodable>(_ value: T) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    /// One whole line in one write(2), so it does not interleave with the test
    /// runner's own output.
    static func emit(_ line: String) {
        let bytes = Array((linePrefix + line + "\n").utf8)
        _ = bytes.withUnsafeBytes { write(STDOUT_FILENO, $0.baseAddress, $0.count) }
    }
}

struct ProbeEvent: Codable, Equatable {
    var event: String
    var device: DevKitDevice?
}

struct SingleBoardOutcome: Codable {
    var board: DevKitDevice?
    var error: String?
    var boards: [DevKitDevice]?
    var message: String?
}

@Suite("Real libudev in a umockdev testbed", .serialized)
struct UMockdevDiscoveryTests {
    static let stlinkSerial = "0669FF555185754867102435"
    static let stlinkByID = "/dev/serial/by-id/usb-STMicroelectronics_STM32_STLink_\(stlinkSerial)-if02"
    static let secondSerial = "066DFF3832584B3043174011"
    static var bench: String { BoundedProcess.fixtures.appendingPathComponent("bench-three-ttys.umockdev").path }
    static var noDevKit: String { BoundedProcess.fixtures.appendingPathComponent("no-devkit.umockdev").path }
    static var hotplug: String { BoundedProcess.fixtures.appendingPathComponent("hotplug-second-stlink.umockdev").path }
    static var driver: String { BoundedProcess.fixtures.appendingPathComponent("hotplug-driver.py").path }
    static let probeArguments = ["--testing-library", "swift-testing", "--filter", "umockdevChildProbe"]

    /// The child side. Disabled in a normal run; the tests below enable it in the
    /// re-run through the environment.
    @Test(.enabled(if: Probe.mode != nil, "runs only inside a umockdev testbed"))
    func umockdevChildProbe() async throws {
        let environment = ProcessInfo.processInfo.environment
        let output = environment[Probe.outputKey].map(URL.init(fileURLWithPath:))
        switch Probe.mode {
        case "enumerate":
            try Data(try Probe.encode(DeviceDiscovery.enumerate()).utf8).write(to: #require(output))
        case "single":
            var outcome = SingleBoardOutcome()
            do {
                outcome.board = try DeviceDiscovery.singleBoard()
            } catch {
                outcome.message = error.description
                switch error {
                case .noBoardAttached: outcome.error = "noBoardAttached"
                case .multipleBoards(let boards): outcome.error = "multipleBoards"; outcome.boards = boards
                default: outcome.error = "other"
                }
            }
            try Data(try Probe.encode(outcome).utf8).write(to: #require(output))
        case "node":
            // Each path → the serial of the DevKit found at it, or "-". (Not the by-id
            // link: umockdev points it at the pty behind its /dev/ttyACM0, whose device
            // number is the pty's; on a real system stat follows it to the node.)
            let paths = ["/dev/ttyACM0", "/dev/ttyS0", "/dev/ttyACM9"]
            let found = try paths.map { try DeviceDiscovery.device(atPath: $0)?.serialNumber ?? "-" }
            try Data(try Probe.encode(found).utf8).write(to: #require(output))
        case "monitor":
            // Reports the snapshot and N events, then stops the monitor and reports
            // that the stream ended.
            let count = Int(environment[Probe.eventCountKey] ?? "") ?? 2
            let monitor = try DeviceMonitor()
            Probe.emit(try Probe.encode(monitor.attached))
            var seen = 0
            for try await event in monitor.events {
                Probe.emit(try Probe.encode(ProbeEvent(event: event.action, device: event.device)))
                seen += 1
                if seen == count { monitor.stop() }
            }
            Probe.emit(try Probe.encode(ProbeEvent(event: "stopped", device: nil)))
        default:
            Issue.record("unknown probe mode \(Probe.mode ?? "")")
        }
    }

    /// Runs the probe under `umockdev-run` with `devices` loaded; returns its report.
    func runProbe(_ mode: String, devices: [String]) throws -> Data {
        let umockdevRun = try #require(BoundedProcess.which("umockdev-run"), "umockdev-run missing: apt install umockdev")
        let outputPath = FileManager.default.temporaryDirectory
            .appendingPathComponent("devkit-probe-\(getpid())-\(UUID().uuidString).json").path
        defer { try? FileManager.default.removeItem(atPath: outputPath) }
        let result = try BoundedProcess.run(
            [umockdevRun] + devices.flatMap { ["--device", $0] } + ["--", BoundedProcess.testBundle]
                + Self.probeArguments,
            environment: [Probe.modeKey: mode, Probe.outputKey: outputPath], timeout: 60)
        #expect(!result.timedOut)
        #expect(result.status == 0, "probe failed:\n\(result.stdout)\n\(result.stderr)")
        return try #require(
            FileManager.default.contents(atPath: outputPath),
            "the probe wrote no report:\n\(result.stdout)\n\(result.stderr)")
    }

    @Test("enumerate() finds the ST-LINK tty among other ttys, with node, by-id link, serial, USB path")
    func enumeration() throws {
        guard Probe.mode == nil else { return }
        let boards = try JSONDecoder().decode([DevKitDevice].self, from: runProbe("enumerate", devices: [Self.bench]))
        #expect(boards.count == 1)
        let board = try #require(boards.first)
        #expect(board.devnode == "/dev/ttyACM0")
        #expect(board.byIDLink == Self.stlinkByID)
        #expect(board.serialNumber == Self.stlinkSerial)
        #expect(board.usbPath == "1-2")
        #expect(board.kernelName == "ttyACM0")
        #expect(board.devpath == "/devices/pci0000:00/0000:00:14.0/usb1/1-2/1-2:1.2/tty/ttyACM0")
        #expect(board.syspath == "/sys" + board.devpath)
    }

    @Test("enumerate() finds nothing when only other serial ports exist")
    func enumerationWithoutDevKit() throws {
        guard Probe.mode == nil else { return }
        let boards = try JSONDecoder().decode([DevKitDevice].self, from: runProbe("enumerate", devices: [Self.noDevKit]))
        #expect(boards.isEmpty)
    }

    @Test("device(atPath:) finds the board by its device node, and nothing on another tty or a missing path")
    func lookupByNode() throws {
        guard Probe.mode == nil else { return }
        let found = try JSONDecoder().decode([String].self, from: runProbe("node", devices: [Self.bench]))
        #expect(found == [Self.stlinkSerial, "-", "-"])
    }

    @Test("singleBoard(): one board, none, several")
    func singleBoard() throws {
        guard Probe.mode == nil else { return }
        let decoder = JSONDecoder()
        let one = try decoder.decode(SingleBoardOutcome.self, from: runProbe("single", devices: [Self.bench]))
        #expect(one.board?.devnode == "/dev/ttyACM0")
        #expect(one.error == nil)

        let none = try decoder.decode(SingleBoardOutcome.self, from: runProbe("single", devices: [Self.noDevKit]))
        #expect(none.board == nil)
        #expect(none.error == "noBoardAttached")
        #expect(none.message?.contains("hold A, reset") == true)

        let two = try decoder.decode(
            SingleBoardOutcome.self, from: runProbe("single", devices: [Self.bench, Self.hotplug]))
        #expect(two.error == "multipleBoards")
        #expect(two.boards?.map(\.devnode) == ["/dev/ttyACM0", "/dev/ttyACM2"])
        #expect(two.boards?.map(\.serialNumber) == [Self.stlinkSerial, Self.secondSerial])
        #expect(two.message?.contains("Choose one, e.g. /dev/") == true)
    }

    @Test("DeviceMonitor: add and remove uevents arrive, other ttys are ignored, stop() ends the stream")
    func monitor() throws {
        guard Probe.mode == nil else { return }
        let wrapper = try #require(BoundedProcess.which("umockdev-wrapper"), "umockdev-wrapper missing: apt install umockdev")
        let result = try BoundedProcess.run(
            [wrapper, "/usr/bin/python3", Self.driver, "--initial", Self.bench, "--timeout", "20",
             "--line-prefix", Probe.linePrefix,
             "--step", "expect", "--step", "add:\(Self.hotplug)", "--step", "expect",
             "--step", "remove:\(Self.hotplug)", "--step", "expect", "--step", "expect",
             "--", BoundedProcess.testBundle] + Self.probeArguments,
            environment: [Probe.modeKey: "monitor", Probe.eventCountKey: "2"], timeout: 90)
        #expect(!result.timedOut)
        #expect(result.status == 0, "driver failed (needs python3-gi, gir1.2-umockdev-1.0):\n\(result.stderr)")
        let lines = result.stdoutLines
        try #require(lines.count == 4, "expected snapshot, add, remove, stopped; got:\n\(result.stdout)\n\(result.stderr)")
        let decoder = JSONDecoder()
        let snapshot = try decoder.decode([DevKitDevice].self, from: Data(lines[0].utf8))
        #expect(snapshot.map(\.devnode) == ["/dev/ttyACM0"])

        // The hotplug file adds an FTDI ttyUSB0 first: had it not been filtered
        // out, it would be this line.
        let added = try decoder.decode(ProbeEvent.self, from: Data(lines[1].utf8))
        #expect(added.event == "add")
        #expect(added.device?.devnode == "/dev/ttyACM2")
        #expect(added.device?.serialNumber == Self.secondSerial)
        #expect(added.device?.usbPath == "1-4.1")
        #expect(added.device?.byIDLink == "/dev/serial/by-id/usb-STMicroelectronics_STM32_STLink_\(Self.secondSerial)-if02")

        let removed = try decoder.decode(ProbeEvent.self, from: Data(lines[2].utf8))
        #expect(removed == ProbeEvent(event: "remove", device: added.device))

        #expect(try decoder.decode(ProbeEvent.self, from: Data(lines[3].utf8)).event == "stopped")
    }
}
