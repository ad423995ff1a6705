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

        // Every other command, and a board command's line the plain reader declines
        // (help, `--name=value`), is devkit-full's.
        for line in [["list", "--names"], ["info", "--help"], ["info", "--port=\(dir)/ttyAbsent"], ["bogus"]] {
            let r = try TestProcess.run([devkit] + line, timeout: 60)
            #expect(r.status == 78, "\(line)")
            #expect(r.stdout.isEmpty)
            #expect(r.stderr.hasPrefix("devkit: error: cannot run \(dir)/devkit-full: No such file or directory"),
                    "\(line): \(r.stderr)")
            #expect(r.stderr.contains("install it beside devkit (Scripts/install.sh installs both)"))
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
        kill(pid, SIGTERM)
        #expect(emulator.wait() == 0)
    }
}
