import DevKitTestSupport
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// `devkit emulate-dps` run as the built binary: what it prints, the files it
/// makes, a clean stop on a signal, and its errors' exit codes. (The service API
/// itself is tested in DPSEmulatorTests, against the same binary.)
@Suite("devkit emulate-dps (the built binary)")
struct EmulateDPSCommandTests {
    typealias Running = BackgroundDevkit

    /// The bytes of the key in the connection string file, base64 as written.
    static func key(in file: String) throws -> String {
        let text = try #require(consoleReadText(file))
        let part = try #require(text.split(separator: ";").first { $0.hasPrefix("SharedAccessKey=") })
        return part.dropFirst("SharedAccessKey=".count).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    @Test("--json: one object with the URL and files; 0600 secrets; the key never printed; SIGTERM stops it, exit 0")
    func jsonStartAndStop() throws {
        let scratch = consoleTestDirectory()
        defer { consoleRemoveTree(scratch) }
        let directory = scratch + "/dps"
        let emulator = try Running(["emulate-dps", "--json", "--port", "0", "--state-dir", directory])
        let first = try #require(emulator.firstLine())
        let info = try #require(try JSONSerialization.jsonObject(with: Data(first.utf8)) as? [String: Any])
        #expect(info["event"] as? String == "started")
        let port = try #require(info["port"] as? Int)
        #expect(port > 0)
        #expect(info["url"] as? String == "https://127.0.0.1:\(port)")
        #expect(info["ca_file"] as? String == directory + "/ca.pem")
        #expect(info["connection_string_file"] as? String == directory + "/connection-string")
        #expect(info["state_dir"] as? String == directory)
        #expect(info["host_name"] as? String == "localhost")
        // The device API's ID scope: made once, kept in the state directory.
        #expect(info["id_scope"] as? String == consoleReadText(directory + "/id-scope")?.trimmingCharacters(in: .whitespacesAndNewlines))
        #expect(info["pid"] as? Int == Int(emulator.process.processIdentifier))
        #expect(consoleFileMode(directory) == 0o700)
        #expect(consoleFileMode(directory + "/connection-string") == 0o600)
        #expect(consoleFileMode(directory + "/server-key.pem") == 0o600)
        #expect(consoleFileMode(directory + "/ca-key.pem") == 0o600)
        let connection = try #require(consoleReadText(directory + "/connection-string"))
        #expect(connection.hasPrefix("HostName=localhost;SharedAccessKeyName=provisioningserviceowner;SharedAccessKey="))
        #expect(consoleReadText(directory + "/ca.pem")?.hasPrefix("-----BEGIN CERTIFICATE-----") == true)

        // It listens: a TCP connection to the port is accepted.
        let socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(socket) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        #expect(connected == 0)

        kill(emulator.process.processIdentifier, SIGTERM)
        let stopped = try #require(emulator.firstLine())
        let event = try #require(try JSONSerialization.jsonObject(with: Data(stopped.utf8)) as? [String: Any])
        #expect(event["event"] as? String == "stopped")
        #expect(event["signal"] as? String == "SIGTERM")
        #expect((event["stats"] as? [String: Any])?["requests"] as? Int == 0)
        #expect(emulator.wait() == 0)
        let stderr = String(decoding: emulator.stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let key = try Self.key(in: directory + "/connection-string")
        #expect(!first.contains(key) && !stopped.contains(key) && !stderr.contains(key))
    }

    @Test("Without --json: labelled lines on stdout; a restart reuses the key and CA; SIGINT stops it, exit 0")
    func humanOutputAndRestart() throws {
        let scratch = consoleTestDirectory()
        defer { consoleRemoveTree(scratch) }
        let directory = scratch + "/dps"
        let first = try Running(["emulate-dps", "--state-dir", directory])
        var lines: [String] = []
        for _ in 0..<5 { lines.append(try #require(first.firstLine())) }
        #expect(lines[0].hasPrefix("URL:") && lines[0].contains("https://127.0.0.1:"))
        #expect(lines[1].hasPrefix("CA file:") && lines[1].hasSuffix(directory + "/ca.pem"))
        #expect(lines[2].hasPrefix("Connection string file:") && lines[2].hasSuffix(directory + "/connection-string"))
        #expect(lines[3].hasPrefix("State directory:") && lines[3].hasSuffix(directory))
        #expect(lines[4].hasPrefix("ID scope:") && lines[4].contains(" 0ne"))
        // One column for the values.
        let column = lines[0].distance(from: lines[0].startIndex, to: lines[0].range(of: "https")!.lowerBound)
        #expect(lines.allSatisfy { $0.count > column && $0[$0.index($0.startIndex, offsetBy: column - 1)] == " " })
        let key = try Self.key(in: directory + "/connection-string")
        let ca = consoleReadText(directory + "/ca.pem")
        kill(first.process.processIdentifier, SIGINT)
        #expect(first.wait() == 0)
        let stderr = String(decoding: first.stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(stderr.contains("stopped (SIGINT): 0 requests"), "\(stderr)")

        let second = try Running(["emulate-dps", "--state-dir", directory, "--quiet"])
        #expect(second.firstLine()?.hasPrefix("URL:") == true)
        #expect(try Self.key(in: directory + "/connection-string") == key)
        #expect(consoleReadText(directory + "/ca.pem") == ca)
        kill(second.process.processIdentifier, SIGTERM)
        #expect(second.wait() == 0)
        let quiet = String(decoding: second.stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(quiet.isEmpty, "\(quiet)")
    }

    @Test("A port in use exits 69 naming it; a state dir in use exits 75; one that is a file exits 73; bad switches exit 64")
    func errors() throws {
        let directory = consoleTestDirectory()
        defer { consoleRemoveTree(directory) }
        let holder = try Running(["emulate-dps", "--json", "--state-dir", directory + "/a"])
        let line = try #require(holder.firstLine())
        let info = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        let port = try #require(info["port"] as? Int)
        let taken = try Running(["emulate-dps", "--port", String(port), "--state-dir", directory + "/b"])
        #expect(taken.wait() == 69)
        let message = String(decoding: taken.stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(message.hasPrefix("devkit: error: cannot listen on 127.0.0.1:\(port): Address already in use; choose another --port"), "\(message)")
        // A second emulator on the same state directory (another port): refused, 75,
        // before it could overwrite the first one's enrollments.
        let sharing = try Running(["emulate-dps", "--port", "0", "--state-dir", directory + "/a"])
        #expect(sharing.wait() == 75)
        let refusal = String(decoding: sharing.stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(refusal.contains("another devkit emulate-dps is using the state directory \(directory)/a")
            && refusal.contains("--state-dir"), "\(refusal)")
        kill(holder.process.processIdentifier, SIGTERM)
        #expect(holder.wait() == 0)

        #expect(FileManager.default.createFile(atPath: directory + "/file", contents: Data("x".utf8)))
        let notADirectory = try Running(["emulate-dps", "--state-dir", directory + "/file"])
        #expect(notADirectory.wait() == 73)
        let why = String(decoding: notADirectory.stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(why.contains(directory + "/file") && why.contains("--state-dir"), "\(why)")

        for arguments in [["--token-lifetime", "3"], ["--throttle", "-1"], ["--port", "70000"], ["--latency-ms", "-5"]] {
            let bad = try Running(["emulate-dps", "--state-dir", directory + "/c"] + arguments)
            #expect(bad.wait() == 64, "\(arguments)")
        }
    }

    @Test("--help teaches: the files, the fault switches, examples")
    func help() throws {
        let help = try Running(["emulate-dps", "--help"])
        #expect(help.wait() == 0)
        let text = String(decoding: help.stdout.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        for expected in [
            "devkit emulate-dps --port 8443 --state-dir /tmp/dps", "--throttle", "--fail-5xx", "--latency-ms",
            "--expire-tokens", "--token-lifetime", "--retry-after", "connection-string", "provisioningserviceowner",
            "$XDG_STATE_HOME/devkit/dps", "/_emulator/stats",
        ] {
            #expect(text.contains(expected), "\(expected)")
        }
    }
}
