import DevKitTestSupport
import Testing

/// `devkit --version` is answered before ArgumentParser parses (start-up); it must
/// print what ArgumentParser printed, and anything more goes to ArgumentParser.
@Suite struct VersionTests {
    @Test func versionAloneIsTheVersionLine() throws {
        let r = try TestProcess.run([TestProcess.devkitBinary, "--version"], timeout: 60)
        #expect(r.status == 0)
        #expect(r.stdout == "0.1.0\n")
        #expect(r.stderr.isEmpty)
    }

    /// With another argument ArgumentParser answers; its text must be the fast path's.
    @Test func sameTextAsArgumentParser() throws {
        let fast = try TestProcess.run([TestProcess.devkitBinary, "--version"], timeout: 60)
        let parsed = try TestProcess.run([TestProcess.devkitBinary, "--version", "--quiet"], timeout: 60)
        #expect(parsed.status == fast.status)
        #expect(parsed.stdout == fast.stdout)
    }
}
