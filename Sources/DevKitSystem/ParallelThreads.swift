#if canImport(Glibc)
import Glibc
#endif

/// Runs `body(0)`, …, `body(count - 1)`, `body(0)` on the calling thread and each
/// other on a thread created for it, and returns when all have returned: the
/// CPU-bound fan-out of `cert --batch` and `registry reissue`. The caller chooses
/// `count` (those two cap it at the cores: more threads only contend).
///
/// Threads of their own, not `DispatchQueue.concurrentPerform`: Dispatch wakes a pool
/// thread, and the kernel places a woken thread on its waker's CPU; on this 2-core VM
/// it took ~20 ms to move it to the idle core (`perf sched timehist`: both threads on
/// one CPU for the first 20 ms of a 125 ms `--jobs 2` batch, the other CPU idle). A
/// thread being created is placed on the idlest CPU at once. `pthread_create` costs
/// ~30 µs a thread, nothing next to the work handed to it.
///
/// `body` runs on several threads at once, hence `@Sendable`. A thread that cannot
/// be created (out of memory or threads) leaves its index to the calling thread,
/// which runs it after `body(0)`: slower, never lost, so a body must not wait for
/// another index's body to start.
public func runOnThreads(_ count: Int, _ body: @Sendable (Int) -> Void) {
    guard count > 1 else {
        if count == 1 { body(0) }
        return
    }
    withoutActuallyEscaping(body) { body in
        // Joined below before `body` goes out of scope, so escaping it here is safe.
        let task = ThreadTask(body)
        var started: [pthread_t] = []
        var leftOver: [Int] = []
        for index in 1..<count {
            var handle = pthread_t()
            let argument = Unmanaged.passRetained(ThreadArgument(task, index)).toOpaque()
            let rc = pthread_create(&handle, nil, { argument in
                let argument = Unmanaged<ThreadArgument>.fromOpaque(argument!).takeRetainedValue()
                argument.task.body(argument.index)
                return nil
            }, argument)
            if rc == 0 {
                started.append(handle)
            } else {
                Unmanaged<ThreadArgument>.fromOpaque(argument).release()
                leftOver.append(index)
            }
        }
        body(0)
        for index in leftOver { body(index) }
        for handle in started { pthread_join(handle, nil) }
    }
}

/// The shared body, handed to each created thread.
private final class ThreadTask: Sendable {
    let body: @Sendable (Int) -> Void
    init(_ body: @escaping @Sendable (Int) -> Void) { self.body = body }
}

private final class ThreadArgument: Sendable {
    let task: ThreadTask
    let index: Int
    init(_ task: ThreadTask, _ index: Int) { self.task = task; self.index = index }
}
