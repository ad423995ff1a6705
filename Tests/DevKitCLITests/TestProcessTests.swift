import DevKitTestSupport
import Foundation
import Synchronization
import Testing

/// The shared process runner under the load the suite puts on it: many threads
/// spawning at once. CI once hung on a child reading its stdin to end-of-file
/// because another thread's long-lived child had inherited the pipe's write end.
@Suite("TestProcess: concurrent spawns")
struct TestProcessTests {
    @Test("a child reading stdin to EOF ends while siblings spawned meanwhile live on")
    func stdinReachesEndOfFileDespiteConcurrentSpawns() throws {
        let rounds = 24
        let readers = Mutex<[ProcessResult]>([])
        let finished = DispatchGroup()
        // Plain threads, not tasks: each blocks in poll for up to seconds.
        for round in 0..<rounds {
            for isReader in [true, false] {
                finished.enter()
                Thread.detachNewThread {
                    defer { finished.leave() }
                    if isReader {
                        let result = try? TestProcess.run(["cat"], stdin: Array("round \(round)\n".utf8), timeout: 2)
                        if let result { readers.withLock { $0.append(result) } }
                    } else {
                        // A long-lived sibling: any pipe end it inherits stays open 4 s.
                        _ = try? TestProcess.run(["sleep", "4"], timeout: 10)
                    }
                }
            }
        }
        finished.wait()
        let results = readers.withLock { $0 }
        #expect(results.count == rounds)
        for result in results {
            #expect(!result.timedOut && result.status == 0 && result.stdout.hasPrefix("round "),
                    "cat: status \(result.status), timed out \(result.timedOut)")
        }
    }
}
