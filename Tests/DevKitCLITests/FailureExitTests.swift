import DevKitTestSupport
import Testing

/// A command's failure is printed once by `reportingErrors` and then leaves
/// `runAsRoot` as an `ExitCode`, which exits directly (start-up: it skips
/// ArgumentParser's message rendering, which has nothing to add). The three ways out
/// of a command must keep their text and status.
@Suite struct FailureExitTests {
    @Test func reportedFailureIsOneLineAndItsStatus() throws {
        let r = try TestProcess.run([TestProcess.devkitBinary, "info", "--port", "/nonexistent"], timeout: 60)
        #expect(r.status == 66)
        #expect(r.stdout.isEmpty)
        let lines = r.stderr.split(separator: "\n", omittingEmptySubsequences: false)
        #expect(lines.count == 2, "\(r.stderr)")  // one line and its newline
        #expect(r.stderr.hasPrefix("devkit: error: No serial device at /nonexistent."), "\(r.stderr)")
    }

    /// Validation errors still go through ArgumentParser: message, usage, 64.
    @Test func validationFailureKeepsTheUsage() throws {
        let r = try TestProcess.run(
            [TestProcess.devkitBinary, "info", "--port", "/nonexistent", "--timeout", "5"], timeout: 60)
        #expect(r.status == 64)
        #expect(r.stderr.hasPrefix("devkit: error: --timeout bounds the wait"), "\(r.stderr)")
        #expect(r.stderr.contains("Usage: devkit info"), "\(r.stderr)")
    }

    /// Help is a clean exit: on stdout, status 0.
    @Test func helpIsACleanExit() throws {
        let r = try TestProcess.run([TestProcess.devkitBinary, "info", "--help"], timeout: 60)
        #expect(r.status == 0)
        #expect(r.stdout.contains("USAGE: devkit info"), "\(r.stdout)")
        #expect(r.stderr.isEmpty)
    }
}
