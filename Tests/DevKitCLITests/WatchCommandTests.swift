import DevKitTestSupport
import Foundation
import Testing
import VirtualDevKit

#if canImport(Glibc)
import Glibc
#endif

@Suite struct WatchCommandTests {
    static let elf = DiceVector.fixtures.appendingPathComponent("firmware/DevKitDPS.ino.elf").path

    /// `<dir>/p.toml`: firmware `elf`, UDS generated.
    func writeProfile(elf: String, in dir: String) throws {
        try "[firmware]\nelf = \"\(elf)\"\n[uds]\npolicy = \"generate\"\n"
            .write(toFile: dir + "/p.toml", atomically: false, encoding: .utf8)
    }

    /// The profile's firmware is measured at start-up: a missing image stops watch
    /// at once with the reason, before it watches or touches any board.
    @Test func badFirmwareFailsAtStartUp() throws {
        let dir = registryTestDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try writeProfile(elf: dir + "/missing.elf", in: dir)
        let r = try RegistryCLIProcess.run(["watch", "--profile", dir + "/p.toml", "--registry", dir + "/r.sqlite",
                                            "--port", dir + "/no-board"])
        #expect(r.status == 66, "\(r.status) \(r.stderr)")  // EX_NOINPUT
        #expect(r.stderr.contains("missing.elf"), "\(r.stderr)")
        #expect(!r.stderr.contains("no-board"), "no board was started: \(r.stderr)")
    }

    /// `devkit watch` blocks on udev until SIGTERM, then exits 0.
    @Test(.timeLimit(.minutes(5))) func sigtermStopsCleanly() throws {
        let dir = registryTestDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try writeProfile(elf: Self.elf, in: dir)
        let process = Process()
        process.executableURL = try URL(fileURLWithPath: TestProcess.devkitBinary)
        process.arguments = ["watch", "--profile", dir + "/p.toml", "--registry", dir + "/r.sqlite"]
        let err = Pipe()
        process.standardError = err
        process.standardOutput = FileHandle.nullDevice
        process.standardInput = FileHandle.nullDevice
        let exited = DispatchSemaphore(value: 0)
        process.terminationHandler = { _ in exited.signal() }
        try process.run()
        defer { kill(process.processIdentifier, SIGKILL) }

        // Wait for the "watching" line (the monitor is listening), then SIGTERM.
        var text = ""
        while !text.contains("watching for DevKits") {
            let chunk = err.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            text += String(decoding: chunk, as: UTF8.self)
        }
        try #require(text.contains("watching for DevKits"), "\(text)")
        kill(process.processIdentifier, SIGTERM)
        let stopped = exited.wait(timeout: .now() + 120) == .success
        try #require(stopped, "watch did not stop on SIGTERM")
        #expect(process.terminationReason == .exit)
        #expect(process.terminationStatus == 0)
        text += String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(text.contains("stopping"))
        // Where udev does not run (a container, CI), watch says that plugged boards go unseen.
        let udev = FileManager.default.fileExists(atPath: "/run/udev/control")
        #expect(text.contains("udev is not running here") == !udev, "\(text)")
    }

    /// With --port, boards are provisioned once, each reported, and the exit code
    /// says whether all succeeded.
    /// A board in user mode: reset alone does not re-plug the USB, so the line says
    /// to replug it (watch provisions it when it re-appears). Its banner went out
    /// before watch opened the port, so it is silent: "no answer", not "user mode"
    /// (issue 12), with the same remedy.
    @Test func aBoardInUserModeIsToldToBeReplugged() throws {
        let dir = registryTestDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try writeProfile(elf: Self.elf, in: dir)
        let kit = try startedKit(.init(mode: .user))
        defer { kit.stop() }
        let r = try RegistryCLIProcess.run(["watch", "--profile", dir + "/p.toml", "--registry", dir + "/r.sqlite",
                                            "--port", kit.devicePath])
        #expect(r.status == 1, "\(r.stderr)")
        #expect(r.stderr.contains("failed: no answer from the board (no prompt, nothing came back); if it is not in configuration mode, "
            + "hold button A and press reset, then unplug and plug the board in again"), "\(r.stderr)")
        #expect(kit.state.uds == nil)
    }

    @Test func staticPortsReportEachBoardAndExit1OnFailure() throws {
        let dir = registryTestDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try writeProfile(elf: Self.elf, in: dir)
        let r = try RegistryCLIProcess.run(["watch", "--profile", dir + "/p.toml", "--registry", dir + "/r.sqlite",
                                            "--port", dir + "/no-board-1", "--port", dir + "/no-board-2", "--json"])
        #expect(r.status == 1, "\(r.stderr)")
        let lines = r.stdout.split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: String]
        }
        for port in [dir + "/no-board-1", dir + "/no-board-2"] {
            #expect(lines.contains { $0["port"] == port && $0["status"] == "failed" && $0["message"]?.hasPrefix("failed: ") == true },
                    "\(r.stdout)")
        }
    }

    /// With --json a provisioned board gives a status event and the whole result
    /// (as `provision --json` prints it), both with the port.
    @Test func jsonGivesEachBoardsResult() throws {
        let dir = registryTestDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try writeProfile(elf: Self.elf, in: dir)
        let kit = try startedKit()
        defer { kit.stop() }
        let r = try RegistryCLIProcess.run(["watch", "--profile", dir + "/p.toml", "--registry", dir + "/r.sqlite",
                                            "--port", kit.devicePath, "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        let lines = r.stdout.split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
        let result = try #require(lines.first { $0["event"] as? String == "result" }, "\(r.stdout)")
        #expect(result["port"] as? String == kit.devicePath)
        #expect(result["board_id"] as? Int == 1)
        #expect((result["certificate_path"] as? String).map(FileManager.default.fileExists) == true)
        #expect(lines.contains { $0["event"] as? String == "board" && $0["status"] as? String == "provisioned" })
    }

    /// With --json, each board's step events name its port, and they reach a pipe
    /// as they happen (the daemon's stdout is line-buffered), not at exit: here the
    /// board takes 3 s to store the UDS and the first events arrive well before.
    @Test(.timeLimit(.minutes(5))) func jsonEventsNameTheirPortAndArriveAsTheyHappen() throws {
        let dir = registryTestDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let kit = try startedKit(.init(faults: .init(secureElementWriteDelay: .seconds(3))))
        defer { kit.stop() }
        let elf = DiceVector.fixtures.appendingPathComponent("firmware/DevKitDPS.ino.elf").path
        try "output_dir = \"\(dir)\"\n[firmware]\nelf = \"\(elf)\"\n[uds]\npolicy = \"generate\"\n"
            .write(toFile: dir + "/p.toml", atomically: false, encoding: .utf8)
        let process = Process()
        process.executableURL = try URL(fileURLWithPath: TestProcess.devkitBinary)
        process.arguments = ["watch", "--profile", dir + "/p.toml", "--registry", dir + "/r.sqlite",
                             "--port", kit.devicePath, "--json"]
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        process.standardInput = FileHandle.nullDevice
        try process.run()
        defer { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }

        var text = ""
        while !text.contains("\"event\":\"step\"") {
            let chunk = out.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            text += String(decoding: chunk, as: UTF8.self)
        }
        // Still before the board stored the UDS (3 s): the events were not held back.
        #expect(text.contains("\"event\":\"step\"") && kit.state.uds == nil,
                "the first step event came only after the board had stored the UDS")
        // Meanwhile its thread carries the port's name, as ps -L and top -H show it.
        let tasks = "/proc/\(process.processIdentifier)/task"
        let names = (try? FileManager.default.contentsOfDirectory(atPath: tasks))?.compactMap {
            try? String(contentsOfFile: "\(tasks)/\($0)/comm", encoding: .utf8).trimmingCharacters(in: .newlines)
        } ?? []
        let expected = String("dk \((kit.devicePath as NSString).lastPathComponent)".prefix(15))
        #expect(names.contains(expected), "\(names)")
        text += String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 0, "\(text)")
        let steps = text.split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }.filter { $0["event"] as? String == "step" }
        #expect(steps.count >= 6, "\(text)")
        #expect(steps.allSatisfy { $0["port"] as? String == kit.devicePath }, "\(text)")
    }
}
