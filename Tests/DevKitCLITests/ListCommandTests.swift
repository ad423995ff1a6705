@testable import DevKitBoardCLI
import DeviceDiscovery
import Foundation
import Testing

@testable import DevKitCLI

private struct ListJSON: Decodable {
    var devices: [DevKitDevice]
}

private struct WatchLine: Decodable {
    var event: String
    var devices: [DevKitDevice]?
    var device: DevKitDevice?
}

/// `devkit list` run as a user would, with the real libudev reading a umockdev
/// testbed (`umockdev-run` starts it with the preload library).
@Suite("devkit list against umockdev")
struct ListCommandTests {
    static let stlinkSerial = "0669FF555185754867102435"
    static let secondSerial = "066DFF3832584B3043174011"
    static func fixture(_ name: String) -> String { ListTestSupport.fixtures.appendingPathComponent(name).path }

    func runList(_ arguments: [String], devices: [String]) throws -> ListProcessResult {
        let umockdevRun = try #require(ListTestSupport.which("umockdev-run"), "umockdev-run missing: apt install umockdev")
        let result = try ListTestSupport.run(
            [umockdevRun] + devices.flatMap { ["--device", Self.fixture($0)] }
                + ["--", ListTestSupport.devkitBinary, "list"] + arguments,
            timeout: 60)
        #expect(!result.timedOut)
        return result
    }

    @Test("--json lists the ST-LINK tty only, with node, by-id link, serial and USB path")
    func json() throws {
        let result = try runList(["--json"], devices: ["bench-three-ttys.umockdev"])
        #expect(result.status == 0, "\(result.stderr)")
        let list = try JSONDecoder().decode(ListJSON.self, from: Data(result.stdout.utf8))
        #expect(list.devices.count == 1)
        let board = try #require(list.devices.first)
        #expect(board.devnode == "/dev/ttyACM0")
        #expect(board.byIDLink == "/dev/serial/by-id/usb-STMicroelectronics_STM32_STLink_\(Self.stlinkSerial)-if02")
        #expect(board.serialNumber == Self.stlinkSerial)
        #expect(board.usbPath == "1-2")
        // Every key is present for scripts, even when null.
        for key in ["\"node\":", "\"by_id\":", "\"serial\":", "\"usb_path\":", "\"devpath\":", "\"syspath\":"] {
            #expect(result.stdout.contains(key))
        }
        #expect(!result.stdout.contains("ttyACM1"))
        #expect(!result.stdout.contains("ttyS0"))
    }

    @Test("The table shows node, serial, USB path and by-id link")
    func table() throws {
        let result = try runList([], devices: ["bench-three-ttys.umockdev"])
        #expect(result.status == 0, "\(result.stderr)")
        let lines = result.stdoutLines
        #expect(lines.count == 2)
        #expect(lines.first?.split(separator: " ", omittingEmptySubsequences: true) == ["NODE", "SERIAL", "USB", "BY-ID"])
        #expect(lines.last?.split(separator: " ", omittingEmptySubsequences: true) == [
            "/dev/ttyACM0", Substring(Self.stlinkSerial), "1-2",
            Substring("/dev/serial/by-id/usb-STMicroelectronics_STM32_STLink_\(Self.stlinkSerial)-if02"),
        ])
    }

    @Test("Two boards are both listed, in tty order")
    func twoBoards() throws {
        let result = try runList(["--json"], devices: ["bench-three-ttys.umockdev", "hotplug-second-stlink.umockdev"])
        #expect(result.status == 0, "\(result.stderr)")
        let list = try JSONDecoder().decode(ListJSON.self, from: Data(result.stdout.utf8))
        #expect(list.devices.map(\.devnode) == ["/dev/ttyACM0", "/dev/ttyACM2"])
        #expect(list.devices.map(\.serialNumber) == [Self.stlinkSerial, Self.secondSerial])
        #expect(list.devices.map(\.usbPath) == ["1-2", "1-4.1"])
    }

    @Test("No DevKit: an empty JSON list, or a hint on stderr; exit 0 either way")
    func none() throws {
        let json = try runList(["--json"], devices: ["no-devkit.umockdev"])
        #expect(json.status == 0)
        #expect(json.stdout == "{\"devices\":[]}\n")

        let text = try runList([], devices: ["no-devkit.umockdev"])
        #expect(text.status == 0)
        #expect(text.stdout.isEmpty)
        #expect(text.stderr.contains("No DevKit attached"))
        #expect(text.stderr.contains("hold A, reset"))
    }

    @Test("--watch --json: snapshot, then add and remove events; an FTDI tty is ignored")
    func watch() throws {
        let wrapper = try #require(ListTestSupport.which("umockdev-wrapper"), "umockdev-wrapper missing: apt install umockdev")
        let hotplug = Self.fixture("hotplug-second-stlink.umockdev")
        let result = try ListTestSupport.run(
            [wrapper, "/usr/bin/python3", Self.fixture("hotplug-driver.py"),
             "--initial", Self.fixture("bench-three-ttys.umockdev"), "--timeout", "20",
             "--step", "expect", "--step", "add:\(hotplug)", "--step", "expect",
             "--step", "remove:\(hotplug)", "--step", "expect",
             "--", ListTestSupport.devkitBinary, "list", "--watch", "--json"],
            timeout: 90)
        #expect(!result.timedOut)
        #expect(result.status == 0, "driver failed (needs python3-gi, gir1.2-umockdev-1.0):\n\(result.stderr)")
        let lines = result.stdoutLines
        try #require(lines.count == 3, "expected snapshot, add, remove; got:\n\(result.stdout)\n\(result.stderr)")
        let decoder = JSONDecoder()
        let snapshot = try decoder.decode(WatchLine.self, from: Data(lines[0].utf8))
        #expect(snapshot.event == "snapshot")
        #expect(snapshot.devices?.map(\.devnode) == ["/dev/ttyACM0"])

        let added = try decoder.decode(WatchLine.self, from: Data(lines[1].utf8))
        #expect(added.event == "add")
        #expect(added.device?.devnode == "/dev/ttyACM2")
        #expect(added.device?.serialNumber == Self.secondSerial)
        #expect(added.device?.byIDLink == "/dev/serial/by-id/usb-STMicroelectronics_STM32_STLink_\(Self.secondSerial)-if02")

        let removed = try decoder.decode(WatchLine.self, from: Data(lines[2].utf8))
        #expect(removed.event == "remove")
        #expect(removed.device == added.device)
    }

    @Test("--help teaches: abstract, USB id, an example")
    func help() throws {
        let result = try ListTestSupport.run([ListTestSupport.devkitBinary, "list", "--help"], timeout: 120)
        #expect(result.status == 0)
        #expect(result.stdout.contains("List the DevKits attached over USB."))
        #expect(result.stdout.contains("0483:374b"))
        #expect(result.stdout.contains("devkit list --json"))
        #expect(result.stdout.contains("--watch"))
    }
}

@Suite("Port resolution and discovery errors in the CLI")
struct ListPortResolutionTests {
    @Test("--port wins over discovery")
    func explicitPort() throws {
        let options = try PortOptions.parse(["--port", "/dev/serial/by-id/some-board"])
        #expect(try options.resolvedPath() == "/dev/serial/by-id/some-board")
    }

    @Test("Without --port, the single attached board's node, else the discovery error")
    func discoveredPort() throws {
        // Checked against this machine's real state (CI has no board attached).
        let options = try PortOptions.parse([])
        let boards = try DeviceDiscovery.enumerate()
        switch boards.count {
        case 0:
            #expect(throws: DiscoveryError.noBoardAttached) { try options.resolvedPath() }
        case 1:
            #expect(try options.resolvedPath() == boards[0].devnode)
        default:
            #expect(throws: DiscoveryError.multipleBoards(boards)) { try options.resolvedPath() }
        }
    }

    @Test("Discovery errors map to sysexits codes and say what to do")
    func reporting() {
        let board = DevKitDevice(
            devnode: "/dev/ttyACM0", serialNumber: "S1", kernelName: "ttyACM0",
            devpath: "/devices/x/tty/ttyACM0", syspath: "/sys/devices/x/tty/ttyACM0")
        #expect(DiscoveryError.noBoardAttached.exitStatus == .unavailable)
        #expect(DiscoveryError.noBoardAttached.userMessage.contains("devkit emulate"))
        #expect(DiscoveryError.multipleBoards([board, board]).exitStatus == .usage)
        #expect(DiscoveryError.multipleBoards([board, board]).userMessage.contains("Choose one with --port"))
        #expect(DiscoveryError.udevFailed(operation: "udev_new", errno: 12).exitStatus == .unavailable)
        #expect(DiscoveryError.monitorFailed(operation: "poll", errno: 5).exitStatus == .ioError)
    }

    @Test("The table aligns columns and shows - for unknown values")
    func tableFormatting() {
        let boards = [
            DevKitDevice(
                devnode: "/dev/ttyACM10", byIDLink: "/dev/serial/by-id/x", serialNumber: "ABC", usbPath: "1-2.3",
                kernelName: "ttyACM10", devpath: "/d", syspath: "/sys/d"),
            DevKitDevice(devnode: "/dev/ttyACM2", kernelName: "ttyACM2", devpath: "/e", syspath: "/sys/e"),
        ]
        #expect(ListOutput.table(boards) == """
            NODE           SERIAL  USB    BY-ID
            /dev/ttyACM10  ABC     1-2.3  /dev/serial/by-id/x
            /dev/ttyACM2   -       -      -
            """)
    }
}
