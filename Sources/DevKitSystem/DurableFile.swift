import CDevKitLinux
import Synchronization
import SystemPackage
#if canImport(Glibc)
import Glibc
#endif

/// A file that could not be written: the final path and the call's errno.
public struct DurableFileError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The path the caller asked for (not the temporary file).
    public var path: String
    public var errno: Errno
    public init(path: String, errno: Errno) {
        self.path = path
        self.errno = errno
    }
    /// The C library's text for the errno ("No such file or directory").
    public var reason: String { String(cString: strerror(errno.rawValue)) }
    public var description: String { "cannot write \(path): \(reason)" }
}

/// The package's one durable (and atomic) file writer, for secrets, certificates,
/// enrollment files and the emulator's state.
///
/// Each file is written to a temporary name in its own directory and renamed into
/// place, so a reader sees the old file or the whole new one, never part of it; on
/// failure no temporary file is left. ``write(_:to:mode:replacing:)`` also makes it
/// durable before returning: fsync of the file, rename, fsync of the directory.
/// Written on POSIX calls because those guarantees are the point; Foundation's
/// atomic write neither fsyncs nor refuses to replace.
public enum DurableFile {
    /// Writes `bytes` to `path` with exactly `mode` (chmod, not the umask), durably.
    /// With `replacing: false` an existing file is never replaced, even in a race
    /// (link(2) instead of rename(2)): the error's errno is then `.fileExists`.
    public static func write(
        _ bytes: [UInt8], to path: String, mode: mode_t, replacing: Bool = true
    ) throws(DurableFileError) {
        var group = FileGroupWriter()
        try group.stage(bytes, at: path, mode: mode)
        try group.commit(replacing: replacing)
    }

    /// Writes several files durably, all or none: none is renamed into place before
    /// every one is written and synced, and their directories are synced once.
    public static func write(_ files: [(bytes: [UInt8], path: String)], mode: mode_t) throws(DurableFileError) {
        var group = FileGroupWriter()
        for file in files { try group.stage(file.bytes, at: file.path, mode: mode) }
        try group.commit()
    }

    /// fsyncs a directory, making the renames and links in it durable.
    public static func syncDirectory(_ directory: String) throws(DurableFileError) {
        let fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw DurableFileError(path: directory, errno: Errno(rawValue: Glibc.errno)) }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw DurableFileError(path: directory, errno: Errno(rawValue: Glibc.errno)) }
    }

    /// `mkdir -p`: creates `path` and its missing parents, each new one with `mode`
    /// (exactly: chmod after mkdir, whatever the umask), and syncs the parent of each
    /// so that they survive a crash. mkdir(2) rather than FileManager, whose errors
    /// hide the errno an exit code is chosen by. An existing non-directory is ENOTDIR.
    public static func makeDirectories(_ path: String, mode: mode_t) throws(DurableFileError) {
        var current = path.hasPrefix("/") ? "" : "."
        for component in path.split(separator: "/") {
            let parent = current.isEmpty ? "/" : current
            current += "/" + component
            if mkdir(current, mode) == 0 {
                _ = chmod(current, mode)
                try? syncDirectory(parent)  // best effort: some file systems refuse it
            } else if errno != EEXIST {
                throw DurableFileError(path: current, errno: Errno(rawValue: errno))
            }
        }
        var st = stat()
        guard stat(path, &st) == 0 else { throw DurableFileError(path: path, errno: Errno(rawValue: errno)) }
        guard st.st_mode & S_IFMT == S_IFDIR else { throw DurableFileError(path: path, errno: .notDirectory) }
    }

    /// The directory `path` is in ("." for a bare name).
    static func directory(of path: String) -> String {
        directory(of: path, lastSlash: path.utf8.lastIndex(of: UInt8(ascii: "/")))
    }

    static func directory(of path: String, lastSlash slash: String.Index?) -> String {
        guard let slash else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }
}

/// A group of files that appear together or not at all (the engine of
/// ``DurableFile``, also used directly where durability is not wanted).
///
/// ``stage(_:at:mode:honoringUmask:)`` writes each file without a name in its
/// directory (`O_TMPFILE`) where the kernel and the file system allow it, else under
/// a temporary name beside its path; ``commit(replacing:)`` puts them all in place,
/// removing those already placed under new names if one fails; ``discard()`` drops
/// what was staged (a failed stage or commit has already done so).
///
/// An unnamed file is linked into place by its descriptor (`linkat`): a process killed
/// before that leaves nothing behind, and a new file costs 1.5-2 µs less than a
/// temporary name and `rename` (Docs/certificate.md, "The files"), which a batch of
/// certificates pays per device. `linkat` never replaces, so an existing file is
/// replaced the old way: linked under a temporary name, then renamed over it.
public struct FileGroupWriter {
    /// fsync each file (after starting the write-back of all of them) before the
    /// renames, and its directory after. Off for `devkit cert`'s batches, whose
    /// 10,000 certificates/s (Scripts/bench-cert.sh) an fsync per file would end.
    public let durable: Bool
    /// `temporary` is nil for an unnamed file, whose descriptor stays open until it is
    /// linked the way it was staged for.
    private var staged: [Staged] = []
    private typealias Staged = (fd: Int32, temporary: String?, path: String, method: LinkMethod)

    /// The way this writer places files: the process's (found out on first use), or
    /// one the tests force for this writer alone.
    private let forcedMethod: LinkMethod?

    public init(durable: Bool = true) {
        self.init(durable: durable, method: nil)
    }

    init(durable: Bool, method: LinkMethod?) {
        self.durable = durable
        forcedMethod = method
    }

    /// Process-wide counter for temporary names: unique without a random number per file.
    private static let counter = Atomic<UInt64>(0)
    /// This process's ID, asked once (getpid is a system call; a batch stages a file per
    /// device). A forked child that kept it would meet EEXIST and take the next number.
    private static let processID = getpid()

    /// How this process links an unnamed file into place, found out on first use:
    /// `linkat(fd, "", AT_EMPTY_PATH)` needs no privilege since Linux 6.10 (for a file the
    /// process opened itself); before, only through /proc/self/fd; neither where /proc is
    /// missing, and then every file takes a temporary name.
    enum LinkMethod: UInt8, Sendable { case unknown, emptyPath, procSelf, unavailable }
    private static let linkMethod = Atomic<UInt8>(LinkMethod.unknown.rawValue)
    static var currentLinkMethod: LinkMethod { LinkMethod(rawValue: linkMethod.load(ordering: .relaxed)) ?? .unknown }

    /// Before Linux 6.0 an O_TMPFILE file ignored the umask on file systems without
    /// POSIX ACLs ("fs: Add missing umask strip in vfs_tmpfile"): there a file that must
    /// honour the umask takes a named temporary, whose O_CREAT always does.
    static let unnamedFilesHonourTheUmask: Bool = {
        var name = utsname()
        guard uname(&name) == 0 else { return false }
        return honoursUmask(release: withUnsafeBytes(of: name.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) })
    }()

    /// Whether a kernel of this release (uname -r: "6.18.0-1-amd64") applies the umask
    /// to O_TMPFILE files: 6.0 and later.
    static func honoursUmask(release: String) -> Bool {
        (Int(release.prefix { $0.isASCII && $0.isNumber }) ?? 0) >= 6
    }

    /// Writes `bytes` to a new file that will appear at `path` on commit. The mode is
    /// `mode` exactly, or `mode` less the umask with `honoringUmask` (certificates, as
    /// any tool writes them); the file is 0600 or narrower until then.
    public mutating func stage(
        _ bytes: [UInt8], at path: String, mode: mode_t, honoringUmask: Bool = false
    ) throws(DurableFileError) {
        // The last "/" found in the UTF-8 bytes: a Character search costs far more, and
        // a batch stages a file per device.
        let slash = path.utf8.lastIndex(of: UInt8(ascii: "/"))
        let base = slash.map { String(path[path.index(after: $0)...]) } ?? path
        guard !base.isEmpty else {
            discard()
            throw DurableFileError(path: path, errno: .isDirectory)
        }
        let directory = DurableFile.directory(of: path, lastSlash: slash)
        StaleTemporaries.shared.removeOnce(in: directory)
        let createMode = honoringUmask ? mode : mode & 0o600
        var (fd, method) = honoringUmask && !Self.unnamedFilesHonourTheUmask
            ? (-1, .unavailable) : Self.openUnnamed(in: directory, mode: createMode, forced: forcedMethod)
        var temporary: String?
        if fd < 0 {
            // No unnamed file here: a named one, which also reports any real error
            // (EACCES, ENOENT, EROFS) as the path's.
            let prefix = slash.map { String(path[...$0]) } ?? ""
            repeat {  // EEXIST: left over from a killed run that had our PID
                temporary = Self.temporaryName(prefix: prefix, base: base)
                fd = open(temporary!, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, createMode)
            } while fd < 0 && errno == EEXIST
            guard fd >= 0 else {
                let err = Errno(rawValue: errno)
                discard()
                throw DurableFileError(path: path, errno: err)
            }
        }
        staged.append((fd, temporary, path, method))
        do throws(Errno) {
            try FileDescriptor(rawValue: fd).writeAll(bytes: bytes)
            if !honoringUmask && fchmod(fd, mode) != 0 { throw Errno(rawValue: errno) }
        } catch {
            discard()
            throw DurableFileError(path: path, errno: error)
        }
    }

    /// `.<name>.<pid>.<n>.tmp` beside the path (``StaleTemporaries`` knows the form).
    private static func temporaryName(prefix: String, base: String) -> String {
        "\(prefix).\(base).\(processID).\(counter.add(1, ordering: .relaxed).newValue).tmp"
    }

    /// The same for a whole path, split at its last "/".
    private static func temporaryName(beside path: String) -> String {
        let slash = path.utf8.lastIndex(of: UInt8(ascii: "/"))
        return temporaryName(
            prefix: slash.map { String(path[...$0]) } ?? "", base: slash.map { String(path[path.index(after: $0)...]) } ?? path)
    }

    /// An unnamed file in `directory`, or -1 where none can be made and linked: a file
    /// system without O_TMPFILE (EOPNOTSUPP), or a process that cannot link one.
    private static func openUnnamed(in directory: String, mode: mode_t, forced: LinkMethod?) -> (Int32, LinkMethod) {
        var method = forced ?? currentLinkMethod
        guard method != .unavailable else { return (-1, method) }
        let fd = open(directory, CDevKitLinux_O_TMPFILE | O_WRONLY | O_CLOEXEC, mode)
        guard fd >= 0 else { return (-1, .unavailable) }
        if method == .unknown {
            method = probeLinkMethod(in: directory, mode: mode)
            guard method != .unknown else {  // the probe could not even open: ask again next time
                close(fd)
                return (-1, .unavailable)
            }
            // The first probe's answer stands (threads probing at once find the same).
            let (stored, found) = linkMethod.compareExchange(
                expected: LinkMethod.unknown.rawValue, desired: method.rawValue, ordering: .relaxed)
            if !stored { method = LinkMethod(rawValue: found) ?? .unavailable }
            if method == .unavailable {
                close(fd)
                return (-1, method)
            }
        }
        return (fd, method)
    }

    /// Links a throwaway unnamed file (a file linked once cannot be linked again after
    /// its name is removed, so not the one to keep) each way, then removes it.
    static func probeLinkMethod(in directory: String, mode: mode_t) -> LinkMethod {
        let prefix = directory == "/" ? "/" : directory + "/"
        for method in [LinkMethod.emptyPath, .procSelf] {
            let fd = open(directory, CDevKitLinux_O_TMPFILE | O_WRONLY | O_CLOEXEC, mode)
            // The writer's own open just worked here: a failure now passes (EMFILE,
            // ENOSPC), and says nothing about linking.
            guard fd >= 0 else { return .unknown }
            defer { close(fd) }
            let name = temporaryName(prefix: prefix, base: "probe")
            if link(fd, to: name, method) == 0 {
                unlink(name)
                return method
            }
        }
        return .unavailable
    }

    /// linkat(2) of an unnamed file's descriptor to `path`; fails with EEXIST if it exists.
    private static func link(_ fd: Int32, to path: String, _ method: LinkMethod) -> Int32 {
        switch method {
        case .emptyPath: return linkat(fd, "", AT_FDCWD, path, CDevKitLinux_AT_EMPTY_PATH)
        case .procSelf: return linkat(AT_FDCWD, "/proc/self/fd/\(fd)", AT_FDCWD, path, AT_SYMLINK_FOLLOW)
        case .unknown, .unavailable: errno = EOPNOTSUPP; return -1
        }
    }

    /// Puts every staged file in place (rename, or link with `replacing: false`).
    /// On failure no temporary is left, and the files placed under new names are
    /// removed; one that replaced an existing file keeps its new content.
    public mutating func commit(replacing: Bool = true) throws(DurableFileError) {
        defer { discard() }  // what is left: the temporaries (and their descriptors)
        if durable {
            for file in staged {
                // Only a hint: where it fails (not a regular file system), fsync does it all.
                // Started for every file first, the first fsync's journal commit takes in
                // the others' blocks too (two files in a row each waited for a commit).
                _ = CDevKitLinux_sync_file_range(file.fd, 0, 0, CDevKitLinux_SYNC_FILE_RANGE_WRITE)
            }
            for file in staged where fsync(file.fd) != 0 {
                throw DurableFileError(path: file.path, errno: Errno(rawValue: errno))
            }
        }
        // A named file is closed before it is renamed (some file systems, NFS, report a
        // failed write only here); an unnamed one is linked by its descriptor first.
        for index in staged.indices where staged[index].temporary != nil {
            let fd = staged[index].fd
            staged[index].fd = -1  // the descriptor is released even when close fails
            guard close(fd) == 0 else { throw DurableFileError(path: staged[index].path, errno: Errno(rawValue: errno)) }
        }
        var placed: [String] = []  // paths that did not exist before: removed again on failure
        // An unnamed file's close comes after every file is placed, and may fail: then
        // the last file has a later step to fail after it too.
        let closesAfterPlacing = staged.contains { $0.temporary == nil }
        var directories: [String] = []
        for (index, file) in staged.enumerated() {
            let isNew: Bool
            do throws(Errno) {
                isNew = try Self.place(file, replacing: replacing, isLast: index == staged.count - 1 && !closesAfterPlacing)
            } catch {
                for path in placed { unlink(path) }
                throw DurableFileError(path: file.path, errno: error)
            }
            if isNew { placed.append(file.path) }
            let directory = DurableFile.directory(of: file.path)
            if !directories.contains(directory) { directories.append(directory) }
        }
        var closeFailure: DurableFileError?
        for index in staged.indices {
            if let temporary = staged[index].temporary {
                if !replacing { unlink(temporary) }  // linked, not renamed: the name stayed
            } else {
                // In place: the file stays with its name. A file system that reports a
                // failed write only here (FUSE can) fails the group as a link would.
                let fd = staged[index].fd
                staged[index].fd = -1
                if close(fd) != 0 && closeFailure == nil {
                    closeFailure = DurableFileError(path: staged[index].path, errno: Errno(rawValue: errno))
                }
            }
        }
        staged.removeAll()
        if let closeFailure {
            for path in placed { unlink(path) }
            throw closeFailure
        }
        guard durable else { return }
        for directory in directories {
            if replacing {
                // Outputs that can be derived again: a directory that cannot be synced
                // (some network file systems refuse) leaves them in place, unsynced.
                DirectorySync.shared.sync(directory)
            } else {
                // A new secret (a UDS about to be sent to a board) must be known to be
                // on disk before devkit goes on: its directory's fsync failing is an error.
                try DurableFile.syncDirectory(directory)
            }
        }
    }

    /// Puts one staged file at its path; true if the path did not exist before.
    private static func place(_ file: Staged, replacing: Bool, isLast: Bool) throws(Errno) -> Bool {
        guard let temporary = file.temporary else {
            let method = file.method
            if link(file.fd, to: file.path, method) == 0 { return true }
            guard errno == EEXIST, replacing else { throw Errno(rawValue: errno) }
            // Replacing: the new file under a temporary name, then renamed over the old.
            var name: String
            var rc: Int32
            repeat {  // EEXIST: left over from a killed run that had our PID
                name = temporaryName(beside: file.path)
                rc = link(file.fd, to: name, method)
            } while rc != 0 && errno == EEXIST
            guard rc == 0 else { throw Errno(rawValue: errno) }
            guard rename(name, file.path) == 0 else {
                let err = Errno(rawValue: errno)
                unlink(name)
                throw err
            }
            return false
        }
        // A path that existed keeps its new content if a later file fails: rename
        // cannot be undone, and unlinking it would lose the old and the new file.
        // The last file has no later one to fail after it: no lstat (one system
        // call less per file when a group is one file, as a batch's usually are).
        var st = stat()
        let isNew = !replacing || (!isLast && lstat(file.path, &st) != 0)
        // link(2) fails with EEXIST instead of replacing: no clobbering even in a race.
        let rc = replacing ? rename(temporary, file.path) : Glibc.link(temporary, file.path)
        guard rc == 0 else { throw Errno(rawValue: errno) }
        return isNew
    }

    /// Drops what is staged: closes the descriptors still open, removes the named
    /// temporaries (an unnamed file vanishes with its descriptor).
    public mutating func discard() {
        for file in staged {
            if file.fd >= 0 { close(file.fd) }
            if let temporary = file.temporary { unlink(temporary) }
        }
        staged.removeAll()
    }
}

/// Temporary files a killed run left (`.<name>.<pid>.<n>.tmp`, ``FileGroupWriter``'s
/// names): removed from a directory the first time this process writes there, once
/// they are older than ``maximumAge`` (a live writer keeps its temporary for
/// milliseconds). Once per directory, so a batch of 10,000 files scans it once.
final class StaleTemporaries: Sendable {
    static let shared = StaleTemporaries()
    /// Ten minutes: far longer than any write, short enough that a crashed run's
    /// leftovers go with the next one.
    static let maximumAge: Int = 600
    private let scanned = Mutex<Set<String>>([])

    func removeOnce(in directory: String) {
        guard scanned.withLock({ $0.insert(directory).inserted }) else { return }
        Self.remove(in: directory, olderThan: Self.maximumAge)
    }

    /// Removes `directory`'s regular files of this user named like our temporaries and
    /// not modified for `age` seconds. Best effort: a directory that cannot be read is
    /// left alone.
    static func remove(in directory: String, olderThan age: Int) {
        guard let dir = opendir(directory) else { return }
        defer { closedir(dir) }
        let now = time(nil)
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            guard isTemporaryName(name) else { continue }
            let path = directory == "/" ? "/" + name : directory + "/" + name
            var st = stat()
            // Only this user's: in a shared directory (/tmp) root could remove anyone's.
            guard lstat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, st.st_uid == geteuid(),
                  now - st.st_mtim.tv_sec > age
            else { continue }
            unlink(path)
        }
    }

    /// `.<name>.<digits>.<digits>.tmp`
    static func isTemporaryName(_ name: String) -> Bool {
        guard name.hasPrefix("."), name.hasSuffix(".tmp") else { return false }
        let parts = name.dropFirst().dropLast(4).split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count >= 3 else { return false }
        let digits = parts.suffix(2)
        return digits.allSatisfy { !$0.isEmpty && $0.allSatisfy(\.isASCII) && $0.allSatisfy(\.isNumber) }
            && !parts.dropLast(2).joined(separator: ".").isEmpty
    }
}

/// Group fsync of directories: makes renames durable, one fsync for every thread
/// whose rename came before that fsync started. When 16 boards finished together,
/// four directory fsyncs each, one after another in the journal, were most of their
/// tail.
///
/// A caller takes a ticket after its rename. A sync that starts later covers every
/// ticket issued so far; callers arriving while one runs wait, and the first of them
/// then runs the next for all of them.
public final class DirectorySync: @unchecked Sendable {
    public static let shared = DirectorySync()

    /// fsyncs the directory (replaced in tests).
    private let syncDirectory: @Sendable (String) -> Void
    private let condition = ConditionLock()
    private var issued: [String: UInt64] = [:]
    private var covered: [String: UInt64] = [:]
    private var running: Set<String> = []
    private var syncsRun = 0

    public init(syncDirectory: @escaping @Sendable (String) -> Void = { try? DurableFile.syncDirectory($0) }) {
        self.syncDirectory = syncDirectory
    }

    /// fsyncs run so far (fewer than callers when they overlapped).
    public var syncCount: Int { condition.withLock { syncsRun } }
    /// Callers so far, for `directory`.
    public func callerCount(_ directory: String) -> Int { condition.withLock { Int(issued[directory, default: 0]) } }

    /// Returns once a directory fsync that started after this call has finished.
    public func sync(_ directory: String) {
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
