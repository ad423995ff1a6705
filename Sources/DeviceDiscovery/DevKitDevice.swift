/// One AZ3166 DevKit's configuration console, as the kernel and udev see it.
///
/// The board's USB connector is an ST-LINK/V2-1 probe (USB `0483:374b`) whose
/// virtual COM port is a CDC-ACM interface; this value describes that tty.
public struct DevKitDevice: Sendable, Hashable, Codable {
    /// The character device to open, e.g. `/dev/ttyACM0`.
    public var devnode: String
    /// The stable `/dev/serial/by-id/…` link to ``devnode``, if udev made one.
    /// Unlike `ttyACM<N>` it names the same board across replugs.
    public var byIDLink: String?
    /// The ST-LINK's USB serial number (its `iSerial` string), if it has one.
    public var serialNumber: String?
    /// The USB port path of the ST-LINK, e.g. `1-2.4` (bus 1, root port 2, hub port 4):
    /// it names the physical socket, so it stays the same for any board plugged there.
    public var usbPath: String?
    /// The kernel's name of the tty, e.g. `ttyACM0`.
    public var kernelName: String
    /// The device path below `/sys`, e.g. `/devices/pci0000:00/…/1-2:1.2/tty/ttyACM0`.
    public var devpath: String
    /// The full sysfs path, e.g. `/sys/devices/pci0000:00/…/tty/ttyACM0`.
    public var syspath: String

    public init(
        devnode: String, byIDLink: String? = nil, serialNumber: String? = nil,
        usbPath: String? = nil, kernelName: String, devpath: String, syspath: String
    ) {
        self.devnode = devnode
        self.byIDLink = byIDLink
        self.serialNumber = serialNumber
        self.usbPath = usbPath
        self.kernelName = kernelName
        self.devpath = devpath
        self.syspath = syspath
    }

    /// The best path to show a user or put in a script: the by-id link when there
    /// is one (it survives replugs), otherwise the device node.
    public var preferredPath: String { byIDLink ?? devnode }

    enum CodingKeys: String, CodingKey {
        case devnode = "node"
        case byIDLink = "by_id"
        case serialNumber = "serial"
        case usbPath = "usb_path"
        case kernelName = "kernel_name"
        case devpath
        case syspath
    }

    /// Absent values are written as `null`, so scripts see every key.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(devnode, forKey: .devnode)
        try container.encode(byIDLink, forKey: .byIDLink)
        try container.encode(serialNumber, forKey: .serialNumber)
        try container.encode(usbPath, forKey: .usbPath)
        try container.encode(kernelName, forKey: .kernelName)
        try container.encode(devpath, forKey: .devpath)
        try container.encode(syspath, forKey: .syspath)
    }
}

extension DevKitDevice: CustomStringConvertible {
    /// `/dev/ttyACM0 (serial 0669FF…, USB 1-2)`: enough to tell boards apart.
    public var description: String {
        var details: [String] = []
        if let serialNumber { details.append("serial \(serialNumber)") }
        if let usbPath { details.append("USB \(usbPath)") }
        return details.isEmpty ? devnode : "\(devnode) (\(details.joined(separator: ", ")))"
    }
}

/// The USB identity of the ST-LINK/V2-1 probe that carries the DevKit's console.
public enum DevKitUSBID {
    /// STMicroelectronics.
    public static let vendorID = "0483"
    /// ST-LINK/V2-1.
    public static let productID = "374b"

    /// Whether a vendor/product pair (hex, as sysfs or udev print them) is the ST-LINK.
    public static func matches(vendorID: String?, productID: String?) -> Bool {
        guard let vendorID, let productID else { return false }
        return vendorID.lowercased() == Self.vendorID && productID.lowercased() == Self.productID
    }
}
