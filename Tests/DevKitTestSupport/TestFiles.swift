// Scratch directories and file checks, for the tests of any target.
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A fresh temporary directory, removed by the caller with `consoleRemoveTree`.
public func consoleTestDirectory() -> String {
    var template = Array("/tmp/devkit-console-test-XXXXXX".utf8CString)
    let path = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
    return String(cString: path!)
}

/// Removes a directory made by `consoleTestDirectory` and everything in it (a test's
/// registry or DPS state directory too: one level left those behind in /tmp).
public func consoleRemoveTree(_ path: String) {
    if let dir = opendir(path) {
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
            guard name != "." && name != ".." else { continue }
            let child = path + "/" + name
            // unlink fails on a directory (EISDIR); a symbolic link is unlinked, never followed.
            if unlink(child) != 0 && errno == EISDIR { consoleRemoveTree(child) }
        }
        closedir(dir)
    }
    rmdir(path)
}

/// The permission bits of `path`, or nil when it does not exist.
public func consoleFileMode(_ path: String) -> mode_t? {
    var info = stat()
    return stat(path, &info) == 0 ? info.st_mode & 0o777 : nil
}

/// The contents of `path` as text, or nil when it cannot be read.
public func consoleReadText(_ path: String) -> String? {
    FileManager.default.contents(atPath: path).map { String(decoding: $0, as: UTF8.self) }
}
