import DevKitTestSupport
import Foundation
import Testing
import VirtualDevKit

/// Issue 12, item 6: text from outside (here a port path) reaches stdout escaped.
@Suite struct EscapedOutputTests {
    /// A port path is the user's text, echoed by set-uds and set-connection-string:
    /// a bidi override or an escape sequence in it (a link named so) is shown escaped.
    @Test func aPortPathIsEchoedEscaped() throws {
        let kit = try startedKit()
        defer { kit.stop() }
        let dir = registryTestDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let link = dir + "/dev\u{202E}kit\u{1B}[2J"
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: kit.devicePath)
        let uds = try TestProcess.run(
            [try TestProcess.devkitBinary, "set-uds", "--port", link, "--uds-file", "-"], stdin: Array((RegistryCLITests.uds + "\n").utf8), timeout: 120)
        let cs = try TestProcess.run(
            [try TestProcess.devkitBinary, "set-connection-string", "--port", link, "--connection-string-file", "-"],
            stdin: Array("HostName=h.azure-devices.net;DeviceId=d;SharedAccessKey=a2V5\n".utf8), timeout: 120)
        for r in [uds, cs] {
            #expect(r.status == 0, "\(r.stderr)")
            #expect(r.stdout.contains("dev\\u{202E}kit\\u{1B}[2J"), "\(r.stdout)")
            #expect(!r.stdout.unicodeScalars.contains { $0.value == 0x202E || $0.value == 0x1B }, "\(r.stdout.debugDescription)")
        }
    }
}
