#if canImport(Glibc)
import Glibc
#endif

/// Identifies one version of a file: replacing or rewriting it changes the stamp
/// (device, inode, size, modification time to the nanosecond). Used to tell that a
/// firmware file is still the one measured, without reading it again.
public struct FileStamp: Equatable, Sendable {
    public let device: UInt64
    public let inode: UInt64
    public let size: Int64
    public let modifiedSeconds: Int
    public let modifiedNanoseconds: Int

    /// The stamp of `path` (symbolic links followed); nil when it cannot be stat'ed.
    public init?(path: String) {
        var s = stat()
        guard stat(path, &s) == 0 else { return nil }
        device = UInt64(s.st_dev)
        inode = UInt64(s.st_ino)
        size = Int64(s.st_size)
        modifiedSeconds = s.st_mtim.tv_sec
        modifiedNanoseconds = s.st_mtim.tv_nsec
    }
}
