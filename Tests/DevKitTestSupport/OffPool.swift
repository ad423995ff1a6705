import Foundation

/// Runs blocking `work` (waiting for a child process, reading its first line) on a
/// thread of its own and awaits the result.
///
/// Swift's concurrency pool has one thread per core: two on CI. A test that blocks
/// one of them while it waits for a child process slows every other async test of
/// the parallel suite, and the suite's in-process servers with them.
public func offPool<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread { continuation.resume(with: Result { try work() }) }.start()
    }
}

/// Sleeps holding the calling thread, for a test that paces a virtual board (a
/// reset press, a wait for a child to open a port) while a child process runs.
///
/// Not `Task.sleep`: a suspended test resumes only when one of the pool's two
/// threads is free, and in the parallel suite blocking tests can hold both for a
/// minute, so the pacing came a minute late (the child's own timeout had passed).
/// Holding the thread keeps the pacing on time at the cost of that thread.
public func blockingSleep(milliseconds: Int) {
    usleep(useconds_t(milliseconds) * 1000)
}
