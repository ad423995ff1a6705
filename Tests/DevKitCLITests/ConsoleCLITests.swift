import DevKitTestSupport
import Foundation
import Testing

/// Runs the built `devkit` with a deadline: killed (and the test failed) when it
/// takes longer. Standard input is `stdin` (or /dev/null); no terminal needed.
struct ConsoleCLIProcess {
    let status: Int32
    let stdout: String
    let stderr: String

    static var binary: URL { URL(fileURLWithPath: TestProcess.devkitBinary) }

    static func run(_ arguments: [String], stdin: String? = nil, timeout: Double = 20,
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

    @Test("--help teaches: abstract, an example, the secret handling", arguments: [
        ("set-uds", "--generate --save"), ("info", "--reboot --json"), ("set-wifi", "--password-file -"),
        ("set-connection-string", "--file -"),
    ])
    func helpTeaches(command: String, example: String) throws {
        let result = try ConsoleCLIProcess.run([command, "--help"])
        #expect(result.status == 0)
        #expect(result.stdout.contains("Examples:"))
        #expect(result.stdout.contains(example))
        #expect(result.stdout.contains("configuration mode"))
    }
}
