import DevKitModel
import DevKitSystem
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// The DPS individual enrollment for one board, as a file and as an `az` command.
///
/// The file is the body of the DPS service API's individual-enrollment
/// create-or-update request (`PUT https://<dps>.azure-devices-provisioning.net/enrollments/<id>`)
/// with X.509 attestation: the board's Alias certificate as the primary client
/// certificate. The PEM text goes in `certificate`, as the Azure SDKs send it.
public struct EnrollmentFile: Sendable, Equatable {
    public var registrationID: String
    /// The Alias certificate, PEM.
    public var certificatePEM: String
    public var dps: DPSSettings

    public init(registrationID: String, certificatePEM: String, dps: DPSSettings = DPSSettings()) {
        self.registrationID = registrationID
        self.certificatePEM = certificatePEM
        self.dps = dps
    }

    /// The request body, pretty-printed JSON with sorted keys and a final newline,
    /// byte for byte what `JSONSerialization` writes with `.prettyPrinted`,
    /// `.sortedKeys` and `.withoutEscapingSlashes`.
    ///
    /// Written here rather than by `JSONSerialization`, whose first use in a process
    /// (bridging to NSDictionary, its writer's set-up) takes about 1 ms, after the
    /// board's MAC is known and before its files can be written; with 16 boards
    /// finishing at once that was on each one's tail. The body is four fixed keys of
    /// strings, so the writer is small; the tests check it against
    /// `JSONSerialization` for awkward strings.
    public func json() -> Data {
        var body: [(String, PrettyJSON)] = [
            ("attestation", .object([
                ("type", .string("x509")),
                ("x509", .object([("clientCertificates", .object([
                    ("primary", .object([("certificate", .string(certificatePEM))])),
                ]))])),
            ])),
            ("provisioningStatus", .string(dps.provisioningEnabled ? "enabled" : "disabled")),
            ("registrationId", .string(registrationID)),
        ]
        if let hub = dps.iotHubHostName { body.append(("iotHubHostName", .string(hub))) }
        var out: [UInt8] = []
        out.reserveCapacity(certificatePEM.utf8.count + 400)
        PrettyJSON.object(body).write(to: &out, indent: 0)
        out.append(0x0A)
        return Data(out)
    }

    /// `az iot dps enrollment create ...` for `certificatePath`, shell-quoted. An unknown
    /// DPS name or resource group appears as `"$DPS_NAME"` / `"$RESOURCE_GROUP"`: the
    /// line still pastes into a shell (`<dps-name>` would be a redirection), after
    /// `export DPS_NAME=… RESOURCE_GROUP=…`.
    public func azCommand(certificatePath: String) -> String {
        var words = [
            "az", "iot", "dps", "enrollment", "create",
            "--enrollment-id", registrationID,
            "--attestation-type", "x509",
            "--certificate-path", certificatePath,
        ].map(shellQuote)
        words += ["--dps-name", dps.name.map(shellQuote) ?? "\"$DPS_NAME\""]
        words += ["--resource-group", dps.resourceGroup.map(shellQuote) ?? "\"$RESOURCE_GROUP\""]
        if let hub = dps.iotHubHostName { words += ["--iot-hubs", shellQuote(hub)] }
        if !dps.provisioningEnabled { words += ["--provisioning-status", "disabled"] }
        return words.joined(separator: " ")
    }

    /// Writes `<directory>/<id>.enrollment.json` atomically (temp file, fsync, rename)
    /// with mode 0644, and returns its path.
    @discardableResult
    public func write(toDirectory directory: String) throws(OutputFileError) -> String {
        let path = path(in: directory)
        try OutputFile.writeAtomically(json(), to: path, mode: 0o644)
        return path
    }

    /// `<directory>/<id>.enrollment.json`.
    public func path(in directory: String) -> String {
        (directory as NSString).appendingPathComponent("\(registrationID).enrollment.json")
    }
}

/// Objects of strings, written as `JSONSerialization` pretty-prints them (keys
/// sorted, two-space indent, `" : "`, slashes not escaped).
enum PrettyJSON {
    case string(String)
    case object([(String, PrettyJSON)])

    func write(to out: inout [UInt8], indent: Int) {
        switch self {
        case .string(let s):
            Self.writeString(s, to: &out)
        case .object(let members):
            out.append(UInt8(ascii: "{"))
            let sorted = members.sorted { $0.0.utf8.lexicographicallyPrecedes($1.0.utf8) }
            for (i, (key, value)) in sorted.enumerated() {
                out.append(0x0A)
                out.append(contentsOf: repeatElement(0x20, count: indent + 2))
                Self.writeString(key, to: &out)
                out.append(contentsOf: " : ".utf8)
                value.write(to: &out, indent: indent + 2)
                if i < sorted.count - 1 { out.append(UInt8(ascii: ",")) }
            }
            if !sorted.isEmpty {
                out.append(0x0A)
                out.append(contentsOf: repeatElement(0x20, count: indent))
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    private static func writeString(_ s: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for byte in s.utf8 {
            switch byte {
            case UInt8(ascii: "\""): out.append(contentsOf: "\\\"".utf8)
            case UInt8(ascii: "\\"): out.append(contentsOf: "\\\\".utf8)
            case 0x08: out.append(contentsOf: "\\b".utf8)
            case 0x0C: out.append(contentsOf: "\\f".utf8)
            case 0x0A: out.append(contentsOf: "\\n".utf8)
            case 0x0D: out.append(contentsOf: "\\r".utf8)
            case 0x09: out.append(contentsOf: "\\t".utf8)
            case 0x00..<0x20:
                out.append(contentsOf: "\\u00".utf8)
                out.append(contentsOf: Hex.encode([byte]).utf8)
            default: out.append(byte)  // UTF-8 as it is, as JSONSerialization writes it
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}

/// A command line devkit prints for the user to run, each word quoted as needed.
public func commandLine(_ words: [String]) -> String {
    words.map(shellQuote).joined(separator: " ")
}

/// Quotes a word for a POSIX shell when it needs it.
public func shellQuote(_ word: String) -> String {
    let safe = word.unicodeScalars.allSatisfy {
        CharacterSet.alphanumerics.contains($0) && $0.isASCII || "-_./:=@,+%".unicodeScalars.contains($0)
    }
    return safe && !word.isEmpty ? word : "'" + word.replacingOccurrences(of: "'", with: "'\\''") + "'"
}

/// An output file that could not be written.
public struct OutputFileError: Error, Sendable, Equatable, CustomStringConvertible {
    public var path: String
    public var reason: String
    /// The failed call's errno (the CLI maps it to an exit code).
    public var errno: Int32?
    public init(path: String, reason: String, errno: Int32? = nil) {
        self.path = path
        self.reason = reason
        self.errno = errno
    }
    public var description: String { "cannot write \(escaped(path)): \(reason); check the output directory" }
}

/// Atomic writes of output files: never a partial file under the final name.
public enum OutputFile {
    /// Writes `data` to a temp file beside `path`, fsyncs it, renames it over `path`
    /// and fsyncs the directory.
    public static func writeAtomically(_ data: Data, to path: String, mode: mode_t) throws(OutputFileError) {
        try writeAtomically([(data, path)], mode: mode)
    }

    /// Writes several files the same way, all or none (``DurableFile``): a failure
    /// before they are all written and synced changes no file, and their directories
    /// are synced once, shared with other threads writing at the same moment.
    public static func writeAtomically(_ files: [(data: Data, path: String)], mode: mode_t) throws(OutputFileError) {
        do {
            try DurableFile.write(files.map { (Array($0.data), $0.path) }, mode: mode)
        } catch {
            throw OutputFileError(path: error.path, reason: error.reason, errno: error.errno.rawValue)
        }
    }
}
