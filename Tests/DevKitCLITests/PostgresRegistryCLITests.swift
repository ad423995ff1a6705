import DevKitModel
import DevKitRegistry
import DevKitTestSupport
import Foundation
import Testing
import VirtualDevKit

/// The commands on a shared PostgreSQL registry (issue 16): the built `devkit`
/// against a throwaway PostgreSQL cluster (PostgresCluster, a Unix socket in a
/// temporary directory), virtual DevKits and `devkit emulate-dps`.
@Suite(.serialized, .timeLimit(.minutes(10)), .enabled(if: PostgresCluster.available, "PostgreSQL's binaries are not installed (and CI is not set)"))
struct PostgresRegistryCLITests {
    /// A new database on the test cluster, a registry key made by `devkit registry
    /// keygen`, and a scratch directory.
    struct Shared {
        let cluster: PostgresCluster
        let database: String
        let url: String
        let dir: String
        let keyFile: String
        var registryArguments: [String] { ["--registry", url, "--key-file", keyFile] }

        func open() throws -> PostgresRegistry {
            try PostgresRegistry(location: try PostgresLocation(url: url), key: .file(keyFile))
        }
    }

    func shared() throws -> Shared { try shared(on: PostgresCluster.shared()) }

    /// As ``shared()``, on a cluster of the test's own, which it may stop, restart or
    /// reconfigure; the test stops it (``PostgresCluster/stop()``).
    func dedicated() throws -> Shared { try shared(on: PostgresCluster.dedicated()) }

    func shared(on cluster: PostgresCluster) throws -> Shared {
        let database = try cluster.createDatabase()
        let dir = registryTestDirectory()
        let keygen = try RegistryCLIProcess.run(["registry", "keygen", dir + "/lab.key"])
        #expect(keygen.status == 0, "\(keygen.stderr)")
        return Shared(cluster: cluster, database: database, url: cluster.url(database), dir: dir, keyFile: dir + "/lab.key")
    }

    func json(_ stdout: String) throws -> Any { try JSONSerialization.jsonObject(with: Data(stdout.utf8)) }

    @Test("two boards provisioned into PostgreSQL; list, show, export, cert --from-registry, reissue, dps enroll, resume; pg_dump holds no clear UDS")
    func everyCommandOnASharedRegistry() throws {
        let s = try shared()
        let v = try ProvisionCLITests.vector()
        defer { try? FileManager.default.removeItem(atPath: s.dir) }
        try (v.uds + "\n").write(toFile: s.dir + "/board.uds", atomically: false, encoding: .utf8)
        let first = try startedKit(.init(macAddress: v.mac, firmwareVersion: v.version))
        defer { first.stop() }
        let second = try startedKit(.init(macAddress: "a4cf120b0002", firmwareVersion: v.version))
        defer { second.stop() }
        let dps = try TestDPSEmulator(stateDirectory: s.dir + "/dps")
        defer { dps.stop() }

        func provision(_ kit: VirtualDevKit, _ extra: [String]) throws -> RegistryCLIProcess {
            try RegistryCLIProcess.run(
                ["provision", "--port", kit.devicePath, "--bin", v.bin, "--map", v.map, "--output-dir", s.dir + "/out"]
                    + s.registryArguments + extra)
        }
        let a = try provision(first, ["--uds-file", s.dir + "/board.uds", "--station", "line-1"])
        #expect(a.status == 0, "\(a.stderr)")
        #expect(try String(contentsOfFile: s.dir + "/out/\(v.registrationID).pem", encoding: .utf8) == v.certificate)
        // The second board stops after its UDS is recorded and sent (kill -9), to be resumed.
        var env = ProcessInfo.processInfo.environment
        env["DEVKIT_TEST_KILL_AFTER_STEP"] = "uds_confirmed"
        let killed = try RegistryCLIProcess.run(
            ["provision", "--port", second.devicePath, "--bin", v.bin, "--map", v.map, "--output-dir", s.dir + "/out",
             "--generate-uds", "--station", "line-2"] + s.registryArguments,
            environment: env)
        #expect(killed.status == SIGKILL, "\(killed.stderr)")

        // list: both, with their stations; --station filters; --unfinished.
        let list = try RegistryCLIProcess.run(["registry", "list", "--json"] + s.registryArguments)
        #expect(list.status == 0, "\(list.stderr)")
        let boards = try #require(try json(list.stdout) as? [[String: Any]])
        #expect(boards.map { $0["station"] as? String } == ["line-1", "line-2"])
        #expect(boards.map { $0["state"] as? String } == ["done", "in_progress"])
        #expect(boards.allSatisfy { $0["uds"] == nil })
        let mine = try RegistryCLIProcess.run(["registry", "list", "--station", "line-2", "--json"] + s.registryArguments)
        #expect((try json(mine.stdout) as? [[String: Any]])?.map { $0["state"] as? String } == ["in_progress"], "\(mine.stdout)")
        let table = try RegistryCLIProcess.run(["registry", "list", "--unfinished"] + s.registryArguments)
        #expect(table.stdout.contains("STATION") && table.stdout.contains("line-2") && !table.stdout.contains("line-1"),
                "\(table.stdout)")

        // show and export.
        let show = try RegistryCLIProcess.run(["registry", "show", v.mac] + s.registryArguments)
        #expect(show.status == 0 && show.stdout.contains("line-1") && !show.stdout.contains(v.uds.lowercased()),
                "\(show.stdout) \(show.stderr)")
        let export = try RegistryCLIProcess.run(["registry", "export", "--format", "json"] + s.registryArguments)
        #expect(export.status == 0, "\(export.stderr)")
        #expect(export.stdout.contains(v.registrationID) && !export.stdout.contains(v.uds.lowercased()))

        // provision --resume finishes the second board with the UDS the registry holds.
        let row = try #require(try s.open().allBoards().first { $0.station == "line-2" })
        if row.macReadAt == nil { second.reset(into: .configuration) }
        let resumed = try RegistryCLIProcess.run(
            ["provision", "--port", second.devicePath, "--resume", "\(row.id!)"] + s.registryArguments)
        #expect(resumed.status == 0, "\(resumed.stderr)")
        #expect(second.state.uds == row.uds.hexString)
        #expect(try s.open().board(id: row.id!)?.state == .done)

        // cert --from-registry: the first board's certificate from its recorded UDS.
        let cert = try RegistryCLIProcess.run(
            ["cert", "--from-registry", "--bin", v.bin, "--map", v.map, "--output-dir", s.dir + "/cert"] + s.registryArguments)
        #expect(cert.status == 0, "\(cert.stderr)")
        #expect(try String(contentsOfFile: s.dir + "/cert/\(v.registrationID).pem", encoding: .utf8) == v.certificate)

        // registry reissue: new firmware, new certificates, recorded in the shared rows.
        let tiny = DiceVector.fixtures.appendingPathComponent("firmware/Tiny.ino.elf").path
        let reissued = try RegistryCLIProcess.run(
            ["registry", "reissue", "--elf", tiny, "--output-dir", s.dir + "/new"] + s.registryArguments)
        #expect(reissued.status == 0, "\(reissued.stderr)")
        let after = try s.open().allBoards()
        #expect(after.count == 2 && after.allSatisfy { $0.certificatePath?.hasPrefix(s.dir + "/new/") == true },
                "\(after.map(\.certificatePath))")

        // dps enroll --from-registry: both enrolled in the local DPS, recorded in PostgreSQL.
        let enrolled = try RegistryCLIProcess.run(
            ["dps", "enroll", "--from-registry"] + s.registryArguments + dps.dpsArguments())
        #expect(enrolled.status == 0, "\(enrolled.stdout) \(enrolled.stderr)")
        #expect(try s.open().allBoards().allSatisfy { $0.isEnrolled && $0.enrollment?.action == .created })

        // A backup of the server holds neither UDS in clear text.
        let dump = try s.cluster.dump(s.database)
        #expect(dump.contains("sealed1:"))
        for uds in try s.open().allBoards().map(\.uds) {
            #expect(!dump.contains(uds.hexString) && !dump.contains(uds.hexString.uppercased()))
        }
    }

    @Test("a shared registry: no key file is a 77 that says to share one key; a password in the URL is refused; no server is a 75")
    func refusals() throws {
        let s = try shared()
        defer { try? FileManager.default.removeItem(atPath: s.dir) }
        // An empty database holds no registry for a reader (66), and gets no schema from it.
        let none = try RegistryCLIProcess.run(["registry", "list", "--registry", s.url, "--key-file", s.keyFile])
        #expect(none.status == 66 && none.stderr.contains("holds no devkit registry"), "\(none.stderr)")
        _ = try s.open()  // a station made the schema
        // Listing shows no secret and needs no key; the UDS does.
        let listed = try RegistryCLIProcess.run(
            ["registry", "list", "--registry", s.url],
            environment: ["XDG_CONFIG_HOME": s.dir + "/config", "HOME": s.dir])
        #expect(listed.status == 0 && listed.stdout.contains("No boards"), "\(listed.stdout)\(listed.stderr)")
        let noKey = try RegistryCLIProcess.run(
            ["registry", "export", "--include-secrets", "--registry", s.url],
            environment: ["XDG_CONFIG_HOME": s.dir + "/config", "HOME": s.dir])
        #expect(noKey.status == 77, "\(noKey.stderr)")
        #expect(noKey.stderr.contains("devkit registry keygen") && noKey.stderr.contains("every station"), "\(noKey.stderr)")
        #expect(!FileManager.default.fileExists(atPath: s.dir + "/config/devkit/registry.key"))

        let password = try RegistryCLIProcess.run(
            ["registry", "list", "--registry", "postgresql://devkit:hunter2@db.invalid/devkit", "--key-file", s.keyFile])
        #expect(password.status == 64 && !password.stderr.contains("hunter2"), "\(password.stderr)")
        #expect(password.stderr.contains("~/.pgpass") && password.stderr.contains("PGPASSFILE")
            && password.stderr.contains("password_file"), "\(password.stderr)")

        // A URL devkit cannot use is a usage error (64), not a missing key (77) or an I/O error.
        for bad in ["postgresql://db.invalid/devkit", "postgresql://devkit@db.invalid/", "postgresql://devkit@db.invalid/x?sslmode=maybe"] {
            let refused = try RegistryCLIProcess.run(["registry", "list", "--registry", bad, "--key-file", s.keyFile])
            #expect(refused.status == 64 && refused.stderr.contains("--registry"), "\(bad): \(refused.stderr)")
        }

        // verify-full with no CA file anywhere: a clear 66 naming ~/.postgresql/root.crt, before any connection.
        let noCA = try RegistryCLIProcess.run(
            ["registry", "list", "--registry", "postgresql://devkit@db.invalid/devkit?sslmode=verify-full", "--key-file", s.keyFile],
            environment: ["HOME": s.dir])
        #expect(noCA.status == 66 && noCA.stderr.contains(s.dir + "/.postgresql/root.crt"), "\(noCA.stderr)")

        let down = try RegistryCLIProcess.run(
            ["registry", "list", "--registry", "postgresql://devkit@/devkit?host=\(s.dir)", "--key-file", s.keyFile])
        #expect(down.status == 75, "\(down.stderr)")
        #expect(down.stderr.contains("postgresql://devkit@:5432/devkit?host=\(s.dir)")
            && down.stderr.contains("check that the server runs"), "\(down.stderr)")
    }

    @Test("the server restarted mid-run: exit 75 before anything is sent, or after the UDS is recorded; --resume finishes once it is back")
    func aServerRestartedMidRun() throws {
        let s = try dedicated()
        defer { s.cluster.stop() }
        let (cluster, dir) = (s.cluster, s.dir)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let v = try ProvisionCLITests.vector()
        try (v.uds + "\n").write(toFile: dir + "/board.uds", atomically: false, encoding: .utf8)
        let kit = try startedKit(.init(macAddress: v.mac, firmwareVersion: v.version))
        defer { kit.stop() }
        let arguments = ["provision", "--port", kit.devicePath, "--bin", v.bin, "--map", v.map, "--output-dir", dir + "/out",
                         "--uds-file", dir + "/board.uds", "--station", "line-1"] + s.registryArguments

        // Down before the run: a clear 75, and nothing sent.
        try cluster.stopServer()
        let before = try RegistryCLIProcess.run(arguments)
        #expect(before.status == 75, "\(before.stderr)")
        #expect(before.stderr.contains("cannot reach the registry's PostgreSQL server"), "\(before.stderr)")
        #expect(kit.state.uds != v.uds.lowercased(), "a UDS went out with the server down")
        try cluster.startServer()

        // Stopped (-m fast) right after the UDS is committed, before the line goes out.
        let run = try BackgroundDevkit(arguments, environment: ["DEVKIT_TEST_PAUSE_AFTER_STEP": "uds_sent"])
        let pid = run.process.processIdentifier
        func stopped() -> Bool { processState(pid) == "T" }
        let deadline = ContinuousClock.now + .seconds(120)
        while !stopped() && run.process.isRunning && ContinuousClock.now < deadline { usleep(50_000) }
        #expect(stopped(), "devkit did not reach uds_sent")
        try cluster.stopServer()
        kill(pid, SIGCONT)
        let status = run.wait(timeout: .seconds(180))
        let stderr = String(decoding: run.stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(status == 75, "\(stderr)")
        #expect(stderr.contains("cannot reach the registry's PostgreSQL server"), "\(stderr)")
        // Failed at the stage that was running (the row could not say): not at the
        // enrollment, which never started.
        #expect(stderr.contains("[ERR] ") && !stderr.contains("[ERR] enrollment"), "\(stderr)")

        // Back: the row was committed before anything was sent, and --resume finishes it.
        try cluster.startServer()
        let registry = try s.open()
        let rows = try registry.allBoards()
        #expect(rows.count == 1 && rows.first?.uds.hexString.lowercased() == v.uds.lowercased() && rows.first?.state != .done, "\(rows)")
        if let sent = kit.state.uds { #expect(sent == v.uds.lowercased(), "the board holds a UDS the registry does not") }
        let row = try #require(rows.first)
        let resumed = try RegistryCLIProcess.run(["provision", "--port", kit.devicePath, "--resume", "\(row.id!)"] + s.registryArguments)
        #expect(resumed.status == 0, "\(resumed.stderr)")
        #expect(try registry.board(id: row.id!)?.state == .done)
        #expect(kit.state.uds == v.uds.lowercased())
    }

    @Test("a server that asks for a password: --registry-password-file gives it to any registry command (mode 0600 only); none is a 77 naming the option; an SQLite registry refuses one")
    func aRegistryPasswordFile() throws {
        let s = try dedicated()
        defer { s.cluster.stop() }
        let (cluster, database, dir) = (s.cluster, s.database, s.dir)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // A role that must give its password over the socket (scram), the others as before.
        try cluster.sql(database, "CREATE ROLE station LOGIN SUPERUSER PASSWORD 'line-2 secret'")
        let hba = try #require(try cluster.sql(database, "SHOW hba_file").split(separator: "\n").first.map(String.init))
        let rules = try String(contentsOfFile: hba, encoding: .utf8)
        try ("local all station scram-sha-256\n" + rules).write(toFile: hba, atomically: false, encoding: .utf8)
        try cluster.sql(database, "SELECT pg_reload_conf()")
        usleep(300_000)
        let url = cluster.url(database).replacingOccurrences(of: "devkit@", with: "station@")
        let registry = ["--registry", url, "--key-file", dir + "/lab.key"]
        let environment = ["HOME": dir, "PGPASSFILE": dir + "/none"]

        let none = try RegistryCLIProcess.run(["registry", "upgrade"] + registry, environment: environment)
        #expect(none.status == 77, "\(none.stderr)")
        #expect(none.stderr.contains("--registry-password-file"), "\(none.stderr)")

        try "line-2 secret\n".write(toFile: dir + "/pg.password", atomically: false, encoding: .utf8)
        chmod(dir + "/pg.password", 0o644)
        let open = try RegistryCLIProcess.run(
            ["registry", "upgrade"] + registry + ["--registry-password-file", dir + "/pg.password"], environment: environment)
        #expect(open.status == 77 && open.stderr.contains("chmod 600"), "\(open.stderr)")
        #expect(!open.stderr.contains("line-2 secret"))

        chmod(dir + "/pg.password", 0o600)
        let upgraded = try RegistryCLIProcess.run(
            ["registry", "upgrade"] + registry + ["--registry-password-file", dir + "/pg.password"], environment: environment)
        #expect(upgraded.status == 0, "\(upgraded.stderr)")
        let listed = try RegistryCLIProcess.run(
            ["registry", "list", "--json"] + registry + ["--registry-password-file", dir + "/pg.password"], environment: environment)
        #expect(listed.status == 0 && listed.stdout.hasPrefix("["), "\(listed.stderr)")
        #expect(!listed.stderr.contains("line-2 secret") && !listed.stdout.contains("line-2 secret"))

        let sqlite = try RegistryCLIProcess.run(
            ["registry", "list", "--registry", dir + "/r.sqlite", "--key-file", dir + "/lab.key",
             "--registry-password-file", dir + "/pg.password"])
        #expect(sqlite.status == 64 && sqlite.stderr.contains("SQLite file, which has no password"), "\(sqlite.stderr)")
        #expect(!sqlite.stderr.contains("Usage:"), "\(sqlite.stderr)")
        // Also where the file does not exist (a command that needs recorded boards says 64, not 66).
        let missing = try RegistryCLIProcess.run(
            ["registry", "upgrade", "--registry", dir + "/none.sqlite", "--key-file", dir + "/lab.key",
             "--registry-password-file", dir + "/pg.password"])
        #expect(missing.status == 64 && missing.stderr.contains("which has no password"), "\(missing.stderr)")
        // Without --from-registry no registry is read: its options are refused, not ignored.
        for command in [["cert", "--elf", dir + "/x.elf", "--uds-file", dir + "/u.hex"], ["dps", "enroll", "--cert", dir + "/c.pem", "--connection-string-file", dir + "/cs"]] {
            let stray = try RegistryCLIProcess.run(command + ["--registry-password-file", dir + "/pg.password"])
            #expect(stray.status == 64 && stray.stderr.contains("go with --from-registry"), "\(command): \(stray.stderr)")
        }

        // migrate: the option is the --to server's (the SQLite side has none); the
        // spelling before it, --password-file, still works; both at once is refused.
        _ = try Registry(path: dir + "/station.sqlite", key: .file(dir + "/lab.key"))
        let migrate = ["registry", "migrate", "--to", url, "--registry", dir + "/station.sqlite", "--key-file", dir + "/lab.key"]
        for spelling in ["--registry-password-file", "--password-file"] {
            let moved = try RegistryCLIProcess.run(migrate + [spelling, dir + "/pg.password"], environment: environment)
            #expect(moved.status == 0 && moved.stdout.contains("Nothing to copy"), "\(spelling): \(moved.stderr)")
        }
        let twice = try RegistryCLIProcess.run(
            migrate + ["--registry-password-file", dir + "/pg.password", "--password-file", dir + "/pg.password"])
        #expect(twice.status == 64, "\(twice.stderr)")
        let help = try RegistryCLIProcess.run(["registry", "migrate", "--help"])
        #expect(help.stdout.contains("--registry-password-file") && !help.stdout.contains(" --password-file"), "\(help.stdout)")
    }

    @Test("watch started while the server is down waits for it (said once), then watches once it answers; with --port it exits 75 at once")
    func watchWaitsForItsServer() throws {
        let s = try dedicated()
        defer { s.cluster.stop() }
        let (cluster, database, dir) = (s.cluster, s.database, s.dir)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try WatchCommandTests().writeProfile(elf: WatchCommandTests.elf, in: dir)
        let arguments = ["watch", "--profile", dir + "/p.toml", "--registry", cluster.url(database), "--key-file", dir + "/lab.key"]
        try cluster.stopServer()

        // A finite run (--port) does not wait: 75, as before.
        let once = try RegistryCLIProcess.run(arguments + ["--port", dir + "/no-board"])
        #expect(once.status == 75, "\(once.stderr)")
        #expect(once.stderr.contains("cannot reach the registry's PostgreSQL server") && !once.stderr.contains("waiting"), "\(once.stderr)")

        let watch = try BackgroundDevkit(arguments)
        var text = ""
        func readStderr(until needle: String, within limit: Duration) {
            let fd = watch.stderr.fileHandleForReading.fileDescriptor
            let deadline = ContinuousClock.now + limit
            while !text.contains(needle) && ContinuousClock.now < deadline {
                var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                guard poll(&p, 1, 100) > 0 else { continue }
                var buffer = [UInt8](repeating: 0, count: 4096)
                let n = read(fd, &buffer, buffer.count)
                if n <= 0 { return }
                text += String(decoding: buffer[..<n], as: UTF8.self)
            }
        }
        readStderr(until: "waiting for it", within: .seconds(60))
        #expect(text.contains("cannot reach the registry's PostgreSQL server") && text.contains("waiting for it (Ctrl-C stops)"), "\(text)")
        #expect(text.contains("check that the server runs"), "what to check, in case it is a typo: \(text)")
        // Still waiting tries later (after 1 and 2 s), and said once for one reason.
        readStderr(until: "watching for DevKits", within: .seconds(4))
        #expect(watch.process.isRunning, "\(text)")
        #expect(!text.contains("watching for DevKits"), "\(text)")
        #expect(text.components(separatedBy: "waiting for it").count == 2, "\(text)")

        try cluster.startServer()
        readStderr(until: "watching for DevKits", within: .seconds(60))
        #expect(text.contains("the registry answers again") && text.contains("watching for DevKits"), "\(text)")
        // It is a station like any other: its schema is there, and SIGTERM stops it cleanly.
        #expect(try cluster.sql(database, "SELECT count(*) FROM board").trimmingCharacters(in: .whitespacesAndNewlines) == "0")
        kill(watch.process.processIdentifier, SIGTERM)
        #expect(watch.wait(timeout: .seconds(60)) == 0, "\(text)")
    }

    @Test("a board another station is provisioning: exit 75 naming that station, nothing recorded or sent; free once it lets go")
    func aBoardOfAnotherStationIsRefused() throws {
        let s = try shared()
        let v = try ProvisionCLITests.vector()
        defer { try? FileManager.default.removeItem(atPath: s.dir) }
        try (v.uds + "\n").write(toFile: s.dir + "/board.uds", atomically: false, encoding: .utf8)
        let kit = try startedKit(.init(macAddress: v.mac, firmwareVersion: v.version))
        defer { kit.stop() }
        let arguments = ["provision", "--port", kit.devicePath, "--bin", v.bin, "--map", v.map, "--output-dir", s.dir + "/out",
                         "--mac", v.mac, "--uds-file", s.dir + "/board.uds", "--station", "line-2"] + s.registryArguments
        try ProvisionCLITests.expectRefusedWhileHeld(
            arguments, by: try s.open(), holder: "line-1", named: "line-1", station: "line-2", v, kit)
    }

    @Test("kill -9 of a station after each step, then --resume from another station: the UDS recorded is the one the board holds, each board finished once")
    func aKilledStationsBoardIsFinishedByAnother() throws {
        let s = try shared()
        let v = try ProvisionCLITests.vector()
        defer { try? FileManager.default.removeItem(atPath: s.dir) }
        for (n, step) in ["uds_sent", "uds_confirmed", "version_read", "mac_read"].enumerated() {
            let mac = String(format: "a4cf120b%04x", n + 1)
            let kit = try startedKit(.init(macAddress: mac, firmwareVersion: v.version))
            defer { kit.stop() }
            var env = ProcessInfo.processInfo.environment
            env["DEVKIT_TEST_KILL_AFTER_STEP"] = step
            let killed = try RegistryCLIProcess.run(
                ["provision", "--port", kit.devicePath, "--bin", v.bin, "--map", v.map, "--output-dir", s.dir + "/out",
                 "--generate-uds", "--station", "line-1"] + s.registryArguments,
                environment: env)
            #expect(killed.status == SIGKILL, "killed after \(step): \(killed.stderr)")
            let rows = try s.open().allBoards()
            #expect(rows.count == n + 1, "after \(step): \(rows.map(\.id))")
            let row = try #require(rows.last, "nothing recorded before kill -9 after \(step)")
            #expect(row.state == .inProgress && row.station == "line-1", "after \(step)")

            if row.macReadAt == nil { kit.reset(into: .configuration) }
            let resumed = try RegistryCLIProcess.run(
                ["provision", "--port", kit.devicePath, "--resume", "\(row.id!)", "--station", "line-2"] + s.registryArguments)
            #expect(resumed.status == 0, "resume after \(step): \(resumed.stderr)")
            let finished = try #require(try s.open().board(id: row.id!))
            #expect(finished.state == .done && finished.mac == mac, "after \(step)")
            #expect(finished.uds == row.uds, "the row's UDS changed")
            #expect(kit.state.uds == row.uds.hexString, "after \(step): the board does not hold the recorded UDS")
            #expect(try s.open().allBoards().count == n + 1, "resume after \(step) made another row")
        }
    }

    @Test("registry migrate --to: the SQLite rows copied once, a second run copies nothing, a conflict is reported")
    func migrate() throws {
        let s = try shared()
        defer { try? FileManager.default.removeItem(atPath: s.dir) }
        let db = s.dir + "/station.sqlite"
        let sqlite = try Registry(path: db, key: .file(s.keyFile))
        let udsA = try UDS(hex: String(repeating: "a1", count: 32))
        let udsB = try UDS(hex: String(repeating: "b2", count: 32))
        let a = try sqlite.recordNewBoard(uds: udsA, mac: try MACAddress("a4cf120b0001"), station: "old-station")
        try sqlite.markSteps([.udsSent, .udsConfirmed], boardID: a.id!)
        try sqlite.recordNewBoard(uds: udsB, mac: try MACAddress("a4cf120b0002"))
        let arguments = ["registry", "migrate", "--to", s.url, "--registry", db, "--key-file", s.keyFile]

        let first = try RegistryCLIProcess.run(arguments)
        #expect(first.status == 0, "\(first.stderr)")
        #expect(first.stdout.contains("Copied 2 boards") && first.stdout.contains("0 already there"), "\(first.stdout)")
        // Which key now seals the shared registry, and that every station needs its file.
        #expect(first.stdout.contains("sealed with key \(sqlite.keyID), in \(s.keyFile): every station needs a copy"),
                "\(first.stdout)")
        let copied = try s.open().allBoards()
        #expect(copied.map(\.uds) == [udsA, udsB] && copied[0].station == "old-station")
        #expect(copied[0].completedSteps == [.udsRecorded, .udsSent, .udsConfirmed, .macRead])

        let again = try RegistryCLIProcess.run(arguments + ["--json"])
        #expect(again.status == 0, "\(again.stderr)")
        let counts = try #require(try json(again.stdout) as? [String: Any])
        #expect(counts["copied"] as? Int == 0 && counts["already_present"] as? Int == 2 && counts["conflicting"] as? Int == 0,
                "\(counts)")
        #expect(counts["key_id"] as? String == sqlite.keyID && counts["key_file"] as? String == s.keyFile, "\(counts)")
        let human = try RegistryCLIProcess.run(arguments)
        #expect(human.stdout.contains("Nothing to copy"), "\(human.stdout)")

        // Another station gave a board this one recorded another UDS: reported, not copied, exit 1.
        let other = try s.open().recordNewBoard(uds: try UDS(hex: String(repeating: "c3", count: 32)), mac: try MACAddress("a4cf120b0003"))
        try sqlite.recordNewBoard(uds: try UDS(hex: String(repeating: "d4", count: 32)), mac: try MACAddress("a4cf120b0003"))
        let conflict = try RegistryCLIProcess.run(arguments + ["--json"])
        #expect(conflict.status == 1, "\(conflict.stderr)")
        let result = try #require(try json(conflict.stdout) as? [String: Any])
        #expect(result["conflicting"] as? Int == 1 && result["copied"] as? Int == 0, "\(result)")
        let item = try #require((result["conflicts"] as? [[String: Any]])?.first)
        #expect(item["mac"] as? String == "a4cf120b0003" && item["existing_board"] as? Int == Int(other.id!))
        #expect(item["by"] as? String == "mac" && item["value_kind"] as? String == "mac" && item["value"] as? String == "a4cf120b0003")
        #expect(conflict.stderr.contains("is not copied") && conflict.stderr.contains("board #\(other.id!)"), "\(conflict.stderr)")
        // The two rows to compare, each with the command that shows it.
        #expect(conflict.stderr.contains("devkit registry show 3 --registry \(db) --key-file \(s.keyFile)")
            && conflict.stderr.contains("devkit registry show \(other.id!) --registry '\(s.url)' --key-file \(s.keyFile)"),
                "\(conflict.stderr)")
        #expect(try s.open().allBoards().count == 3)

        // One key file for two registries: a key error says which registry it is about.
        let otherKey = s.dir + "/other.key"
        #expect(try RegistryCLIProcess.run(["registry", "keygen", otherKey]).status == 0)
        let fresh = s.dir + "/fresh.sqlite"
        _ = try Registry(path: fresh, key: .file(otherKey)).recordNewBoard(
            uds: try UDS(hex: String(repeating: "e5", count: 32)), mac: try MACAddress("a4cf120b0009"))
        let wrongShared = try RegistryCLIProcess.run(["registry", "migrate", "--to", s.url, "--registry", fresh, "--key-file", otherKey])
        #expect(wrongShared.status == 77 && wrongShared.stderr.contains("devkit: error: the shared registry "), "\(wrongShared.stderr)")
        let wrongSource = try RegistryCLIProcess.run(["registry", "migrate", "--to", s.url, "--registry", fresh, "--key-file", s.keyFile])
        #expect(wrongSource.status == 77 && wrongSource.stderr.contains("devkit: error: the SQLite registry "), "\(wrongSource.stderr)")
        // Either way the message says what works, and it does: re-seal the station's registry with the shared key.
        for wrong in [wrongShared, wrongSource] {
            #expect(wrong.stderr.contains("devkit registry rekey --registry \(fresh) --new-key-file SHARED.key"), "\(wrong.stderr)")
            #expect(wrong.stderr.contains("devkit registry migrate --registry \(fresh) --to '\(s.url)' --key-file SHARED.key"),
                    "\(wrong.stderr)")
        }
        let rekey = try RegistryCLIProcess.run(["registry", "rekey", "--registry", fresh, "--key-file", otherKey, "--new-key-file", s.keyFile])
        #expect(rekey.status == 0, "\(rekey.stderr)")
        let moved = try RegistryCLIProcess.run(["registry", "migrate", "--to", s.url, "--registry", fresh, "--key-file", s.keyFile, "--json"])
        #expect(moved.status == 0, "\(moved.stderr)")
        #expect((try json(moved.stdout) as? [String: Any])?["copied"] as? Int == 1, "\(moved.stdout)")
    }
}
