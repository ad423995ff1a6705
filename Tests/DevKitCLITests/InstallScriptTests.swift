import DevKitTestSupport
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Scripts/install.sh (issue 12 item 16): the binary, bash/zsh/fish completions and
/// one man page per command under a prefix, for root and for a normal user with a
/// prefix of their own. `--binary` installs the debug build the tests run, so no
/// release build happens here; the man pages need ArgumentParser's generate-manual,
/// which the script builds once into .build/install-tools (the first run of this
/// test takes that build, a minute or two; later runs reuse it).
@Suite("Scripts/install.sh", .serialized, .timeLimit(.minutes(15)))
struct InstallScriptTests {
    static let script = ReadmeTests.root.appendingPathComponent("Scripts/install.sh").path

    /// The files every install has, relative to the prefix.
    static let installed = [
        "bin/devkit",
        "bin/devkit-full",
        "share/bash-completion/completions/devkit",
        "share/zsh/site-functions/_devkit",
        "share/fish/vendor_completions.d/devkit.fish",
    ]

    /// A man page per command (and `help`), named as `man devkit-<command>` finds it.
    static let commands: [[String]] = [
        [], ["provision"], ["console"], ["info"], ["set-uds"], ["set-wifi"], ["set-connection-string"], ["cert"], ["verify"], ["list"], ["monitor"],
        ["autoconfigure"], ["watch"], ["registry"], ["registry", "list"], ["registry", "show"], ["registry", "export"],
        ["registry", "reissue"], ["registry", "keygen"], ["registry", "rekey"], ["registry", "upgrade"], ["registry", "migrate"], ["dps"], ["dps", "enroll"], ["dps", "show"], ["dps", "delete"], ["dps", "list"],
        ["dps", "status"], ["emulate-dps"], ["emulate"], ["help"],
    ]

    static func page(_ command: [String]) -> String {
        "share/man/man1/" + (["devkit"] + command).joined(separator: "-") + ".1"
    }

    func scratch() -> String {
        let dir = consoleTestDirectory()
        chmod(dir, 0o755)  // a normal user must get through to their own prefix
        return dir
    }

    @Test("as root: the binary, the three completions and a man page per command, which man renders")
    func installsEverything() throws {
        let dir = scratch()
        defer { _ = try? TestProcess.run(["/bin/rm", "-rf", dir], timeout: 120) }
        let prefix = dir + "/usr-local"
        let devkit = try TestProcess.devkitBinary
        let result = try TestProcess.run(["/bin/bash", Self.script, "--binary", devkit, "--prefix", prefix], timeout: 840)
        #expect(result.status == 0, "\(result.stdout)\n\(result.stderr)")

        for file in Self.installed + Self.commands.map(Self.page) {
            #expect(FileManager.default.fileExists(atPath: prefix + "/" + file), "\(file) missing")
        }
        let pages = try FileManager.default.contentsOfDirectory(atPath: prefix + "/share/man/man1")
        #expect(pages.count == Self.commands.count, "\(pages.sorted())")
        #expect(FileManager.default.contentsEqual(atPath: prefix + "/bin/devkit", andPath: devkit))
        #expect(FileManager.default.isExecutableFile(atPath: prefix + "/bin/devkit"))
        // devkit hands every other command to the devkit-full beside it.
        let full = URL(fileURLWithPath: devkit).deletingLastPathComponent().path + "/devkit-full"
        #expect(FileManager.default.contentsEqual(atPath: prefix + "/bin/devkit-full", andPath: full))
        #expect(FileManager.default.isExecutableFile(atPath: prefix + "/bin/devkit-full"))
        for completion in Self.installed.dropFirst(2) {
            let text = try String(contentsOfFile: prefix + "/" + completion, encoding: .utf8)
            #expect(text.contains("devkit list --names"), "\(completion)")
        }

        // `man -l` renders each page without a warning (groff complains about
        // blank lines and bad macros on stderr).
        for command in Self.commands {
            let man = try TestProcess.run(
                ["/usr/bin/man", "-l", prefix + "/" + Self.page(command)], environment: ["MANWIDTH": "80", "MANPAGER": "cat"],
                timeout: 120)
            #expect(man.status == 0 && man.stderr.isEmpty, "\(command): \(man.stderr)")
            let title = (["devkit"] + command).joined(separator: " ")
            #expect(man.stdout.contains("NAME\n     \(title) —"), "\(command): \(man.stdout.prefix(300))")
        }
        // `man devkit-provision` finds it (the README's example) and it teaches the options.
        let provision = try TestProcess.run(
            ["/usr/bin/man", "devkit-provision"],
            environment: ["MANPATH": prefix + "/share/man", "MANWIDTH": "80", "MANPAGER": "cat"], timeout: 120)
        #expect(provision.status == 0, "\(provision.stderr)")
        #expect(provision.stdout.contains("--generate-uds"))
        #expect(provision.stdout.contains("devkit provision --resume 7"))
        let root = try TestProcess.run(
            ["/usr/bin/man", "devkit"], environment: ["MANPATH": prefix + "/share/man", "MANPAGER": "cat"], timeout: 120)
        #expect(root.stdout.contains("devkit-provision(1)"), "the root page points at the commands' pages")
    }

    /// A normal user (here `nobody`) installs under a prefix they own, without root;
    /// a prefix they cannot write is refused before anything is built (exit 77),
    /// saying what to do instead.
    @Test("as a normal user: a prefix of their own works; /usr/local-like prefixes are refused with advice")
    func normalUser() throws {
        let setpriv = try #require(TestProcess.which("setpriv"), "setpriv missing: apt install util-linux")
        try #require(getuid() == 0, "switching to a normal user needs root")
        let dir = scratch()
        defer { _ = try? TestProcess.run(["/bin/rm", "-rf", dir], timeout: 120) }
        let home = dir + "/home"
        try FileManager.default.createDirectory(atPath: home, withIntermediateDirectories: true)
        chown(home, 65534, 65534)
        // The man tool is built (once) by root first, as the other test does.
        let warmUp = try TestProcess.run(
            ["/bin/bash", Self.script, "--binary", try TestProcess.devkitBinary, "--prefix", dir + "/warm-up"], timeout: 840)
        #expect(warmUp.status == 0, "\(warmUp.stderr)")

        func asNobody(_ prefix: String) throws -> ProcessResult {
            try TestProcess.run(
                [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--",
                 "/usr/bin/env", "HOME=\(home)", "PATH=/usr/bin:/bin", "/bin/bash", Self.script,
                 "--binary", try TestProcess.devkitBinary, "--prefix", prefix], timeout: 120)
        }
        let own = try asNobody(home + "/.local")
        #expect(own.status == 0, "\(own.stdout)\n\(own.stderr)")
        for file in Self.installed + [Self.page(["provision"])] {
            var info = stat()
            #expect(stat(home + "/.local/" + file, &info) == 0 && info.st_uid == 65534, "\(file)")
        }
        #expect(own.stdout.contains("is not on your PATH"), "\(own.stdout)")

        let refused = try asNobody(dir + "/root-owned/usr")
        #expect(refused.status == 77, "\(refused.stdout)\n\(refused.stderr)")
        #expect(refused.stderr.contains("--prefix ~/.local"), "\(refused.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/root-owned"))
    }

    @Test("--help explains the options; an unknown option is a usage error (64)")
    func usage() throws {
        let help = try TestProcess.run(["/bin/bash", Self.script, "--help"], timeout: 120)
        #expect(help.status == 0)
        for text in ["--prefix DIR", "--binary PATH", "share/man/man1", "~/.local"] {
            #expect(help.stdout.contains(text), "\(text)")
        }
        let bad = try TestProcess.run(["/bin/bash", Self.script, "--prefx", "/tmp"], timeout: 120)
        #expect(bad.status == 64)
        #expect(bad.stderr.contains("unknown option --prefx"))
        let missing = try TestProcess.run(["/bin/bash", Self.script, "--binary", "/nonexistent/devkit"], timeout: 120)
        #expect(missing.status == 66, "\(missing.stderr)")
        // A devkit without its devkit-full is refused before anything is installed.
        let dir = consoleTestDirectory()
        defer { consoleRemoveTree(dir) }
        try FileManager.default.copyItem(atPath: TestProcess.devkitBinary, toPath: dir + "/devkit")
        let alone = try TestProcess.run(["/bin/bash", Self.script, "--binary", dir + "/devkit", "--prefix", dir + "/p"],
                                        timeout: 120)
        #expect(alone.status == 66, "\(alone.stderr)")
        #expect(alone.stderr.contains("\(dir)/devkit-full is missing"))
        #expect(!FileManager.default.fileExists(atPath: dir + "/p"))
    }
}
