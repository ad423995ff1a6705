import DevKitSystem
import Testing

@Suite struct PathNameTests {
    @Test("parentDirectory: the directory part of a path (deletingLastPathComponent's, for the paths devkit meets), one-character names included", arguments: [
        ("k", ""), ("-", ""), ("~", ""), ("key", ""), ("", ""), ("/", "/"), ("//", "/"),
        ("/k", "/"), ("//k", "/"), ("a/b", "a"), ("a/b/", "a"), ("a//b", "a"), ("/a/b", "/a"),
        ("/a/b//", "/a"), ("./k", "."), ("../k", ".."), ("a/b/c.key", "a/b"),
    ])
    func parent(path: String, expected: String) {
        #expect(parentDirectory(of: path) == expected)
    }
}
