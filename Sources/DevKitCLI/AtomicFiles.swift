#if canImport(Glibc)
import Glibc
#endif

/// Reads a whole file (or standard input for "-"), with the reason on failure.
func readWholeFile(_ path: String, limit: Int = 256 << 20) throws(CertError) -> [UInt8] {
    let fd = path == "-" ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw .unreadable(path: path, reason: errnoDescription(errno)) }
    defer { if fd != STDIN_FILENO { close(fd) } }
    var st = stat()
    var data = [UInt8]()
    if fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR {
        throw .unreadable(path: path, reason: "it is a directory")
    }
    if fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG { data.reserveCapacity(Int(st.st_size)) }
    var chunk = [UInt8](repeating: 0, count: 1 << 16)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 {
            if errno == EINTR { continue }
            throw .unreadable(path: path, reason: errnoDescription(errno))
        }
        if n == 0 { return data }
        data += chunk[..<n]
        if data.count > limit { throw .unreadable(path: path, reason: "larger than \(limit) bytes") }
    }
}

/// A group of files that appear together or not at all.
///
/// Each file is written to a temporary name in its target directory and renamed
/// into place only when every file of the group has been written, so a failure
/// leaves neither partial nor empty outputs (the reference tool left empty .pem
/// files behind). Secret files are created 0600 from their first byte.
struct AtomicFileGroup {
    private var pending: [(temporary: String, final: String)] = []

    /// Writes `contents` to a temporary file beside `path`.
    mutating func stage(_ contents: String, at path: String, mode: mode_t = 0o644) throws(CertError) {
        // A fixed temporary name (hidden, with our PID) opened O_EXCL: the mode is set
        // at creation and the umask applies, with no extra syscalls per file.
        let slash = path.lastIndex(of: "/")
        let temporary = slash.map { "\(path[...$0]).\(path[path.index(after: $0)...]).\(getpid()).tmp" }
            ?? ".\(path).\(getpid()).tmp"
        var fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
        if fd < 0 && errno == EEXIST {  // left over from a killed run whose PID we now have
            unlink(temporary)
            fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
        }
        guard fd >= 0 else { throw .output(path: path, reason: errnoDescription(errno)) }
        pending.append((temporary, path))
        var ok = true
        var bytes = Array(contents.utf8)[...]
        while !bytes.isEmpty {
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if n > 0 { bytes = bytes.dropFirst(n) } else if n < 0 && errno == EINTR { continue } else { ok = false; break }
        }
        let reason = errnoDescription(errno)
        if close(fd) != 0 { ok = false }
        guard ok else {
            discard()
            throw .output(path: path, reason: reason)
        }
    }

    /// Renames every staged file into place; on failure removes what was placed.
    mutating func commit() throws(CertError) {
        var placed: [String] = []
        for (temporary, final) in pending {
            if rename(temporary, final) != 0 {
                let reason = errnoDescription(errno)
                for path in placed { unlink(path) }
                discard()
                throw .output(path: final, reason: reason)
            }
            placed.append(final)
        }
        pending.removeAll()
    }

    /// Removes the staged temporary files.
    mutating func discard() {
        for (temporary, _) in pending { unlink(temporary) }
        pending.removeAll()
    }
}

/// Creates a directory (and its parents) if it does not exist.
func makeDirectory(_ path: String) throws(CertError) {
    var current = path.hasPrefix("/") ? "" : "."
    for component in path.split(separator: "/") {
        current += "/" + component
        if mkdir(current, 0o755) != 0 && errno != EEXIST {
            throw .output(path: path, reason: errnoDescription(errno))
        }
    }
    var st = stat()
    guard stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR else {
        throw .output(path: path, reason: "not a directory")
    }
}

func errnoDescription(_ code: Int32) -> String {
    String(cString: strerror(code)).lowercased()
}
