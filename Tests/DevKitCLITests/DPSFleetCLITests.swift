import DevKitModel
import DevKitRegistry
import DevKitTestSupport
import Foundation
import Testing

/// `devkit dps enroll --from-registry` for a fleet: the built binary against
/// `devkit emulate-dps` over real TLS on loopback, on a registry of boards that
/// `devkit cert --batch` certified (DiceRIoT, the Tiny fixture: real Alias
/// certificates in milliseconds) and that DevKitRegistry's API records as
/// finished, the way provisioning leaves them.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct DPSFleetCLITests {
    static let firmware = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/dice-vectors/firmware").path

    /// A registry of finished boards, their certificate files, and a running local DPS.
    struct Fleet {
        let dir: String
        let dps: TestDPSEmulator
        /// Registration ID and row id of each board, in row order.
        let boards: [(id: String, row: Int64)]
        var db: String { dir + "/registry.sqlite" }
        var registry: Registry { get throws { try Registry(path: db) } }
        func remove() {
            dps.stop()
            try? FileManager.default.removeItem(atPath: dir)
        }

        func enroll(_ extra: [String] = []) throws -> RegistryCLIProcess {
            try RegistryCLIProcess.run(["dps", "enroll", "--from-registry", "--registry", db] + dps.dpsArguments() + extra)
        }

        /// The emulator's counters (`GET /_emulator/stats`, not DPS's API; read with
        /// curl trusting the emulator's CA).
        func stats() throws -> [String: Any] {
            let curl = try #require(TestProcess.which("curl"))
            let r = try TestProcess.run([curl, "-sf", "--cacert", dps.caFile, dps.url + "/_emulator/stats"], timeout: 120)
            try #require(r.status == 0, "\(r.stderr)")
            return try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        }
        func count(_ kind: String) throws -> Int { (try stats()["by_kind"] as? [String: Any])?[kind] as? Int ?? 0 }
    }

    /// `count` boards; with `badCertificate`, that board's row holds (and its file
    /// is) a certificate made for another registration ID: its CN is not the ID.
    static func fleet(_ count: Int, badCertificate: Int? = nil) throws -> Fleet {
        let dir = registryTestDirectory()
        let version = try FirmwareVersion("1.6.2")
        var lines: [String] = []
        var boards: [(uds: UDS, mac: MACAddress, id: RegistrationID)] = []
        for i in 0...count {  // one more: the certificate of an ID no board has
            var random = SystemRandomNumberGenerator()
            let uds = try UDS(bytes: (0..<UDS.byteCount).map { _ in UInt8.random(in: 0...255, using: &random) })
            let mac = try MACAddress(String(format: "a4cf12ee%04x", i))
            boards.append((uds, mac, try RegistrationID(mac: mac, firmwareVersion: version)))
            lines.append(#"{"uds":"\#(uds.hexString)","mac":"\#(mac.hex)","firmware_version":"1.6.2"}"#)
        }
        try lines.joined(separator: "\n").write(toFile: dir + "/boards.jsonl", atomically: false, encoding: .utf8)
        let cert = try RegistryCLIProcess.run([
            "cert", "--bin", firmware + "/Tiny.ino.bin", "--map", firmware + "/Tiny.ino.map",
            "--batch", dir + "/boards.jsonl", "--output-dir", dir + "/certs", "--json",
        ])
        try #require(cert.status == 0, "\(cert.stderr)")
        var certificates: [String: [String: Any]] = [:]
        for line in cert.stdout.split(separator: "\n") {
            let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            certificates[try #require(object["registration_id"] as? String)] = object
        }
        let registry = try Registry(path: dir + "/registry.sqlite")
        let steps = ProvisioningStep.allCases.filter { $0 > .udsSent }
        var recorded: [(id: String, row: Int64)] = []
        for (i, board) in boards.dropLast().enumerated() {
            let certified = try #require(certificates[(i == badCertificate ? boards[count] : board).id.value])
            let row = try #require(try registry.recordNewBoard(
                uds: board.uds, mac: board.mac, registrationID: board.id, firmwareVersion: version, alsoMark: [.udsSent]).id)
            try registry.markSteps(steps, boardID: row, update: BoardUpdate(
                certificateSHA1: certified["sha1_thumbprint"] as? String,
                certificateSHA256: certified["sha256_thumbprint"] as? String,
                certificatePath: try #require(certified["certificate"] as? String)))
            recorded.append((board.id.value, row))
        }
        let dps = try TestDPSEmulator(stateDirectory: dir + "/dps")
        return Fleet(dir: dir, dps: dps, boards: recorded)
    }

    static func objects(_ stdout: String) throws -> [[String: Any]] {
        try stdout.split(separator: "\n").map {
            try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
        }
    }

    @Test("25 boards: 25 created in 3 bulk requests, recorded; a rerun is all unchanged and writes nothing")
    func fleetCreatedThenUnchanged() throws {
        let f = try Self.fleet(25)
        defer { f.remove() }
        let r = try f.enroll(["--json"])
        #expect(r.status == 0, "\(r.stderr)")
        let results = try Self.objects(r.stdout)
        #expect(results.count == 25)
        #expect(results.allSatisfy { $0["action"] as? String == "created" }, "\(r.stdout)")
        #expect(Set(results.compactMap { $0["registration_id"] as? String }) == Set(f.boards.map(\.id)))
        #expect(try f.count("bulk") == 3)
        #expect(try f.count("enrollment_put") == 0)
        #expect(try f.stats()["enrollments"] as? Int == 25)

        // The registry records each: created, DPS's etag, the thumbprint DPS reports.
        let etags = Dictionary(uniqueKeysWithValues: results.map { ($0["registration_id"] as! String, $0["etag"] as? String) })
        for row in try f.registry.allBoards() {
            let e = try #require(row.enrollment, "board #\(row.id ?? 0) not recorded")
            #expect(e.action == .created && e.dpsHost == "localhost")
            #expect(e.etag != nil && e.etag == etags[row.registrationID ?? ""] ?? nil)
            #expect(e.sha1Thumbprint == row.certificateSHA1)
            #expect(row.isEnrolled)
        }

        // Again: every board unchanged, no enrollment written, the etags as they were.
        let bulkBefore = try f.count("bulk")
        let again = try f.enroll(["--json"])
        #expect(again.status == 0, "\(again.stderr)")
        let rerun = try Self.objects(again.stdout)
        #expect(rerun.count == 25 && rerun.allSatisfy { $0["action"] as? String == "unchanged" }, "\(again.stdout)")
        for line in rerun { #expect(line["etag"] as? String == etags[line["registration_id"] as! String] ?? nil) }
        let after = try f.stats()
        #expect((after["by_kind"] as? [String: Any])?["enrollment_put"] as? Int ?? 0 == 0, "no PUT: \(after)")
        // What the rerun sent: 3 bulk `create`s, each board refused as existing
        // (nothing stored changes: the etags above), then a read of each.
        #expect((after["by_kind"] as? [String: Any])?["bulk"] as? Int == bulkBefore + 3, "\(after)")
        #expect(after["enrollments"] as? Int == 25)
        #expect(try f.registry.allBoards().allSatisfy { $0.enrollment?.action == .unchanged && $0.isEnrolled })
    }

    /// Batches of 2 rows (the test hook): each batch claimed, enrolled and recorded
    /// in turn. The results come in row order; every board is recorded; a row
    /// giving a registration ID again fails in a later batch too, not only when
    /// it shares a batch with the first.
    @Test("a fleet a batch of rows at a time: in row order, every board recorded; a registration ID given twice fails across batches")
    func fleetInBatches() throws {
        let f = try Self.fleet(5)
        defer { f.remove() }
        // A sixth row with the first board's registration ID and certificate (last: a later batch).
        let first = try #require(try f.registry.board(id: f.boards[0].row))
        let again = try #require(try f.registry.recordNewBoard(
            uds: first.uds, mac: try MACAddress("a4cf12ee0fff"), registrationID: try RegistrationID(f.boards[0].id),
            firmwareVersion: try FirmwareVersion("1.6.2"), alsoMark: [.udsSent]).id)
        try f.registry.markSteps(ProvisioningStep.allCases.filter { $0 > .udsSent }, boardID: again, update: BoardUpdate(
            certificateSHA1: first.certificateSHA1, certificateSHA256: first.certificateSHA256, certificatePath: first.certificatePath))

        let r = try RegistryCLIProcess.run(
            ["dps", "enroll", "--from-registry", "--registry", f.db, "--json"] + f.dps.dpsArguments(),
            environment: ["DEVKIT_TEST_CLAIM_BATCH": "2"])
        #expect(r.status == 1, "\(r.stderr)")
        let results = try Self.objects(r.stdout)
        let created = results.filter { $0["action"] as? String == "created" }
        #expect(created.compactMap { $0["registration_id"] as? String } == f.boards.map(\.id), "\(r.stdout)")
        let failed = results.filter { $0["action"] as? String == "failed" }
        #expect(failed.count == 1 && (failed.first?["message"] as? String)?.contains("given twice") == true, "\(r.stdout)")
        // The failure names its own row, not the first row with that registration ID.
        #expect(failed.first?["board_id"] as? Int == Int(again), "\(r.stdout)")
        for board in f.boards {
            #expect(try f.registry.board(id: board.row)?.isEnrolled == true, "board #\(board.row) not recorded")
        }
        #expect(try f.registry.board(id: again)?.enrollment == nil, "the duplicate was recorded")
        #expect(try f.stats()["enrollments"] as? Int == 5)
        // Batches of 2, 2 and 1 board: a bulk request each for the first two, the
        // last alone (GET, then PUT); one batch of 5 would be a single bulk request.
        let bulk = try f.count("bulk"), puts = try f.count("enrollment_put")
        #expect(bulk == 2 && puts == 1, "bulk \(bulk), PUT \(puts)")
    }

    /// --id naming two rows of one board (provisioned again, same registration ID):
    /// the later row is enrolled, the older fails naming it; neither is left out
    /// as a duplicate of the other.
    @Test("--id with two rows of one board: the later one enrolled, the older one fails naming it")
    func idsOfTwoRowsOfOneBoard() throws {
        let f = try Self.fleet(2)
        defer { f.remove() }
        let first = try #require(try f.registry.board(id: f.boards[0].row))
        let mac = try MACAddress(try #require(first.mac))
        let again = try #require(try f.registry.recordNewBoard(
            uds: first.uds, mac: mac, registrationID: try RegistrationID(f.boards[0].id),
            firmwareVersion: try FirmwareVersion("1.6.2"), alsoMark: [.udsSent]).id)
        try f.registry.markSteps(ProvisioningStep.allCases.filter { $0 > .udsSent }, boardID: again, update: BoardUpdate(
            certificateSHA1: first.certificateSHA1, certificateSHA256: first.certificateSHA256, certificatePath: first.certificatePath))
        let r = try f.enroll(["--id", "\(f.boards[0].row)", "--id", "\(again)"])
        #expect(r.status == 1, "\(r.stderr)")
        #expect(r.stderr.contains("board #\(f.boards[0].row) was provisioned again as #\(again); enroll #\(again)"), "\(r.stderr)")
        // Said of the older row (which shares its registration ID with the later one).
        #expect(r.stderr.contains("error: #\(f.boards[0].row) \(f.boards[0].id): board #"), "\(r.stderr)")
        #expect(try f.registry.board(id: again)?.isEnrolled == true, "\(r.stdout)\n\(r.stderr)")
        #expect(try f.registry.board(id: f.boards[0].row)?.enrollment == nil)
    }

    @Test("one board whose certificate's CN is not its ID fails alone: exit 1, the 24 others created, said on stderr")
    func oneBadCertificate() throws {
        let bad = 7
        let f = try Self.fleet(25, badCertificate: bad)
        defer { f.remove() }
        let badID = f.boards[bad].id
        let r = try f.enroll(["--json"])
        #expect(r.status == 1, "\(r.stderr)")
        let results = try Self.objects(r.stdout)
        #expect(results.count == 25)
        let created = results.filter { $0["action"] as? String == "created" }
        #expect(created.count == 24)
        let failed = try #require(results.first { $0["registration_id"] as? String == badID })
        #expect(failed["action"] as? String == "failed")
        #expect(failed["board_id"] as? Int == Int(f.boards[bad].row))
        let message = try #require(failed["message"] as? String)
        #expect(message.contains("subject CN") && message.contains(badID), "\(message)")
        // Refused before anything was sent (DPS would answer 400 with the same
        // reason): 24 boards, 3 bulk requests, nothing enrolled under its ID.
        #expect(try f.count("bulk") == 3)
        #expect(try f.stats()["enrollments"] as? Int == 24)
        let shown = try RegistryCLIProcess.run(["dps", "show", badID] + f.dps.dpsArguments())
        #expect(shown.status != 0, "\(shown.stdout)")
        // Said on stderr without --json; the others are unchanged now.
        let plain = try f.enroll()
        #expect(plain.status == 1)
        #expect(plain.stderr.contains("devkit: error: #\(f.boards[bad].row) \(badID): ") && plain.stderr.contains("subject CN"),
                "\(plain.stderr)")
        #expect(plain.stdout.components(separatedBy: "  unchanged").count - 1 == 24, "\(plain.stdout)")
    }

    @Test("a fleet where DPS holds another certificate for one board: a conflict alone; --replace updates it only")
    func conflictInAFleet() throws {
        let f = try Self.fleet(25)
        defer { f.remove() }
        let held = f.boards[3].id
        // The same ID certified from another UDS (the board provisioned again), enrolled first.
        try (String(repeating: "5a", count: 32) + "\n").write(toFile: f.dir + "/other.uds", atomically: false, encoding: .utf8)
        let other = try RegistryCLIProcess.run([
            "cert", "--bin", Self.firmware + "/Tiny.ino.bin", "--map", Self.firmware + "/Tiny.ino.map",
            "--uds-file", f.dir + "/other.uds", "--registration-id", held, "--output-dir", f.dir + "/other",
        ])
        try #require(other.status == 0, "\(other.stderr)")
        let first = try RegistryCLIProcess.run(["dps", "enroll", "--cert", f.dir + "/other/\(held).pem"] + f.dps.dpsArguments())
        try #require(first.status == 0, "\(first.stderr)")

        let r = try f.enroll(["--json"])
        #expect(r.status == 1, "\(r.stderr)")
        let results = try Self.objects(r.stdout)
        #expect(results.filter { $0["action"] as? String == "created" }.count == 24)
        let conflict = try #require(results.first { $0["registration_id"] as? String == held })
        #expect(conflict["action"] as? String == "conflict", "\(conflict)")
        #expect(try f.count("enrollment_put") == 1, "only the --cert enrollment was PUT")
        #expect(try f.registry.board(id: f.boards[3].row)?.enrollment?.action == .conflict)

        let replaced = try f.enroll(["--json", "--replace"])
        #expect(replaced.status == 0, "\(replaced.stderr)")
        let after = try Self.objects(replaced.stdout)
        #expect(after.first { $0["registration_id"] as? String == held }?["action"] as? String == "updated")
        #expect(after.filter { $0["action"] as? String == "unchanged" }.count == 24)
        #expect(try f.count("enrollment_put") == 2, "one PUT (If-Match) for the replaced board")
        let row = try #require(try f.registry.board(id: f.boards[3].row))
        #expect(row.isEnrolled && row.enrollment?.action == .updated && row.enrollment?.sha1Thumbprint == row.certificateSHA1)
    }

    @Test("a whole fleet failed for one reason of the service's: DPS down is 69, a wrong key 77, not 1")
    func serviceFailureExitCodes() throws {
        let fleet = try Self.fleet(3)
        defer { fleet.remove() }
        // A policy key that is not the emulator's: every board refused with 401.
        let text = try String(contentsOfFile: fleet.dps.connectionStringFile, encoding: .utf8)
        let wrongKey = fleet.dir + "/wrong-key"
        let forged = text.replacingOccurrences(
            of: #"SharedAccessKey=[^;\s]+"#, with: "SharedAccessKey=" + Data(repeating: 7, count: 32).base64EncodedString(),
            options: .regularExpression)
        #expect(forged != text)
        try forged.write(toFile: wrongKey, atomically: false, encoding: .utf8)
        chmod(wrongKey, 0o600)
        let arguments = fleet.dps.dpsArguments()
        let index = try #require(arguments.firstIndex(of: "--connection-string-file"))
        var wrong = arguments
        wrong[index + 1] = wrongKey
        let refused = try RegistryCLIProcess.run(["dps", "enroll", "--from-registry", "--registry", fleet.db, "--json"] + wrong)
        #expect(refused.status == 77, "\(refused.stderr)")
        #expect(try Self.objects(refused.stdout).allSatisfy { $0["action"] as? String == "failed" })
        // The service gone: every board unreachable.
        fleet.dps.stop()
        let down = try fleet.enroll(["--json"])
        #expect(down.status == 69, "\(down.stderr)")
        #expect(try Self.objects(down.stdout).count == 3)
    }

    @Test("--id (repeatable) enrolls only the boards chosen, by row id, MAC or registration ID")
    func chosenBoards() throws {
        let f = try Self.fleet(6)
        defer { f.remove() }
        let r = try f.enroll(["--id", "\(f.boards[1].row)", "--id", f.boards[4].id, "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        let results = try Self.objects(r.stdout)
        #expect(results.map { $0["registration_id"] as? String } == [f.boards[1].id, f.boards[4].id], "\(r.stdout)")
        #expect(results.allSatisfy { $0["action"] as? String == "created" })
        #expect(try f.stats()["enrollments"] as? Int == 2)
        let rows = try f.registry.allBoards()
        #expect(rows.filter { $0.enrollment != nil }.map(\.id) == [f.boards[1].row, f.boards[4].row])
        // A board that is not in the registry stops the run before anything is sent.
        let none = try f.enroll(["--id", "az-000000000000v1"])
        #expect(none.status != 0 && none.status != 1, "\(none.stderr)")
        #expect(try f.stats()["enrollments"] as? Int == 2)
    }
}
