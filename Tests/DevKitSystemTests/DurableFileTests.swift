import DevKitSystem
import Foundation
import Synchronization
import SystemPackage
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite struct DurableFileTests {
    /// A fresh directory, removed by the caller.
    private func makeDirectory() -> String {
        var template = Array((NSTemporaryDirectory() + "devkit-durable-XXXXXX").utf8CString)
        return String(cString: mkdtemp(&template)!)
    }

    private func mode(_ path: String) -> mode_t {
        var st = stat()
        _ = stat(path, &st)
        return st.st_mode & 0o7777
    }

    /// The process's umask, read without changing it (tests run in parallel, and
    /// other suites create files).
    private func currentUmask() throws -> mode_t {
        let status = try String(contentsOfFile: "/proc/self/status", encoding: .utf8)
        let line = try #require(status.split(separator: "\n").first { $0.hasPrefix("Umask:") })
        return try #require(mode_t(line.dropFirst("Umask:".count).trimmingCharacters(in: .whitespaces), radix: 8))
    }

    private func contents(_ path: String) -> [UInt8]? {
        FileManager.default.contents(atPath: path).map(Array.init)
    }

    private func entries(_ directory: String) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: directory).sorted()
    }

    /// Temporaries a killed run left behind (`kill -9` between open and rename) are
    /// removed when devkit next writes in that directory, once they are old; a young
    /// one (another devkit writing now) and files of other names are left alone.
    @Test func staleTemporariesOfAKilledRunAreRemoved() throws {
        let dir = makeDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let stale = dir + "/.az-x.pem.4242.7.tmp", young = dir + "/.az-y.pem.4243.1.tmp"
        let other = dir + "/.notes.tmp", otherOld = dir + "/report.1.2.tmp"
        for path in [stale, young, other, otherOld] {
            try "left\n".write(toFile: path, atomically: false, encoding: .utf8)
        }
        let hourAgo = Date(timeIntervalSinceNow: -3600)
        for path in [stale, other, otherOld] {
            try FileManager.default.setAttributes([.modificationDate: hourAgo], ofItemAtPath: path)
        }
        // Another user's, in a shared directory: not ours to remove (only root can
        // give a file away, and only root could remove it there).
        var expected = [".az-y.pem.4243.1.tmp", ".notes.tmp", "az-z.pem", "report.1.2.tmp"]
        if getuid() == 0 {
            let theirs = dir + "/.az-w.pem.4244.1.tmp"
            try "theirs\n".write(toFile: theirs, atomically: false, encoding: .utf8)
            try FileManager.default.setAttributes([.modificationDate: hourAgo], ofItemAtPath: theirs)
            #expect(chown(theirs, 65534, 65534) == 0)
            expected.insert(".az-w.pem.4244.1.tmp", at: 0)
        }
        try DurableFile.write(Array("new\n".utf8), to: dir + "/az-z.pem", mode: 0o644)
        #expect(try entries(dir) == expected)
    }

    @Test func writesContentWithExactlyTheMode() throws {
        let dir = makeDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try DurableFile.write(Array("secret\n".utf8), to: dir + "/s", mode: 0o600)
        #expect(contents(dir + "/s") == Array("secret\n".utf8))
        #expect(mode(dir + "/s") == 0o600)
        // Replaced whole, with the new mode exactly (the umask, 022 or so, would
        // take the group's and others' write bits).
        try DurableFile.write(Array("public\n".utf8), to: dir + "/s", mode: 0o666)
        #expect(contents(dir + "/s") == Array("public\n".utf8))
        #expect(mode(dir + "/s") == 0o666)
        #expect(try entries(dir) == ["s"])
    }

    @Test func makeDirectoriesCreatesParentsWithTheModeAndNamesWhatFailed() throws {
        let dir = makeDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try DurableFile.makeDirectories(dir + "/a/b/c", mode: 0o700)
        #expect(mode(dir + "/a") == 0o700 && mode(dir + "/a/b/c") == 0o700)
        try DurableFile.makeDirectories(dir + "/a/b/c", mode: 0o700)  // already there
        try DurableFile.write(Array("x".utf8), to: dir + "/f", mode: 0o600)
        #expect(throws: DurableFileError(path: dir + "/f", errno: .notDirectory)) {
            try DurableFile.makeDirectories(dir + "/f", mode: 0o700)
        }
        #expect(throws: DurableFileError(path: dir + "/f/sub", errno: .notDirectory)) {
            try DurableFile.makeDirectories(dir + "/f/sub/more", mode: 0o700)
        }
    }

    @Test func notReplacingRefusesAnExistingFile() throws {
        let dir = makeDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try DurableFile.write(Array("first".utf8), to: dir + "/uds", mode: 0o600, replacing: false)
        do {
            try DurableFile.write(Array("second".utf8), to: dir + "/uds", mode: 0o600, replacing: false)
            Issue.record("an existing file was replaced")
        } catch {
            #expect(error == DurableFileError(path: dir + "/uds", errno: .fileExists))
        }
        #expect(contents(dir + "/uds") == Array("first".utf8))
        #expect(try entries(dir) == ["uds"])
    }

    /// The error names the path asked for and the errno; no temporary is left.
    @Test func failureCarriesPathAndErrnoAndLeavesNoTemporary() throws {
        let dir = makeDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let missing = dir + "/missing/file"
        do {
            try DurableFile.write([1], to: missing, mode: 0o600)
            Issue.record("wrote into a missing directory")
        } catch {
            #expect(error.path == missing)
            #expect(error.errno == .noSuchFileOrDirectory)
            #expect(error.description == "cannot write \(missing): No such file or directory")
        }
        // A group whose second file cannot be written: the first is not placed
        // either (its old content stays) and no temporary is left.
        try DurableFile.write(Array("old".utf8), to: dir + "/a", mode: 0o644)
        #expect(throws: DurableFileError(path: missing, errno: .noSuchFileOrDirectory)) {
            try DurableFile.write([(Array("new".utf8), dir + "/a"), (Array("x".utf8), missing)], mode: 0o644)
        }
        #expect(contents(dir + "/a") == Array("old".utf8))
        #expect(try entries(dir) == ["a"])
        // One that cannot be renamed into place (a directory is in the way): those
        // already placed are removed, no temporary is left.
        try FileManager.default.createDirectory(atPath: dir + "/b", withIntermediateDirectories: false)
        try FileManager.default.createDirectory(atPath: dir + "/b/inside", withIntermediateDirectories: false)
        do {
            try DurableFile.write([(Array("new".utf8), dir + "/c"), (Array("x".utf8), dir + "/b")], mode: 0o644)
            Issue.record("replaced a non-empty directory with a file")
        } catch {
            #expect(error.path == dir + "/b")
            #expect(error.errno == .isDirectory)
        }
        #expect(try entries(dir) == ["a", "b"])
        #expect(try entries(dir + "/b") == ["inside"])
    }

    /// A group whose first file replaces an existing one and whose second cannot be
    /// renamed into place: the existing first file must not be lost (before
    /// DevKitSystem, `OutputFile.writeAtomically` left it, replaced, in place).
    @Test func failedGroupDoesNotDeleteAFileItReplaced() throws {
        let dir = makeDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try DurableFile.write(Array("old pem".utf8), to: dir + "/id.pem", mode: 0o644)
        try FileManager.default.createDirectory(atPath: dir + "/id.enrollment.json/x", withIntermediateDirectories: true)
        #expect(throws: DurableFileError.self) {
            try DurableFile.write(
                [(Array("new pem".utf8), dir + "/id.pem"), (Array("{}".utf8), dir + "/id.enrollment.json")], mode: 0o644)
        }
        // Replaced (a rename cannot be undone), not deleted; no temporary is left.
        #expect(contents(dir + "/id.pem") == Array("new pem".utf8), "the existing certificate was deleted")
        #expect(try entries(dir) == ["id.enrollment.json", "id.pem"])
    }

    @Test func groupWithoutSyncHonoursTheUmaskAndCanBeDiscarded() throws {
        let dir = makeDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let mask = try currentUmask()
        var group = FileGroupWriter(durable: false)
        try group.stage(Array("cert".utf8), at: dir + "/c.pem", mode: 0o666, honoringUmask: true)
        try group.stage(Array("key".utf8), at: dir + "/k.pem", mode: 0o600, honoringUmask: true)
        // No final name yet: named temporaries, or nothing where the files are unnamed
        // (FileGroupLinkTests forces each way; here whichever is current).
        #expect(try entries(dir).allSatisfy { $0.hasPrefix(".") && $0.hasSuffix(".tmp") })
        #expect(contents(dir + "/c.pem") == nil)
        try group.commit()
        #expect(mode(dir + "/c.pem") == 0o666 & ~mask)
        #expect(mode(dir + "/k.pem") == 0o600 & ~mask)
        #expect(contents(dir + "/k.pem") == Array("key".utf8))

        var discarded = FileGroupWriter(durable: false)
        try discarded.stage([1], at: dir + "/d", mode: 0o644)
        discarded.discard()
        #expect(try entries(dir) == ["c.pem", "k.pem"])
    }

    @Test func aPathNamingADirectoryIsRefused() {
        #expect(throws: DurableFileError(path: "/tmp/", errno: .isDirectory)) {
            try DurableFile.write([1], to: "/tmp/", mode: 0o600)
        }
    }

    /// Writers finishing together share directory fsyncs, and none returns before a
    /// sync that started after its call: 16 callers, the first sync held until the
    /// other 15 have called, make exactly two syncs, and those 15 return after the second.
    /// (Moved from EnrollmentFileTests with DirectorySync.)
    @Test(.timeLimit(.minutes(5))) func concurrentWritersShareDirectorySyncs() {
        let finished = Mutex(0)
        let syncer = Mutex<DirectorySync?>(nil)
        let sync = DirectorySync { dir in
            if finished.withLock({ $0 }) == 0, let s = syncer.withLock({ $0 }) {
                let deadline = Date().addingTimeInterval(120)
                while s.callerCount(dir) < 16 && Date() < deadline { usleep(1000) }
            }
            finished.withLock { $0 += 1 }
        }
        syncer.withLock { $0 = sync }
        let seen = Mutex<[Int]>([])
        let group = DispatchGroup()
        for _ in 0..<16 {
            group.enter()
            Thread {
                sync.sync("/out")
                seen.withLock { $0.append(finished.withLock { $0 }) }
                group.leave()
            }.start()
        }
        group.wait()
        #expect(sync.syncCount == 2)
        let after = seen.withLock { $0 }.sorted()
        #expect(after.count == 16)
        #expect(after.dropFirst().allSatisfy { $0 == 2 }, "\(after)")
    }
}
