import Foundation
import SerialPort
import Testing
@testable import VirtualDevKit

@Suite("Virtual DevKit faults, state and plugging")
struct FaultTests {
    @Test func eepromWriteFailure() throws {
        let bench = try Bench { c, _ in c.faults.eepromWriteFailure = true }
        let host = try Host(bench.kit)
        try host.sync()
        #expect(
            try host.run("set_dps_uds \(Expected.uds)")
                == "set_dps_uds " + String(repeating: "*", count: 64)
                + "\r\nInvalid UDS.\r\nERROR: Failed to write EEPROM: 0x06.\r\n" + Expected.prompt)
        #expect(try host.run("set_wifissid lab") == "set_wifissid lab\r\nERROR: Failed to write EEPROM: 0x03.\r\n" + Expected.prompt)
        #expect(try host.run("set_wifipwd x") == "set_wifipwd *\r\nERROR: Failed to write EEPROM: 0x0a.\r\n" + Expected.prompt)
        #expect(try host.run("set_az_iothub cs") == "set_az_iothub cs\r\nERROR: Failed to write EEPROM: 0x05.\r\n" + Expected.prompt)
        #expect(bench.kit.state == VirtualDevKitState())
        // The state file (written empty at start) still holds nothing.
        #expect(try VirtualDevKitState.load(from: bench.statePath) == VirtualDevKitState())
    }

    @Test func verifyFailure() throws {
        let bench = try Bench { c, _ in c.faults.verifyFailure = true }
        let host = try Host(bench.kit)
        try host.sync()
        #expect(
            try host.run("set_dps_uds \(Expected.uds)")
                == "set_dps_uds " + String(repeating: "*", count: 64)
                + "\r\nInvalid UDS.\r\nERROR: Verify failed.\r\n" + Expected.prompt)
        #expect(bench.kit.state.uds == nil)
    }

    @Test func zoneOverflowFailsLikeABadWrite() throws {
        let bench = try Bench()
        let host = try Host(bench.kit)
        try host.sync()
        let password = String(repeating: "p", count: 88)  // + NUL > the 88-byte zone
        #expect(try host.run("set_wifipwd \(password)").hasSuffix("Invalid Wi-Fi password.\r\nERROR: Failed to write EEPROM: 0x0a.\r\n" + Expected.prompt))
    }

    @Test func unplugAfterReceivedBytes() throws {
        let bench = try Bench { c, _ in c.faults.unplugAfterReceivedBytes = 5 }
        let host = try Host(bench.kit)
        try host.sync()
        let start = ContinuousClock.now
        try host.send("version\r")
        var seen: [UInt8] = []
        do {
            while true { seen += try host.port.read(deadline: .now + .seconds(10)) }
        } catch {
            #expect(error == .disconnected(path: bench.kit.devicePath))
        }
        #expect(start.duration(to: .now) < .seconds(5))
        #expect(Array("versi".utf8).starts(with: seen))  // at most the echo of 5 bytes
        #expect(bench.kit.receivedByteCount == 5)
        #expect(!bench.kit.isPluggedIn)

        // Plugged in again, the board boots and takes 5 bytes again before it goes:
        // the fault counts from each plug-in, not from the first.
        try bench.kit.replug()
        #expect(bench.kit.waitUntilIdle())
        #expect(bench.kit.isPluggedIn)
        let again = try Host(bench.kit)
        try again.send("vers")
        #expect(try again.read(through: "vers") .hasSuffix("vers"))
        #expect(bench.kit.isPluggedIn)
        try again.send("ion\r")
        do {
            while true { _ = try again.port.read(deadline: .now + .seconds(10)) }
        } catch {
            #expect(error == .disconnected(path: bench.kit.devicePath))
        }
        #expect(bench.kit.receivedByteCount == 10)
    }

    @Test func lineNoiseBeforeTheBanner() throws {
        let bench = try Bench { c, _ in c.faults.lineNoiseBytes = 40 }
        let host = try Host(bench.kit)
        bench.kit.reset(into: .configuration)
        let boot = try host.read(through: Array(Expected.prompt.utf8))
        #expect(boot.count == 40 + (Expected.banner + Expected.help + Expected.prompt).utf8.count)
        #expect(Array(boot.prefix(40)) == VirtualDevKit.noise(count: 40))
        #expect(boot.prefix(40).allSatisfy { $0 == 0 || $0 >= 0x80 })
        #expect(String(decoding: boot.dropFirst(40), as: UTF8.self) == Expected.banner + Expected.help + Expected.prompt)
    }

    @Test func slowSecureElementWrites() throws {
        let bench = try Bench { c, _ in c.faults.secureElementWriteDelay = .milliseconds(150) }
        let host = try Host(bench.kit)
        try host.sync()
        let start = ContinuousClock.now
        #expect(try host.run("set_wifissid lab").hasSuffix("INFO: Set Wi-Fi SSID successfully.\r\n" + Expected.prompt))
        let elapsed = start.duration(to: .now)
        #expect(elapsed >= .milliseconds(300))  // a write and its verify
        #expect(elapsed < .seconds(5))
    }

    @Test func bytesBeyondTheRingAreLostWhileACommandRuns() throws {
        let bench = try Bench { c, _ in c.faults.secureElementWriteDelay = .milliseconds(100) }
        let host = try Host(bench.kit)
        try host.sync()
        // A careless host: the next 600 bytes follow the line at once.
        try host.send("set_wifissid x\r" + String(repeating: "a", count: 600))
        let response = try host.read(through: "INFO: Set Wi-Fi SSID successfully.\r\n" + Expected.prompt)
        #expect(response == "set_wifissid x\r\nINFO: Set Wi-Fi SSID successfully.\r\n" + Expected.prompt)
        // The ring held 256 bytes (the line and 241 'a's, then 15 more as the line
        // was consumed); the other 344 were lost.
        let echo = try host.read(count: 256)
        #expect(echo == [UInt8](repeating: UInt8(ascii: "a"), count: 256))
        #expect(try host.drain(for: .milliseconds(200)).isEmpty)
        #expect(bench.kit.droppedByteCount == 344)
    }

    @Test func aCarefulHostLosesNothing() throws {
        let bench = try Bench { c, _ in c.faults.secureElementWriteDelay = .milliseconds(20) }
        let host = try Host(bench.kit)
        try host.sync()
        let cs = String(repeating: "k", count: 500)
        let line = Array("set_az_iothub \(cs)".utf8)
        var index = 0
        while index < line.count {
            let piece = Array(line[index..<min(line.count, index + 128)])
            try host.send(piece)
            #expect(try host.read(count: piece.count) == piece)
            index += piece.count
        }
        try host.send("\r")
        #expect(try host.read(through: Expected.prompt) == "\r\nINFO: Set Azure Iot hub connection string successfully.\r\n" + Expected.prompt)
        #expect(bench.kit.state.connectionString == cs)
        #expect(bench.kit.droppedByteCount == 0)
    }

    @Test func baudRatePacing() throws {
        let baud = 19_200
        let bench = try Bench { c, _ in c.pacingBaudRate = baud }
        let host = try Host(bench.kit, baudRate: baud)
        #expect(bench.kit.waitUntilIdle(timeout: .seconds(20)))  // the unheard boot, at wire speed
        let start = ContinuousClock.now
        bench.kit.reset(into: .configuration)
        let boot = try host.read(through: Array(Expected.prompt.utf8))
        let elapsed = start.duration(to: .now)
        let wire = Duration.seconds(Double(boot.count * 10) / Double(baud))
        #expect(boot.count == (Expected.banner + Expected.help + Expected.prompt).utf8.count)
        #expect(elapsed >= wire * 0.9, "boot output came faster than the wire allows")
        #expect(elapsed < wire * 3 + .seconds(1))
        // Input is paced too: 100 bytes in and their echo take ≥ 100 byte times.
        let typed = String(repeating: "z", count: 100)
        let t0 = ContinuousClock.now
        try host.send(typed)
        #expect(try host.read(count: 100) == Array(typed.utf8))
        #expect(t0.duration(to: .now) >= Duration.seconds(Double(100 * 10) / Double(baud)) * 0.9)
    }

    /// With pacing, output crosses USB in 1 ms frames: the last byte of each reply
    /// reaches the host at the end of the frame it left the line in, and the board
    /// counts that latency (what bench-session adds to the device delays).
    @Test func pacedRepliesEndOnUSBFrames() throws {
        let bench = try Bench { c, _ in c.pacingBaudRate = 115_200 }
        let host = try Host(bench.kit)
        #expect(bench.kit.usbReplyLatency.replies == 0)  // the unheard boot is not a reply
        try host.sync()
        #expect(try host.run("version").hasSuffix(Expected.prompt))
        let latency = bench.kit.usbReplyLatency
        #expect(latency.replies == 2)
        #expect(latency.total >= .zero && latency.total <= .milliseconds(2), "\(latency)")
        // Unpaced, bytes go out at once: no frames, nothing counted.
        let unpaced = try Bench()
        let quick = try Host(unpaced.kit)
        try quick.sync()
        #expect(unpaced.kit.usbReplyLatency.replies == 0)
    }

    @Test func statePersistsAcrossRunsInAPrivateFile() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("vdk-state-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("kit.json").path
        do {
            let kit = try VirtualDevKit(configuration: .init(stateFile: path))
            kit.start()
            defer { kit.stop() }
            #expect(kit.waitUntilIdle())
            let host = try Host(kit)
            try host.sync()
            _ = try host.run("set_dps_uds \(Expected.uds)")
            _ = try host.run("set_wifissid \"Lab Net\"")
            _ = try host.run("set_wifipwd pw")
            _ = try host.run("enable_secure 1")
        }
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600)
        let decoded = try JSONDecoder().decode(VirtualDevKitState.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
        let expected = VirtualDevKitState(uds: Expected.uds, wifiSSID: "Lab Net", wifiPassword: "pw", secureChannelEnabled: true)
        #expect(decoded == expected)
        let again = try VirtualDevKit(configuration: .init(stateFile: path))
        defer { again.stop() }
        #expect(again.state == expected)
        // No temporary files left behind.
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path) == ["kit.json"])
    }

    @Test func corruptStateFileIsAClearError() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("vdk-bad-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("kit.json").path
        try Data("{not json".utf8).write(to: URL(fileURLWithPath: path))
        #expect(throws: VirtualDevKitError.stateFile(path: path, reason: "is not a virtual DevKit state file (bad JSON)")) {
            _ = try VirtualDevKit(configuration: .init(stateFile: path))
        }
    }

    /// A state file that cannot be written is refused at start, not reported later
    /// as the board's EEPROM failing.
    @Test func unwritableStateFileIsRefusedAtStart() throws {
        let path = "/proc/devkit-no-such-dir/kit.json"
        do {
            _ = try VirtualDevKit(configuration: .init(stateFile: path))
            Issue.record("an unwritable state file was accepted")
        } catch {
            guard case .stateFile(let failed, let reason) = error else {
                Issue.record("\(error)")
                return
            }
            #expect(failed == path && reason.hasPrefix("cannot be written"))
        }
    }

    /// A second emulator on the same --link does not take the link of one running.
    @Test func aLiveLinkIsNotTakenOver() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("vdk-link-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let link = directory.appendingPathComponent("tty").path
        let first = try VirtualDevKit(configuration: .init(linkPath: link))
        first.start()
        defer { first.stop() }
        #expect(first.waitUntilIdle())
        #expect(throws: VirtualDevKitError.linkInUse(path: link, target: first.devicePath)) {
            _ = try VirtualDevKit(configuration: .init(linkPath: link))
        }
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: link) == first.devicePath)
    }

    @Test func invalidConfigurationIsRefused() {
        #expect(throws: VirtualDevKitError.self) { _ = try VirtualDevKit(configuration: .init(macAddress: "A4:CF")) }
        #expect(throws: VirtualDevKitError.self) { _ = try VirtualDevKit(configuration: .init(firmwareVersion: "1.6")) }
    }

    @Test func unplugAndReplugThroughTheLink() throws {
        let bench = try Bench { c, dir in c.linkPath = dir.appendingPathComponent("ttyDevKit").path }
        let link = bench.directory.appendingPathComponent("ttyDevKit").path
        let firstPath = bench.kit.devicePath
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: link) == firstPath)
        let host = try SerialPort(path: link)
        defer { host.close() }
        // A read blocked on the board ends in a disconnect when it is unplugged.
        let start = ContinuousClock.now
        let reader = Thread.detachNewThreadWithResult {
            Result { () throws(SerialPortError) -> [UInt8] in
                var all: [UInt8] = []
                while true { all += try host.read(deadline: .now + .seconds(20)) }
            }
        }
        bench.kit.unplug()
        #expect(!bench.kit.isPluggedIn)
        #expect(!FileManager.default.fileExists(atPath: link))
        let outcome = reader.join(timeout: .seconds(10))
        if case .failure(let error)? = outcome {
            #expect(error == .disconnected(path: link))
        } else {
            Issue.record("the read did not end in a disconnect: \(String(describing: outcome))")
        }
        #expect(start.duration(to: .now) < .seconds(10))

        try bench.kit.replug()
        #expect(bench.kit.isPluggedIn)
        #expect(bench.kit.waitUntilIdle())  // booted again, before this host listens
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: link) == bench.kit.devicePath)
        let again = Host(port: try SerialPort(path: link))
        #expect(try again.run("") == Expected.prompt)
        _ = firstPath
    }

    @Test func stopRemovesTheLink() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("vdk-link-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let link = directory.appendingPathComponent("tty").path
        let kit = try VirtualDevKit(configuration: .init(linkPath: link))
        kit.start()
        #expect(FileManager.default.fileExists(atPath: link))
        kit.stop()
        kit.stop()
        #expect(!FileManager.default.fileExists(atPath: link))
    }
}

extension Thread {
    /// Runs `body` on a new thread; `join` waits for it with a bound.
    static func detachNewThreadWithResult<T: Sendable>(_ body: @escaping @Sendable () -> T) -> Joinable<T> {
        Joinable(body)
    }
}

final class Joinable<T: Sendable>: @unchecked Sendable {
    private var value: T?
    private let done = DispatchSemaphore(value: 0)
    init(_ body: @escaping @Sendable () -> T) {
        Thread { [self] in
            self.value = body()
            self.done.signal()
        }.start()
    }
    func join(timeout: Duration) -> T? {
        let ms = Int(timeout.components.seconds * 1000)
        return done.wait(timeout: .now() + .milliseconds(ms)) == .success ? value : nil
    }
}

@Suite("Virtual DevKit and hosts that die")
struct DeadHostTests {
    @Test func exclusiveModeLeftByADeadHostIsCleared() throws {
        let bench = try Bench()
        let path = bench.kit.devicePath
        // Opened first: once the mode is set, only root could open more.
        let probe = try FileDescriptorProbe(path: path)
        let crashed = try FileDescriptorProbe(path: path)
        let host = try SerialPort(path: path)
        #expect(probe.exclusive() == true)
        // A host that sets TIOCEXCL and vanishes without clearing it (as after kill -9).
        host.close()  // clears, then the crashed one sets it again and closes without clearing
        crashed.setExclusiveAndClose()
        // The board clears it once it sees the close; wait on that (bounded).
        let deadline = ContinuousClock.now + .seconds(5)
        var exclusive = probe.exclusive()
        while exclusive == true && ContinuousClock.now < deadline {
            var none = pollfd(fd: -1, events: 0, revents: 0)
            _ = poll(&none, 1, 5)  // re-check shortly; the board acts on the close event
            exclusive = probe.exclusive()
        }
        #expect(exclusive == false)
        probe.close()
        // And a new host gets in.
        let next = try Host(bench.kit)
        #expect(try next.run("") == Expected.prompt)
    }
}
