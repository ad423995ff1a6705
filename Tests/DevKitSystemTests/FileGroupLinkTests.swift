import CDevKitLinux
@testable import DevKitSystem
import Foundation
import SystemPackage
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// FileGroupWriter's three ways to put a file in place (an unnamed file linked by
/// AT_EMPTY_PATH or through /proc/self/fd, a named temporary renamed), each forced on a
/// writer of its own: the same outcomes from every way this machine supports.
@Suite struct FileGroupLinkTests {
    private static func makeDirectory() -> String {
        var template = Array((NSTemporaryDirectory() + "devkit-link-XXXXXX").utf8CString)
        return String(cString: mkdtemp(&template)!)
    }

    /// The ways that work here, found by linking a throwaway unnamed file each way in the
    /// temporary directory (AT_EMPTY_PATH needs Linux 6.10 or CAP_DAC_READ_SEARCH,
    /// /proc/self/fd a mounted /proc, both a file system with O_TMPFILE). The named
    /// temporary always works.
    static let methods: [FileGroupWriter.LinkMethod] = {
        let dir = makeDirectory()
        defer { rmdir(dir) }
        var working: [FileGroupWriter.LinkMethod] = []
        for (method, link) in [
            (FileGroupWriter.LinkMethod.emptyPath, { (fd: Int32, to: String) in linkat(fd, "", AT_FDCWD, to, CDevKitLinux_AT_EMPTY_PATH) }),
            (.procSelf, { (fd: Int32, to: String) in linkat(AT_FDCWD, "/proc/self/fd/\(fd)", AT_FDCWD, to, AT_SYMLINK_FOLLOW) }),
        ] {
            let fd = open(dir, CDevKitLinux_O_TMPFILE | O_WRONLY, 0o600)
            guard fd >= 0 else { continue }
            if link(fd, dir + "/probe") == 0 { working.append(method) }
            unlink(dir + "/probe")
            close(fd)
        }
        return working + [.unavailable]
    }()

    private func withDirectory(_ body: (String) throws -> Void) throws {
        let dir = Self.makeDirectory()
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

    private func write(
        _ files: [(String, String)], method: FileGroupWriter.LinkMethod, mode: mode_t = 0o600, replacing: Bool = true
    ) throws(DurableFileError) {
        var group = FileGroupWriter(durable: true, method: method)
        for (text, path) in files { try group.stage(Array(text.utf8), at: path, mode: mode) }
        try group.commit(replacing: replacing)
    }

    /// The writer's probe picks the first way that works, and leaves no file behind; the
    /// process's way is known once anything was written.
    @Test func theProbeFindsTheFirstWayThatWorks() throws {
        try withDirectory { dir in
            #expect(FileGroupWriter.probeLinkMethod(in: dir, mode: 0o600) == Self.methods[0])
            #expect(try entries(dir) == [], "the probe's file is gone")
            try DurableFile.write(Array("x".utf8), to: dir + "/f", mode: 0o600)
            #expect(FileGroupWriter.currentLinkMethod != .unknown)
        }
    }

    @Test(arguments: methods) func newReplacedAndRefused(method: FileGroupWriter.LinkMethod) throws {
        try withDirectory { dir in
            let path = dir + "/uds"
            try write([("first", path)], method: method, mode: 0o640, replacing: false)
            #expect(contents(path) == "first")
            #expect(mode(path) == 0o640)
            #expect(throws: DurableFileError(path: path, errno: .fileExists)) {
                try write([("second", path)], method: method, replacing: false)
            }
            #expect(contents(path) == "first")
            // Replacing an existing file, and a new one beside it, in one group.
            try write([("third", path), ("new", dir + "/b")], method: method)
            #expect(contents(path) == "third")
            #expect(mode(path) == 0o600)
            #expect(contents(dir + "/b") == "new")
            #expect(try entries(dir) == ["b", "uds"], "no temporary left")
        }
    }

    /// Staged files are invisible until commit where they are unnamed; a discarded or
    /// failed group leaves nothing, and removes the new files it had placed.
    @Test(arguments: methods) func stagedDiscardedAndFailed(method: FileGroupWriter.LinkMethod) throws {
        try withDirectory { dir in
            var group = FileGroupWriter(durable: false, method: method)
            try group.stage(Array("a".utf8), at: dir + "/a", mode: 0o644)
            #expect(try entries(dir).count == (method == .unavailable ? 1 : 0))
            group.discard()
            #expect(try entries(dir) == [])

            try FileManager.default.createDirectory(atPath: dir + "/d/inside", withIntermediateDirectories: true)
            #expect(throws: DurableFileError(path: dir + "/d", errno: .isDirectory)) {
                try write([("a", dir + "/a"), ("d", dir + "/d")], method: method)
            }
            #expect(try entries(dir) == ["d"], "the new file placed before the failure is removed")
        }
    }

    /// Before 6.0 unnamed files skipped the umask on some file systems: those kernels
    /// write certificates under a named temporary.
    @Test(arguments: [
        ("6.18.0-1-amd64", true), ("6.0.0", true), ("10.1", true),
        ("5.15.0-91-generic", false), ("4.19.0", false), ("", false), ("abc", false),
    ])
    func kernelsThatApplyTheUmaskToUnnamedFiles(release: String, honours: Bool) {
        #expect(FileGroupWriter.honoursUmask(release: release) == honours)
    }

    /// Certificates are written with the umask applied, whichever way.
    @Test(arguments: methods) func theUmaskIsHonoured(method: FileGroupWriter.LinkMethod) throws {
        let status = try String(contentsOfFile: "/proc/self/status", encoding: .utf8)
        let line = try #require(status.split(separator: "\n").first { $0.hasPrefix("Umask:") })
        let mask = try #require(mode_t(line.dropFirst("Umask:".count).trimmingCharacters(in: .whitespaces), radix: 8))
        try withDirectory { dir in
            var group = FileGroupWriter(durable: false, method: method)
            try group.stage(Array("c".utf8), at: dir + "/c.pem", mode: 0o666, honoringUmask: true)
            try group.commit()
            #expect(mode(dir + "/c.pem") == 0o666 & ~mask)
        }
    }
}
