import DevKitTestSupport
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// `devkit` runs `--version`, `info` and `set-uds` itself (start-up: a small binary)
/// and hands every other line to `devkit-full` beside it (BoardCommandLine).
@Suite("devkit and devkit-full")
struct TwoBinariesTests {
    @Test("alone in a directory, devkit still runs --version, info and set-uds; any other line says what to install (78)")
    func smallBinaryAlone() throws {
        let dir = consoleTestDirectory()
        defer { consoleRemoveTree(dir) }
        let devkit = dir + "/devkit"
        try FileManager.default.copyItem(atPath: TestProcess.devkitBinary, toPath: devkit)

        let version = try TestProcess.run([devkit, "--version"], timeout: 60)
        #expect(version.status == 0)
        #expect(version.stdout == "0.1.0\n")
        // The commands' own failures: they ran here, with no devkit-full to hand to.
        let info = try TestProcess.run([devkit, "info", "--port", dir + "/ttyAbsent"], timeout: 60)
        #expect(info.status == 66)
        #expect(info.stderr.hasPrefix("devkit: error: No serial device at \(dir)/ttyAbsent"), "\(info.stderr)")
        let setUDS = try TestProcess.run(
            [devkit, "set-uds", "--port", dir + "/ttyAbsent", "--uds-file", dir + "/absent.hex"], timeout: 60)
        #expect(setUDS.status == 66)
        #expect(setUDS.stderr.hasPrefix("devkit: error: cannot read \(dir)/absent.hex"), "\(setUDS.stderr)")
        // The README's `pass show … | devkit set-uds … --uds-file -`: the secret read from
        // standard input here, then the missing port.
        let piped = try TestProcess.run(
            [devkit, "set-uds", "--port", dir + "/ttyAbsent", "--uds-file", "-"],
            stdin: Array((String(repeating: "5a", count: 32) + "\n").utf8), timeout: 60)
        #expect(piped.status == 66)
        #expect(piped.stderr.hasPrefix("devkit: error: No serial device at \(dir)/ttyAbsent"), "\(piped.stderr)")

        // Every other command, and a board command's line the plain reader declines
        // (help, `--name=value`), is devkit-full's.
        for line in [["list", "--names"], ["info", "--help"], ["info", "--port=\(dir)/ttyAbsent"], ["bogus"]] {
            let r = try TestProcess.run([devkit] + line, timeout: 60)
            #expect(r.status == 78, "\(line)")
            #expect(r.stdout.isEmpty)
            #expect(r.stderr.hasPrefix("devkit: error: cannot run \(dir)/devkit-full: No such file or directory"),
                    "\(line): \(r.stderr)")
            #expect(r.stderr.contains("install it beside devkit (Scripts/install.sh installs both; in a checkout, `swift build` builds both)"))
        }
    }

    @Test("a handed-over line stays the same process: its PID, the program name as typed, devkit-full's image")
    func handOverKeepsTheProcess() throws {
        let dir = consoleTestDirectory()
        defer { consoleRemoveTree(dir) }
        // `emulate` runs until SIGTERM: long enough to look at its /proc entry.
        let emulator = try BackgroundDevkit(["emulate", "--json", "--link", dir + "/ttyDevKit"])
        #expect(emulator.firstLine() != nil)
        let pid = emulator.process.processIdentifier
        let image = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/exe")
        let devkit = try TestProcess.devkitBinary
        #expect(image == URL(fileURLWithPath: devkit).resolvingSymlinksInPath().deletingLastPathComponent().path
            + "/devkit-full")
        let commandLine = try Data(contentsOf: URL(fileURLWithPath: "/proc/\(pid)/cmdline"))
            .split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        #expect(commandLine == [devkit, "emulate", "--json", "--link", dir + "/ttyDevKit"])
        // Named as typed, not after devkit-full's file: `ps`, `pgrep -x devkit`, and the
        // port-in-use message, which names the holder.
        #expect(try String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8) == "devkit\n")
        kill(pid, SIGTERM)
        #expect(emulator.wait() == 0)
    }

    @Test("a devkit-full that is devkit itself is refused (78), not run again and again")
    func devkitFullThatIsDevkit() throws {
        let dir = consoleTestDirectory()
        defer { consoleRemoveTree(dir) }
        try FileManager.default.copyItem(atPath: TestProcess.devkitBinary, toPath: dir + "/devkit")
        try FileManager.default.createSymbolicLink(atPath: dir + "/devkit-full", withDestinationPath: "devkit")
        let r = try TestProcess.run([dir + "/devkit", "list", "--names"], timeout: 60)
        #expect(!r.timedOut)
        #expect(r.status == 78)
        #expect(r.stderr.hasPrefix("devkit: error: \(dir)/devkit-full is devkit itself, not the full binary"), "\(r.stderr)")
    }

    @Test("devkit in a directory whose name is not UTF-8 still finds devkit-full, byte for byte")
    func directoryNameNotUTF8() throws {
        let dir = consoleTestDirectory()
        defer { consoleRemoveTree(dir) }
        // A directory named with the byte 0xff, made and used through raw bytes.
        var name = Array((dir + "/x-").utf8CString.dropLast()) + [CChar(bitPattern: 0xFF), 0]
        #expect(mkdir(&name, 0o700) == 0)
        let inside = { (file: String) -> [CChar] in Array(name.dropLast()) + Array(("/" + file).utf8CString) }
        var devkit = inside("devkit")
        var full = inside("devkit-full")
        let source = try TestProcess.devkitBinary
        // devkit copied (it reads its own directory), devkit-full a link to the built one.
        let bytes = try Data(contentsOf: URL(fileURLWithPath: source))
        let fd = open(&devkit, O_WRONLY | O_CREAT | O_EXCL, 0o755)
        #expect(fd >= 0)
        // One write: a regular file takes it whole.
        #expect(bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) } == bytes.count)
        close(fd)
        let fullSource = URL(fileURLWithPath: source).deletingLastPathComponent().path + "/devkit-full"
        #expect(symlink(fullSource, &full) == 0)
        defer {
            unlink(&full)
            unlink(&devkit)
            rmdir(&name)
        }
        // Handed over: devkit-full answers the help (the small binary does not read it).
        var argv: [UnsafeMutablePointer<CChar>?] = [strdup(devkit), strdup("info"), strdup("--help"), nil]
        defer { for a in argv { free(a) } }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        var pid: pid_t = 0
        #expect(posix_spawn(&pid, devkit, &actions, nil, &argv, environ) == 0)
        #expect(TestProcess.waitStatus(pid) == 0)
    }
}
