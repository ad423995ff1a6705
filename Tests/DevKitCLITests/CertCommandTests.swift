import DevKitModel
import DevKitRegistry
import DiceRIoT
import DevKitTestSupport
import Foundation
import Testing

/// `devkit cert` end to end: the built binary, its files, output and exit codes.
@Suite("devkit cert (built binary)")
struct CertCommandTests {
    static let vectorsRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/dice-vectors")
    static let firmware = vectorsRoot.appendingPathComponent("firmware").path
    static let vectors: [[String: String]] = {
        let data = FileManager.default.contents(atPath: vectorsRoot.appendingPathComponent("vectors.json").path)!
        let json = try! JSONSerialization.jsonObject(with: data) as! [String: [[String: String]]]
        return json["vectors"]!
    }()
    static let sampleUDS = "19e25a259d0c2be03a02d416c05c48ccd0cc7d1743458aae1cb488b074993eae"

    /// A fresh directory with a UDS file in it.
    struct Workspace {
        let path: String
        init() throws {
            path = FileManager.default.temporaryDirectory.appendingPathComponent("cert-\(UUID().uuidString)").path
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
            try (CertCommandTests.sampleUDS + "\n").write(toFile: path + "/uds.hex", atomically: false, encoding: .utf8)
        }
        var files: [String] { ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted() }
        func read(_ name: String) -> String? { try? String(contentsOfFile: path + "/" + name, encoding: .utf8) }
        func remove() { try? FileManager.default.removeItem(atPath: path) }
    }

    func devkit(_ arguments: [String], stdin: String? = nil) throws -> ListProcessResult {
        try TestProcess.run([ListTestSupport.devkitBinary, "cert"] + arguments, stdin: stdin.map { Array($0.utf8) }, timeout: 120)
    }

    func tiny(_ extra: [String]) -> [String] {
        ["--bin", Self.firmware + "/Tiny.ino.bin", "--map", Self.firmware + "/Tiny.ino.map"] + extra
    }

    @Test("every vector: all four files byte-exact, from bin+map and from elf", arguments: vectors.map { $0["id"]! }, [false, true])
    func vectorsEndToEnd(id: String, useELF: Bool) throws {
        let v = Self.vectors.first { $0["id"] == id }!
        let ws = try Workspace()
        defer { ws.remove() }
        try v["uds"]!.write(toFile: ws.path + "/v.uds", atomically: false, encoding: .utf8)
        let firmware = useELF
            ? ["--elf", Self.vectorsRoot.appendingPathComponent(v["elf"]!).path]
            : ["--bin", Self.vectorsRoot.appendingPathComponent(v["bin"]!).path,
               "--map", Self.vectorsRoot.appendingPathComponent(v["map"]!).path]
        let identity = v["mac"] != nil
            ? ["--mac", v["mac"]!, "--firmware-version", v["firmware_version"]!]
            : ["--registration-id", v["registration_id"]!]
        let out = ws.path + "/out"
        let r = try devkit(firmware + identity + ["--uds-file", ws.path + "/v.uds", "--output-dir", out, "--device-cert", "--keys"])
        #expect(r.status == 0, "\(r.stderr)")
        let rid = v["registration_id"]!
        let read = { (name: String) in try? String(contentsOfFile: out + "/" + name, encoding: .utf8) }
        #expect(read("\(rid).pem") == v["alias_certificate"])
        #expect(read("\(rid).device.pem") == v["device_certificate"])
        #expect(read("\(rid).device-id.pub.pem") == v["device_id_public_key"])
        #expect(read("\(rid).alias.key.pem") == v["alias_private_key"])
        let attributes = try FileManager.default.attributesOfItem(atPath: out + "/\(rid).alias.key.pem")
        #expect((attributes[.posixPermissions] as? Int) == 0o600)
        #expect(r.stdout.split(separator: "\n").contains { $0.hasPrefix("Registration ID:") && $0.hasSuffix(" \(rid)") }, "\(r.stdout)")
        #expect(!r.stdout.contains(v["uds"]!) && !r.stderr.contains(v["uds"]!))
        // Exactly one fixed-nonce warning.
        #expect(r.stderr.components(separatedBy: "fixed ECDSA nonce").count == 2)
    }

    @Test("UDS from standard input, JSON output with thumbprints")
    func stdinAndJSON() throws {
        let ws = try Workspace()
        defer { ws.remove() }
        let r = try devkit(tiny(["--uds-file", "-", "--registration-id", "uppercase-uds", "--output-dir", ws.path, "--json"]),
                           stdin: "  \(Self.sampleUDS.uppercased())  \n")
        #expect(r.status == 0, "\(r.stderr)")
        let object = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [String: Any]
        #expect(object["registration_id"] as? String == "uppercase-uds")
        #expect(object["certificate"] as? String == ws.path + "/uppercase-uds.pem")
        let pem = ws.read("uppercase-uds.pem")!
        #expect(pem == Self.vectors.first { $0["id"] == "uppercase-uds" }!["alias_certificate"])
        // The thumbprints are those of the written certificate's DER.
        let der = Data(base64Encoded: pem.split(separator: "\n")[1].description)!
        #expect((object["sha1_thumbprint"] as? String)?.count == 40)
        #expect((object["sha256_thumbprint"] as? String)?.count == 64)
        #expect(der.count > 300)
    }

    @Test("invalid values exit 64 with one line and write nothing", arguments: [
        (["--registration-id", String(repeating: "a", count: 127)], "at most 126"),
        (["--registration-id", "Bad_ID"], "only a-z, 0-9"),
        (["--mac", "a4cf120b9e3", "--firmware-version", "1.6.2"], "not a MAC address"),
        (["--mac", "a4cf120b9e31", "--firmware-version", "1.6"], "not a firmware version"),
        (["--mac", "a4cf120b9e31"], "go together"),
        ([], "--registration-id"),
    ])
    func invalidValues(arguments: [String], message: String) throws {
        let ws = try Workspace()
        defer { ws.remove() }
        let r = try devkit(tiny(["--uds-file", ws.path + "/uds.hex", "--output-dir", ws.path + "/out"] + arguments))
        #expect(r.status == 64)
        #expect(r.stderr.contains(message), "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: ws.path + "/out"))
    }

    @Test("bad UDS files exit 64 and never echo the secret", arguments: [
        ("zz" + String(sampleUDS.dropFirst(2)), "non-hex character at position 1"),
        (String(sampleUDS.dropLast()), "has 63 characters"),
        (sampleUDS + "00", "has 66 characters"),
    ])
    func badUDS(contents: String, message: String) throws {
        let ws = try Workspace()
        defer { ws.remove() }
        try contents.write(toFile: ws.path + "/bad.hex", atomically: false, encoding: .utf8)
        let r = try devkit(tiny(["--uds-file", ws.path + "/bad.hex", "--registration-id", "x", "--output-dir", ws.path + "/out"]))
        #expect(r.status == 64)
        #expect(r.stderr.contains(message), "\(r.stderr)")
        #expect(!r.stderr.contains(String(Self.sampleUDS.dropFirst(2))))
        #expect(!FileManager.default.fileExists(atPath: ws.path + "/out"))
    }

    @Test("unreadable inputs exit 66")
    func unreadable() throws {
        let ws = try Workspace()
        defer { ws.remove() }
        let missingUDS = try devkit(tiny(["--uds-file", ws.path + "/nope", "--registration-id", "x", "--output-dir", ws.path]))
        #expect(missingUDS.status == 66)
        #expect(missingUDS.stderr.contains(ws.path + "/nope"))
        let missingBin = try devkit(["--bin", ws.path + "/x.bin", "--map", Self.firmware + "/Tiny.ino.map",
                                     "--uds-file", ws.path + "/uds.hex", "--registration-id", "x", "--output-dir", ws.path])
        #expect(missingBin.status == 66)
        #expect(ws.files == ["uds.hex"])
    }

    @Test("malformed firmware exits 65 naming file and problem, leaving no file")
    func malformed() throws {
        let ws = try Workspace()
        defer { ws.remove() }
        let map = try String(contentsOfFile: Self.firmware + "/Tiny.ino.map", encoding: .utf8)
        let noSymbol = map.split(separator: "\n").filter { !$0.contains("__stop_riot_fw = .") }.joined(separator: "\n")
        try noSymbol.write(toFile: ws.path + "/bad.map", atomically: false, encoding: .utf8)
        let r = try devkit(["--bin", Self.firmware + "/Tiny.ino.bin", "--map", ws.path + "/bad.map",
                            "--uds-file", ws.path + "/uds.hex", "--registration-id", "x", "--output-dir", ws.path])
        #expect(r.status == 65)
        #expect(r.stderr.contains("bad.map") && r.stderr.contains("__stop_riot_fw"))
        let elf = try Data(contentsOf: URL(fileURLWithPath: Self.firmware + "/Tiny.ino.elf"))
        try elf.prefix(1000).write(to: URL(fileURLWithPath: ws.path + "/short.elf"))
        let t = try devkit(["--elf", ws.path + "/short.elf", "--uds-file", ws.path + "/uds.hex", "--registration-id", "x", "--output-dir", ws.path])
        #expect(t.status == 65)
        #expect(t.stderr.contains("short.elf"))
        #expect(ws.files == ["bad.map", "short.elf", "uds.hex"])
    }

    @Test("an unwritable output directory exits 73 and leaves nothing")
    func unwritable() throws {
        let ws = try Workspace()
        defer { ws.remove() }
        // A regular file where the directory should be: fails even for root.
        try "x".write(toFile: ws.path + "/blocker", atomically: false, encoding: .utf8)
        let r = try devkit(tiny(["--uds-file", ws.path + "/uds.hex", "--registration-id", "x", "--output-dir", ws.path + "/blocker/out"]))
        #expect(r.status == 73, "\(r.stderr)")
        // The ID's own .pem is a directory: the rename fails; no key file or temporary stays.
        try FileManager.default.createDirectory(atPath: ws.path + "/out/y.pem", withIntermediateDirectories: true)
        try "keep".write(toFile: ws.path + "/out/y.pem/keep", atomically: false, encoding: .utf8)
        let s = try devkit(tiny(["--uds-file", ws.path + "/uds.hex", "--registration-id", "y", "--output-dir", ws.path + "/out", "--keys"]))
        #expect(s.status == 73, "\(s.stderr)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: ws.path + "/out") == ["y.pem"])
    }

    @Test("an output directory that cannot be created: 73 with the path and the errno's meaning")
    func outputDirectoryUnderProc() throws {
        let ws = try Workspace()
        defer { ws.remove() }
        let r = try devkit(tiny(["--uds-file", ws.path + "/uds.hex", "--registration-id", "x", "--output-dir", "/proc/nope"]))
        #expect(r.status == 73, "\(r.stderr)")
        #expect(r.stderr.contains("/proc/nope") && r.stderr.lowercased().contains("no such file or directory"), "\(r.stderr)")
        #expect(!r.stderr.contains("could not be completed"))
    }

    /// Root ignores file modes, so this runs devkit as `nobody`: an output directory
    /// in a directory only root may write is "Permission denied", 77 (sysexits), not 73.
    @Test("an output directory this user may not create: 77",
          .enabled(if: ConsoleCLIValidationTests.canRunAsNobody, "needs root, setpriv, and a devkit binary that nobody may run"))
    func outputDirectoryPermissionDenied() throws {
        let ws = try Workspace()
        defer { ws.remove() }
        #expect(chmod(ws.path, 0o755) == 0 && chmod(ws.path + "/uds.hex", 0o644) == 0)
        try FileManager.default.createDirectory(atPath: ws.path + "/locked", withIntermediateDirectories: false)
        #expect(chmod(ws.path + "/locked", 0o755) == 0)
        let r = try TestProcess.run(
            [ConsoleCLIValidationTests.setpriv!, "--reuid=65534", "--regid=65534", "--clear-groups", ListTestSupport.devkitBinary, "cert"]
                + tiny(["--uds-file", ws.path + "/uds.hex", "--registration-id", "x", "--output-dir", ws.path + "/locked/out"]),
            timeout: 120)
        #expect(r.status == 77, "\(r.stderr)")
        #expect(r.stderr.contains(ws.path + "/locked/out") && r.stderr.lowercased().contains("permission denied"), "\(r.stderr)")
    }

    /// An existing output directory this user may not write: the batch stops before its
    /// first device with one error and 77, instead of one error per device and 1 (a
    /// walkthrough saw 50,001 lines for 50,000 devices).
    @Test("a batch into a directory this user may not write: one error, 77",
          .enabled(if: ConsoleCLIValidationTests.canRunAsNobody, "needs root, setpriv, and a devkit binary that nobody may run"))
    func batchIntoAnUnwritableDirectory() throws {
        let ws = try Workspace()
        defer { ws.remove() }
        #expect(chmod(ws.path, 0o755) == 0)
        let lines = (0..<200).map { #"{"uds": "\#(Self.sampleUDS)", "registration_id": "dev-\#($0)"}"# }
        try lines.joined(separator: "\n").write(toFile: ws.path + "/b.jsonl", atomically: false, encoding: .utf8)
        #expect(chmod(ws.path + "/b.jsonl", 0o644) == 0)
        try FileManager.default.createDirectory(atPath: ws.path + "/out", withIntermediateDirectories: false)
        #expect(chmod(ws.path + "/out", 0o555) == 0)
        let r = try TestProcess.run(
            [ConsoleCLIValidationTests.setpriv!, "--reuid=65534", "--regid=65534", "--clear-groups", ListTestSupport.devkitBinary, "cert"]
                + tiny(["--batch", ws.path + "/b.jsonl", "--output-dir", ws.path + "/out"]),
            timeout: 120)
        #expect(r.status == 77, "\(r.stderr)")
        #expect(r.stderr.split(separator: "\n").filter { $0.contains("error") }.count == 1, "\(r.stderr)")
        #expect(r.stderr.contains("cannot write \(ws.path)/out: permission denied; choose a writable --output-dir"), "\(r.stderr)")
        #expect(r.stdout.isEmpty)
    }

    @Test("--batch: control characters in a line or the file's name reach stderr escaped, never raw")
    func batchControlCharactersAreEscaped() throws {
        let ws = try Workspace()
        defer { ws.remove() }
        let lines = [
            #"{"uds": "\#(Self.sampleUDS)", "registration_id": "a\u001b[31mb\u0000c"}"#,
            #"{"uds": "\#(Self.sampleUDS)", "mac": "a4\u001b[31m\u0000", "firmware_version": "1.6.2"}"#,
            #"{"uds": "\#(Self.sampleUDS)", "mac": "a4cf120b9e31", "firmware_version": "1\u001b[31m\u0000"}"#,
        ]
        try lines.joined(separator: "\n").write(toFile: ws.path + "/b.jsonl", atomically: false, encoding: .utf8)
        let r = try devkit(tiny(["--batch", ws.path + "/b.jsonl", "--output-dir", ws.path + "/out"]))
        #expect(r.status == 1, "\(r.stderr)")
        #expect(r.stderr.contains("'a4\\u{1B}[31m\\0'") && r.stderr.contains("'1\\u{1B}[31m\\0'"), "\(r.stderr)")
        #expect(r.stderr.contains("b.jsonl:1: ") && r.stderr.contains("\\u{1B}"), "\(r.stderr)")
        #expect(!r.stderr.contains("\u{1B}") && !r.stderr.contains("\u{0}"))

        // The batch file's own name, quoted in "cannot read".
        let named = try devkit(tiny(["--batch", ws.path + "/b\u{1B}[31m.jsonl", "--output-dir", ws.path + "/out"]))
        #expect(named.status == 66, "\(named.stderr)")
        #expect(named.stderr.contains("b\\u{1B}[31m.jsonl"), "\(named.stderr)")
        #expect(!named.stderr.contains("\u{1B}"))
    }

    @Test("--batch: a UDS in the wrong field (a shifted column) is not quoted back on stderr or in the JSON")
    func batchUDSInAnotherFieldIsMasked() throws {
        let ws = try Workspace()
        defer { ws.remove() }
        let lines = [
            #"{"uds": "\#(Self.sampleUDS)", "mac": "\#(Self.sampleUDS)", "firmware_version": "1.6.2"}"#,
            #"{"uds": "\#(Self.sampleUDS)", "mac": "a4cf120b9e31", "firmware_version": "\#(Self.sampleUDS)"}"#,
            #"{"uds": "\#(Self.sampleUDS)", "registration_id": "\#(Self.sampleUDS)"}"#,
        ]
        try lines.joined(separator: "\n").write(toFile: ws.path + "/b.jsonl", atomically: false, encoding: .utf8)
        let r = try devkit(tiny(["--batch", ws.path + "/b.jsonl", "--output-dir", ws.path + "/out", "--json"]))
        #expect(r.status == 1, "\(r.stderr)")
        #expect(r.stderr.contains("'***' is not a MAC address") && r.stderr.contains("'***' is not a firmware version"), "\(r.stderr)")
        #expect(r.stderr.contains("b.jsonl:3: \"registration_id\" is the line's UDS"), "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: ws.path + "/out/\(Self.sampleUDS).pem"))
        for text in [r.stdout, r.stderr] {
            #expect(!text.lowercased().contains(Self.sampleUDS.lowercased()), "\(text)")
        }
    }

    /// ArgumentParser's own refusal quotes the value ("The value '…' is invalid for
    /// '--mac <mac>'"): a UDS pasted into such an option is masked in that text too.
    @Test("a UDS given to a typed option is not quoted back by the usage error", arguments: [
        (["provision", "--mac", sampleUDS, "--firmware-version", "1.6.2"], "--mac <mac>"),
        (["info", "--port", "/dev/null", "--baud", sampleUDS], "--baud <baud>"),
    ])
    func udsInTypedOptionIsMasked(arguments: [String], option: String) throws {
        let r = try TestProcess.run([try TestProcess.devkitBinary] + arguments, timeout: 60)
        #expect(r.status == 64, "\(r.stderr)")
        #expect(r.stderr.contains("The value '***' is invalid for '\(option)'"), "\(r.stderr)")
        #expect(!r.stderr.lowercased().contains(Self.sampleUDS.lowercased()), "\(r.stderr)")
    }

    @Test("usage errors: firmware options", arguments: [
        ["--bin", "a.bin"], ["--map", "a.map"], ["--elf", "a.elf", "--bin", "a.bin", "--map", "a.map"], [],
    ])
    func firmwareUsage(firmware: [String]) throws {
        let r = try devkit(firmware + ["--uds-file", "u", "--registration-id", "x"])
        #expect(r.status == 64)
        #expect(r.stderr.contains("--"), "\(r.stderr)")
    }

    @Test("batch: every good line certified, a bad line reported by number, exit 1")
    func batch() throws {
        let ws = try Workspace()
        defer { ws.remove() }
        let lines = [
            #"{"uds": "\#(Self.sampleUDS)", "registration_id": "uppercase-uds"}"#,
            #"{"uds": "\#(Self.sampleUDS)", "mac": "a4:cf:12:0b:9e:31", "firmware_version": "1.3.0"}"#,
            "",
            #"{"uds": "nothex", "registration_id": "bad-one"}"#,
            #"{"uds": "\#(Self.sampleUDS)", "registration_id": "uppercase-uds"}"#,
            "not json",
        ]
        try lines.joined(separator: "\r\n").write(toFile: ws.path + "/devices.jsonl", atomically: false, encoding: .utf8)
        let r = try devkit(tiny(["--batch", ws.path + "/devices.jsonl", "--output-dir", ws.path + "/out", "--json"]))
        #expect(r.status == 1, "\(r.stderr)")
        #expect(r.stderr.contains("devices.jsonl:4:"))
        #expect(r.stderr.contains("devices.jsonl:5:") && r.stderr.contains("already appears on line 1"))
        #expect(r.stderr.contains("devices.jsonl:6:"))
        #expect(r.stderr.contains("3 of 5 devices failed (see the messages above); the other 2 were certified"), "\(r.stderr)")
        let files = try FileManager.default.contentsOfDirectory(atPath: ws.path + "/out").sorted()
        #expect(files == ["az-a4cf120b9e31v1v3v0.pem", "uppercase-uds.pem"])
        let expected = Dictionary(uniqueKeysWithValues: Self.vectors.map { ($0["registration_id"]!, $0["alias_certificate"]!) })
        for file in files {
            let id = String(file.dropLast(4))
            #expect(try String(contentsOfFile: ws.path + "/out/" + file, encoding: .utf8) == expected[id])
        }
        let jsonLines = r.stdout.split(separator: "\n")
        #expect(jsonLines.count == 5)
        #expect(jsonLines.filter { $0.contains(#""error""#) }.count == 3)
    }

    /// Lines are certified in groups whose keys share one field inversion: failed lines
    /// before, between and after good ones must not shift whose keys a certificate gets.
    @Test("batch: good lines after failed ones in the same group get exactly their own certificates")
    func failuresInsideAGroup() throws {
        let ws = try Workspace()
        defer { ws.remove() }
        let lines = [
            "not json",
            #"{"uds": "\#(Self.sampleUDS)", "registration_id": "uppercase-uds"}"#,
            #"{"uds": "nothex", "registration_id": "bad-one"}"#,
            #"{"uds": "\#(Self.sampleUDS)", "registration_id": "uppercase-uds"}"#,
            #"{"uds": "\#(Self.sampleUDS)", "mac": "a4:cf:12:0b:9e:31", "firmware_version": "1.3.0"}"#,
            "{}",
        ]
        try lines.joined(separator: "\n").write(toFile: ws.path + "/devices.jsonl", atomically: false, encoding: .utf8)
        let r = try devkit(tiny(["--batch", ws.path + "/devices.jsonl", "--output-dir", "-", "--json"]))
        #expect(r.status == 1, "\(r.stderr)")
        let expected = Dictionary(uniqueKeysWithValues: Self.vectors.map { ($0["registration_id"]!, $0["alias_certificate"]!) })
        let objects = try r.stdout.split(separator: "\n").map {
            try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
        }
        // Each line's result in its place: a failure names its line, a success its ID.
        #expect(objects.map { ($0["line"] as? Int).map { "line \($0)" } ?? ($0["registration_id"] as? String ?? "?") }
            == ["line 1", "uppercase-uds", "line 3", "line 4", "az-a4cf120b9e31v1v3v0", "line 6"])
        for object in objects {
            guard let id = object["registration_id"] as? String else { continue }
            #expect(object["certificate_pem"] as? String == expected[id], "\(id)")
        }
    }

    /// 40 devices with their own UDSs and failed lines on both sides of a group's
    /// boundary (groups of 16): each certificate is the one its device gets alone.
    @Test("batch: across groups, with failures at their edges, each device gets its own certificate")
    func groupsAgainstSingleDevices() throws {
        let ws = try Workspace()
        defer { ws.remove() }
        var generator = SystemRandomNumberGenerator()
        var lines: [String] = []
        var devices: [Int: (uds: String, id: String)] = [:]
        for i in 0..<40 {
            if [0, 15, 16, 17, 31, 39].contains(i) {
                lines.append(#"{"uds": "nothex", "registration_id": "bad-\#(i)"}"#)
                continue
            }
            let uds = (0..<32).map { _ in String(UInt8.random(in: 0...255, using: &generator), radix: 16) }
                .map { $0.count == 1 ? "0" + $0 : $0 }.joined()
            devices[i + 1] = (uds, "dev-\(i)")
            lines.append(#"{"uds": "\#(uds)", "registration_id": "dev-\#(i)"}"#)
        }
        try lines.joined(separator: "\n").write(toFile: ws.path + "/devices.jsonl", atomically: false, encoding: .utf8)
        let r = try devkit(tiny(["--batch", ws.path + "/devices.jsonl", "--output-dir", "-", "--json", "--jobs", "2"]))
        #expect(r.status == 1, "\(r.stderr)")
        let firmware = MeasuredFirmware(try RIoTImage(
            bin: Array(try Data(contentsOf: URL(fileURLWithPath: Self.firmware + "/Tiny.ino.bin"))),
            map: Array(try Data(contentsOf: URL(fileURLWithPath: Self.firmware + "/Tiny.ino.map")))))
        let objects = try r.stdout.split(separator: "\n").map {
            try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
        }
        #expect(objects.count == 40)
        for (index, object) in objects.enumerated() {
            guard let device = devices[index + 1] else {
                #expect(object["line"] as? Int == index + 1)
                continue
            }
            let alone = try firmware.credentials(uds: UDS(hex: device.uds), registrationID: RegistrationID(device.id))
            #expect(object["registration_id"] as? String == device.id)
            #expect(object["certificate_pem"] as? String == alone.aliasCertificatePEM, "line \(index + 1)")
        }
    }

    @Test("--from-registry re-issues a recorded board's certificate from its recorded UDS")
    func fromRegistry() throws {
        let v = Self.vectors.first { $0["id"] == "devkit-size-image" }!
        let ws = try Workspace()
        defer { ws.remove() }
        let registry = try Registry(path: ws.path + "/registry.sqlite")
        // A board the workflow got as far as its MAC (the board confirmed its UDS).
        let board = try registry.recordNewBoard(uds: UDS(hex: v["uds"]!), alsoMark: [.udsSent]).id!
        try registry.markStep(.udsConfirmed, boardID: board)
        try registry.markStep(.versionRead, boardID: board, update: BoardUpdate(firmwareVersion: FirmwareVersion(v["firmware_version"]!)))
        try registry.markStep(
            .macRead, boardID: board, update: BoardUpdate(mac: MACAddress(v["mac"]!), registrationID: RegistrationID(v["registration_id"]!)))
        let r = try devkit([
            "--from-registry", "--registry", ws.path + "/registry.sqlite",
            "--bin", Self.firmware + "/DevKitDPS.ino.bin", "--map", Self.firmware + "/DevKitDPS.ino.map",
            "--output-dir", ws.path + "/out",
        ])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(ws.read("out/\(v["registration_id"]!).pem") == v["alias_certificate"])
        #expect(!r.stdout.contains(v["uds"]!) && !r.stderr.contains(v["uds"]!))
        // The UDS comes from the registry: giving one as well is a usage error.
        let both = try devkit([
            "--from-registry", "--registry", ws.path + "/registry.sqlite", "--elf", Self.firmware + "/DevKitDPS.ino.elf",
            "--uds-file", ws.path + "/uds.hex",
        ])
        #expect(both.status == 64)
    }

    /// `az-` + 12 + `v` = 16 characters before the version's own.
    static func longVersion(idLength: Int) -> String { "1.6." + String(repeating: "2", count: idLength - 16 - 4) }

    @Test("a derived ID over 126 characters is refused, as a given one is (exit 64, nothing written)")
    func derivedIDLengthIsChecked() throws {
        let ws = try Workspace()
        defer { ws.remove() }
        let r = try devkit(tiny([
            "--uds-file", ws.path + "/uds.hex", "--output-dir", ws.path + "/out",
            "--mac", "a4cf120b9e31", "--firmware-version", Self.longVersion(idLength: 220),
        ]))
        #expect(r.status == 64, "\(r.stderr)")
        #expect(r.stderr.contains("has 220 characters") && r.stderr.contains("at most 126"), "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: ws.path + "/out"))
        // 126 is the limit, not past it: written, with the DPS warning (over 64).
        let at126 = try devkit(tiny([
            "--uds-file", ws.path + "/uds.hex", "--output-dir", ws.path + "/out",
            "--mac", "A4:CF:12:0B:9E:31", "--firmware-version", Self.longVersion(idLength: 126),
        ]))
        #expect(at126.status == 0, "\(at126.stderr)")
        let id = "az-a4cf120b9e31v1v6v" + String(repeating: "2", count: 106)
        #expect(id.count == 126)
        #expect(ws.files.contains("out") && FileManager.default.fileExists(atPath: ws.path + "/out/\(id).pem"))
        #expect(at126.stderr.contains("DPS allows at most 64 for an X.509 enrollment (its certificate's subject CN): DPS and devkit dps enroll refuse it"),
                "\(at126.stderr)")
        let over = try devkit(tiny([
            "--uds-file", ws.path + "/uds.hex", "--output-dir", ws.path + "/out",
            "--mac", "a4cf120b9e31", "--firmware-version", Self.longVersion(idLength: 127),
        ]))
        #expect(over.status == 64 && over.stderr.contains("has 127 characters"), "\(over.stderr)")
        // A '-' at either end: the firmware takes it, DPS does not; said too.
        let dash = try devkit(tiny([
            "--uds-file", ws.path + "/uds.hex", "--output-dir", ws.path + "/out", "--registration-id=-bench-7",
        ]))
        #expect(dash.status == 0 && dash.stderr.contains("starts or ends with '-'"), "\(dash.stderr)")
        #expect(dash.stderr.contains("DPS and devkit dps enroll refuse it"), "\(dash.stderr)")
    }

    @Test("--batch: a line whose derived ID is over 126 characters fails alone")
    func batchDerivedIDLengthIsChecked() throws {
        let ws = try Workspace()
        defer { ws.remove() }
        let lines = [
            #"{"uds": "\#(Self.sampleUDS)", "mac": "a4cf120b9e31", "firmware_version": "\#(Self.longVersion(idLength: 220))"}"#,
            #"{"uds": "\#(Self.sampleUDS)", "mac": "a4cf120b9e31", "firmware_version": "1.6.2"}"#,
        ]
        try lines.joined(separator: "\n").write(toFile: ws.path + "/b.jsonl", atomically: false, encoding: .utf8)
        let r = try devkit(tiny(["--batch", ws.path + "/b.jsonl", "--output-dir", ws.path + "/out"]))
        #expect(r.status == 1, "\(r.stderr)")
        #expect(r.stderr.contains("b.jsonl:1: ") && r.stderr.contains("has 220 characters"), "\(r.stderr)")
        #expect(!r.stderr.contains("b.jsonl:2:"), "\(r.stderr)")
        #expect(FileManager.default.fileExists(atPath: ws.path + "/out/az-a4cf120b9e31v1v6v2.pem"))
        #expect(!r.stderr.contains(Self.sampleUDS))
    }

    @Test("--output-dir - writes no file: the PEM goes to stdout, or into the JSON")
    func streamOutput() throws {
        let v = Self.vectors.first { $0["id"] == "uppercase-uds" }!
        let ws = try Workspace()
        defer { ws.remove() }
        let plain = try devkit(tiny(["--uds-file", ws.path + "/uds.hex", "--registration-id", "uppercase-uds", "--output-dir", "-"]))
        #expect(plain.status == 0, "\(plain.stderr)")
        #expect(plain.stdout == v["alias_certificate"])
        #expect(plain.stderr.contains("uppercase-uds"))
        let line = #"{"uds": "\#(Self.sampleUDS)", "registration_id": "uppercase-uds"}"#
        try line.write(toFile: ws.path + "/one.jsonl", atomically: false, encoding: .utf8)
        let batch = try devkit(tiny(["--batch", ws.path + "/one.jsonl", "--output-dir", "-", "--json"]))
        #expect(batch.status == 0, "\(batch.stderr)")
        let object = try JSONSerialization.jsonObject(with: Data(batch.stdout.utf8)) as! [String: Any]
        #expect(object["certificate_pem"] as? String == v["alias_certificate"])
        #expect(object["certificate"] == nil)
        #expect(ws.files == ["one.jsonl", "uds.hex"])
        // With --device-cert, a batch prints what one device prints: each device's
        // Alias certificate, then its DeviceID certificate.
        let single = try devkit(tiny(["--uds-file", ws.path + "/uds.hex", "--registration-id", "uppercase-uds", "--output-dir", "-", "--device-cert"]))
        #expect(single.status == 0, "\(single.stderr)")
        #expect(single.stdout.hasPrefix(v["alias_certificate"]!) && single.stdout.count > v["alias_certificate"]!.count)
        let other = #"{"uds": "\#(String(repeating: "ab", count: 32))", "registration_id": "other"}"#
        try (line + "\n" + other + "\n").write(toFile: ws.path + "/two.jsonl", atomically: false, encoding: .utf8)
        try String(repeating: "ab", count: 32).write(toFile: ws.path + "/other.hex", atomically: false, encoding: .utf8)
        let second = try devkit(tiny(["--uds-file", ws.path + "/other.hex", "--registration-id", "other", "--output-dir", "-", "--device-cert"]))
        let both = try devkit(tiny(["--batch", ws.path + "/two.jsonl", "--output-dir", "-", "--device-cert"]))
        #expect(both.status == 0, "\(both.stderr)")
        #expect(both.stdout == single.stdout + second.stdout)
        #expect(both.stdout.components(separatedBy: "-----BEGIN CERTIFICATE-----").count == 5)
        // Private keys never go to stdout.
        let keys = try devkit(tiny(["--uds-file", ws.path + "/uds.hex", "--registration-id", "x", "--output-dir", "-", "--keys"]))
        #expect(keys.status == 64)
        #expect(keys.stdout.isEmpty)
    }

    /// 1,200 lines (several windows of 512 at --jobs 2) with bad lines, a duplicate
    /// and a blank line spread through them.
    static func jobsBatch() -> String {
        var lines: [String] = []
        for i in 0..<1_200 {
            let uds = String(repeating: "0", count: 58) + String(format: "%06x", i + 1)
            switch i {
            case 7, 700: lines.append(#"{"uds": "nothex", "registration_id": "bad-\#(i)"}"#)
            case 515: lines.append(#"{"uds": "\#(uds)", "registration_id": "dev-3"}"#)  // line 4's ID again
            case 900: lines.append("")
            case 1_100: lines.append("not json")
            default: lines.append(#"{"uds": "\#(uds)", "registration_id": "dev-\#(i)"}"#)
            }
        }
        return lines.joined(separator: "\n")
    }

    @Test("--jobs 2 and 8 print and write exactly what --jobs 1 does, in input order, with the same exit code",
          arguments: [["--output-dir", "-", "--json"], ["--output-dir", "-"], ["--json"], []])
    func jobsKeepOrder(output: [String]) throws {
        let ws = try Workspace()
        defer { ws.remove() }
        try Self.jobsBatch().write(toFile: ws.path + "/b.jsonl", atomically: false, encoding: .utf8)
        var runs: [(ListProcessResult, [String: String])] = []
        for jobs in ["1", "2", "8"] {
            let dir = ws.path + "/out" + jobs
            let args = output.contains("--output-dir") ? output : output + ["--output-dir", dir]
            let r = try TestProcess.run(
                [ListTestSupport.devkitBinary, "cert"] + tiny(["--batch", ws.path + "/b.jsonl", "--jobs", jobs] + args),
                timeout: 120)
            #expect(r.status == 1, "\(r.stderr)")
            var files: [String: String] = [:]
            for name in (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [] {
                files[name] = try String(contentsOfFile: dir + "/" + name, encoding: .utf8)
            }
            runs.append((r, files))
        }
        let one = runs[0]
        for (two, jobs) in [(runs[1], "2"), (runs[2], "8")] {
            // Paths differ only by the directory's name.
            #expect(one.0.stdout == two.0.stdout.replacingOccurrences(of: "/out\(jobs)/", with: "/out1/"))
            #expect(one.0.stderr == two.0.stderr)
            #expect(one.1 == two.1)
        }
        #expect(one.0.stderr.contains("b.jsonl:8: ") && one.0.stderr.contains("b.jsonl:701: "))
        #expect(one.0.stderr.contains("b.jsonl:516: ") && one.0.stderr.contains("already appears on line 4"))
        #expect(one.0.stderr.contains("4 of 1199 devices failed"), "\(one.0.stderr)")
        if output.isEmpty { #expect(one.1.count == 1_195) }
        // In input order: dev-0, dev-1, … with the failures in their places.
        if output == ["--output-dir", "-", "--json"] {
            let lines = one.0.stdout.split(separator: "\n")
            #expect(lines.count == 1_199)
            #expect(lines[0].contains(#""registration_id":"dev-0""#) && lines[1_198].contains(#""registration_id":"dev-1199""#))
            #expect(lines[7].contains(#""line":8"#))
        }
    }

    @Test("--batch: a line that cannot be read ends the batch after the lines before it are printed (66, its number)",
          arguments: ["1", "2"])
    func unreadableLineMidBatch(jobs: String) throws {
        let ws = try Workspace()
        defer { ws.remove() }
        // 37 devices (two groups and a part), then a "line" over the 64 KiB line limit.
        var text = (0..<37).map { i in
            #"{"uds": "\#(String(repeating: "0", count: 58) + String(format: "%06x", i + 1))", "registration_id": "dev-\#(i)"}"#
        }.joined(separator: "\n") + "\n"
        text += String(repeating: "x", count: 70_000) + "\n" + #"{"uds": "\#(String(repeating: "ab", count: 32))", "registration_id": "after"}"# + "\n"
        try text.write(toFile: ws.path + "/b.jsonl", atomically: false, encoding: .utf8)
        let r = try TestProcess.run(
            [ListTestSupport.devkitBinary, "cert"] + tiny(["--batch", ws.path + "/b.jsonl", "--jobs", jobs, "--output-dir", "-", "--json"]),
            timeout: 120)
        #expect(r.status == 66, "\(r.stderr)")
        #expect(r.stderr.contains("line 38") && r.stderr.contains("64 KiB"), "\(r.stderr)")
        let lines = r.stdout.split(separator: "\n")
        #expect(lines.count == 37)
        #expect(lines.enumerated().allSatisfy { $1.contains(#""registration_id":"dev-\#($0)""#) })
        #expect(!r.stdout.contains("after"))
    }

    @Test("output that cannot be written is an error (74), not a silent exit 0: one device, a batch, --version",
          arguments: ["one", "batch 1", "batch 2", "version"])
    func standardOutputLost(mode: String) throws {
        let ws = try Workspace()
        defer { ws.remove() }
        let uds = String(repeating: "ab", count: 32)
        try (uds + "\n").write(toFile: ws.path + "/u.hex", atomically: false, encoding: .utf8)
        try (0..<40).map { #"{"uds": "\#(uds)", "registration_id": "dev-\#($0)"}"# }.joined(separator: "\n")
            .write(toFile: ws.path + "/b.jsonl", atomically: false, encoding: .utf8)
        let arguments: [String] = switch mode {
        case "one": ["cert"] + tiny(["--uds-file", ws.path + "/u.hex", "--registration-id", "dev-1", "--output-dir", "-"])
        case "version": ["--version"]
        default: ["cert"] + tiny(["--batch", ws.path + "/b.jsonl", "--jobs", String(mode.last!), "--output-dir", "-", "--json"])
        }
        // /dev/full: every write fails with ENOSPC.
        let quoted = (try [ListTestSupport.devkitBinary] + arguments).map { "'\($0)'" }.joined(separator: " ")
        let r = try TestProcess.run(["/bin/sh", "-c", "exec \(quoted) > /dev/full"], timeout: 120)
        #expect(r.status == 74, "\(r.stderr)")
        #expect(r.stderr.contains("cannot write standard output: no space left on device"), "\(r.stderr)")
    }

    /// `| head` with SIGPIPE ignored (SwiftNIO ignores it once a socket is open, and
    /// an ignored signal is inherited): the reader leaving is not reported as an error,
    /// and the process ends as SIGPIPE would have ended it.
    @Test("a reader that goes away (EPIPE) ends the batch quietly, as SIGPIPE would")
    func readerGoneQuietly() throws {
        let ws = try Workspace()
        defer { ws.remove() }
        let uds = String(repeating: "ab", count: 32)
        try (0..<2_000).map { #"{"uds": "\#(uds)", "registration_id": "dev-\#($0)"}"# }.joined(separator: "\n")
            .write(toFile: ws.path + "/b.jsonl", atomically: false, encoding: .utf8)
        let words = (try [ListTestSupport.devkitBinary, "cert"]
            + tiny(["--batch", ws.path + "/b.jsonl", "--output-dir", "-", "--json", "--quiet"])).map { "'\($0)'" }.joined(separator: " ")
        let r = try TestProcess.run(
            ["/bin/bash", "-c", "trap '' PIPE; \(words) | head -c 10 > /dev/null; echo \"status ${PIPESTATUS[0]}\" >&2"],
            timeout: 120)
        #expect(r.stderr.contains("status 141"), "\(r.stderr)")
        #expect(!r.stderr.contains("cannot write standard output"), "\(r.stderr)")
    }

    @Test("--batch with no devices: exit 0, and a warning that nothing was certified")
    func emptyBatchWarns() throws {
        let ws = try Workspace()
        defer { ws.remove() }
        let r = try devkit(tiny(["--batch", "-", "--output-dir", ws.path + "/out"]), stdin: "\n  \n")
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stderr.contains("standard input holds no devices") && r.stderr.contains("nothing was certified"), "\(r.stderr)")
    }

    @Test("--jobs 0 is refused (exit 64)")
    func jobsZero() throws {
        let r = try devkit(tiny(["--batch", "-", "--jobs", "0"]), stdin: "")
        #expect(r.status == 64, "\(r.stderr)")
        #expect(r.stderr.contains("--jobs"), "\(r.stderr)")
    }

    @Test("--jobs without --batch or --from-registry is refused (64), not ignored")
    func jobsWithoutABatch() throws {
        let r = try devkit(tiny(["--registration-id", "dev-1", "--uds-file", "-", "--jobs", "2"]), stdin: String(repeating: "ab", count: 32) + "\n")
        #expect(r.status == 64, "\(r.stderr)")
        #expect(r.stderr.contains("--jobs goes with --batch"), "\(r.stderr)")
    }

    @Test("--help teaches with an example")
    func help() throws {
        let r = try TestProcess.run([ListTestSupport.devkitBinary, "cert", "--help"], timeout: 120)
        #expect(r.status == 0)
        #expect(r.stdout.contains("--batch") && r.stdout.contains("Examples:") && r.stdout.contains("az-<mac>v"))
    }
}
