import SystemPackage
#if canImport(Glibc)
import Glibc
#endif

/// Finds which process holds a device open, for the "in use by PID n" message.
enum PortHolder {
    /// The PID holding an flock on the same inode as `fd`, from /proc/locks; failing
    /// that, another process with the same device open, from /proc/*/fd. Nil when
    /// neither finds one (e.g. the holder runs in another PID namespace).
    static func pid(holding fd: FileDescriptor) -> Int32? {
        guard let s = try? fd.status() else { return nil }
        return lockHolder(device: UInt64(s.st_dev), inode: UInt64(s.st_ino))
            ?? openerScan(rdev: UInt64(s.st_rdev))
    }

    /// Lines look like `3: FLOCK  ADVISORY  WRITE 1234 00:1a:5 0 EOF`, where the
    /// device is `major:minor` in hex; waiter lines carry `->` and are skipped.
    static func lockHolder(device: UInt64, inode: UInt64, locks: [UInt8]? = nil) -> Int32? {
        guard let bytes = locks ?? (try? readSmallFile("/proc/locks")) else { return nil }
        let text = String(decoding: bytes, as: UTF8.self)
        let major = ((device >> 8) & 0xfff) | ((device >> 32) & ~UInt64(0xfff))
        let minor = (device & 0xff) | ((device >> 12) & ~UInt64(0xff))
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 6, fields[1] != "->", fields[1] == "FLOCK" else { continue }
            let id = fields[5].split(separator: ":")
            guard id.count == 3,
                let maj = UInt64(id[0], radix: 16), let min = UInt64(id[1], radix: 16),
                let ino = UInt64(id[2]), let pid = Int32(fields[4])
            else { continue }
            if maj == major && min == minor && ino == inode && pid > 0 { return pid }
        }
        return nil
    }

    /// Scans /proc/<pid>/fd/* of other processes for the same character device.
    static func openerScan(rdev: UInt64) -> Int32? {
        let me = getpid()
        guard let proc = opendir("/proc") else { return nil }
        defer { closedir(proc) }
        while let entry = readdir(proc) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) {
                String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            guard let pid = Int32(name), pid != me else { continue }
            let fdDir = "/proc/\(name)/fd"
            guard let dir = opendir(fdDir) else { continue }
            defer { closedir(dir) }
            while let fdEntry = readdir(dir) {
                let fdName = withUnsafeBytes(of: fdEntry.pointee.d_name) {
                    String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self)
                }
                guard Int(fdName) != nil else { continue }
                var s = Glibc.stat()
                if stat("\(fdDir)/\(fdName)", &s) == 0, (s.st_mode & S_IFMT) == S_IFCHR,
                    UInt64(s.st_rdev) == rdev
                {
                    return pid
                }
            }
        }
        return nil
    }
}
