import DevKitTestSupport
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// `devkit emulate` run as the built binary, end to end, each step bounded in time.
@Suite("devkit emulate (the built binary)")
struct EmulateCommandTests {
    /// The built `devkit` (see `TestProcess.devkitBinary`).
    static var devkitBinary: URL { get throws { try URL(fileURLWithPath: TestProcess.devkitBinary) } }

    typealias Running = BackgroundDevkit

    /// A raw line to the board at `path`, as a plain terminal program would use it.
    final class Line {
        let fd: Int32
        var pending: [UInt8] = []
        init(path: String) throws {
            fd = open(path, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC)
            if fd < 0 { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        }
        deinit { close(fd) }
        func send(_ text: String) {
            let bytes = Array(text.utf8)
            _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        }
        func read(through marker: String, timeout: Duration = .seconds(10)) -> String? {
            let want = Array(marker.utf8)
            let deadline = ContinuousClock.now + timeout
            var buffer = [UInt8](repeating: 0, count: 4096)
            while ContinuousClock.now < deadline {
                if let range = pending.firstRange(of: want) {
                    defer { pending.removeSubrange(..<range.upperBound) }
                    return String(decoding: pending[..<range.upperBound], as: UTF8.self)
                }
                var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                guard poll(&p, 1, 100) > 0 else { continue }
                let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
                if n <= 0 { return nil }
                pending += buffer[..<n]
            }
            return nil
        }
    }

    func temporaryDirectory() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("devkit-emulate-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    @Test func runsUntilSIGTERMAndCleansUp() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let link = directory.appendingPathComponent("ttyDevKit").path
        let state = directory.appendingPathComponent("state.json").path
        let emulator = try Running([
            "emulate", "--json", "--link", link, "--state", state,
            "--mac", "A4:CF:12:0B:9E:31", "--firmware-version", "1.6.2",
        ])
        let first = try #require(emulator.firstLine())
        let info = try #require(try JSONSerialization.jsonObject(with: Data(first.utf8)) as? [String: Any])
        let device = try #require(info["device"] as? String)
        #expect(info["link"] as? String == link)
        #expect(info["mac"] as? String == "a4cf120b9e31")
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: link) == device)

        let line = try Line(path: link)
        line.send("\r")  // the boot output was not heard: ask for a prompt
        #expect(line.read(through: "\r\n# ") == "\r\n# ")
        line.send("help\r")
        #expect(line.read(through: "\r\n# ")?.hasSuffix(" - enable_secure: Enable secure channel between AZ3166 and secure chip.\r\n\r\n# ") == true)
        line.send("set_wifissid lab\r")
        #expect(line.read(through: "\r\n# ") == "set_wifissid lab\r\nINFO: Set Wi-Fi SSID successfully.\r\n\r\n# ")
        line.send("version\r")
        #expect(line.read(through: "\r\n# ")?.contains("DevKitSDK version: 1.6.2\r\n") == true)

        // SIGUSR1 pulls the cable, SIGUSR2 plugs it back in on a new pty.
        kill(emulator.process.processIdentifier, SIGUSR1)
        let pulled = ContinuousClock.now
        #expect(line.read(through: "never", timeout: .seconds(20)) == nil)
        #expect(pulled.duration(to: .now) < .seconds(10))  // ended by the hang-up, not the timeout
        kill(emulator.process.processIdentifier, SIGUSR2)
        let replugged = try #require(emulator.firstLine())
        #expect(replugged.contains("\"event\":\"replugged\""))
        let again = try Line(path: link)
        again.send("\r")
        #expect(again.read(through: "\r\n# ") == "\r\n# ")

        kill(emulator.process.processIdentifier, SIGTERM)
        // Its last word: the stopped event (unpaced, so no USB latency counted).
        let stopped = try #require(emulator.firstLine())
        let event = try #require(try JSONSerialization.jsonObject(with: Data(stopped.utf8)) as? [String: Any])
        #expect(event["event"] as? String == "stopped")
        #expect(event["replies"] as? Int == 0)
        #expect(emulator.wait() == 0)
        #expect(!FileManager.default.fileExists(atPath: link))
        let saved = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: state))) as? [String: Any]
        #expect(saved?["wifiSSID"] as? String == "lab")
    }

    @Test func badArgumentsAndStateExitWithTheirCodes() throws {
        let badMAC = try Running(["emulate", "--mac", "xyz"])
        #expect(badMAC.wait() == 64)

        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let state = directory.appendingPathComponent("state.json")
        try Data("not json".utf8).write(to: state)
        let badState = try Running(["emulate", "--state", state.path])
        #expect(badState.wait() == 65)
        let message = String(decoding: badState.stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(message.contains(state.path))

        let badLink = try Running(["emulate", "--link", "/nonexistent-dir-\(UUID().uuidString)/tty"])
        #expect(badLink.wait() == 73)
    }

    @Test func helpTeaches() throws {
        let help = try Running(["emulate", "--help"])
        #expect(help.wait() == 0)
        let text = String(decoding: help.stdout.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(text.contains("devkit emulate --link /tmp/ttyDevKit"))
        #expect(text.contains("--fail-eeprom-write"))
        #expect(text.contains("--unplug-after"))
    }
}
