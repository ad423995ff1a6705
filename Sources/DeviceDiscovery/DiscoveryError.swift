#if canImport(Glibc)
import Glibc
#endif

/// Why discovery could not answer. Each case says what happened and what to do about
/// the board or the machine; the CLI adds how to name a port instead.
public enum DiscoveryError: Error, Sendable, Hashable {
    /// A libudev call failed (`operation` names it; `errno` is what it left behind,
    /// 0 when it set none). Usually: not Linux, `/sys` not mounted, or a sandbox.
    case udevFailed(operation: String, errno: Int32)
    /// No tty with an ST-LINK (`0483:374b`) USB parent is present.
    case noBoardAttached
    /// Several DevKits are attached, so the caller must choose one.
    case multipleBoards([DevKitDevice])
    /// The monitor socket failed while waiting for events.
    case monitorFailed(operation: String, errno: Int32)
}

extension DiscoveryError: CustomStringConvertible {
    public var description: String {
        switch self {
        case .udevFailed(let operation, let code):
            return "libudev \(operation) failed\(Self.reason(code)). Device discovery needs Linux "
                + "with /sys mounted."
        case .noBoardAttached:
            return "No DevKit found (no USB serial device \(DevKitUSBID.vendorID):\(DevKitUSBID.productID)). "
                + "Plug in a DevKit (hold A, reset) and try again."
        case .multipleBoards(let boards):
            let list = boards.map(\.description).joined(separator: "; ")
            let example = boards.first?.preferredPath ?? "/dev/ttyACM0"
            return "\(boards.count) DevKits are attached: \(list). "
                + "Choose one, e.g. \(example)."
        case .monitorFailed(let operation, let code):
            return "udev monitor \(operation) failed\(Self.reason(code)). "
                + "Hotplug events cannot be received; check that udev runs on this machine."
        }
    }

    private static func reason(_ code: Int32) -> String {
        guard code != 0, let text = strerror(code) else { return "" }
        return ": " + String(cString: text)
    }
}
