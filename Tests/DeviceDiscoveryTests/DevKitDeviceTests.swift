import Foundation
import Testing

@testable import DeviceDiscovery

private func board(_ n: Int, serial: String? = nil) -> DevKitDevice {
    DevKitDevice(
        devnode: "/dev/ttyACM\(n)",
        byIDLink: serial.map { "/dev/serial/by-id/usb-STMicroelectronics_STM32_STLink_\($0)-if02" },
        serialNumber: serial, usbPath: "1-\(n + 1)", kernelName: "ttyACM\(n)",
        devpath: "/devices/usb1/1-\(n + 1)/1-\(n + 1):1.2/tty/ttyACM\(n)",
        syspath: "/sys/devices/usb1/1-\(n + 1)/1-\(n + 1):1.2/tty/ttyACM\(n)")
}

@Suite("Matching, choosing and describing boards")
struct DevKitDeviceTests {
    @Test("The ST-LINK's vendor/product pair matches in either case; others do not")
    func usbIdentity() {
        #expect(DevKitUSBID.matches(vendorID: "0483", productID: "374b"))
        #expect(DevKitUSBID.matches(vendorID: "0483", productID: "374B"))
        #expect(!DevKitUSBID.matches(vendorID: "0483", productID: "3748"))  // ST-LINK/V2, no VCP
        #expect(!DevKitUSBID.matches(vendorID: "2341", productID: "374b"))
        #expect(!DevKitUSBID.matches(vendorID: nil, productID: "374b"))
        #expect(!DevKitUSBID.matches(vendorID: "0483", productID: nil))
    }

    @Test("singleBoard: none attached says how to attach one")
    func noBoard() {
        #expect(throws: DiscoveryError.noBoardAttached) { try DeviceDiscovery.singleBoard(among: []) }
        let message = DiscoveryError.noBoardAttached.description
        #expect(message.contains("hold A, reset"))
        // The option to name a port instead is the CLI's to add (DevKitCLITests/ErrorRenderingTests).
        #expect(!message.contains("--"))
    }

    @Test("singleBoard: one attached is chosen")
    func oneBoard() throws {
        #expect(try DeviceDiscovery.singleBoard(among: [board(3, serial: "X")]) == board(3, serial: "X"))
    }

    @Test("singleBoard: several attached are listed, with one to choose")
    func severalBoards() {
        let boards = [board(0, serial: "AAA"), board(1)]
        #expect(throws: DiscoveryError.multipleBoards(boards)) { try DeviceDiscovery.singleBoard(among: boards) }
        let message = DiscoveryError.multipleBoards(boards).description
        #expect(message.hasPrefix("2 DevKits are attached: /dev/ttyACM0 (serial AAA, USB 1-1); /dev/ttyACM1 (USB 1-2)."))
        #expect(message.hasSuffix("Choose one, e.g. /dev/serial/by-id/usb-STMicroelectronics_STM32_STLink_AAA-if02."))
        #expect(!message.contains("--"))
    }

    @Test("libudev failures name the call and the errno text")
    func udevFailure() {
        let message = DiscoveryError.udevFailed(operation: "udev_new", errno: ENOMEM).description
        #expect(message.hasPrefix("libudev udev_new failed: Cannot allocate memory."))
        #expect(message.contains("needs Linux with /sys mounted") && !message.contains("--"))
        #expect(!DiscoveryError.monitorFailed(operation: "poll", errno: 0).description.contains("failed:"))
    }

    @Test("JSON has every key, absent values as null")
    func json() throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let text = String(decoding: try encoder.encode(board(2)), as: UTF8.self)
        #expect(text == #"{"by_id":null,"devpath":"/devices/usb1/1-3/1-3:1.2/tty/ttyACM2","#
            + #""kernel_name":"ttyACM2","node":"/dev/ttyACM2","serial":null,"#
            + #""syspath":"/sys/devices/usb1/1-3/1-3:1.2/tty/ttyACM2","usb_path":"1-3"}"#)
        #expect(try JSONDecoder().decode(DevKitDevice.self, from: Data(text.utf8)) == board(2))
    }

    @Test("The USB port path is read off the devpath when the parent is gone")
    func usbPathFromDevpath() {
        #expect(UDevContext.usbPath(fromDevpath: "/devices/pci0000:00/0000:00:14.0/usb1/1-4/1-4.1/1-4.1:1.2/tty/ttyACM2") == "1-4.1")
        #expect(UDevContext.usbPath(fromDevpath: "/devices/pnp0/00:04/tty/ttyS0") == nil)
        #expect(UDevContext.usbPath(fromDevpath: "/devices/usb1/1-2/1-2:1.0/ttyUSB0/tty/ttyUSB0") == "1-2")
        #expect(UDevContext.usbPath(fromDevpath: "/devices/virtual/tty/ttyACM9") == nil)
    }

    @Test("Boards sort by tty number, not by string")
    func ordering() {
        let names = ["ttyACM10", "ttyACM2", "ttyACM0", "ttyUSB1"]
        #expect(names.sorted(by: UDevContext.ttyOrder) == ["ttyACM0", "ttyACM2", "ttyACM10", "ttyUSB1"])
    }

    @Test("preferredPath is the by-id link when there is one")
    func preferredPath() {
        #expect(board(0).preferredPath == "/dev/ttyACM0")
        #expect(board(0, serial: "S").preferredPath == "/dev/serial/by-id/usb-STMicroelectronics_STM32_STLink_S-if02")
    }
}
