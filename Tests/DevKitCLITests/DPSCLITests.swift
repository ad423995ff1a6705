import DevKitTestSupport
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `devkit dps ...` end to end without a DPS: argument rules, missing inputs, a
/// server that is down, and the connection string's key never shown.
@Suite("devkit dps (built binary, no service)")
struct DPSCLITests {
    /// base64 of "cli-test-key-that-must-never-show-up": searched for in every output.
    static let key = "Y2xpLXRlc3Qta2V5LXRoYXQtbXVzdC1uZXZlci1zaG93LXVw"

    /// A scratch directory with the first reference Alias certificate and a connection string file.
    struct Workspace {
        let path: String
        let registrationID: String
        init() throws {
            path = FileManager.default.temporaryDirectory.appendingPathComponent("dps-cli-\(UUID().uuidString)").path
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
            let vector = CertCommandTests.vectors[0]
            registrationID = vector["registration_id"]!
            try vector["alias_certificate"]!.write(toFile: path + "/alias.pem", atomically: false, encoding: .utf8)
            try ("HostName=test-dps.azure-devices-provisioning.net;SharedAccessKeyName=provisioningserviceowner;"
                + "SharedAccessKey=\(DPSCLITests.key)\n").write(toFile: path + "/dps.cs", atomically: false, encoding: .utf8)
        }
        var cert: String { path + "/alias.pem" }
        var cs: String { path + "/dps.cs" }
        func remove() { try? FileManager.default.removeItem(atPath: path) }
    }

    func devkit(_ arguments: [String], stdin: String? = nil, timeout: Double = 120) throws -> ProcessResult {
        try TestProcess.run([TestProcess.devkitBinary, "dps"] + arguments, stdin: stdin.map { Array($0.utf8) }, timeout: timeout)
    }

    /// A loopback port nothing listens on (bound, then closed).
    static func closedPort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        try withUnsafeMutablePointer(to: &address) { p in
            try p.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                guard bind(fd, $0, length) == 0, getsockname(fd, $0, &length) == 0 else { throw POSIXError(.EADDRINUSE) }
            }
        }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    func expectNoKey(_ r: ProcessResult, sourceLocation: SourceLocation = #_sourceLocation) {
        for text in [r.stdout, r.stderr] {
            #expect(!text.contains(Self.key.prefix(16)), "the key showed: \(text)", sourceLocation: sourceLocation)
            #expect(!text.contains("cli-test-key"), sourceLocation: sourceLocation)
            #expect(!text.contains("SharedAccessSignature"), "a token showed: \(text)", sourceLocation: sourceLocation)
        }
    }

    @Test("enroll takes exactly one source of boards", arguments: [
        ([String](), "Give the boards to enroll"),
        (["--cert", "a.pem", "--from-registry"], "one source"),
        (["--cert", "a.pem", "--enrollment-file", "b.json"], "one source"),
        (["--id", "3", "--cert", "a.pem"], "--id chooses boards of --from-registry"),
        (["--from-registry", "--device-id", "d"], "--device-id"),
        (["--cert", "a.pem", "--parallel", "0"], "--parallel"),
    ])
    func oneSource(_ c: (args: [String], message: String)) throws {
        let r = try devkit(["enroll", "--connection-string-file", "x.cs"] + c.args)
        #expect(r.status == 64, "\(c.args): \(r.stderr)")
        #expect(r.stderr.hasPrefix("devkit: error: "), "\(r.stderr)")
        #expect(r.stderr.contains(c.message), "\(r.stderr)")
    }

    @Test("the connection string comes only from a file: none given is usage (64)")
    func connectionStringRequired() throws {
        let w = try Workspace()
        defer { w.remove() }
        let r = try devkit(["enroll", "--cert", w.cert])
        #expect(r.status == 64)
        #expect(r.stderr.contains("--connection-string-file"), "\(r.stderr)")
        #expect(r.stderr.contains("never taken from the command line"))
        // There is no option that takes it as an argument.
        let help = try devkit(["enroll", "--help"])
        #expect(!help.stdout.contains("--connection-string "))
    }

    @Test("a plain http endpoint is refused (64) before any request: it would carry the SAS token in clear")
    func plainHTTPRefused() throws {
        let w = try Workspace()
        defer { w.remove() }
        let r = try devkit(["list", "--connection-string-file", w.cs, "--endpoint", "http://127.0.0.1:1"])
        #expect(r.status == 64, "\(r.stderr)")
        #expect(r.stderr.contains("not an https URL") && r.stderr.contains("SAS token"), "\(r.stderr)")
    }

    @Test("a missing connection string file or certificate is 66")
    func missingInputs() throws {
        let w = try Workspace()
        defer { w.remove() }
        let noCS = try devkit(["enroll", "--cert", w.cert, "--connection-string-file", w.path + "/absent.cs"])
        #expect(noCS.status == 66, "\(noCS.stderr)")
        #expect(noCS.stderr.contains("absent.cs"))
        let noCert = try devkit(["enroll", "--cert", w.path + "/absent.pem", "--connection-string-file", w.cs])
        #expect(noCert.status == 66, "\(noCert.stderr)")
        #expect(noCert.stderr.contains("absent.pem"))
        let noRegistry = try devkit([
            "enroll", "--from-registry", "--registry", w.path + "/none.sqlite", "--connection-string-file", w.cs,
        ])
        #expect(noRegistry.status == 66, "\(noRegistry.stderr)")
        expectNoKey(noCS)
    }

    @Test("a connection string without its key, or a device's, is refused (65) without quoting the key")
    func badConnectionString() throws {
        let w = try Workspace()
        defer { w.remove() }
        try "HostName=h.example;SharedAccessKey=\(Self.key)\n".write(toFile: w.cs, atomically: false, encoding: .utf8)
        let r = try devkit(["enroll", "--cert", w.cert, "--connection-string-file", w.cs])
        #expect(r.status == 65, "\(r.stderr)")
        #expect(r.stderr.contains("SharedAccessKeyName"), "\(r.stderr)")
        expectNoKey(r)
        try "HostName=hub.azure-devices.net;DeviceId=d;SharedAccessKey=\(Self.key)".write(toFile: w.cs, atomically: false, encoding: .utf8)
        let device = try devkit(["show", "x", "--connection-string-file", w.cs])
        #expect(device.status == 65, "\(device.stderr)")
        #expect(device.stderr.contains("device's connection string"))
        expectNoKey(device)
    }

    @Test("--registration-id must be the certificate's CN")
    func registrationIDMustMatch() throws {
        let w = try Workspace()
        defer { w.remove() }
        let r = try devkit([
            "enroll", "--cert", w.cert, "--registration-id", "another-board", "--connection-string-file", w.cs,
        ])
        #expect(r.status == 64, "\(r.stderr)")
        #expect(r.stderr.contains(w.registrationID) && r.stderr.contains("another-board"), "\(r.stderr)")
    }

    @Test("DPS down (connection refused) is 69, said once, the key and token never shown, also with --verbose and stdin")
    func serverDown() throws {
        let w = try Workspace()
        defer { w.remove() }
        let port = try Self.closedPort()
        let endpoint = "https://127.0.0.1:\(port)"
        let started = Date()
        let r = try devkit(["enroll", "--cert", w.cert, "--connection-string-file", w.cs, "--endpoint", endpoint, "--verbose"])
        #expect(r.status == 69, "\(r.stdout) \(r.stderr)")
        #expect(r.stderr.contains("cannot reach DPS") || r.stderr.contains("cannot connect"), "\(r.stderr)")
        #expect(Date().timeIntervalSince(started) < 10, "a refused connection is not retried for long")
        expectNoKey(r)
        let cs = try String(contentsOfFile: w.cs, encoding: .utf8)
        for command in [["list"], ["show", w.registrationID], ["status", w.registrationID], ["delete", w.registrationID]] {
            let r = try devkit(command + ["--connection-string-file", "-", "--endpoint", endpoint, "--json"], stdin: cs)
            #expect(r.status == 69, "\(command): \(r.stderr)")
            expectNoKey(r)
        }
        // The JSON result of a failed board carries the error, and no key.
        let json = try devkit(["enroll", "--cert", w.cert, "--connection-string-file", w.cs, "--endpoint", endpoint, "--json"])
        #expect(json.status == 69)
        let line = try #require(json.stdout.split(separator: "\n").first)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        #expect(object["registration_id"] as? String == w.registrationID)
        #expect(object["action"] as? String == "failed")
        #expect(object["sha1_thumbprint"] != nil && object["etag"] is NSNull)
        #expect((object["message"] as? String)?.contains("127.0.0.1") == true)
        expectNoKey(json)
    }

    @Test("a --ca-file that does not exist is 66")
    func caFileMissing() throws {
        let w = try Workspace()
        defer { w.remove() }
        let r = try devkit(["list", "--connection-string-file", w.cs, "--ca-file", w.path + "/absent-ca.pem"])
        #expect(r.status == 66, "\(r.stderr)")
        #expect(r.stderr.contains("absent-ca.pem"))
    }

    @Test("help teaches each dps command, with examples")
    func help() throws {
        for command in [["enroll"], ["show"], ["list"], ["status"], ["delete"], []] {
            let r = try devkit(command + ["--help"])
            #expect(r.status == 0)
            #expect(r.stdout.contains("Examples:"), "\(command)")
            #expect(r.stdout.contains("--connection-string-file"), "\(command)")
        }
    }
}

/// Trust over real TLS on loopback: `openssl s_server` with a self-signed
/// certificate stands in for a service behind a private CA (it speaks TLS, and
/// answers any GET with an HTML status page, not DPS's JSON).
@Suite("devkit dps trust anchors (openssl s_server on loopback)")
struct DPSTrustTests {
    /// A running `openssl s_server -www` and its certificate.
    final class TLSServer {
        let process = Process()
        let directory: String
        var port = 0
        init() throws {
            directory = FileManager.default.temporaryDirectory.appendingPathComponent("dps-tls-\(UUID().uuidString)").path
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            let openssl = try #require(TestProcess.which("openssl"))
            let made = try TestProcess.run([
                openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-keyout", directory + "/key.pem", "-out", directory + "/cert.pem", "-days", "2", "-subj", "/CN=localhost",
                "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
            ], timeout: 120)
            try #require(made.status == 0, "\(made.stderr)")
            process.executableURL = URL(fileURLWithPath: openssl)
            process.arguments = [
                "s_server", "-accept", "127.0.0.1:0", "-cert", directory + "/cert.pem", "-key", directory + "/key.pem", "-www",
            ]
            let out = Pipe()
            process.standardOutput = out
            process.standardError = FileHandle.nullDevice
            process.standardInput = FileHandle.nullDevice
            try process.run()
            // "ACCEPT 127.0.0.1:<port>" once it listens.
            var text = ""
            let deadline = Date().addingTimeInterval(10)
            while port == 0 && Date() < deadline {
                let data = out.fileHandleForReading.availableData
                if data.isEmpty { break }
                text += String(decoding: data, as: UTF8.self)
                if let range = text.range(of: "ACCEPT 127.0.0.1:") {
                    port = Int(text[range.upperBound...].prefix { $0.isNumber }) ?? 0
                }
            }
            try #require(port != 0, "s_server said: \(text)")
        }
        var certificate: String { directory + "/cert.pem" }
        deinit {
            // SIGKILL: the server inherits the test thread's signal mask, in which
            // the concurrency runtime's threads block SIGTERM (terminate() hung here).
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            try? FileManager.default.removeItem(atPath: directory)
        }
    }

    @Test("an untrusted server certificate is 69 (TLS); with --ca-file the handshake passes")
    func caFile() throws {
        let server = try TLSServer()
        let w = try DPSCLITests.Workspace()
        defer { w.remove() }
        let endpoint = "https://127.0.0.1:\(server.port)"
        let untrusted = try TestProcess.run(
            [TestProcess.devkitBinary, "dps", "show", w.registrationID, "--connection-string-file", w.cs, "--endpoint", endpoint],
            timeout: 120)
        #expect(untrusted.status == 69, "\(untrusted.stderr)")
        #expect(untrusted.stderr.contains("TLS handshake"), "\(untrusted.stderr)")
        #expect(untrusted.stderr.contains("--ca-file"))
        // BoringSSL's reason in words, without its error numbers or the build's paths.
        #expect(untrusted.stderr.contains("(certificate verify failed)"), "\(untrusted.stderr)")
        #expect(!untrusted.stderr.contains(".build/") && !untrusted.stderr.contains("BoringSSL"), "\(untrusted.stderr)")
        let trusted = try TestProcess.run(
            [TestProcess.devkitBinary, "dps", "show", w.registrationID, "--connection-string-file", w.cs, "--endpoint", endpoint,
             "--ca-file", server.certificate],
            timeout: 120)
        // Past the handshake: the HTML page is no DPS answer.
        #expect(trusted.status == 69, "\(trusted.stderr)")
        #expect(!trusted.stderr.contains("TLS handshake"), "\(trusted.stderr)")
        #expect(trusted.stderr.contains("not what the API documents"), "\(trusted.stderr)")
        // A --ca-file that is not PEM.
        let notPEM = try TestProcess.run(
            [TestProcess.devkitBinary, "dps", "show", w.registrationID, "--connection-string-file", w.cs, "--endpoint", endpoint,
             "--ca-file", w.cs],
            timeout: 120)
        #expect(notPEM.status == 66, "\(notPEM.stderr)")
        #expect(!notPEM.stderr.contains(DPSCLITests.key.prefix(16)))
    }
}
