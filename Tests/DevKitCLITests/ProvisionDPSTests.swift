import DevKitModel
import DevKitRegistry
import DevKitTestSupport
import DevKitWorkflows
import Foundation
import Testing
import VirtualDevKit

@testable import DevKitCLI

/// Enrolling in DPS as provisioning's last step (issue 13): the built `devkit`
/// against the virtual DevKit and `devkit emulate-dps` over real TLS on loopback
/// (its CA given with --dps-ca-file).
@Suite(.serialized, .timeLimit(.minutes(5)))
struct ProvisionDPSTests {
    let cli = ProvisionCLITests()

    /// A virtual board, a scratch directory with its UDS, and a running local DPS.
    func setup() throws -> (v: ProvisionCLITests.Vector, dir: String, kit: VirtualDevKit, dps: TestDPSEmulator) {
        let (v, dir, kit) = try cli.setup()
        let dps = try TestDPSEmulator(stateDirectory: dir + "/dps")
        return (v, dir, kit, dps)
    }

    func dpsOptions(_ dps: TestDPSEmulator, endpoint: String? = nil) -> [String] {
        ["--dps-connection-string-file", dps.connectionStringFile, "--dps-endpoint", endpoint ?? dps.url,
         "--dps-ca-file", dps.caFile]
    }

    /// The enrollment as the local DPS holds it, read with `devkit dps show --json`.
    func shown(_ registrationID: String, _ dps: TestDPSEmulator) throws -> [String: Any]? {
        let r = try RegistryCLIProcess.run(["dps", "show", registrationID, "--json"] + dps.dpsArguments())
        guard r.status == 0 else { return nil }
        return try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
    }

    func lastJSON(_ stdout: String) throws -> [String: Any] {
        let line = try #require(stdout.split(separator: "\n").last)
        return try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
    }

    @Test("provision ends with the board enrolled in the local DPS and the registry saying so")
    func provisionEnrolls() throws {
        let (v, dir, kit, dps) = try setup()
        defer { dps.stop(); kit.stop(); try? FileManager.default.removeItem(atPath: dir) }
        let r = try RegistryCLIProcess.run(
            cli.provisionArgs(v, dir, kit) + ["--uds-file", dir + "/board.uds", "--json"] + dpsOptions(dps))
        #expect(r.status == 0, "\(r.stderr)")
        let result = try lastJSON(r.stdout)
        #expect(result["state"] as? String == "done")
        let enrollment = try #require(result["enrollment"] as? [String: Any])
        #expect(enrollment["action"] as? String == "created", "\(enrollment)")
        #expect(enrollment["enrolled"] as? Bool == true)
        #expect(enrollment["dps_host"] as? String == "localhost")
        // The enroll step is the last step event.
        let stages = r.stdout.split(separator: "\n").compactMap {
            (try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])?["stage"] as? String
        }
        #expect(stages.last == "enroll", "\(stages)")

        // DPS holds it, with the certificate devkit wrote.
        let row = try #require(try Registry(path: dir + "/registry.sqlite").allBoards().first)
        let held = try #require(try shown(v.registrationID, dps), "dps show found no enrollment")
        let info = (((held["attestation"] as? [String: Any])?["x509"] as? [String: Any])?["clientCertificates"]
            as? [String: Any]).flatMap { ($0["primary"] as? [String: Any])?["info"] as? [String: Any] }
        #expect(info?["sha1Thumbprint"] as? String == row.certificateSHA1)

        // Recorded: created, DPS's etag and thumbprint, in localhost.
        #expect(row.state == .done && row.isEnrolled)
        let recorded = try #require(row.enrollment)
        #expect(recorded.action == .created && recorded.dpsHost == "localhost")
        #expect(recorded.etag != nil && recorded.etag == held["etag"] as? String)
        #expect(recorded.sha1Thumbprint == row.certificateSHA1)
        let list = try RegistryCLIProcess.run(["registry", "list", "--registry", dir + "/registry.sqlite"])
        #expect(list.stdout.contains("ENROLLED") && list.stdout.contains("created "), "\(list.stdout)")
        #expect(!list.stdout.contains("not enrolled"))

        // The key never reaches the output.
        let key = try #require(consoleReadText(dps.connectionStringFile)?.split(separator: ";").last)
        #expect(!r.stdout.contains(key.dropFirst("SharedAccessKey=".count)) && !r.stderr.contains(key))
    }

    @Test("DPS down: files kept, `done, not enrolled`, exit 69; dps enroll --from-registry finishes and records it")
    func dpsDownThenFinished() throws {
        let (v, dir, kit, dps) = try setup()
        defer { dps.stop(); kit.stop(); try? FileManager.default.removeItem(atPath: dir) }
        let db = dir + "/registry.sqlite"
        let closed = "https://127.0.0.1:\(try closedLoopbackPort())"
        let r = try RegistryCLIProcess.run(
            cli.provisionArgs(v, dir, kit) + ["--uds-file", dir + "/board.uds"] + dpsOptions(dps, endpoint: closed))
        #expect(r.status == 69, "\(r.status): \(r.stderr)")
        // Nothing lost: the board holds its UDS, the files are there, the row is done.
        #expect(kit.state.uds == v.uds.lowercased())
        #expect(FileManager.default.fileExists(atPath: dir + "/\(v.registrationID).pem"))
        #expect(FileManager.default.fileExists(atPath: dir + "/\(v.registrationID).enrollment.json"))
        let row = try #require(try Registry(path: db).allBoards().first)
        let id = try #require(row.id)
        #expect(row.state == .done && row.awaitsEnrollment)
        #expect(row.enrollment?.action == .failed && row.enrollment?.errorCode == nil)
        // Said, with the exact command that finishes it.
        #expect(r.stdout.contains("not enrolled in DPS (done, not enrolled)"), "\(r.stdout)")
        #expect(r.stderr.contains("devkit: error: board #\(id) is provisioned (its files are written) but not enrolled in DPS"),
                "\(r.stderr)")
        let command = "devkit dps enroll --from-registry --id \(id) --registry \(db) --connection-string-file "
            + "\(dps.connectionStringFile) --endpoint \(closed) --ca-file \(dps.caFile)"
        #expect(r.stderr.contains(command), "\(r.stderr)")
        let list = try RegistryCLIProcess.run(["registry", "list", "--registry", db])
        #expect(list.stdout.contains("done, not enrolled") && list.stdout.contains("not enrolled"), "\(list.stdout)")
        let show = try RegistryCLIProcess.run(["registry", "show", "\(id)", "--registry", db])
        #expect(show.stdout.contains("Finish with:"), "\(show.stdout)")
        // The same command, with the DPS options the board was provisioned with.
        #expect(show.stdout.contains(command), "\(show.stdout)")

        // The printed command, with the DPS up (its endpoint now the running one).
        let finished = try RegistryCLIProcess.run(
            ["dps", "enroll", "--from-registry", "--id", "\(id)", "--registry", db] + dps.dpsArguments())
        #expect(finished.status == 0, "\(finished.stderr)")
        #expect(finished.stdout.contains("\(v.registrationID)  created"), "\(finished.stdout)")
        let after = try #require(try Registry(path: db).board(id: id))
        #expect(after.isEnrolled && !after.awaitsEnrollment && after.enrollment?.action == .created)
        #expect(after.enrollment?.errorMessage == nil && after.enrollment?.etag != nil)
        #expect(try shown(v.registrationID, dps) != nil)
        let listed = try RegistryCLIProcess.run(["registry", "list", "--registry", db, "--json"])
        let boards = try #require(try JSONSerialization.jsonObject(with: Data(listed.stdout.utf8)) as? [[String: Any]])
        #expect(boards.first?["enrolled"] as? Bool == true)
        #expect((boards.first?["enrollment"] as? [String: Any])?["action"] as? String == "created")

        // Again: unchanged, and recorded so.
        let again = try RegistryCLIProcess.run(
            ["dps", "enroll", "--from-registry", "--registry", db] + dps.dpsArguments())
        #expect(again.status == 0 && again.stdout.contains("unchanged"), "\(again.stdout) \(again.stderr)")
        #expect(try Registry(path: db).board(id: id)?.enrollment?.action == .unchanged)
    }

    @Test("registry reissue: without --enroll the new certificate is not enrolled; --enroll replaces DPS's and records it")
    func reissueEnroll() throws {
        let (v, dir, kit, dps) = try setup()
        defer { dps.stop(); kit.stop(); try? FileManager.default.removeItem(atPath: dir) }
        let db = dir + "/registry.sqlite"
        let provisioned = try RegistryCLIProcess.run(
            cli.provisionArgs(v, dir, kit) + ["--uds-file", dir + "/board.uds"] + dpsOptions(dps))
        #expect(provisioned.status == 0, "\(provisioned.stderr)")
        // New firmware: a new certificate for the same registration ID.
        let tiny = DiceVector.fixtures.appendingPathComponent("firmware/Tiny.ino.elf").path
        let plain = try RegistryCLIProcess.run(
            ["registry", "reissue", "--elf", tiny, "--output-dir", dir + "/new", "--registry", db])
        #expect(plain.status == 0, "\(plain.stderr)")
        var row = try #require(try Registry(path: db).allBoards().first)
        #expect(row.awaitsEnrollment && row.enrollment?.action == .created, "an older certificate is enrolled")
        let list = try RegistryCLIProcess.run(["registry", "list", "--registry", db])
        #expect(list.stdout.contains("old certificate"), "\(list.stdout)")

        let pushed = try RegistryCLIProcess.run(
            ["registry", "reissue", "--elf", tiny, "--output-dir", dir + "/new", "--registry", db, "--enroll"]
                + dpsOptions(dps))
        #expect(pushed.status == 0, "\(pushed.stderr)")
        #expect(pushed.stdout.contains("enrolled in DPS (updated)"), "\(pushed.stdout)")
        row = try #require(try Registry(path: db).allBoards().first)
        #expect(row.isEnrolled && row.enrollment?.action == .updated)
        let held = try #require(try shown(v.registrationID, dps))
        let info = (((held["attestation"] as? [String: Any])?["x509"] as? [String: Any])?["clientCertificates"]
            as? [String: Any]).flatMap { ($0["primary"] as? [String: Any])?["info"] as? [String: Any] }
        #expect(info?["sha1Thumbprint"] as? String == row.certificateSHA1)

        // --enroll needs the connection string; the connection string needs --enroll.
        let missing = try RegistryCLIProcess.run(["registry", "reissue", "--elf", tiny, "--registry", db, "--enroll"])
        #expect(missing.status == 64 && missing.stderr.contains("--enroll needs --dps-connection-string-file"), "\(missing.stderr)")
    }

    @Test("DPS holding another certificate: a conflict, not replaced; exit 1 and the --replace command")
    func conflictIsReported() throws {
        let (v, dir, kit, dps) = try setup()
        defer { dps.stop(); kit.stop(); try? FileManager.default.removeItem(atPath: dir) }
        // Another certificate enrolled under this board's ID first: the same board
        // with a different UDS.
        let otherUDS = dir + "/other.uds"
        try (String(repeating: "5a", count: 32) + "\n").write(toFile: otherUDS, atomically: false, encoding: .utf8)
        let cert = try RegistryCLIProcess.run([
            "cert", "--bin", v.bin, "--map", v.map, "--uds-file", otherUDS, "--registration-id", v.registrationID,
            "--output-dir", dir + "/other",
        ])
        #expect(cert.status == 0, "\(cert.stderr)")
        let first = try RegistryCLIProcess.run(
            ["dps", "enroll", "--cert", dir + "/other/\(v.registrationID).pem"] + dps.dpsArguments())
        #expect(first.status == 0, "\(first.stderr)")
        let before = try shown(v.registrationID, dps)?["etag"] as? String

        let r = try RegistryCLIProcess.run(
            cli.provisionArgs(v, dir, kit) + ["--uds-file", dir + "/board.uds", "--json"] + dpsOptions(dps))
        #expect(r.status == 1, "\(r.stderr)")
        let result = try lastJSON(r.stdout)
        #expect(result["state"] as? String == "done, not enrolled")
        let enrollment = try #require(result["enrollment"] as? [String: Any])
        #expect(enrollment["action"] as? String == "conflict")
        #expect((enrollment["finish_command"] as? String)?.hasSuffix("--replace") == true, "\(enrollment)")
        #expect(try shown(v.registrationID, dps)?["etag"] as? String == before, "the enrollment was not written")
        let row = try #require(try Registry(path: dir + "/registry.sqlite").allBoards().first)
        #expect(row.enrollment?.action == .conflict && row.awaitsEnrollment)
    }

    @Test("Inputs checked before the board is touched: a bad connection string, two '-', options without the file")
    func validatedEarly() throws {
        let (v, dir, kit, dps) = try setup()
        defer { dps.stop(); kit.stop(); try? FileManager.default.removeItem(atPath: dir) }
        try "HostName=x;SharedAccessKeyName=p\n".write(toFile: dir + "/bad.cs", atomically: false, encoding: .utf8)
        let bad = try RegistryCLIProcess.run(
            cli.provisionArgs(v, dir, kit) + ["--generate-uds", "--dps-connection-string-file", dir + "/bad.cs"])
        #expect(bad.status == 65, "\(bad.stderr)")
        #expect(bad.stderr.contains("does not hold a DPS connection string") && bad.stderr.contains("SharedAccessKey"),
                "\(bad.stderr)")
        let missingCA = try RegistryCLIProcess.run(
            cli.provisionArgs(v, dir, kit) + ["--generate-uds"] + dpsOptions(dps).dropLast() + [dir + "/none.pem"])
        #expect(missingCA.status == 66, "\(missingCA.stderr)")
        let plain = try RegistryCLIProcess.run(
            cli.provisionArgs(v, dir, kit) + ["--generate-uds", "--dps-connection-string-file", dps.connectionStringFile,
                                              "--dps-endpoint", dps.url.replacingOccurrences(of: "https:", with: "http:")])
        #expect(plain.status == 64 && plain.stderr.contains("not an https URL"), "\(plain.stderr)")
        // A registration ID the firmware takes but DPS refuses: the board would get a
        // UDS and files whose enrollment nothing could ever finish.
        for (id, words) in [(String(repeating: "a", count: 65), "65 characters"), ("-bench-7", "starts or ends with '-'")] {
            let refused = try RegistryCLIProcess.run(
                cli.provisionArgs(v, dir, kit) + ["--generate-uds", "--registration-id=\(id)"] + dpsOptions(dps))
            #expect(refused.status == 64 && refused.stderr.contains(words), "\(id): \(refused.stderr)")
            #expect(refused.stderr.contains("choose another --registration-id"), "\(refused.stderr)")
        }
        #expect(kit.state.uds == nil, "nothing was sent to the board")
        #expect(try Registry(path: dir + "/registry.sqlite").allBoards().isEmpty)

        let twice = try RegistryCLIProcess.run(
            cli.provisionArgs(v, dir, kit) + ["--uds-file", "-", "--dps-connection-string-file", "-"])
        #expect(twice.status == 64)
        #expect(twice.stderr.contains("Only one secret can come from standard input ('-'), not --uds-file and "
            + "--dps-connection-string-file"), "\(twice.stderr)")
        let alone = try RegistryCLIProcess.run(
            cli.provisionArgs(v, dir, kit) + ["--generate-uds", "--dps-endpoint", dps.url])
        #expect(alone.status == 64 && alone.stderr.contains("give --dps-connection-string-file too"), "\(alone.stderr)")
    }

    @Test("The connection string from standard input: used once, never stored; a resume must be given it again")
    func connectionStringFromStandardInput() throws {
        let (v, dir, kit, dps) = try setup()
        defer { dps.stop(); kit.stop(); try? FileManager.default.removeItem(atPath: dir) }
        let db = dir + "/registry.sqlite"
        let text = try #require(consoleReadText(dps.connectionStringFile))
        let closed = "https://127.0.0.1:\(try closedLoopbackPort())"
        let r = try TestProcess.run(
            [TestProcess.devkitBinary] + cli.provisionArgs(v, dir, kit)
                + ["--uds-file", dir + "/board.uds", "--dps-connection-string-file", "-", "--dps-endpoint", closed,
                   "--dps-ca-file", dps.caFile],
            stdin: Array(text.utf8), timeout: 60)
        #expect(r.status == 69, "\(r.stderr)")
        #expect(r.stderr.contains("--connection-string-file -"), "the finishing command reads it from stdin again: \(r.stderr)")
        let settings = try #require(try Registry(path: db).board(id: 1)?.provisionSettings)
        #expect(settings.contains("\"dps_connection_string_file\":\"-\""), "\(settings)")
        #expect(!settings.contains("SharedAccessKey"))
        let resumed = try RegistryCLIProcess.run(["provision", "--resume", "1", "--registry", db, "--port", kit.devicePath])
        #expect(resumed.status == 64, "\(resumed.stderr)")
        #expect(resumed.stderr.contains("came from standard input, which devkit never stores"), "\(resumed.stderr)")
    }

    @Test("watch with a [dps] profile enrolls each board as its last step")
    func watchWithADPSProfile() throws {
        let (v, dir, kit, dps) = try setup()
        defer { dps.stop(); kit.stop(); try? FileManager.default.removeItem(atPath: dir) }
        let db = dir + "/registry.sqlite"
        try """
            output_dir = "out"
            [firmware]
            bin = "\(v.bin)"
            map = "\(v.map)"
            [uds]
            policy = "generate"
            [dps]
            connection_string_file = "\(dps.connectionStringFile)"
            endpoint = "\(dps.url)"
            ca_file = "\(dps.caFile)"
            """.write(toFile: dir + "/p.toml", atomically: false, encoding: .utf8)
        let r = try RegistryCLIProcess.run(["watch", "--profile", dir + "/p.toml", "--registry", db, "--port", kit.devicePath])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stderr.contains("enrolled in DPS (created)"), "\(r.stderr)")
        let row = try #require(try Registry(path: db).allBoards().first)
        #expect(row.isEnrolled && row.enrollment?.action == .created && row.enrollment?.dpsHost == "localhost")
        #expect(try shown(v.registrationID, dps) != nil)
    }

    /// What `watch` and `autoconfigure` do with a board plugged in again (same USB
    /// serial; a bare pty has none, so in-process with the serial given): provisioned
    /// while DPS was down, it is only enrolled, its port not opened, its UDS kept.
    @Test("a finished board whose enrollment is owed is enrolled when it comes back, not provisioned again")
    func owedEnrollmentOnReplug() throws {
        let (v, dir, kit, dps) = try setup()
        defer { dps.stop(); kit.stop(); try? FileManager.default.removeItem(atPath: dir) }
        let registry = try Registry(path: dir + "/registry.sqlite")
        var profile = ProvisioningProfile(
            firmware: .binAndMap(bin: v.bin, map: v.map), uds: .generate, outputDirectory: dir,
            dps: DPSSettings(
                connectionStringFile: dps.connectionStringFile,
                endpoint: "https://127.0.0.1:\(try closedLoopbackPort())", caFile: dps.caFile))
        var events: [ProvisionEvent] = []
        let serial = "0672FF485550755187121525"
        let down = try ProfileProvisioner(profile: profile, registry: registry, measure: diceRIoTMeasurer())
            .provision(path: kit.devicePath, usbSerial: serial, report: { events.append($0) })
        guard case .provisioned(let result, resumed: false) = down else { Issue.record("\(down)"); return }
        #expect(result.enrollment?.isEnrolled == false && result.enrollment?.outcome.error?.kind == .unreachable)
        #expect(events.last?.stage == .enroll && events.last?.status == .failed)
        let uds = kit.state.uds
        #expect(try registry.board(id: result.boardID)?.awaitsEnrollment == true)

        profile.dps.endpoint = dps.url
        kit.stop()  // the port is not opened: the board need not even answer
        events = []
        let up = try ProfileProvisioner(profile: profile, registry: registry, measure: diceRIoTMeasurer())
            .provision(path: dir + "/no-such-port", usbSerial: serial, report: { events.append($0) })
        guard case .enrolled(let board, let enrollment) = up else { Issue.record("\(up)"); return }
        #expect(board.id == result.boardID && enrollment.isEnrolled && enrollment.outcome.action == .created)
        #expect(events.map(\.stage) == [.enroll, .enroll])
        let row = try #require(try registry.board(id: result.boardID))
        #expect(row.isEnrolled)
        #expect(try registry.allBoards().count == 1)
        #expect(kit.state.uds == uds)
        #expect(try shown(v.registrationID, dps) != nil)

        // Enrolled now: left alone the next time.
        let again = try ProfileProvisioner(profile: profile, registry: registry, measure: diceRIoTMeasurer())
            .provision(path: dir + "/no-such-port", usbSerial: serial, report: { _ in })
        guard case .alreadyProvisioned = again else { Issue.record("\(again)"); return }
    }
}

extension ProvisionDPSTests {
    /// `watch` with verify on: a board whose owed enrollment it just finished can
    /// register now, and is verified as a newly provisioned one is (here nobody
    /// resets it: a timeout, recorded in its row). Without [verify], not verified.
    @Test("a board whose owed enrollment was just finished is verified when verify is on")
    func owedEnrollmentIsVerified() throws {
        let (v, dir, kit, dps) = try setup()
        defer { dps.stop(); kit.stop(); try? FileManager.default.removeItem(atPath: dir) }
        let registry = try Registry(path: dir + "/registry.sqlite")
        var profile = ProvisioningProfile(
            firmware: .binAndMap(bin: v.bin, map: v.map), uds: .generate, outputDirectory: dir,
            dps: DPSSettings(
                connectionStringFile: dps.connectionStringFile,
                endpoint: "https://127.0.0.1:\(try closedLoopbackPort())", caFile: dps.caFile))
        let serial = "0672FF485550755187121526"
        let down = try ProfileProvisioner(profile: profile, registry: registry, measure: diceRIoTMeasurer())
            .provision(path: kit.devicePath, usbSerial: serial, report: { _ in })
        guard case .provisioned(let result, resumed: false) = down else { Issue.record("\(down)"); return }
        #expect(result.enrollment?.isEnrolled == false)

        profile.dps.endpoint = dps.url
        let unverified = ProfileProvisioner(profile: profile, registry: registry, measure: diceRIoTMeasurer())
        profile.verify = VerifySettings(timeoutSeconds: 3)
        let provisioner = ProfileProvisioner(profile: profile, registry: registry, measure: diceRIoTMeasurer())
        let up = try provisioner.provision(path: kit.devicePath, usbSerial: serial, report: { _ in })
        guard case .enrolled(let board, let enrollment) = up else { Issue.record("\(up)"); return }
        #expect(enrollment.isEnrolled)
        #expect(try unverified.verify(board, enrollment: enrollment, path: kit.devicePath, report: { _ in }) == nil)

        var events: [ProvisionEvent] = []
        let report = try #require(
            try provisioner.verify(board, enrollment: enrollment, path: kit.devicePath, report: { events.append($0) }))
        #expect(report.outcome.name == "timeout" && report.boardID == board.id)
        #expect(events.first?.stage == .verify && events.first?.status == .started)
        // The board booted its sketch to show its MAC: it needs a reset, which on the
        // virtual DevKit is a signal, and the message says which (a walkthrough waited
        // out the timeout not knowing).
        #expect(events.contains { $0.message.contains("press its reset button (not A; on a virtual DevKit, send `devkit emulate` SIGHUP") },
                "\(events.map(\.message))")
        #expect(try registry.board(id: result.boardID)?.verification?.outcome == "timeout")
    }
}
