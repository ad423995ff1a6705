import SystemPackage
#if canImport(Glibc)
import Glibc
#endif

/// The one way devkit reads a whole input file (firmware, map, batch, profile,
/// secret): opened, size-checked with fstat, and read with a limit, so a wrong path
/// (a disk image, a 1 TiB sparse file) is a clear error instead of an allocation
/// failure that aborts the process.
public enum InputFile {
    /// Reads `path` (or standard input for `-` when `standardInputDash` is set),
    /// failing with ``InputFileError/tooLarge(limit:)`` past `limit` bytes.
    public static func read(_ path: String, limit: InputLimit, standardInputDash: Bool = true) throws(InputFileError) -> [UInt8] {
        let (fd, owned) = try openChecked(path, standardInputDash: standardInputDash)
        defer { if owned { close(fd) } }
        do {
            return try FileDescriptor(rawValue: fd).readToEnd(limit: limit.bytes)
        } catch .fileTooLarge {
            throw .tooLarge(limit: limit)
        } catch {
            throw .cannotRead(error)
        }
    }

    /// Opens `path` for reading (standard input for `-`), refusing what cannot be read
    /// to its end; `owned` says whether the caller closes the descriptor.
    static func openChecked(_ path: String, standardInputDash: Bool) throws(InputFileError) -> (fd: Int32, owned: Bool) {
        let useStdin = standardInputDash && path == "-"
        // O_NONBLOCK: opening a FIFO no program writes to would otherwise block forever.
        let fd = useStdin ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { throw .cannotOpen(Errno(rawValue: errno)) }
        var st = stat()
        if fstat(fd, &st) == 0 {
            var refusal: InputFileError?
            switch st.st_mode & S_IFMT {
            case S_IFDIR: refusal = .isDirectory
            // A named FIFO waits for a writer that may never come. An anonymous pipe
            // (`--uds-file <(pass show uds)`, /dev/fd/N) has its writer, like `-`.
            case S_IFIFO where !useStdin && !isAnonymousPipe(fd): refusal = .notAFile("a FIFO (named pipe)")
            case S_IFSOCK where !useStdin: refusal = .notAFile("a socket")
            default: break
            }
            if let refusal {
                if !useStdin { close(fd) }
                throw refusal
            }
        }
        if !useStdin { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) }
        return (fd, !useStdin)
    }
}

/// A file read one line at a time, for inputs of any length (`cert --batch` of a
/// million devices) in bounded memory: only the line being read is held, and a
/// line longer than its limit is refused (a binary file, a wrong path).
public final class InputLines {
    private let fd: Int32
    private let owned: Bool
    private let lineLimit: InputLimit
    private var buffer: [UInt8] = []
    private var start = 0
    private var atEnd = false

    /// Opens `path` (standard input for `-`) with the checks of ``InputFile/read(_:limit:standardInputDash:)``.
    public init(_ path: String, lineLimit: InputLimit, standardInputDash: Bool = true) throws(InputFileError) {
        (fd, owned) = try InputFile.openChecked(path, standardInputDash: standardInputDash)
        self.lineLimit = lineLimit
        buffer.reserveCapacity(1 << 16)
    }

    deinit { if owned { close(fd) } }

    /// The next line without its newline; nil after the last. A last line without a
    /// newline is still a line.
    public func next() throws(InputFileError) -> ArraySlice<UInt8>? {
        var searchFrom = start
        while true {
            if let newline = buffer[searchFrom...].firstIndex(of: 0x0A) {
                // Checked here too: the check below runs only between reads, so a line
                // up to a read's size over the limit got through when its newline came.
                if newline - start > lineLimit.bytes { throw .tooLarge(limit: lineLimit) }
                let line = buffer[start..<newline]
                start = newline + 1
                return line
            }
            if buffer.count - start > lineLimit.bytes { throw .tooLarge(limit: lineLimit) }
            if atEnd {
                guard start < buffer.count else { return nil }
                let line = buffer[start...]
                start = buffer.count
                return line
            }
            // Drop the lines already returned, then read more after what is left.
            searchFrom = buffer.count - start
            buffer.removeFirst(start)
            start = 0
            let chunk = 1 << 16
            let old = buffer.count
            buffer.append(contentsOf: repeatElement(0, count: chunk))
            let n = buffer.withUnsafeMutableBufferPointer { Glibc.read(fd, $0.baseAddress! + old, chunk) }
            if n < 0 {
                buffer.removeLast(chunk)
                if errno == EINTR { searchFrom = 0; continue }
                throw .cannotRead(Errno(rawValue: errno))
            }
            buffer.removeLast(chunk - n)
            if n == 0 { atEnd = true }
        }
    }
}

/// Whether `fd` is a pipe without a name (its /proc link reads `pipe:[inode]`).
private func isAnonymousPipe(_ fd: Int32) -> Bool {
    var buffer = [CChar](repeating: 0, count: 64)
    let n = readlink("/proc/self/fd/\(fd)", &buffer, buffer.count - 1)
    return n > 0 && String(cString: buffer).hasPrefix("pipe:")
}

/// Why ``InputFile/read(_:limit:standardInputDash:)`` failed.
public enum InputFileError: Error, Equatable, Sendable {
    case cannotOpen(Errno)
    case isDirectory
    /// Not a file that can be read whole (a named FIFO, a socket): what it is.
    case notAFile(String)
    case cannotRead(Errno)
    case tooLarge(limit: InputLimit)

    /// The errno behind the failure, when there is one.
    public var errno: Errno? {
        switch self {
        case .cannotOpen(let e), .cannotRead(let e): e
        case .isDirectory: .isDirectory
        case .notAFile: nil
        case .tooLarge: .fileTooLarge
        }
    }

    /// What went wrong, in lower case, for "cannot read <path>: <reason>".
    public var reason: String {
        switch self {
        case .cannotOpen(let e), .cannotRead(let e): String(cString: strerror(e.rawValue)).lowercased()
        case .isDirectory: "it is a directory"
        case .notAFile(let what):
            "it is \(what), not a file: give a regular file, or `-` and send the data on standard input"
        case .tooLarge(let limit): "it is larger than \(limit), the limit for \(limit.kind); is this the right file?"
        }
    }
}

/// The largest file devkit reads for each kind of input. Generous for real files,
/// small enough that reading one is instant and never exhausts memory.
public struct InputLimit: Equatable, Sendable, CustomStringConvertible {
    public let bytes: Int
    /// What kind of file, for the message ("a firmware .bin").
    public let kind: String

    public init(bytes: Int, kind: String) {
        self.bytes = bytes
        self.kind = kind
    }

    /// The AZ3166 has 1 MiB of flash, so its raw image is at most that; twice it is headroom.
    public static let firmwareBin = InputLimit(bytes: 2 << 20, kind: "a firmware .bin (the AZ3166 has 1 MiB of flash)")
    /// A GNU ld map of an AZ3166 sketch is a few hundred KiB (cross-reference tables included).
    public static let linkerMap = InputLimit(bytes: 32 << 20, kind: "a linker .map")
    /// The linked .elf carries debug information besides the 1 MiB image: tens of MiB at most.
    public static let firmwareELF = InputLimit(bytes: 128 << 20, kind: "a firmware .elf")
    /// `cert --batch`, read a line at a time: one JSON object (~150 bytes) per line.
    public static let certBatchLine = InputLimit(bytes: 64 << 10, kind: "a line of a batch file")
    /// A provisioning profile is a short TOML file.
    public static let profile = InputLimit(bytes: 1 << 20, kind: "a profile")
    /// An Alias certificate (PEM, under 1 KiB) or its enrollment file; a CA bundle
    /// is a few hundred KiB.
    public static let certificate = InputLimit(bytes: 1 << 20, kind: "a certificate or enrollment file")
    /// A UDS (64 hex digits), Wi-Fi password (63 bytes), connection string (a few hundred bytes).
    public static let secret = InputLimit(bytes: 4 << 10, kind: "a secret file")

    /// "2 MiB", "4 KiB" or the byte count.
    public var description: String {
        if bytes >= 1 << 20, bytes % (1 << 20) == 0 { return "\(bytes >> 20) MiB" }
        if bytes >= 1 << 10, bytes % (1 << 10) == 0 { return "\(bytes >> 10) KiB" }
        return "\(bytes) bytes"
    }
}
