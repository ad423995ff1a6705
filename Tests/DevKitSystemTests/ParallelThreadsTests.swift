import DevKitSystem
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite struct ParallelThreadsTests {
    @Test("runOnThreads runs each index once, all at once on threads of their own, index 0 on the caller's", arguments: [1, 2, 5])
    func eachIndexOnItsOwnThread(count: Int) {
        let caller = pthread_self()
        let seen = Mutex<[Int: pthread_t]>([:])
        let arrived = Atomic<Int>(0)
        let sawAll = Atomic<Int>(0)
        runOnThreads(count) { index in
            seen.withLock { $0[index] = pthread_self() }
            // Every body waits (at most 2 s, so a failure is a failed test, not a hang)
            // until all have started: bodies run one after another never see that.
            arrived.add(1, ordering: .relaxed)
            var spins = 0
            while arrived.load(ordering: .relaxed) < count && spins < 2_000 { usleep(1_000); spins += 1 }
            if arrived.load(ordering: .relaxed) == count { sawAll.add(1, ordering: .relaxed) }
        }
        #expect(sawAll.load(ordering: .relaxed) == count)
        let threads = seen.withLock { $0 }
        #expect(threads.keys.sorted() == Array(0..<count))
        #expect(pthread_equal(threads[0]!, caller) != 0)
        let distinct = Set(threads.values.map { UInt(bitPattern: Int(truncatingIfNeeded: $0)) })
        #expect(distinct.count == count)
    }

    @Test("runOnThreads of none runs nothing")
    func none() {
        let calls = Atomic<Int>(0)
        runOnThreads(0) { _ in calls.add(1, ordering: .relaxed) }
        #expect(calls.load(ordering: .relaxed) == 0)
    }
}
