/// Failures of the one-shot workflows outside the console itself. Never holds a secret:
/// paths yes, contents no. Says what happened; the CLI adds which option to change.
public enum WorkflowError: Error, Sendable, Hashable {
    /// A secret file (or standard input) could not be read.
    case cannotReadSecret(path: String, reason: String)
    /// A secret file's contents are not what the command needs.
    case invalidSecret(path: String, reason: String)
    /// The file for a generated secret could not be written.
    case cannotWriteSecret(path: String, reason: String, errno: Int32? = nil)
    /// The file for a generated secret exists already (it may hold another board's secret).
    case secretFileExists(path: String)
    /// After `exit` the board came back in configuration mode, so it never printed its MAC.
    case rebootedIntoConfigurationMode
    /// A connection string that is neither an IoT Hub nor a DPS one.
    case unknownConnectionString(reason: String)
}

extension WorkflowError: CustomStringConvertible {
    public var description: String {
        switch self {
        case .cannotReadSecret(let path, let reason):
            return "cannot read \(Self.name(path)): \(reason)"
        case .invalidSecret(let path, let reason):
            return "\(Self.name(path)) \(reason)"
        case .cannotWriteSecret(let path, let reason, _):
            return "cannot write \(path): \(reason) (nothing was sent to the board)"
        case .secretFileExists(let path):
            return "\(path) exists already and may hold another board's secret (nothing was sent to the board)"
        case .rebootedIntoConfigurationMode:
            return "the board rebooted into configuration mode again (button A still held?), so it did not print its MAC: "
                + "release button A, press reset in configuration mode again, and retry"
        case .unknownConnectionString(let reason):
            return "not a connection string devkit knows: \(reason); an IoT Hub one starts `HostName=`, "
                + "a DPS one `DPSEndpoint=`"
        }
    }

    package static func name(_ path: String) -> String { path == "-" ? "standard input" : path }
}
