/// The directory part of `path`, as `NSString.deletingLastPathComponent` gives it:
/// "" for a bare name ("k"), "/" for a name in the root ("/k"), "a" for "a/b" and
/// "a/b/", "/" for "/". Written here because Foundation's (swift-corelibs-foundation
/// 6.x) traps on a one-character path: `devkit registry keygen k` and `--registry r`
/// died with SIGILL.
public func parentDirectory(of path: String) -> String {
    var bytes = Array(path.utf8)
    // Trailing slashes name the same directory ("a/b/" is "a/b"), but not the root's.
    while bytes.count > 1 && bytes.last == 0x2F { bytes.removeLast() }
    guard let slash = bytes.lastIndex(of: 0x2F) else { return "" }
    var end = slash
    // "a//b" is in "a"; "/b" and "//b" are in "/".
    while end > 0 && bytes[end - 1] == 0x2F { end -= 1 }
    return end == 0 ? "/" : String(decoding: bytes[..<end], as: UTF8.self)
}
