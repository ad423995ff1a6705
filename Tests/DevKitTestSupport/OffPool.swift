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
