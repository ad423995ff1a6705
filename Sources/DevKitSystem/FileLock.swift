import SystemPackage
#if canImport(Glibc)
import Glibc
#endif

// The package's one home of flock(2), which swift-system does not wrap: the serial
// port's exclusive hold and the SQLite registry's board claims between processes.
// The kernel drops the lock with the last descriptor of its open file description,
// so a process killed with -9 leaves nothing held.

extension FileDescriptor {
    /// `flock(2)`, exclusive and non-blocking: throws `.wouldBlock` when another open
    /// file description holds it (another process, or another `open` of this one).
    /// EINTR is retried.
    public func lockExclusiveNonBlocking() throws(Errno) {
        while flock(rawValue, LOCK_EX | LOCK_NB) != 0 {
            let err = Errno(rawValue: errno)
            if err != .interrupted { throw err }
        }
    }
}
