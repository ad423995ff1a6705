import DevKitTestSupport
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Runs the built `devkit` with a deadline: killed (and the test failed) when it
/// takes longer. Standard input is `stdin` (or /dev/null); no terminal needed.
struct ConsoleCLIProcess {
    let status: Int32
    let stdout: String
    let stderr: String

    static var binary: URL { get throws { try URL(fileURLWithPath: TestProcess.devkitBinary) } }

    static func run(_ arguments: [String], stdin: String? = nil, timeout: Double = 120,
                    sourceLocation: SourceLocation = #_sourceLocation) throws -> ConsoleCLIProcess {
        let r = try TestProcess.run([TestProcess.devkitBinary] + arguments, stdin: stdin.map { Array($0.utf8) }, timeout: timeout)
        if r.timedOut {
            Issue.record("devkit \(arguments) did not finish within \(timeout) s", sourceLocation: sourceLocation)
        }
        return ConsoleCLIProcess(status: r.status, stdout: r.stdout, stderr: r.stderr)
    }
}

@Suite("One-shot commands: checks before the board is touched")
struct ConsoleCLIValidationTests {
    @Test func badUDSFileIsUsageErrorWithoutTheSecret() throws {
        let directory = consoleTestDirectory()
        defer { consoleRemoveTree(directory) }
        let secretish = "deadbeefcafebabe" + String(repeating: "0", count: 40) + "zz"
        let path = directory + "/bad.uds"
        try secretish.write(toFile: path, atomically: false, encoding: .utf8)
        let result = try ConsoleCLIProcess.run(["set-uds", "--port", directory + "/no-port", "--uds-file", path])
        #expect(result.status == 64)
        #expect(result.stderr.contains("64 hex digits"))
        #expect(!result.stderr.contains("deadbeef"))
        #expect(result.stdout.isEmpty)
    }

    @Test func udsFromStdinIsValidatedToo() throws {
        let result = try ConsoleCLIProcess.run(["set-uds", "--port", "/nonexistent/port", "--uds-file", "-"], stdin: "1234\n")
        #expect(result.status == 64)
        #expect(result.stderr.contains("standard input does not hold a UDS"))
    }

    @Test("usage errors", arguments: [
        ["set-uds", "--port", "/x"],
        ["set-uds", "--port", "/x", "--generate", "--uds-file", "f"],
        ["set-uds", "--port", "/x", "--uds-file", "f", "--save", "g"],
        ["set-wifi", "--port", "/x", "--ssid", "s"],
        ["set-wifi", "--port", "/x", "--ssid", "s", "--open", "--password-file", "p"],
        ["set-connection-string", "--port", "/x"],
        ["set-connection-string", "--port", "/x", "--file", "f", "--kind", "nope"],
    ])
    func usageErrors(arguments: [String]) throws {
        let result = try ConsoleCLIProcess.run(arguments)
        #expect(result.status == 64, "\(arguments): \(result.stderr)")
    }

    @Test func missingSecretFileIsNoInput() throws {
        let result = try ConsoleCLIProcess.run(["set-connection-string", "--port", "/x", "--file", "/nonexistent/cs"])
        #expect(result.status == 66)
        #expect(result.stderr.contains("cannot read /nonexistent/cs"))
    }

    @Test func unknownConnectionStringIsUsage() throws {
        let result = try ConsoleCLIProcess.run(
            ["set-connection-string", "--port", "/x", "--file", "-"], stdin: "Endpoint=sb://x;SharedAccessKey=topsecret\n")
        #expect(result.status == 64)
        #expect(!result.stderr.contains("topsecret"))
    }

    /// Root ignores file modes, so as root the check runs `devkit` as `nobody`
    /// (setpriv) on a pty that only root may open; as an ordinary user,
    /// SerialPortTests checks the same error in-process.
    @Test("permission denied on the port: exit 77 and the dialout group",
          .enabled(if: canRunAsNobody, "needs root, setpriv, and a devkit binary that nobody may run"))
    func permissionDenied() throws {
        // A pty slave owned by root (posix_openpt is not exported to Swift; see ReplTestBoard).
        let master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC)
        #expect(master >= 0)
        defer { close(master) }
        var unlock: Int32 = 0
        var number: UInt32 = 0
        #expect(ioctl(master, UInt(0x4004_5431), &unlock) == 0)  // TIOCSPTLCK
        #expect(ioctl(master, UInt(0x8004_5430), &number) == 0)  // TIOCGPTN
        let slave = "/dev/pts/\(number)"
        #expect(chown(slave, 0, 0) == 0 && chmod(slave, 0o600) == 0)
        let r = try TestProcess.run(
            [Self.setpriv!, "--reuid=65534", "--regid=65534", "--clear-groups", TestProcess.devkitBinary,
             "info", "--port", slave], timeout: 120)
        #expect(!r.timedOut)
        #expect(r.status == 77, "\(r.stderr)")
        #expect(r.stderr.contains("Permission denied opening \(slave)"))
        #expect(r.stderr.contains("dialout"))
    }

    static let setpriv = TestProcess.which("setpriv")
    static let canRunAsNobody: Bool = {
        guard getuid() == 0, let setpriv else { return false }
        let r = try? TestProcess.run(
            [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "/bin/test", "-x", TestProcess.devkitBinary],
            timeout: 10)
        return r?.status == 0
    }()

    @Test("--help teaches: abstract, an example, the secret handling", arguments: [
        ("set-uds", "--generate-uds --save"), ("info", "--reboot --json"), ("set-wifi", "--wifi-password-file -"),
        ("set-connection-string", "--connection-string-file -"),
    ])
    func helpTeaches(command: String, example: String) throws {
        let result = try ConsoleCLIProcess.run([command, "--help"])
        #expect(result.status == 0)
        #expect(result.stdout.contains("Examples:"))
        #expect(result.stdout.contains(example))
        #expect(result.stdout.contains("configuration mode"))
    }
}
