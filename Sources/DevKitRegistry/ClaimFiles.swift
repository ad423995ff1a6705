import Crypto
import DevKitModel
import DevKitSystem
import Synchronization
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// The SQLite registry's board claims between processes: a `watch`, the
/// `autoconfigure` runs udev starts (one process per plugged node), a `provision
/// --resume` and a `registry reissue` on one station all share its file. A claim
/// is an `flock` on one file per key in `<registry>-claims/`, which the kernel
/// drops when the process ends (kill -9 too), as PostgreSQL drops a dead station's
/// advisory locks. Threads of one process are told apart by ``ClaimTable`` first:
/// only a key's first holder in a process takes its file.
///
/// A lock file is removed by its holder on release, still locked; one who opened it
/// before the removal and locked it after checks that the name still leads to the
/// file it locked, else opens again. So the directory holds only the claims held now.
final class ClaimFiles: Sendable {
    /// `<registry file>-claims`, beside the file as SQLite's `-wal` and `-shm`.
    let directory: String
    /// Each claim this handle holds: its file, open and locked, and the file's path.
    private let held = Mutex<[String: (fd: FileDescriptor, path: String)]>([:])

    /// The registry file's owner, who owns the claims too (a root process gives them to it).
    private let owner: (uid: uid_t, gid: gid_t)

    init(registryPath: String) {
        directory = registryPath + "-claims"
        var file = stat()
        owner = stat(registryPath, &file) == 0 ? (file.st_uid, file.st_gid) : (geteuid(), getegid())
        _ = Self.raiseOpenFileLimit
    }

    /// Each claim holds a descriptor, and a fleet command claims 256 rows (three keys
    /// each) at a time: the soft limit of open files (often 1,024) goes up to the hard
    /// one, once per process, as the kernel allows any process to.
    private static let raiseOpenFileLimit: Void = {
        var limit = rlimit()
        if getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) == 0 && limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max
            _ = setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit)
        }
    }()

    /// The file of `key` (`mac:…`, `usb:…`, `row:…`): the key with `:` as `-` and any
    /// byte outside `[a-z0-9._]` as `%XX`, so that a USB serial never names a path
    /// (every key has a prefix, so no name is "." or "..").
    func path(of key: String) -> String {
        var name = ""
        for byte in key.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                UInt8(ascii: "."), UInt8(ascii: "_"):
                name.unicodeScalars.append(Unicode.Scalar(byte))
            case UInt8(ascii: ":"):
                name += "-"
            default:
                name += "%" + Hex.encode(CollectionOfOne(byte), uppercase: true)
            }
        }
        // A name longer than some file systems allow (255 bytes, ecryptfs ~143; a USB
        // serial can hold 126 characters, each escaped to up to 12 bytes): the key's
        // SHA-256 instead.
        if name.utf8.count > 128 {
            name = "sha256-" + Hex.encode(SHA256.hash(data: Array(key.utf8)))
        }
        return directory + "/" + name
    }

    /// Takes `key`'s file for this process, writing `station` and the PID into it
    /// for the message of a process refused. Throws ``RegistryError/boardBusy(board:station:)``
    /// naming the holder when another process has it.
    func take(_ key: String, station: String) throws(RegistryError) {
        let path = path(of: key)
        while true {
            let fd: FileDescriptor
            do {
                fd = try FileDescriptor.open(
                    path, .readWrite, options: [.create, .closeOnExec, .noFollow], permissions: [.ownerReadWrite])
            } catch {
                let errno = (error as? Errno)?.rawValue ?? EIO
                if errno == ENOENT {
                    // The directory, made at the first claim on this file.
                    do {
                        try DurableFile.makeDirectories(directory, mode: 0o700)
                        giveToRegistryOwner(directory)
                        continue
                    } catch {
                        throw .claimFailed(path: directory, reason: error.reason, errno: error.errno.rawValue)
                    }
                }
                throw .claimFailed(path: path, reason: String(cString: strerror(errno)), errno: errno)
            }
            do {
                try fd.lockExclusiveNonBlocking()
            } catch {
                let holder = Self.holder(fd)
                try? fd.close()
                if error == .wouldBlock { throw .boardBusy(board: ClaimTable.describe(key), station: holder) }
                throw .claimFailed(path: path, reason: String(cString: strerror(error.rawValue)), errno: error.rawValue)
            }
            // Removed (released) between this open and lock: that file is no claim.
            guard let opened = Self.status(fd, ifNamedBy: path) else {
                try? fd.close()
                continue
            }
            if opened.st_uid != owner.uid { giveToRegistryOwner(fd) }
            // A file left by a killed holder still names it.
            if opened.st_size > 0 { _ = ftruncate(fd.rawValue, 0) }
            _ = try? fd.writeAll(bytes: Array("\(getpid())\n\(station)\n".utf8))
            held.withLock { $0[key] = (fd, path) }
            return
        }
    }

    /// Gives `key`'s file back: removed while still locked (if its name still leads
    /// to it: a directory emptied by hand meanwhile may hold another process's file
    /// under that name), then closed (unlocked).
    func give(_ key: String) {
        guard let file = held.withLock({ $0.removeValue(forKey: key) }) else { return }
        Self.release(file.fd, file.path)
    }

    private static func release(_ fd: FileDescriptor, _ path: String) {
        if status(fd, ifNamedBy: path) != nil { _ = unlink(path) }
        try? fd.close()
    }

    /// `fd`'s status when `path` leads to the same file, else nil (removed or replaced).
    private static func status(_ fd: FileDescriptor, ifNamedBy path: String) -> stat? {
        var opened = stat(), named = stat()
        guard fstat(fd.rawValue, &opened) == 0, stat(path, &named) == 0,
            opened.st_ino == named.st_ino, opened.st_dev == named.st_dev
        else { return nil }
        return opened
    }

    /// A handle dropped while holding claims (a bug path) lets them go.
    deinit {
        for file in held.withLock({ $0.values }) { Self.release(file.fd, file.path) }
    }

    /// Root (a `sudo devkit ...` on a user's registry) makes the directory and the
    /// files the registry file's owner's, as SQLite does with its `-wal` and `-shm`
    /// files: else that user's next claim would find them unwritable.
    private func giveToRegistryOwner(_ directory: String) {
        if geteuid() == 0 && owner.uid != 0 { _ = chown(directory, owner.uid, owner.gid) }
    }

    private func giveToRegistryOwner(_ fd: FileDescriptor) {
        if geteuid() == 0 && owner.uid != 0 { _ = fchown(fd.rawValue, owner.uid, owner.gid) }
    }

    /// "line-1 (devkit process 1234)" from a held file; written right after its
    /// lock, so a file caught in between names no one yet.
    static func holder(_ fd: FileDescriptor) -> String {
        var bytes = [UInt8](repeating: 0, count: 512)
        let count = bytes.withUnsafeMutableBytes { pread(fd.rawValue, $0.baseAddress, $0.count, 0) }
        let lines = String(decoding: bytes.prefix(max(0, count)), as: UTF8.self)
            .split(separator: "\n", maxSplits: 1, omittingEmptySubsequences: false)
        guard lines.count == 2, let pid = Int32(lines[0]) else { return "unknown (another process on this registry file)" }
        let station = lines[1].hasSuffix("\n") ? lines[1].dropLast() : lines[1]
        return "\(station) (devkit process \(pid))"
    }
}
