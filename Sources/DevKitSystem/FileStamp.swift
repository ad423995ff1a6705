#if canImport(Glibc)
import Glibc
#endif

/// Identifies one version of a file: replacing or rewriting it changes the stamp
/// (device, inode, size, modification and status-change times to the nanosecond).
/// Used to tell that a firmware file is still the one measured, without reading it
/// again. The status-change time is there because the modification time can be set
/// back (`cp -p`, `touch -d`, an unpacked archive): a rewrite of the same size given
/// its old time would otherwise keep its stamp; the kernel sets ctime on every write.
public struct FileStamp: Equatable, Sendable {
    public let device: UInt64
    public let inode: UInt64
    public let size: Int64
    public let modifiedSeconds: Int
    public let modifiedNanoseconds: Int
    public let changedSeconds: Int
    public let changedNanoseconds: Int

    /// The stamp of `path` (symbolic links followed); nil when it cannot be stat'ed.
    public init?(path: String) {
        var s = stat()
        guard stat(path, &s) == 0 else { return nil }
        device = UInt64(s.st_dev)
        inode = UInt64(s.st_ino)
        size = Int64(s.st_size)
        modifiedSeconds = s.st_mtim.tv_sec
        modifiedNanoseconds = s.st_mtim.tv_nsec
        changedSeconds = s.st_ctim.tv_sec
        changedNanoseconds = s.st_ctim.tv_nsec
    }

    /// Whether the file was last changed (content or status) at least `seconds`
    /// before now: a stamp younger than the timestamps' clock tick may not tell a
    /// later write of the same size apart.
    public func settled(for seconds: Int) -> Bool {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        let latest = max(modifiedSeconds, changedSeconds)
        return now.tv_sec - latest >= seconds
    }
}
