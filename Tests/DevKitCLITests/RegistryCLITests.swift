import DevKitModel
import DevKitRegistry
import DevKitTestSupport
import Foundation
import Testing

/// Runs the built `devkit` binary with a deadline, no terminal, stdin from /dev/null.
/// `status` is the exit code, or the signal number when a signal ended it, or
/// ``deadlinePassed`` when the harness killed it: that SIGKILL is not the process's
/// own (a crash test's self-kill must not be mistaken for a run that was too slow).
struct RegistryCLIProcess {
    let status: Int32
    let stdout: String
    let stderr: String

    /// The status of a run the deadline ended.
    static let deadlinePassed: Int32 = -1

    static func run(_ arguments: [String], environment: [String: String]? = nil,
                    timeout: Double = 120) throws -> RegistryCLIProcess {
        let r = try TestProcess.run(
            [TestProcess.devkitBinary] + arguments, environment: environment ?? [:], timeout: timeout)
        if r.timedOut {
            return RegistryCLIProcess(
                status: deadlinePassed, stdout: r.stdout,
                stderr: r.stderr + "\n[test harness: killed after its \(Int(timeout)) s deadline]")
        }
        return RegistryCLIProcess(status: r.signal ?? r.status, stdout: r.stdout, stderr: r.stderr)
    }
}

func registryTestDirectory() -> String {
    var template = Array((NSTemporaryDirectory() + "devkit-cli-registry-XXXXXX").utf8CString)
    return String(cString: mkdtemp(&template)!)
}

@Suite struct RegistryCLITests {
    static let uds = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"

    /// A --registry that looks like a URL but is not a PostgreSQL one was taken for a
    /// file path: an SQLite registry under the working directory (the URL's password
    /// in its directory names), exit 0, the shared registry never told.
    @Test("a mistyped registry URL is refused (64), its password masked, nothing created",
          arguments: ["postgresq://devkit:Sekr1t@db.lab/devkit", "POSTGRESQL://devkit:Sekr1t@db.lab/devkit",
                      " postgresql://devkit@db.lab/devkit", "mysql://devkit:Sekr1t@db.lab/devkit",
                      "postgresql:/devkit:Sekr1t@db.lab/devkit", "postgresql//devkit:Sekr1t@db.lab/devkit",
                      "jdbc:postgresql://db.lab:5432/devkit?user=devkit&password=Sekr1t",
                      "postgresql:://devkit:Sekr1t@db.lab/devkit", "DATABASE_URL=postgresql://devkit:Sekr1t@db.lab/devkit",
                      "postgresql:devkit:Sekr1t@db.lab/devkit", "\"postgresql://devkit:Sekr1t@db.lab/devkit\""])
    func mistypedURL(url: String) throws {
        let dir = registryTestDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for command in [["registry", "list"], ["registry", "upgrade"], ["registry", "export"]] {
            let words = (try [TestProcess.devkitBinary] + command + ["--registry", url, "--key-file", dir + "/none.key"])
                .map { "'\($0)'" }.joined(separator: " ")
            let r = try TestProcess.run(["/bin/sh", "-c", "cd '\(dir)' && exec \(words)"], timeout: 120)
            #expect(r.status == 64, "\(command): \(r.stderr)")
            #expect(r.stderr.contains("postgresql:// or postgres://") && !r.stderr.contains("Sekr1t"), "\(command): \(r.stderr)")
            #expect(try FileManager.default.contentsOfDirectory(atPath: dir).isEmpty, "\(command) created a file")
        }
    }

    /// Paths that only look a little like URLs are still paths: a missing file is 66, not 64.
    @Test("a path with a colon or a 'postgres' name is still a file path", arguments: ["./x://y.sqlite", "postgres.sqlite", "a:b.sqlite"])
    func pathsThatAreNotURLs(path: String) throws {
        let dir = registryTestDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let words = (try [TestProcess.devkitBinary, "registry", "list", "--registry", path, "--key-file", dir + "/k"])
            .map { "'\($0)'" }.joined(separator: " ")
        let r = try TestProcess.run(["/bin/sh", "-c", "cd '\(dir)' && exec \(words)"], timeout: 120)
        #expect(r.status == 66 && r.stderr.contains("no registry at"), "\(path): \(r.stderr)")
    }

    /// A server that is not there is said in words with what to check, not in NIO's
    /// (`connect(descriptor:addr:size:): No such file or directory) (errno: 2)`).
    @Test("an unreachable server: 75, the socket or address and what to check")
    func unreachableServerInWords() throws {
        let dir = registryTestDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let socket = try RegistryCLIProcess.run(
            ["registry", "list", "--registry", "postgresql://devkit@/devkit?host=\(dir)&port=55498", "--key-file", dir + "/k"])
        #expect(socket.status == 75, "\(socket.stderr)")
        #expect(socket.stderr.contains("no server socket for that port in that directory")
            && !socket.stderr.contains("descriptor:addr"), "\(socket.stderr)")
        let tcp = try RegistryCLIProcess.run(
            ["registry", "list", "--registry", "postgresql://devkit@127.0.0.1:1/devkit?sslmode=disable", "--key-file", dir + "/k"])
        #expect(tcp.status == 75, "\(tcp.stderr)")
        #expect(tcp.stderr.contains("cannot connect to 127.0.0.1:1: connection refused: nothing listens there")
            && !tcp.stderr.contains("SingleConnectionFailure"), "\(tcp.stderr)")
        // provision --json says it on stdout too, as a failed step (a script reads the last line).
        let firmware = CertCommandTests.firmware + "/Tiny.ino"
        let provision = try RegistryCLIProcess.run(
            ["provision", "--json", "--port", "/dev/null", "--bin", firmware + ".bin", "--map", firmware + ".map",
             "--generate-uds", "--output-dir", dir + "/out", "--registry", "postgresql://devkit@127.0.0.1:1/devkit?sslmode=disable",
             "--key-file", dir + "/k"])
        #expect(provision.status == 75, "\(provision.stderr)")
        let last = try #require(provision.stdout.split(separator: "\n").last.map(String.init), "\(provision.stderr)")
        let event = try #require(try JSONSerialization.jsonObject(with: Data(last.utf8)) as? [String: Any])
        #expect(event["stage"] as? String == "record" && event["status"] as? String == "failed", "\(last)")
        #expect((event["message"] as? String)?.contains("nothing listens there") == true, "\(last)")
    }

    /// A registry with one finished and one interrupted board.
    func populated() throws -> (dir: String, db: String) {
        let dir = registryTestDirectory()
        let db = dir + "/registry.sqlite"
        let registry = try Registry(path: db)
        let done = try registry.recordNewBoard(uds: UDS(hex: Self.uds), usbSerial: "066EFF3") .id!
        try markSteps(registry, board: done, certificatePath: "/out/x.pem")
        let cut = try registry.recordNewBoard(uds: UDS(hex: String(repeating: "ab", count: 32))).id!
        try registry.markStep(.udsSent, boardID: cut)
        try registry.markFailed(boardID: cut, error: "board unplugged, with a \"quote\", and a comma")
        return (dir, db)
    }

    /// Marks `board`'s steps after recording, in order, each with the values it
    /// records, up to `last` (all when nil).
    func markSteps(
        _ registry: Registry, board: Int64, certificatePath: String, through last: ProvisioningStep? = nil,
        mac: String = "a4cf120b9e31"
    ) throws {
        for step in ProvisioningStep.allCases.dropFirst() {
            let update: BoardUpdate = switch step {
            case .versionRead: BoardUpdate(firmwareVersion: try FirmwareVersion("1.6.2"))
            case .macRead: BoardUpdate(mac: try MACAddress(mac), registrationID: try RegistrationID("az-\(mac)v1v6v2"))
            case .certificateWritten: BoardUpdate(certificateSHA1: "0A1B", certificateSHA256: "2C3D", certificatePath: certificatePath)
            default: BoardUpdate()
            }
            try registry.markStep(step, boardID: board, update: update)
            if step == last { break }
        }
    }

    /// Each row records its station (SQLite too): `registry list --station` filters,
    /// list and show display it, JSON carries it; rows of an older devkit have none.
    @Test func stationsAreRecordedShownAndFiltered() throws {
        let dir = registryTestDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let db = dir + "/registry.sqlite"
        let registry = try Registry(path: db)
        try registry.recordNewBoard(uds: UDS(hex: Self.uds), mac: MACAddress("a4cf120b0001"), station: "line-1")
        try registry.recordNewBoard(uds: UDS(hex: String(repeating: "ab", count: 32)), mac: MACAddress("a4cf120b0002"), station: "line-2")
        try registry.recordNewBoard(uds: UDS(hex: String(repeating: "cd", count: 32)), mac: MACAddress("a4cf120b0003"))

        let all = try RegistryCLIProcess.run(["registry", "list", "--registry", db, "--json"])
        let boards = try #require(try JSONSerialization.jsonObject(with: Data(all.stdout.utf8)) as? [[String: Any]])
        #expect(boards.map { $0["station"] as? String } == ["line-1", "line-2", nil])
        let one = try RegistryCLIProcess.run(["registry", "list", "--registry", db, "--station", "line-2"])
        #expect(one.status == 0 && one.stdout.contains("STATION") && one.stdout.contains("a4cf120b0002"), "\(one.stdout)")
        #expect(!one.stdout.contains("a4cf120b0001") && !one.stdout.contains("a4cf120b0003"), "\(one.stdout)")
        let none = try RegistryCLIProcess.run(["registry", "list", "--registry", db, "--station", "line-9"])
        #expect(none.status == 0 && none.stdout.contains("No boards recorded by station line-9"), "\(none.stdout)")
        let show = try RegistryCLIProcess.run(["registry", "show", "a4cf120b0001", "--registry", db])
        #expect(show.stdout.contains("Station") && show.stdout.contains("line-1"), "\(show.stdout)")
    }

    /// A board provisioned to the end on two stations (different output directories):
    /// the first row is not marked in the database, but every listing says a later
    /// row holds the board now (it showed `done` twice).
    @Test func aBoardProvisionedAgainElsewhereShowsItsLaterRow() throws {
        let dir = registryTestDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let db = dir + "/registry.sqlite"
        let registry = try Registry(path: db)
        for (station, output) in [("line-1", "/a/x.pem"), ("line-2", "/b/x.pem")] {
            let id = try registry.recordNewBoard(
                uds: try UDS(hex: station == "line-1" ? Self.uds : String(repeating: "cd", count: 32)), mac: nil, usbSerial: nil, registrationID: nil, firmwareVersion: nil,
                provisionSettings: nil, station: station, alsoMark: []).id!
            try markSteps(registry, board: id, certificatePath: output)
        }
        // A third run recorded the board by its MAC and stopped before the board confirmed
        // the UDS: the board may still hold row 2's, so row 2 is not shown superseded.
        try registry.recordNewBoard(
            uds: try UDS(hex: String(repeating: "ef", count: 32)), mac: try MACAddress("a4cf120b9e31"), usbSerial: nil,
            registrationID: nil, firmwareVersion: nil, provisionSettings: nil, station: "line-3", alsoMark: [])
        let list = try RegistryCLIProcess.run(["registry", "list", "--registry", db, "--station", "line-1"])
        #expect(list.status == 0 && list.stdout.contains("superseded by #2"), "\(list.stdout)\(list.stderr)")
        let json = try RegistryCLIProcess.run(["registry", "list", "--registry", db, "--json"])
        let rows = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [[String: Any]])
        #expect(rows.map { $0["superseded_by"] as? Int } == [2, nil, nil])
        let show = try RegistryCLIProcess.run(["registry", "show", "1", "--registry", db])
        #expect(show.stdout.contains("superseded by #2"), "\(show.stdout)")
        let latest = try RegistryCLIProcess.run(["registry", "show", "2", "--registry", db])
        #expect(!latest.stdout.contains("superseded"), "\(latest.stdout)")
        let csv = try RegistryCLIProcess.run(["registry", "export", "--format", "csv", "--registry", db])
        let lines = csv.stdout.split(separator: "\r\n").map { $0.split(separator: ",", omittingEmptySubsequences: false) }
        let column = try #require(lines.first?.firstIndex(of: "superseded_by"))
        #expect(lines.dropFirst().map { String($0[column]) } == ["2", "", ""])
    }

    @Test func listShowsBoardsWithoutSecrets() throws {
        let (dir, db) = try populated()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let r = try RegistryCLIProcess.run(["registry", "list", "--registry", db])
        #expect(r.status == 0)
        #expect(r.stdout.contains("a4cf120b9e31"))
        #expect(r.stdout.contains("az-a4cf120b9e31v1v6v2"))
        #expect(r.stdout.contains("done"))
        #expect(r.stdout.contains("failed"))
        #expect(!r.stdout.contains(Self.uds))
        // The unfinished board: how to finish it, on stderr (stdout stays the table).
        #expect(r.stderr.contains("`devkit provision --resume 2 --registry \(db) --port PORT` finishes it"), "\(r.stderr)")
        #expect(r.stderr.contains("`devkit registry show 2 --registry \(db)` says where it stopped"), "\(r.stderr)")

        let j = try RegistryCLIProcess.run(["registry", "list", "--registry", db, "--unfinished", "--json"])
        #expect(j.status == 0)
        let rows = try #require(try JSONSerialization.jsonObject(with: Data(j.stdout.utf8)) as? [[String: Any]])
        #expect(rows.count == 1)
        #expect(rows.first?["state"] as? String == "failed")
        #expect(rows.first?["next_step"] as? String == "uds_confirmed")
        #expect(rows.first?["uds"] == nil)
        #expect(rows.first?["mac"] is NSNull)
    }

    @Test func showHidesTheUDSUnlessAsked() throws {
        let (dir, db) = try populated()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for key in ["1", "A4:CF:12:0B:9E:31", "az-a4cf120b9e31v1v6v2"] {
            let r = try RegistryCLIProcess.run(["registry", "show", key, "--registry", db])
            #expect(r.status == 0, "\(key): \(r.stderr)")
            #expect(r.stdout.contains("az-a4cf120b9e31v1v6v2"))
            #expect(r.stdout.contains("0A1B"))
            #expect(!r.stdout.contains(Self.uds))
        }
        let secret = try RegistryCLIProcess.run(["registry", "show", "1", "--registry", db, "--show-secret"])
        #expect(secret.stdout.contains(Self.uds))
        let json = try RegistryCLIProcess.run(["registry", "show", "a4cf120b9e31", "--registry", db, "--json"])
        let object = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
        #expect(object["uds"] == nil)
        #expect(object["firmware_version"] as? String == "1.6.2")
        #expect((object["steps"] as? [String: Any])?.count == ProvisioningStep.allCases.count)
        let missing = try RegistryCLIProcess.run(["registry", "show", "ffffffffffff", "--registry", db])
        #expect(missing.status == 66)
        #expect(missing.stderr.contains("no board 'ffffffffffff'"))
    }

    @Test func exportJSONAndCSV() throws {
        let (dir, db) = try populated()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let plain = try RegistryCLIProcess.run(["registry", "export", "--registry", db])
        #expect(plain.status == 0)
        #expect(!plain.stdout.contains(Self.uds))
        let rows = try #require(try JSONSerialization.jsonObject(with: Data(plain.stdout.utf8)) as? [[String: Any]])
        #expect(rows.count == 2)

        let secret = try RegistryCLIProcess.run(["registry", "export", "--registry", db, "--include-secrets"])
        #expect(secret.stdout.contains(Self.uds))

        let csv = try RegistryCLIProcess.run(["registry", "export", "--registry", db, "--format", "csv"])
        #expect(csv.status == 0)
        let lines = csv.stdout.components(separatedBy: "\r\n").filter { !$0.isEmpty }
        #expect(lines.count == 3)
        #expect(lines[0].hasPrefix("id,mac,usb_serial,registration_id,firmware_version,certificate_sha1"))
        #expect(!lines[0].contains(",uds,"))
        #expect(lines[0].hasSuffix(",verification_at,superseded_by,station"), "\(lines[0])")
        #expect(lines[2].contains("\"board unplugged, with a \"\"quote\"\", and a comma\""))
        let csvSecret = try RegistryCLIProcess.run(["registry", "export", "--registry", db, "--format", "csv", "--include-secrets"])
        #expect(csvSecret.stdout.contains(",uds,"))
        #expect(csvSecret.stdout.contains(Self.uds))
    }

    @Test func readingNeverCreatesTheDatabase() throws {
        let dir = registryTestDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var env = ProcessInfo.processInfo.environment
        env["XDG_DATA_HOME"] = dir + "/data"
        // A registry that is not there is a wrong path (66, naming it), as for reissue.
        let r = try RegistryCLIProcess.run(["registry", "list"], environment: env)
        #expect(r.status == 66, "\(r.stdout)\(r.stderr)")
        #expect(r.stderr.contains("no registry at \(dir)/data/devkit/registry.sqlite"), "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/data"))
        for command in [["list", "--unfinished"], ["export"], ["show", "1"]] {
            let other = try RegistryCLIProcess.run(["registry"] + command + ["--registry", dir + "/typo.sqlite"])
            #expect(other.status == 66, "\(command): \(other.stderr)")
            #expect(other.stderr.contains("no registry at \(dir)/typo.sqlite"), "\(command): \(other.stderr)")
        }

        // Re-issuing from a registry that is not there says so (not "no board 'any'").
        let reissue = try RegistryCLIProcess.run(
            ["registry", "reissue", "--registry", dir + "/typo.sqlite", "--elf", WatchCommandTests.elf,
             "--output-dir", dir + "/out"])
        #expect(reissue.status == 66)
        #expect(reissue.stderr.contains("no registry at \(dir)/typo.sqlite"), "\(reissue.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/typo.sqlite"))
    }

    @Test func unfinishedWithNoneUnfinishedSaysSo() throws {
        let dir = registryTestDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let db = dir + "/registry.sqlite"
        let registry = try Registry(path: db)
        let id = try registry.recordNewBoard(uds: UDS(hex: Self.uds)).id!
        for step in ProvisioningStep.allCases.dropFirst() { try registry.markStep(step, boardID: id) }
        let r = try RegistryCLIProcess.run(["registry", "list", "--unfinished", "--registry", db])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("No unfinished boards in \(db)"), "\(r.stdout)")
        #expect(!r.stdout.contains("No boards recorded"))
    }

    /// A key with control characters is quoted escaped: nothing reaches the terminal raw.
    @Test func aBoardKeyWithControlCharactersIsEscaped() throws {
        let (dir, db) = try populated()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let r = try RegistryCLIProcess.run(["registry", "show", "x\u{1B}[31my", "--registry", db])
        #expect(r.status == 66)
        #expect(r.stderr.contains("no board 'x\\u{1B}[31my'"), "\(r.stderr)")
        #expect(!r.stderr.contains("\u{1B}"))
    }

    /// Values a board or a file put in the registry (USB serial, error text, paths)
    /// reach stdout escaped in `show`, `list` and the CSV export: no raw escape
    /// sequence, bidi override or line break that would forge a line (issue 12, item 6).
    /// The JSON export stays the encoder's (it escapes control characters itself).
    @Test func hostileRegistryValuesAreEscapedOnStdout() throws {
        let dir = registryTestDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let db = dir + "/registry.sqlite"
        let registry = try Registry(path: db)
        let id = try registry.recordNewBoard(uds: UDS(hex: Self.uds), usbSerial: "SER\u{1B}[2J\u{202E}LAIRES").id!
        try markSteps(registry, board: id, certificatePath: "/out/\u{2066}x\u{2069}\u{200B}.pem", through: .certificateWritten)
        try registry.markFailed(boardID: id, error: "lost\u{1B}]0;owned\u{7}\r\nState:  done\u{202E}")

        func expectNoRawControls(_ text: String, _ what: String) {
            let raw = text.unicodeScalars.filter {
                ($0.value < 0x20 && $0 != "\n") || (0x7F...0x9F).contains($0.value)
                    || (0x202A...0x202E).contains($0.value) || (0x2066...0x2069).contains($0.value) || $0.value == 0x200B
            }
            #expect(raw.isEmpty, "\(what): raw \(raw.map { String($0.value, radix: 16) })")
        }
        let show = try RegistryCLIProcess.run(["registry", "show", "1", "--registry", db])
        #expect(show.status == 0, "\(show.stderr)")
        expectNoRawControls(show.stdout, "show")
        #expect(show.stdout.contains("SER\\u{1B}[2J\\u{202E}LAIRES"), "\(show.stdout)")
        #expect(show.stdout.contains("lost\\u{1B}]0;owned\\u{7}\\r\\nState:  done\\u{202E}"), "\(show.stdout)")
        #expect(show.stdout.contains("/out/\\u{2066}x\\u{2069}\\u{200B}.pem"), "\(show.stdout)")
        // The error's line break is escaped: one `State:` line, the real one.
        // (By scalars: Swift's split would keep a "\r\n" together as one Character.)
        #expect(show.stdout.components(separatedBy: "\n").filter { $0.hasPrefix("State:") }.count == 1, "\(show.stdout)")

        let list = try RegistryCLIProcess.run(["registry", "list", "--registry", db])
        #expect(list.status == 0, "\(list.stderr)")
        expectNoRawControls(list.stdout, "list")

        let csv = try RegistryCLIProcess.run(["registry", "export", "--format", "csv", "--registry", db])
        #expect(csv.status == 0, "\(csv.stderr)")
        expectNoRawControls(csv.stdout.replacingOccurrences(of: "\r\n", with: "\n"), "csv")
        #expect(csv.stdout.contains("\\u{1B}]0;owned\\u{7}"), "\(csv.stdout)")

        // JSON as before: the encoder's escapes, the value intact for a parser.
        let json = try RegistryCLIProcess.run(["registry", "show", "1", "--json", "--registry", db])
        let object = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
        #expect(object["usb_serial"] as? String == "SER\u{1B}[2J\u{202E}LAIRES")
    }

    /// A board named with --board that cannot be re-issued (no MAC recorded) is
    /// reported with the one error prefix, `devkit: error:`, like every other
    /// failure; re-issuing every board skips it, saying how to finish it, exit 0
    /// (an abandoned row would otherwise fail every re-issue of the fleet).
    @Test func reissueFailuresCarryTheErrorPrefix() throws {
        let (dir, db) = try populated()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let reissue = ["registry", "reissue", "--registry", db, "--elf", WatchCommandTests.elf, "--output-dir", dir + "/out"]
        let r = try RegistryCLIProcess.run(reissue + ["--board", "2"])
        #expect(r.status == 1, "\(r.stderr)")
        let failures = r.stderr.components(separatedBy: "\n").filter { $0.contains("#2") }
        #expect(!failures.isEmpty, "\(r.stderr)")
        for line in failures { #expect(line.hasPrefix("devkit: error: #2: "), "\(line)") }
        let all = try RegistryCLIProcess.run(reissue)
        #expect(all.status == 0, "\(all.stderr)")
        #expect(all.stderr.contains("devkit: #2: skipped: board #2 did not finish provisioning")
            && all.stderr.contains("devkit provision --resume 2 --registry \(db) --port PORT"), "\(all.stderr)")
    }

    /// A fleet for `--jobs`: 40 boards, one never confirmed its UDS (skipped), one
    /// provisioned again under the same MAC (its old row is skipped), two recorded
    /// with the same registration ID (the second finds the first's files: fails).
    static func fleet(at db: String) throws {
        let registry = try Registry(path: db)
        for i in 0..<40 {
            let hex = String(i + 1, radix: 16)
            let uds = try UDS(hex: String(repeating: "0", count: 64 - hex.count) + hex)
            let board = try registry.recordNewBoard(uds: uds).id!
            if i == 7 { try registry.markStep(.udsSent, boardID: board); continue }
            let macSuffix = String(i == 20 ? 3 : i, radix: 16)
            let mac = try MACAddress("a4cf120b" + String(repeating: "0", count: 4 - macSuffix.count) + macSuffix)
            let id: RegistrationID? = i == 11 || i == 12 ? try RegistrationID("shared-name") : nil
            for step in ProvisioningStep.allCases.dropFirst() {
                let update: BoardUpdate = switch step {
                case .versionRead: BoardUpdate(firmwareVersion: try FirmwareVersion("1.6.2"))
                case .macRead: BoardUpdate(mac: mac, registrationID: id)
                default: BoardUpdate()
                }
                try registry.markStep(step, boardID: board, update: update)
                if step == .macRead { break }
            }
        }
    }

    @Test("registry reissue and cert --from-registry: --jobs 2 prints, writes and exits as --jobs 1",
          arguments: [["registry", "reissue", "--json"], ["registry", "reissue"], ["cert", "--from-registry", "--json"]])
    func reissueJobsKeepOrder(command: [String]) throws {
        let dir = registryTestDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var runs: [(RegistryCLIProcess, [String: String])] = []
        for jobs in ["1", "2"] {
            let db = dir + "/registry\(jobs).sqlite"
            try Self.fleet(at: db)
            let out = dir + "/out" + jobs
            let r = try RegistryCLIProcess.run(
                command + ["--registry", db, "--elf", WatchCommandTests.elf, "--firmware-version", "1.6.3",
                           "--output-dir", out, "--jobs", jobs], timeout: 120)
            var files: [String: String] = [:]
            for name in (try? FileManager.default.contentsOfDirectory(atPath: out)) ?? [] {
                files[name] = try String(contentsOfFile: out + "/" + name, encoding: .utf8)
                    .replacingOccurrences(of: "/out2/", with: "/out1/")
            }
            runs.append((r, files))
        }
        let (one, two) = (runs[0], runs[1])
        #expect(one.0.status == 1, "\(one.0.stderr)")
        #expect(two.0.status == one.0.status)
        func same(_ text: String) -> String {
            text.replacingOccurrences(of: "/out2/", with: "/out1/").replacingOccurrences(of: "registry2.sqlite", with: "registry1.sqlite")
        }
        #expect(one.0.stdout == same(two.0.stdout))
        #expect(one.0.stderr == same(two.0.stderr))
        #expect(one.1 == two.1)
        // 37 boards written (40, less the unconfirmed one, the superseded row and the
        // second "shared-name"), a .pem and an enrollment file each.
        #expect(one.1.count == 2 * 37, "\(one.1.keys.sorted())")
        // The failures: on stderr, or as JSON objects on stdout with --json.
        let reported = one.0.stdout + one.0.stderr
        // Every board re-issued: the unfinished row is skipped, saying how to finish it, not failed.
        #expect(reported.contains("skipped: board #8 did not finish provisioning: the board never confirmed its UDS"), "\(reported)")
        #expect(reported.contains("devkit provision --resume 8 --registry \(dir)/registry1.sqlite --port PORT"), "\(reported)")
        #expect(!reported.contains("error: #8"), "\(reported)")
        #expect(reported.contains("board #13 was not re-issued"), "\(reported)")
        if command.contains("--json") {
            let lines = one.0.stdout.split(separator: "\n")
            #expect(lines.count == 40)
            // A number in every event, errors and skips too, as in the results.
            for (i, line) in lines.enumerated() { #expect(line.contains("\"board_id\":\(i + 1),") || line.hasSuffix("\"board_id\":\(i + 1)}"), "\(line)") }
        }
    }

    /// Root ignores file modes, so this runs devkit as `nobody` on a registry in a
    /// directory only root may enter: "Permission denied" is 77 (sysexits), naming
    /// the path; before, `list` said "No boards recorded" with exit 0.
    @Test(.enabled(if: ConsoleCLIValidationTests.canRunAsNobody, "needs root, setpriv, and a devkit binary that nobody may run"))
    func aRegistryThisUserMayNotOpenIs77() throws {
        let (dir, db) = try populated()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(chmod(dir, 0o700) == 0)
        let asNobody = [ConsoleCLIValidationTests.setpriv!, "--reuid=65534", "--regid=65534", "--clear-groups", try TestProcess.devkitBinary]
        for command in [["registry", "list", "--registry", db], ["registry", "show", "1", "--registry", db]] {
            let r = try TestProcess.run(asNobody + command, timeout: 120)
            #expect(r.status == 77, "\(command): \(r.stdout)\(r.stderr)")
            #expect(r.stderr.contains(db) && r.stderr.contains("Permission denied"), "\(r.stderr)")
        }
        // A registry whose directory cannot be created here: 77 as well, not 73.
        let sub = try TestProcess.run(asNobody + ["registry", "list", "--registry", dir + "/sub/r.sqlite"], timeout: 120)
        #expect(sub.status == 77, "\(sub.stderr)")
        #expect(sub.stderr.contains(dir + "/sub") && sub.stderr.contains("Permission denied"), "\(sub.stderr)")
    }

    /// Issue 12 item 7: in WAL mode SQLite creates registry.sqlite-wal and -shm beside
    /// the file, so a registry file this user owns in a directory it cannot write
    /// cannot be opened: that is 77 (permission), naming the directory and what to do;
    /// it was 74 with SQLite's "unable to open database file". Reproduced for real: as
    /// root (which ignores modes) devkit runs as `nobody`, who owns the file but not the
    /// directory; as any other user the directory is made read-only.
    @Test(.enabled(if: getuid() != 0 || ConsoleCLIValidationTests.canRunAsNobody,
                   "as root this needs setpriv and a devkit binary that nobody may run"))
    func aRegistryInADirectoryThisUserCannotWriteIs77() throws {
        let (dir, db) = try populated()
        defer {
            chmod(dir, 0o700)
            try? FileManager.default.removeItem(atPath: dir)
        }
        #expect(access(db + "-wal", F_OK) != 0, "the registry was closed cleanly")
        var prefix: [String] = []
        if getuid() == 0 {
            #expect(chown(db, 65534, 65534) == 0 && chmod(dir, 0o755) == 0)
            prefix = [ConsoleCLIValidationTests.setpriv!, "--reuid=65534", "--regid=65534", "--clear-groups"]
        } else {
            #expect(chmod(dir, 0o555) == 0)
        }
        for command in [["registry", "list"], ["registry", "show", "1"]] {
            let r = try TestProcess.run(prefix + [TestProcess.devkitBinary] + command + ["--registry", db], timeout: 120)
            #expect(r.status == 77, "\(command): \(r.stdout)\(r.stderr)")
            #expect(r.stderr.contains("registry.sqlite-wal") && r.stderr.contains("in \(dir),"), "\(r.stderr)")
            #expect(r.stderr.contains("Permission denied") && r.stderr.contains("write access"), "\(r.stderr)")
            #expect(!r.stderr.contains("could not be completed") && !r.stderr.contains("SQLite error"), "\(r.stderr)")
        }
    }

    /// Each board's DPS enrollment in list, show, --json and CSV (schema v5): one
    /// board per kind of record, written through the registry as the commands do.
    @Test func enrollmentInListShowJSONAndCSV() throws {
        let dir = registryTestDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let db = dir + "/registry.sqlite"
        let registry = try Registry(path: db)
        func board(_ enrollment: BoardEnrollment?) throws -> Int64 {
            let id = try registry.recordNewBoard(uds: UDS(hex: Self.uds)).id!
            // A MAC each: six boards, not one board provisioned six times (a later row
            // of the same board would show the earlier ones superseded).
            try markSteps(registry, board: id, certificatePath: dir + "/x\(id).pem", mac: "a4cf120b9e3\(id)")
            if let enrollment { try registry.recordEnrollment(boardID: id, enrollment) }
            return id
        }
        let host = "my-dps.azure-devices-provisioning.net"
        let noDPS = try board(nil)
        let created = try board(BoardEnrollment(action: .created, dpsHost: host, etag: "\"e1\"", sha1Thumbprint: "0A1B"))
        let pending = try board(.pending(dpsHost: host))
        let refused = try board(BoardEnrollment(
            action: .failed, dpsHost: host, errorCode: 401002, errorMessage: "Invalid certificate", trackingID: "t-9"))
        let conflict = try board(BoardEnrollment(action: .conflict, dpsHost: host, errorMessage: "DPS holds another"))
        let old = try board(BoardEnrollment(action: .updated, dpsHost: host, sha1Thumbprint: "FFFF"))

        let list = try RegistryCLIProcess.run(["registry", "list", "--registry", db])
        #expect(list.status == 0, "\(list.stderr)")
        let rows = list.stdout.components(separatedBy: "\n")
        #expect(rows.first?.contains("STATE") == true && rows.first?.contains("ENROLLED") == true)
        func row(_ id: Int64) -> String { rows.first { $0.hasPrefix("\(id) ") } ?? "" }
        #expect(row(noDPS).contains("  done  ") && row(noDPS).contains("  -  "), "\(row(noDPS))")
        #expect(row(created).contains("  done  ") && row(created).range(of: #"created \d\d:\d\d"#, options: .regularExpression) != nil,
                "\(row(created))")
        for (id, cell) in [(pending, "not enrolled"), (refused, "failed 401002"), (conflict, "conflict "), (old, "old certificate")] {
            #expect(row(id).contains("done, not enrolled") && row(id).contains(cell), "\(row(id))")
        }

        let show = try RegistryCLIProcess.run(["registry", "show", "\(refused)", "--registry", db])
        for line in ["State:", "done, not enrolled", "Enrollment:", "failed, ", "in \(host)", "DPS error code:",
                     "401002", "Enrollment error:", "Invalid certificate", "Tracking ID:", "t-9",
                     "Finish with:", "devkit dps enroll --from-registry --id \(refused)"] {
            #expect(show.stdout.contains(line), "\(line): \(show.stdout)")
        }
        let shownOld = try RegistryCLIProcess.run(["registry", "show", "\(old)", "--registry", db])
        #expect(shownOld.stdout.contains("an older certificate") && shownOld.stdout.contains("--replace"), "\(shownOld.stdout)")

        let json = try RegistryCLIProcess.run(["registry", "list", "--registry", db, "--json"])
        let boards = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [[String: Any]])
        let byID = Dictionary(uniqueKeysWithValues: boards.map { (($0["id"] as? Int).map(Int64.init) ?? 0, $0) })
        #expect(byID[noDPS]?["enrollment"] is NSNull && byID[noDPS]?["enrolled"] as? Bool == false)
        #expect(byID[created]?["enrolled"] as? Bool == true && byID[created]?["state"] as? String == "done")
        let e = try #require(byID[refused]?["enrollment"] as? [String: Any])
        #expect(e["action"] as? String == "failed" && e["error_code"] as? Int == 401002)
        #expect(e["tracking_id"] as? String == "t-9" && e["dps_host"] as? String == host && e["message"] as? String == "Invalid certificate")

        let csv = try RegistryCLIProcess.run(["registry", "export", "--registry", db, "--format", "csv"])
        let lines = csv.stdout.components(separatedBy: "\r\n").filter { !$0.isEmpty }
        let header = lines[0].components(separatedBy: ",")
        for column in ["enrolled", "enrollment_action", "enrollment_at", "enrollment_dps_host", "enrollment_etag",
                       "enrollment_sha1_thumbprint", "enrollment_error_code", "enrollment_error_message",
                       "enrollment_tracking_id"] {
            #expect(header.contains(column), "\(column)")
        }
        let refusedLine = try #require(lines.first { $0.hasPrefix("\(refused),") })
        #expect(refusedLine.contains(",false,failed,") && refusedLine.contains(",401002,Invalid certificate,t-9"), "\(refusedLine)")
    }
}
