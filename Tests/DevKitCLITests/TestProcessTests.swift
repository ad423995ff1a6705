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
    func stdinReachesEndOfFileDespiteConcurrentSpawns() async throws {
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
                        let result = try? TestProcess.run(["cat"], stdin: Array("round \(round)\n".utf8), timeout: 8)
                        if let result { readers.withLock { $0.append(result) } }
                    } else {
                        // A long-lived sibling: any pipe end it inherits stays open 12 s,
                        // longer than the readers' bound (8 s, room for a stalled machine).
                        _ = try? TestProcess.run(["sleep", "12"], timeout: 60)
                    }
                }
            }
        }
        // Waited for on a thread of its own: the test's tasks share two threads.
        try await offPool { finished.wait() }
        let results = readers.withLock { $0 }
        #expect(results.count == rounds)
        for result in results {
            #expect(!result.timedOut && result.status == 0 && result.stdout.hasPrefix("round "),
                    "cat: status \(result.status), timed out \(result.timedOut)")
        }
    }
}

/// A missing build fails the test by name, instead of running some other `devkit`.
@Suite("TestProcess: the built binary")
struct DevkitBinaryTests {
    @Test("no built devkit next to the bundle: an error naming the path and saying to build")
    func missingBinaryFails() throws {
        let dir = FileManager.default.temporaryDirectory
            .appendingPathComponent("devkit-nobinary-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // A `devkit` on PATH must not be used.
        let error = #expect(throws: TestProcess.MissingBinary.self) {
            try TestProcess.locateDevkit(testBundle: dir + "/devkitPackageTests.xctest",
                                         environment: ["PATH": "/usr/local/bin:/usr/bin:/bin"])
        }
        #expect(error?.path == dir + "/devkit")
        #expect(error.map { "\($0)".contains(dir + "/devkit") && "\($0)".contains("run swift build first") } == true)
    }

    @Test("the built devkit next to the bundle, or DEVKIT_BINARY, is found")
    func builtBinaryFound() throws {
        let dir = FileManager.default.temporaryDirectory
            .appendingPathComponent("devkit-binary-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(FileManager.default.createFile(atPath: dir + "/devkit", contents: Data("#!/bin/sh\n".utf8),
                                               attributes: [.posixPermissions: 0o755]))
        // devkit alone is not enough: it hands most commands to devkit-full.
        #expect(throws: TestProcess.MissingBinary.self) {
            try TestProcess.locateDevkit(testBundle: dir + "/devkitPackageTests.xctest", environment: [:])
        }
        #expect(FileManager.default.createFile(atPath: dir + "/devkit-full", contents: Data("#!/bin/sh\n".utf8),
                                               attributes: [.posixPermissions: 0o755]))
        #expect(try TestProcess.locateDevkit(testBundle: dir + "/devkitPackageTests.xctest", environment: [:])
                == dir + "/devkit")
        #expect(throws: TestProcess.MissingBinary.self) {
            try TestProcess.locateDevkit(testBundle: dir + "/devkitPackageTests.xctest",
                                         environment: ["DEVKIT_BINARY": dir + "/absent"])
        }
    }
}
