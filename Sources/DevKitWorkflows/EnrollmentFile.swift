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

    /// The request body, pretty-printed JSON with sorted keys and a final newline.
    public func json() -> Data {
        var body: [String: Any] = [
            "registrationId": registrationID,
            "attestation": [
                "type": "x509",
                "x509": ["clientCertificates": ["primary": ["certificate": certificatePEM]]],
            ],
            "provisioningStatus": dps.provisioningEnabled ? "enabled" : "disabled",
        ]
        if let hub = dps.iotHubHostName { body["iotHubHostName"] = hub }
        // Only strings and dictionaries above: serialisation cannot fail.
        var data = try! JSONSerialization.data(
            withJSONObject: body, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
        data.append(0x0A)
        return data
    }

    /// `az iot dps enrollment create ...` for `certificatePath`, shell-quoted. Unknown
    /// DPS name or resource group appear as `<dps-name>` / `<resource-group>` to fill in.
    public func azCommand(certificatePath: String) -> String {
        var words = [
            "az", "iot", "dps", "enrollment", "create",
            "--enrollment-id", registrationID,
            "--attestation-type", "x509",
            "--certificate-path", certificatePath,
        ].map(shellQuote)
        // Unknown values stay visible, unquoted placeholders for the user to fill in.
        words += ["--dps-name", dps.name.map(shellQuote) ?? "<dps-name>"]
        words += ["--resource-group", dps.resourceGroup.map(shellQuote) ?? "<resource-group>"]
        if let hub = dps.iotHubHostName { words += ["--iot-hubs", shellQuote(hub)] }
        if !dps.provisioningEnabled { words += ["--provisioning-status", "disabled"] }
        return words.joined(separator: " ")
    }

    /// Writes `<directory>/<id>.enrollment.json` atomically (temp file, fsync, rename)
    /// with mode 0644, and returns its path.
    @discardableResult
    public func write(toDirectory directory: String) throws(OutputFileError) -> String {
        let path = (directory as NSString).appendingPathComponent("\(registrationID).enrollment.json")
        try OutputFile.writeAtomically(json(), to: path, mode: 0o644)
        return path
    }
}

/// Quotes a word for a POSIX shell when it needs it.
func shellQuote(_ word: String) -> String {
    let safe = word.unicodeScalars.allSatisfy {
        CharacterSet.alphanumerics.contains($0) && $0.isASCII || "-_./:=@,+%".unicodeScalars.contains($0)
    }
    return safe && !word.isEmpty ? word : "'" + word.replacingOccurrences(of: "'", with: "'\\''") + "'"
}

/// An output file that could not be written.
public struct OutputFileError: Error, Sendable, Equatable, CustomStringConvertible {
    public var path: String
    public var reason: String
    public var description: String { "cannot write \(path): \(reason); check the output directory" }
}

/// Atomic writes of output files: never a partial file under the final name.
public enum OutputFile {
    /// Writes `data` to a temp file beside `path`, fsyncs it, renames it over `path`
    /// and fsyncs the directory.
    public static func writeAtomically(_ data: Data, to path: String, mode: mode_t) throws(OutputFileError) {
        let directory = (path as NSString).deletingLastPathComponent
        let dir = directory.isEmpty ? "." : directory
        var template = Array("\(dir)/.\((path as NSString).lastPathComponent).XXXXXX".utf8CString)
        let fd = mkstemp(&template)
        guard fd >= 0 else { throw OutputFileError(path: path, reason: String(cString: strerror(errno))) }
        let tempPath = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
        var ok = false
        defer {
            if !ok { unlink(tempPath) }
        }
        var failure: String?
        data.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let n = Glibc.write(fd, raw.baseAddress! + offset, raw.count - offset)
                if n > 0 { offset += n } else if n < 0 && errno == EINTR { continue } else {
                    failure = String(cString: strerror(errno)); return
                }
            }
        }
        if failure == nil && fchmod(fd, mode) != 0 { failure = String(cString: strerror(errno)) }
        if failure == nil && fsync(fd) != 0 { failure = String(cString: strerror(errno)) }
        if close(fd) != 0 && failure == nil { failure = String(cString: strerror(errno)) }
        if let failure { throw OutputFileError(path: path, reason: failure) }
        guard rename(tempPath, path) == 0 else {
            throw OutputFileError(path: path, reason: String(cString: strerror(errno)))
        }
        ok = true
        let dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dfd >= 0 {
            _ = fsync(dfd)
            close(dfd)
        }
    }
}
