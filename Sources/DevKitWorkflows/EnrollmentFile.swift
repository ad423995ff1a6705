import DevKitModel
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
        try writeAtomically([(data, path)], mode: mode)
    }

    /// Writes several files the same way, with one directory fsync for all of them:
    /// each goes to a temp file beside its path; only when all are written and
    /// fsynced are they renamed into place (a failure before that changes no file)
    /// and their directories fsynced. The directory fsync is shared with other
    /// threads writing at the same moment (see ``DirectorySync``): when 16 boards
    /// finished together, four fsyncs each, one after another in the journal, were
    /// most of their tail.
    public static func writeAtomically(_ files: [(data: Data, path: String)], mode: mode_t) throws(OutputFileError) {
        var temps: [(fd: Int32, temp: String, path: String)] = []
        var closed = 0  // temps[..<closed] are closed, temps[..<renamed] in place
        var renamed = 0
        defer {
            for file in temps[closed...] { close(file.fd) }
            for file in temps[renamed...] { unlink(file.temp) }
        }
        for file in files {
            let (fd, temp) = try writeTemporary(file.data, beside: file.path, mode: mode)
            temps.append((fd, temp, file.path))
        }
        try syncAll(temps)
        for file in temps {
            closed += 1  // the descriptor is released even when close fails
            // Some file systems (NFS) report a failed write only here.
            guard close(file.fd) == 0 else {
                throw OutputFileError(path: file.path, reason: String(cString: strerror(errno)))
            }
        }
        var directories: [String] = []
        for file in temps {
            guard rename(file.temp, file.path) == 0 else {
                throw OutputFileError(path: file.path, reason: String(cString: strerror(errno)))
            }
            renamed += 1
            let dir = directory(of: file.path)
            if !directories.contains(dir) { directories.append(dir) }
        }
        for dir in directories { DirectorySync.shared.sync(dir) }
    }

    /// The directory `path` is in ("." for a bare name).
    private static func directory(of path: String) -> String {
        let directory = (path as NSString).deletingLastPathComponent
        return directory.isEmpty ? "." : directory
    }

    /// A new temp file `.<name>.XXXXXX` beside `path` holding `data`, not yet synced;
    /// its open descriptor and path.
    private static func writeTemporary(
        _ data: Data, beside path: String, mode: mode_t
    ) throws(OutputFileError) -> (fd: Int32, path: String) {
        var template = Array("\(directory(of: path))/.\((path as NSString).lastPathComponent).XXXXXX".utf8CString)
        let fd = mkstemp(&template)
        guard fd >= 0 else { throw OutputFileError(path: path, reason: String(cString: strerror(errno))) }
        let tempPath = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
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
        if let failure {
            close(fd)
            unlink(tempPath)
            throw OutputFileError(path: path, reason: failure)
        }
        return (fd, tempPath)
    }

    /// fsyncs every file, after starting the write-back of all of them: the first
    /// fsync's journal commit then takes in the others' blocks too, and theirs find
    /// little left to do (two files, one after the other, each waited for a commit).
    private static func syncAll(_ files: [(fd: Int32, temp: String, path: String)]) throws(OutputFileError) {
        for file in files {
            // Only a hint: where it fails (not a regular file system), fsync does it all.
            _ = syncFileRange?(file.fd, 0, 0, 2 /* SYNC_FILE_RANGE_WRITE */)
        }
        for file in files where fsync(file.fd) != 0 {
            throw OutputFileError(path: file.path, reason: String(cString: strerror(errno)))
        }
    }
}

// Linux's sync_file_range(2), which the Glibc module map leaves out (it needs
// _GNU_SOURCE); bound by name, absent elsewhere.
private typealias SyncFileRange = @convention(c) (Int32, Int64, Int64, UInt32) -> Int32
private let syncFileRange: SyncFileRange? =
    dlsym(dlopen(nil, RTLD_NOW), "sync_file_range").map { unsafeBitCast($0, to: SyncFileRange.self) }

/// Group fsync of directories: makes renames durable, one fsync for every thread
/// whose rename came before that fsync started.
///
/// A caller takes a ticket after its rename. A sync that starts later covers every
/// ticket issued so far; callers arriving while one runs wait, and the first of them
/// then runs the next for all of them.
final class DirectorySync: @unchecked Sendable {
    static let shared = DirectorySync()

    /// fsyncs the directory (replaced in tests).
    private let syncDirectory: @Sendable (String) -> Void
    private let condition = NSCondition()
    private var issued: [String: UInt64] = [:]
    private var covered: [String: UInt64] = [:]
    private var running: Set<String> = []
    private var syncsRun = 0

    init(syncDirectory: @escaping @Sendable (String) -> Void = DirectorySync.fsyncDirectory) {
        self.syncDirectory = syncDirectory
    }

    /// fsyncs run so far (fewer than callers when they overlapped).
    var syncCount: Int { condition.withLock { syncsRun } }
    /// Callers so far, for `directory`.
    func callerCount(_ directory: String) -> Int { condition.withLock { Int(issued[directory, default: 0]) } }

    /// As before: a directory that cannot be opened or synced (some network file
    /// systems refuse) leaves the renamed files in place, unsynced.
    static func fsyncDirectory(_ directory: String) {
        let fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd >= 0 {
            _ = fsync(fd)
            close(fd)
        }
    }

    /// Returns once a directory fsync that started after this call has finished.
    func sync(_ directory: String) {
        condition.lock()
        defer { condition.unlock() }
        let ticket = issued[directory, default: 0] + 1
        issued[directory] = ticket
        while covered[directory, default: 0] < ticket {
            if running.contains(directory) {
                condition.wait()
                continue
            }
            running.insert(directory)
            syncsRun += 1
            let covering = issued[directory, default: 0]
            condition.unlock()
            syncDirectory(directory)
            condition.lock()
            running.remove(directory)
            covered[directory] = max(covered[directory, default: 0], covering)
            condition.broadcast()
        }
    }
}
