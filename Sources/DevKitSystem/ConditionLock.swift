#if canImport(Glibc)
import Glibc
#endif

/// A pthread mutex with its condition variable: for a thread that must sleep until
/// another's work is done (DirectorySync). Written here because Synchronization has
/// `Mutex` but no condition variable, and Foundation's `NSCondition` would link all
/// of Foundation (and ICU) into the small `devkit` binary, which writes UDS files.
final class ConditionLock: @unchecked Sendable {
    // Allocated, not stored inline: pthread objects must not move.
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)

    init() {
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(condition, nil)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }

    func lock() { pthread_mutex_lock(mutex) }
    func unlock() { pthread_mutex_unlock(mutex) }
    /// Unlocks, sleeps until a broadcast (or spuriously), locks again.
    func wait() { pthread_cond_wait(condition, mutex) }
    func broadcast() { pthread_cond_broadcast(condition) }

    func withLock<T>(_ body: () throws -> T) rethrows -> T {
        lock()
        defer { unlock() }
        return try body()
    }
}
