import DevKitSystem
import Foundation
import SystemPackage
#if canImport(Glibc)
import Glibc
#endif

/// What the board keeps in its STSAFE secure element (and flash) across resets.
public struct VirtualDevKitState: Codable, Sendable, Equatable {
    /// As stored by `set_dps_uds`: whatever it was given (the firmware does not check).
    public var uds: String?
    public var wifiSSID: String?
    public var wifiPassword: String?
    /// `set_az_iothub` and `set_az_iotdps` share this slot.
    public var connectionString: String?
    public var secureChannelEnabled: Bool

    public init(
        uds: String? = nil, wifiSSID: String? = nil, wifiPassword: String? = nil,
        connectionString: String? = nil, secureChannelEnabled: Bool = false
    ) {
        self.uds = uds
        self.wifiSSID = wifiSSID
        self.wifiPassword = wifiPassword
        self.connectionString = connectionString
        self.secureChannelEnabled = secureChannelEnabled
    }

    /// Reads a state file; a missing file is an empty board.
    public static func load(from path: String) throws(VirtualDevKitError) -> VirtualDevKitState {
        // open(2) rather than Data(contentsOf:), whose errors read "The operation
        // could not be completed" instead of the errno's meaning.
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            let error = errno
            if error == ENOENT { return VirtualDevKitState() }
            throw .stateFile(path: path, reason: "cannot be read (\(String(cString: strerror(error))))")
        }
        let file = FileDescriptor(rawValue: fd)
        defer { try? file.close() }
        let data: Data
        do {
            data = Data(try file.readToEnd(limit: 1 << 20))
        } catch {
            throw .stateFile(path: path, reason: "cannot be read (\(String(cString: strerror(error.rawValue))))")
        }
        do {
            return try JSONDecoder().decode(VirtualDevKitState.self, from: data)
        } catch {
            throw .stateFile(path: path, reason: "is not a virtual DevKit state file (bad JSON)")
        }
    }

    /// Writes the state durably and atomically, mode 0600: it holds secrets.
    public func save(to path: String) throws(VirtualDevKitError) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        guard let data = try? encoder.encode(self) else {
            throw .stateFile(path: path, reason: "could not be encoded")
        }
        do {
            try DurableFile.write(Array(data), to: path, mode: 0o600)
        } catch {
            throw .stateFile(path: path, reason: "cannot be written (\(error.errno))")
        }
    }
}

/// Why the virtual DevKit could not start or keep going. Says what happened; the CLI
/// (`devkit emulate`) adds which option to change.
public enum VirtualDevKitError: Error, Equatable, Sendable, CustomStringConvertible {
    /// No pseudo-terminal could be created.
    case pseudoTerminal(errno: Errno)
    /// The symlink to the pty could not be made.
    case link(path: String, errno: Errno)
    /// The symlink's path already points at a pty that is open (another emulator's).
    case linkInUse(path: String, target: String)
    case stateFile(path: String, reason: String)
    case invalidConfiguration(String)

    public var description: String {
        switch self {
        case .pseudoTerminal(let errno):
            return "Cannot create a pseudo-terminal: \(errno). Check that /dev/ptmx and devpts are available."
        case .link(let path, let errno):
            return "Cannot create the link \(path): \(errno). Choose a path in a writable directory."
        case .linkInUse(let path, let target):
            return "The link \(path) points at \(target), which is open: another virtual DevKit may be using it. "
                + "Stop that one, or remove the link if it is stale."
        case .stateFile(let path, let reason):
            return "The state file \(path) \(reason). Fix or remove it."
        case .invalidConfiguration(let reason):
            return reason
        }
    }
}
