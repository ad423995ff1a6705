import CLibUDev
#if canImport(Glibc)
import Glibc
#endif

/// Finds AZ3166 DevKits attached over USB, through libudev.
///
/// A DevKit's console is a tty (`/dev/ttyACM<N>`) whose USB parent device is the
/// ST-LINK/V2-1 probe, `0483:374b`. Other serial ports (other USB serial adapters,
/// `ttyS*`) are ignored.
///
/// ```swift
/// for board in try DeviceDiscovery.enumerate() {
///     print(board.devnode, board.serialNumber ?? "-")
/// }
/// let port = try DeviceDiscovery.singleBoard().devnode
/// ```
public enum DeviceDiscovery {
    /// Every DevKit console currently present, sorted by tty number (`ttyACM2`
    /// before `ttyACM10`).
    ///
    /// - Throws: ``DiscoveryError/udevFailed(operation:errno:)`` when libudev cannot
    ///   be used (no `/sys`, a sandbox).
    public static func enumerate() throws(DiscoveryError) -> [DevKitDevice] {
        try UDevContext().enumerateDevKits()
    }

    /// The DevKit whose console is the character device at `path` (its node, or a
    /// link to it such as `/dev/serial/by-id/…` or `/dev/devkit-0`), found by its
    /// device number: one sysfs lookup, not a scan of every tty (which took 15 ms on
    /// a machine with 68 ttys, on every `--port` run). nil when `path` is not a
    /// character device or not a DevKit's (another adapter, a pseudo-terminal).
    ///
    /// - Throws: ``DiscoveryError/udevFailed(operation:errno:)`` when libudev cannot
    ///   be used.
    public static func device(atPath path: String) throws(DiscoveryError) -> DevKitDevice? {
        // stat follows the links to the node.
        var info = stat()
        guard stat(path, &info) == 0, info.st_mode & S_IFMT == S_IFCHR else { return nil }
        return try UDevContext().devKit(characterDevice: info.st_rdev)
    }

    /// The one attached DevKit, for commands run without `--port`.
    ///
    /// - Throws: ``DiscoveryError/noBoardAttached`` when there is none,
    ///   ``DiscoveryError/multipleBoards(_:)`` (listing them) when there are several.
    public static func singleBoard() throws(DiscoveryError) -> DevKitDevice {
        try singleBoard(among: enumerate())
    }

    /// The one board in `boards`, with the same errors as ``singleBoard()``.
    public static func singleBoard(among boards: [DevKitDevice]) throws(DiscoveryError) -> DevKitDevice {
        switch boards.count {
        case 0: throw .noBoardAttached
        case 1: return boards[0]
        default: throw .multipleBoards(boards)
        }
    }
}

/// One libudev context. libudev objects are not thread-safe, so each user (a call
/// to `enumerate`, a monitor thread) owns its own.
final class UDevContext {
    let udev: OpaquePointer

    init() throws(DiscoveryError) {
        errno = 0
        guard let udev = udev_new() else {
            throw .udevFailed(operation: "udev_new", errno: errno)
        }
        self.udev = udev
    }

    deinit { udev_unref(udev) }

    /// Scans the `tty` subsystem and keeps the ttys with an ST-LINK USB parent.
    func enumerateDevKits() throws(DiscoveryError) -> [DevKitDevice] {
        errno = 0
        guard let enumerator = udev_enumerate_new(udev) else {
            throw .udevFailed(operation: "udev_enumerate_new", errno: errno)
        }
        defer { udev_enumerate_unref(enumerator) }
        // libudev returns negative errno values.
        var rc = udev_enumerate_add_match_subsystem(enumerator, "tty")
        if rc < 0 { throw .udevFailed(operation: "udev_enumerate_add_match_subsystem", errno: -rc) }
        rc = udev_enumerate_scan_devices(enumerator)
        if rc < 0 { throw .udevFailed(operation: "udev_enumerate_scan_devices", errno: -rc) }

        var boards: [DevKitDevice] = []
        var entry = udev_enumerate_get_list_entry(enumerator)
        while let current = entry {
            entry = udev_list_entry_get_next(current)
            guard let syspath = udev_list_entry_get_name(current),
                // nil when the device vanished between the scan and now: skip it.
                let device = udev_device_new_from_syspath(udev, syspath)
            else { continue }
            defer { udev_device_unref(device) }
            if let board = Self.devKit(from: device) { boards.append(board) }
        }
        return boards.sorted { Self.ttyOrder($0.kernelName, $1.kernelName) }
    }

    /// The DevKit console with this character device number, else nil.
    func devKit(characterDevice number: dev_t) -> DevKitDevice? {
        guard let device = udev_device_new_from_devnum(udev, CChar(UInt8(ascii: "c")), number) else { return nil }
        defer { udev_device_unref(device) }
        return Self.devKit(from: device)
    }

    /// Describes `device` if it is a DevKit console, else nil.
    ///
    /// The USB identity comes from the parent `usb_device`'s sysfs attributes; when
    /// that parent is gone (a `remove` event), from the properties udev's rules
    /// attached to the tty (`ID_VENDOR_ID`, `ID_MODEL_ID`, `ID_SERIAL_SHORT`).
    static func devKit(from device: OpaquePointer) -> DevKitDevice? {
        guard let devnode = string(udev_device_get_devnode(device)),
            let kernelName = string(udev_device_get_sysname(device)),
            let devpath = string(udev_device_get_devpath(device)),
            let syspath = string(udev_device_get_syspath(device))
        else { return nil }
        // The parent is owned by `device`; it must not be unreferenced here.
        let usb = udev_device_get_parent_with_subsystem_devtype(device, "usb", "usb_device")
        let vendor = usb.flatMap { string(udev_device_get_sysattr_value($0, "idVendor")) }
            ?? property(device, "ID_VENDOR_ID")
        let product = usb.flatMap { string(udev_device_get_sysattr_value($0, "idProduct")) }
            ?? property(device, "ID_MODEL_ID")
        guard DevKitUSBID.matches(vendorID: vendor, productID: product) else { return nil }

        let serial = usb.flatMap { string(udev_device_get_sysattr_value($0, "serial")) }
            ?? property(device, "ID_SERIAL_SHORT")
        let usbPath = usb.flatMap { string(udev_device_get_sysname($0)) } ?? usbPath(fromDevpath: devpath)
        return DevKitDevice(
            devnode: devnode, byIDLink: byIDLink(of: device, devnode: devnode),
            serialNumber: serial.flatMap { $0.isEmpty ? nil : $0 }, usbPath: usbPath,
            kernelName: kernelName, devpath: devpath, syspath: syspath)
    }

    static let byIDDirectory = "/dev/serial/by-id"

    /// The `/dev/serial/by-id/` link udev recorded for the device; failing that, the
    /// link in that directory that points at the same node. The fallback covers a
    /// udev database that is not readable (containers) while /dev is.
    static func byIDLink(of device: OpaquePointer, devnode: String) -> String? {
        var entry = udev_device_get_devlinks_list_entry(device)
        while let current = entry {
            entry = udev_list_entry_get_next(current)
            if let link = string(udev_list_entry_get_name(current)),
                link.hasPrefix(byIDDirectory + "/")
            {
                return link
            }
        }
        return scanByIDDirectory(for: devnode)
    }

    static func scanByIDDirectory(for devnode: String) -> String? {
        guard let dir = opendir(byIDDirectory) else { return nil }
        defer { closedir(dir) }
        let nodeName = lastComponent(devnode)
        var found: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name == "." || name == ".." { continue }
            let path = byIDDirectory + "/" + name
            var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
            let count = readlink(path, &buffer, buffer.count - 1)
            guard count > 0 else { continue }
            let target = String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            // udev's links are relative ("../../ttyACM0"): compare the last component.
            if lastComponent(target) == nodeName { found.append(path) }
        }
        return found.sorted().first
    }

    /// `1-2.4` from `/devices/…/usb1/1-2/1-2.4/1-2.4:1.2/tty/ttyACM0`: the component
    /// before the interface (`<port path>:<config>.<interface>`).
    static func usbPath(fromDevpath devpath: String) -> String? {
        for component in devpath.split(separator: "/").reversed() {
            // An interface is `<bus>-<port>[.<port>…]:<config>.<interface>`.
            let halves = component.split(separator: ":", omittingEmptySubsequences: false)
            guard halves.count == 2 else { continue }
            let port = halves[0].split(separator: "-", omittingEmptySubsequences: false)
            let interface = halves[1].split(separator: ".", omittingEmptySubsequences: false)
            let isNumber = { (s: Substring) in !s.isEmpty && s.allSatisfy { ("0"..."9").contains($0) } }
            if port.count == 2, isNumber(port[0]),
                port[1].split(separator: ".", omittingEmptySubsequences: false).allSatisfy(isNumber),
                interface.count == 2, interface.allSatisfy(isNumber)
            {
                return String(halves[0])
            }
        }
        return nil
    }

    /// Orders `ttyACM2` before `ttyACM10`: by name prefix, then by number.
    static func ttyOrder(_ a: String, _ b: String) -> Bool {
        func split(_ s: String) -> (String, Int) {
            let digits = s.reversed().prefix { $0.isNumber }
            let prefix = String(s.dropLast(digits.count))
            return (prefix, Int(String(digits.reversed())) ?? -1)
        }
        let (pa, na) = split(a), (pb, nb) = split(b)
        return pa != pb ? pa < pb : na < nb
    }

    static func property(_ device: OpaquePointer, _ key: String) -> String? {
        string(udev_device_get_property_value(device, key))
    }

    static func string(_ pointer: UnsafePointer<CChar>?) -> String? {
        pointer.map { String(cString: $0) }
    }

    static func lastComponent(_ path: String) -> Substring {
        path.split(separator: "/").last ?? Substring(path)
    }
}
