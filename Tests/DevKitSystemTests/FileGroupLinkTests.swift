@testable import DevKitSystem
import Foundation
import SystemPackage
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// FileGroupWriter's three ways to put a file in place (an unnamed file linked by
/// AT_EMPTY_PATH or through /proc/self/fd, a named temporary renamed), each forced in
/// turn: the same outcomes from all three. Serialized: the method is process-wide (a
/// writer elsewhere that staged before a switch keeps the method it staged with).
@Suite(.serialized) struct FileGroupLinkTests {
    static let methods: [FileGroupWriter.LinkMethod] = [.emptyPath, .procSelf, .unavailable]

    private func withDirectory(_ body: (String) throws -> Void) throws {
        var template = Array((NSTemporaryDirectory() + "devkit-link-XXXXXX").utf8CString)
        let dir = String(cString: mkdtemp(&template)!)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try body(dir)
    }

    private func entries(_ dir: String) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: dir).sorted()
    }

    private func contents(_ path: String) -> String? {
        FileManager.default.contents(atPath: path).map { String(decoding: $0, as: UTF8.self) }
    }

    private func mode(_ path: String) -> mode_t {
        var st = stat()
        _ = stat(path, &st)
        return st.st_mode & 0o7777
    }

    /// Found out on first use: AT_EMPTY_PATH from Linux 6.10 on (this machine), else /proc.
    @Test func theFirstWriteFindsTheMethod() throws {
        FileGroupWriter.setLinkMethod(.unknown)
        try withDirectory { dir in
            try DurableFile.write(Array("x".utf8), to: dir + "/f", mode: 0o600)
            #expect(try entries(dir) == ["f"], "the probe's file is gone")
        }
        var name = utsname()
        uname(&name)
        let release = withUnsafeBytes(of: name.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        let parts = release.split(whereSeparator: { !$0.isNumber }).prefix(2).compactMap { Int($0) }
        let atLeast610 = parts.count == 2 && (parts[0], parts[1]) >= (6, 10)
        #expect(FileGroupWriter.currentLinkMethod == (atLeast610 ? .emptyPath : .procSelf), "kernel \(release)")
    }

    @Test(arguments: methods) func newReplacedAndRefused(method: FileGroupWriter.LinkMethod) throws {
        FileGroupWriter.setLinkMethod(method)
        defer { FileGroupWriter.setLinkMethod(.unknown) }
        try withDirectory { dir in
            let path = dir + "/uds"
            try DurableFile.write(Array("first".utf8), to: path, mode: 0o640, replacing: false)
            #expect(contents(path) == "first")
            #expect(mode(path) == 0o640)
            #expect(throws: DurableFileError(path: path, errno: .fileExists)) {
                try DurableFile.write(Array("second".utf8), to: path, mode: 0o600, replacing: false)
            }
            #expect(contents(path) == "first")
            // Replacing an existing file, and a new one beside it, in one group.
            try DurableFile.write([(Array("third".utf8), path), (Array("new".utf8), dir + "/b")], mode: 0o600)
            #expect(contents(path) == "third")
            #expect(mode(path) == 0o600)
            #expect(contents(dir + "/b") == "new")
            #expect(try entries(dir) == ["b", "uds"], "no temporary left")
        }
    }

    /// Staged files are invisible until commit where they are unnamed; a discarded or
    /// failed group leaves nothing, and removes the new files it had placed.
    @Test(arguments: methods) func stagedDiscardedAndFailed(method: FileGroupWriter.LinkMethod) throws {
        FileGroupWriter.setLinkMethod(method)
        defer { FileGroupWriter.setLinkMethod(.unknown) }
        try withDirectory { dir in
            var group = FileGroupWriter(durable: false)
            try group.stage(Array("a".utf8), at: dir + "/a", mode: 0o644)
            #expect(try entries(dir).count == (method == .unavailable ? 1 : 0))
            group.discard()
            #expect(try entries(dir) == [])

            try FileManager.default.createDirectory(atPath: dir + "/d/inside", withIntermediateDirectories: true)
            var failing = FileGroupWriter(durable: false)
            try failing.stage(Array("a".utf8), at: dir + "/a", mode: 0o644)
            try failing.stage(Array("d".utf8), at: dir + "/d", mode: 0o644)
            #expect(throws: DurableFileError.self) { try failing.commit() }
            #expect(try entries(dir) == ["d"], "the new file placed before the failure is removed")
        }
    }

    /// A method switched while a group is staged (another suite forcing one): the group
    /// keeps the way it staged with.
    @Test func aGroupKeepsTheMethodItStagedWith() throws {
        FileGroupWriter.setLinkMethod(.emptyPath)
        defer { FileGroupWriter.setLinkMethod(.unknown) }
        try withDirectory { dir in
            var group = FileGroupWriter(durable: false)
            try group.stage(Array("a".utf8), at: dir + "/a", mode: 0o644)
            FileGroupWriter.setLinkMethod(.unavailable)
            try group.commit()
            #expect(contents(dir + "/a") == "a")
        }
    }
}
