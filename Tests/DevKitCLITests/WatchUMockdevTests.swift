import DevKitModel
import DevKitRegistry
import DevKitTestSupport
import Foundation
import Testing

/// `devkit watch` end to end under umockdev: the real libudev in `devkit watch`
/// receives the `add`/`remove` uevents the hotplug driver emits, and the tty node
/// udev announces (/dev/ttyACM2) leads to a virtual DevKit (`devkit emulate`): the
/// driver makes the testbed's node a symlink to the emulator's pty and runs the
/// ioctls the preload would emulate (TIOCEXCL…) on that pty. So the board is
/// provisioned through the node udev named, as on a bench.
///
/// Each test runs one driver process group (driver, emulator, `devkit watch`),
/// bounded by a deadline that kills the whole group.
@Suite("devkit watch against umockdev and a virtual DevKit", .serialized, .timeLimit(.minutes(5)))
struct WatchUMockdevTests {
    static let serial = "066DFF3832584B3043174011"
    static let hotplug = ListTestSupport.fixtures.appendingPathComponent("hotplug-second-stlink.umockdev").path
    /// The same board back after an unplug, as ttyACM3 (umockdev cannot give a
    /// removed tty's name to a new device in one testbed; the kernel often does
    /// not either).
    static let replug = ListTestSupport.fixtures.appendingPathComponent("replug-devkit-ttyACM3.umockdev").path

    struct Bench {
        let dir: String
        let vector: ProvisionCLITests.Vector
        var registry: String { dir + "/registry.sqlite" }
        var link: String { dir + "/board" }
        var pem: String { dir + "/out/\(vector.registrationID).pem" }
    }

    /// A profile for the `devkit-size-image` reference vector: its firmware, its UDS
    /// prepared for the board's USB serial, derived registration ID.
    func bench() throws -> Bench {
        let v = try ProvisionCLITests.vector()
        let dir = registryTestDirectory()
        try FileManager.default.createDirectory(atPath: dir + "/uds", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: dir + "/out", withIntermediateDirectories: true)
        try (v.uds + "\n").write(toFile: dir + "/uds/\(Self.serial).uds", atomically: false, encoding: .utf8)
        try """
            output_dir = "\(dir)/out"
            registration_id = "derived"
            [firmware]
            bin = "\(v.bin)"
            map = "\(v.map)"
            [uds]
            policy = "from-file"
            directory = "\(dir)/uds"

            """.write(toFile: dir + "/profile.toml", atomically: false, encoding: .utf8)
        return Bench(dir: dir, vector: v)
    }

    /// Runs `devkit watch` (stdout and stderr merged, text mode) in a testbed with
    /// no DevKit, a virtual DevKit behind /dev/ttyACM2 and /dev/ttyACM3, and the
    /// driver's `steps`; returns the driver's result (its stdout is every line
    /// watch printed).
    func runWatch(
        _ bench: Bench, emulatorOptions: [String] = [], steps: [String], registryArguments: [String]? = nil
    ) throws -> ListProcessResult {
        let wrapper = try #require(ListTestSupport.which("umockdev-wrapper"), "umockdev-wrapper missing: apt install umockdev")
        let devkit = try ListTestSupport.devkitBinary
        let v = bench.vector
        let emulator = [devkit, "emulate", "--link", bench.link, "--mac", v.mac, "--firmware-version", v.version,
                        "--state", bench.dir + "/board-state.json"] + emulatorOptions
        var argv = [wrapper, "/usr/bin/python3", ListTestSupport.fixtures.appendingPathComponent("hotplug-driver.py").path,
                    "--initial", ListTestSupport.fixtures.appendingPathComponent("no-devkit.umockdev").path,
                    "--timeout", "20", "--echo-all", "--merge-stderr", "--check-exit",
                    "--board-command", emulator.map(shellQuoted).joined(separator: " "),
                    "--board", "/dev/ttyACM2=\(bench.link)", "--board", "/dev/ttyACM3=\(bench.link)"]
        argv += ["--step", "expect:watching for DevKits"] + steps.flatMap { ["--step", $0] }
        argv += ["--", devkit, "watch", "--profile", bench.dir + "/profile.toml"]
            + (registryArguments ?? ["--registry", bench.registry])
        let result = try ListTestSupport.run(argv, timeout: 50)
        #expect(!result.timedOut, "the driver was killed at its deadline:\n\(result.stdout)\n\(result.stderr)")
        return result
    }

    /// Runs a scenario on a fresh bench, and again (at most twice more) on a fresh
    /// bench when the harness (not devkit) lost the race described below.
    ///
    /// Rarely on an idle machine (never seen in the suite; about 1 run in 30 with
    /// four runs in parallel on two cores), and often with both cores saturated by
    /// other work, the TIOCEXCL devkit issues on the node right after its add
    /// uevent reaches umockdev's default ioctl handler instead of the driver's
    /// pass-through one and fails with ENOTTY, so devkit never reaches the board
    /// through that open. A fresh process probing the node at that moment gets the
    /// pass-through (tried: it did not help), so the cause is inside umockdev's
    /// preload in the long-lived, multi-threaded `devkit watch`. Only that exact
    /// failure is retried, from scratch; anything else fails the test.
    func scenario(
        emulatorOptions: [String] = [], steps: [String], registryArguments: (() throws -> [String])? = nil
    ) throws -> (Bench, ListProcessResult) {
        var bench = try bench()
        // Asked again for each attempt: a test whose registry the first attempt
        // changed gives a fresh one.
        var result = try runWatch(bench, emulatorOptions: emulatorOptions, steps: steps, registryArguments: registryArguments?())
        func lostRace() -> Bool {
            ["/dev/ttyACM2", "/dev/ttyACM3"].contains {
                result.stdout.contains("failed: ioctl(TIOCEXCL) failed on \($0): Inappropriate ioctl for device")
            }
        }
        var retries = 0
        while result.status != 0, lostRace(), retries < 2 {
            retries += 1
            try? FileManager.default.removeItem(atPath: bench.dir)
            bench = try self.bench()
            result = try runWatch(bench, emulatorOptions: emulatorOptions, steps: steps, registryArguments: registryArguments?())
        }
        return (bench, result)
    }

    /// The board state the emulator keeps: what the board stored.
    func storedUDS(_ bench: Bench) throws -> String? {
        let data = try Data(contentsOf: URL(fileURLWithPath: bench.dir + "/board-state.json"))
        return (try JSONSerialization.jsonObject(with: data) as? [String: Any])?["uds"] as? String
    }

    @Test("An add uevent reaches devkit watch, which provisions the virtual DevKit behind the node")
    func addProvisionsTheBoard() throws {
        let (bench, result) = try scenario(steps: ["add:\(Self.hotplug)", "expect:] provisioned "])
        defer { try? FileManager.default.removeItem(atPath: bench.dir) }
        let v = bench.vector
        #expect(result.status == 0, "driver or watch failed:\n\(result.stdout)\n\(result.stderr)")

        let out = result.stdout
        #expect(out.contains("[/dev/ttyACM2] DevKit \(Self.serial) appeared"), "\(out)")
        #expect(out.contains("[/dev/ttyACM2] provisioned \(v.registrationID): \(bench.pem)"), "\(out)")
        #expect(!out.contains("ttyUSB0"), "the FTDI adapter plugged in alongside is not a DevKit")
        #expect(!out.localizedCaseInsensitiveContains(v.uds), "the UDS is never printed")

        // The certificate is the reference vector's, byte for byte.
        #expect(try String(contentsOfFile: bench.pem, encoding: .utf8) == v.certificate)
        #expect(FileManager.default.fileExists(atPath: bench.dir + "/out/\(v.registrationID).enrollment.json"))
        #expect(try storedUDS(bench) == v.uds.lowercased(), "the board stored the profile's UDS")

        let rows = try Registry(path: bench.registry).allBoards()
        try #require(rows.count == 1, "\(rows)")
        let row = rows[0]
        #expect(row.state == .done)
        #expect(row.usbSerial == Self.serial)
        #expect(row.mac == v.mac && row.firmwareVersion == v.version && row.registrationID == v.registrationID)
        #expect(row.uds.hexString == v.uds.lowercased())
        #expect(row.certificatePath == bench.pem)
        #expect(row.enrollmentWrittenAt != nil)
    }

    /// Two stations sharing one PostgreSQL registry, each with its own udev and
    /// virtual DevKit behind the same USB serial (the board moved from the first
    /// station's hub to the second's): the first provisions it; the second, having
    /// claimed the serial and then read the registry, leaves it alone. One row, the
    /// first station's; the second board never receives a UDS.
    @Test("Two stations on one PostgreSQL registry: a board the first provisioned is left alone by the second",
          .enabled(if: PostgresCluster.available, "PostgreSQL's binaries are not installed (and CI is not set)"))
    func aBoardOfAnotherStationIsLeftAlone() throws {
        let cluster = try PostgresCluster.shared()
        let url = cluster.url(try cluster.createDatabase())
        let keyDir = registryTestDirectory()
        defer { try? FileManager.default.removeItem(atPath: keyDir) }
        let keygen = try RegistryCLIProcess.run(["registry", "keygen", keyDir + "/lab.key"])
        try #require(keygen.status == 0, "\(keygen.stderr)")
        func station(_ name: String) -> [String] { ["--registry", url, "--key-file", keyDir + "/lab.key", "--station", name] }

        let (first, firstRun) = try scenario(steps: ["add:\(Self.hotplug)", "expect:] provisioned "],
                                             registryArguments: { station("line-1") })
        defer { try? FileManager.default.removeItem(atPath: first.dir) }
        #expect(firstRun.status == 0, "line-1:\n\(firstRun.stdout)\n\(firstRun.stderr)")
        let (second, secondRun) = try scenario(steps: ["add:\(Self.hotplug)", "expect:] already provisioned as "],
                                               registryArguments: { station("line-2") })
        defer { try? FileManager.default.removeItem(atPath: second.dir) }
        #expect(secondRun.status == 0, "line-2:\n\(secondRun.stdout)\n\(secondRun.stderr)")
        #expect(secondRun.stdout.contains("[/dev/ttyACM2] already provisioned as \(first.vector.registrationID)"),
                "\(secondRun.stdout)")

        let rows = try PostgresRegistry(location: try PostgresLocation(url: url), key: .file(keyDir + "/lab.key")).allBoards()
        #expect(rows.count == 1, "\(rows)")
        #expect(rows.first?.station == "line-1" && rows.first?.usbSerial == Self.serial && rows.first?.state == .done)
        #expect(try storedUDS(first) == first.vector.uds.lowercased())
        #expect(try storedUDS(second) == nil, "the second station sent its board a UDS")
        #expect(!FileManager.default.fileExists(atPath: second.pem))
    }

    /// A station's `watch` carries on across a restart of the shared registry's
    /// server: the restart ends every session the station holds (its idle ones
    /// too), and the board plugged in afterwards is read from the registry on a
    /// new one, with no restart of `watch`.
    @Test("watch carries on across a restart of the PostgreSQL server: a board plugged in after it is read from the registry",
          .enabled(if: PostgresCluster.available, "PostgreSQL's binaries are not installed (and CI is not set)"))
    func carriesOnAcrossAServerRestart() throws {
        let cluster = try PostgresCluster.dedicated()
        defer { cluster.stop() }
        var url = ""
        let keyDir = registryTestDirectory()
        defer { try? FileManager.default.removeItem(atPath: keyDir) }
        let keygen = try RegistryCLIProcess.run(["registry", "keygen", keyDir + "/lab.key"])
        try #require(keygen.status == 0, "\(keygen.stderr)")
        let (bench, result) = try scenario(
            steps: [
                "add:\(Self.hotplug)", "expect:] provisioned ",
                "run:\(cluster.restartCommand)",
                // Unplugged and plugged back in (a fresh pty behind the same link).
                "remove:\(Self.hotplug)", "board-signal:USR2", "board-expect",
                "add:\(Self.replug)", "expect:[/dev/ttyACM3] ",
            ],
            registryArguments: {
                // A fresh database for each attempt (an attempt that lost the harness's race may have recorded the board).
                url = cluster.url(try cluster.createDatabase())
                return ["--registry", url, "--key-file", keyDir + "/lab.key", "--station", "line-1"]
            })
        defer { try? FileManager.default.removeItem(atPath: bench.dir) }
        let v = bench.vector
        #expect(result.status == 0, "driver or watch failed:\n\(result.stdout)\n\(result.stderr)")
        #expect(result.stdout.contains("[/dev/ttyACM2] provisioned \(v.registrationID)"), "\(result.stdout)")
        #expect(result.stdout.contains("[/dev/ttyACM3] already provisioned as \(v.registrationID)"), "\(result.stdout)")
        let rows = try PostgresRegistry(location: try PostgresLocation(url: url), key: .file(keyDir + "/lab.key")).allBoards()
        #expect(rows.count == 1 && rows.first?.state == .done && rows.first?.station == "line-1", "\(rows)")
    }

    /// The board is pulled while it writes the UDS (a 3 s secure-element write):
    /// the remove uevent is reported while the board is in progress, the I/O
    /// error fails it, and the registry keeps a failed row with the UDS.
    static let unplugMidway = [
        "add:\(hotplug)", "expect:[...] uds:",
        "remove:\(hotplug)", "expect:[/dev/ttyACM2] unplugged while being provisioned",
        "board-signal:USR1", "expect:[/dev/ttyACM2] failed:",
    ]

    @Test("A remove uevent mid-provisioning is reported and recorded in the registry")
    func removeMidwayIsRecorded() throws {
        let (bench, result) = try scenario(emulatorOptions: ["--se-write-delay", "3000"], steps: Self.unplugMidway)
        defer { try? FileManager.default.removeItem(atPath: bench.dir) }
        let v = bench.vector
        #expect(result.status == 0, "driver or watch failed:\n\(result.stdout)\n\(result.stderr)")
        #expect(result.stdout.contains("[/dev/ttyACM2] failed: The device on /dev/ttyACM2 disconnected"), "\(result.stdout)")
        #expect(!result.stdout.contains("] provisioned "))

        let rows = try Registry(path: bench.registry).allBoards()
        try #require(rows.count == 1, "\(rows)")
        let row = rows[0]
        #expect(row.state == .failed)
        #expect(row.usbSerial == Self.serial)
        #expect(row.uds.hexString == v.uds.lowercased(), "the UDS is never lost")
        #expect(row.lastStep == .udsSent, "it got as far as sending the UDS")
        #expect(row.error?.contains("disconnected") == true, "\(row.error ?? "no error recorded")")
        #expect(row.certificatePath == nil)
        #expect(!FileManager.default.fileExists(atPath: bench.pem))
    }

    /// The daemon (udev mode) stopped twice while a board stores its UDS (its
    /// secure-element write paused for a minute): the first SIGINT stops listening
    /// and says what a second would do; the second cancels the board's port at
    /// once, the board fails as stopped (its row failed, `--resume` finishes it),
    /// and watch dies of SIGINT rather than exiting 0 as if all went well.
    @Test("Ctrl-C twice in udev mode ends the provisioning in progress")
    func aSecondSIGINTEndsProvisioningInUdevMode() throws {
        let (bench, result) = try scenario(
            emulatorOptions: ["--se-write-delay", "60000"],
            steps: ["add:\(Self.hotplug)", "expect:[...] uds:",
                    "signal:INT", "expect:SIGINT again stops them at once", "sleep:1",
                    "signal:INT", "expect:stopped by SIGINT while being provisioned", "exit"])
        defer { try? FileManager.default.removeItem(atPath: bench.dir) }
        #expect(result.stderr.contains("driver: exit status -\(SIGINT) "), "\(result.stdout)\n\(result.stderr)")
        #expect(result.stdout.contains("devkit: stopped by SIGINT"), "\(result.stdout)")
        #expect(!result.stdout.contains("] provisioned "), "\(result.stdout)")
        let rows = try Registry(path: bench.registry).allBoards()
        try #require(rows.count == 1, "\(rows)")
        #expect(rows[0].state == .failed && rows[0].error?.contains("cancelled") == true, "\(rows[0])")
        #expect(rows[0].uds.hexString == bench.vector.uds.lowercased(), "the UDS is never lost")
    }

    @Test("Unplugged mid-way, plugged back in: watch resumes the recorded board and finishes it")
    func replugResumes() throws {
        let (bench, result) = try scenario(
            emulatorOptions: ["--se-write-delay", "2000"],
            steps: Self.unplugMidway + [
                // Plugged back in: a fresh pty behind the same link, then udev's add.
                "board-signal:USR2", "board-expect",
                "add:\(Self.replug)", "expect:[/dev/ttyACM3] finished ",
            ])
        defer { try? FileManager.default.removeItem(atPath: bench.dir) }
        let v = bench.vector
        #expect(result.status == 0, "driver or watch failed:\n\(result.stdout)\n\(result.stderr)")
        #expect(result.stdout.contains("[/dev/ttyACM3] finished \(v.registrationID): \(bench.pem)"), "\(result.stdout)")

        #expect(try String(contentsOfFile: bench.pem, encoding: .utf8) == v.certificate)
        #expect(try storedUDS(bench) == v.uds.lowercased())
        let rows = try Registry(path: bench.registry).allBoards()
        try #require(rows.count == 1, "resumed, not provisioned anew: \(rows)")
        #expect(rows[0].state == .done)
        #expect(rows[0].uds.hexString == v.uds.lowercased())
        #expect(rows[0].mac == v.mac && rows[0].registrationID == v.registrationID)
    }
}

/// One word for the driver's shlex.split.
private func shellQuoted(_ word: String) -> String {
    "'" + word.replacingOccurrences(of: "'", with: "'\\''") + "'"
}
