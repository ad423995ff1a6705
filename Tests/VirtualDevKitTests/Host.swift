import Foundation
import SerialPort
import Testing
@testable import VirtualDevKit

/// The host side of a test: a SerialPort on the virtual DevKit, with helpers that
/// wait on the bytes themselves (never on fixed sleeps) and are bounded in time.
final class Host {
    let port: SerialPort
    private var pending: [UInt8] = []

    init(_ kit: VirtualDevKit, baudRate: Int = 115_200) throws {
        port = try SerialPort(path: kit.devicePath, baudRate: baudRate)
    }

    init(port: SerialPort) {
        self.port = port
    }

    deinit { port.close() }

    func send(_ text: String) throws { try send(Array(text.utf8)) }

    func send(_ bytes: [UInt8]) throws {
        try port.write(bytes, deadline: .now + .seconds(10))
    }

    /// Everything up to and including the first occurrence of `marker`.
    func read(through marker: [UInt8], timeout: Duration = .seconds(60)) throws -> [UInt8] {
        let deadline = ContinuousClock.now + timeout
        while true {
            if let range = pending.firstRange(of: marker) {
                let result = Array(pending[..<range.upperBound])
                pending.removeSubrange(..<range.upperBound)
                return result
            }
            let chunk = try port.read(deadline: deadline)
            if chunk.isEmpty {
                Issue.record("timed out waiting for \(String(reflecting: String(decoding: marker, as: UTF8.self))); got \(String(reflecting: String(decoding: pending, as: UTF8.self)))")
                let all = pending
                pending = []
                return all
            }
            pending += chunk
        }
    }

    func read(through marker: String, timeout: Duration = .seconds(60)) throws -> String {
        String(decoding: try read(through: Array(marker.utf8), timeout: timeout), as: UTF8.self)
    }

    /// Exactly `count` bytes.
    func read(count: Int, timeout: Duration = .seconds(60)) throws -> [UInt8] {
        let deadline = ContinuousClock.now + timeout
        while pending.count < count {
            let chunk = try port.read(deadline: deadline)
            if chunk.isEmpty { break }
            pending += chunk
        }
        let n = min(count, pending.count)
        defer { pending.removeSubrange(..<n) }
        return Array(pending[..<n])
    }

    /// Whatever arrives within `window` (for checking that nothing comes).
    func drain(for window: Duration) throws -> [UInt8] {
        let deadline = ContinuousClock.now + window
        var all = pending
        pending = []
        while true {
            let chunk = try port.read(deadline: deadline)
            if chunk.isEmpty { return all }
            all += chunk
        }
    }

    /// Reads through the next prompt (e.g. the boot output after a reset).
    @discardableResult
    func awaitPrompt() throws -> String { try read(through: "\r\n# ") }

    /// What a host does on connecting: send `\r`, wait for the prompt.
    func sync() throws {
        #expect(try run("") == "\r\n# ")
    }

    /// Sends a line and returns everything the board sent back through the next prompt.
    func run(_ line: String) throws -> String {
        try send(line + "\r")
        return try read(through: "\r\n# ")
    }
}

enum Expected {
    static let banner = "\r\n************************************************\r\n** MXChip - Microsoft IoT Developer Kit **\r\n************************************************\r\n"
    static let help = "Configuration console:\r\n"
        + " - help: Help document.\r\n"
        + " - version: System version.\r\n"
        + " - exit: Exit and reboot.\r\n"
        + " - scan: Scan Wi-Fi AP.\r\n"
        + " - set_wifissid: Set Wi-Fi SSID.\r\n"
        + " - set_wifipwd: Set Wi-Fi password.\r\n"
        + " - set_az_iothub: Set IoT Hub device connection string.\r\n"
        + " - set_dps_uds: Set DPS Unique Device Secret (UDS) for X.509 certificates..\r\n"
        + " - set_az_iotdps: Set DPS Symmetric Key. Format: \"DPSEndpoint=global.azure-devices-provisioning.net;IdScope=XXX;DeviceId=XXX;SymmetricKey=XXX\".\r\n"
        + " - enable_secure: Enable secure channel between AZ3166 and secure chip.\r\n"
    static let prompt = "\r\n# "
    static let userMode = "You can 1. press Button A and reset to enter configuration mode.\r\n        2. press Button B and reset to enter AP mode.\r\n\r\n"
    static let uds = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
}

/// A started kit in a fresh temp directory, stopped by `close()`.
final class Bench {
    let directory: URL
    let kit: VirtualDevKit

    init(_ configure: (inout VirtualDevKitConfiguration, URL) -> Void = { _, _ in }) throws {
        directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("vdk-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        var configuration = VirtualDevKitConfiguration(stateFile: directory.appendingPathComponent("state.json").path)
        configure(&configuration, directory)
        kit = try VirtualDevKit(configuration: configuration)
        kit.start()
        // Let it boot with nobody listening, as a board plugged in before the host.
        #expect(kit.waitUntilIdle(timeout: .seconds(20)))
    }

    var statePath: String { directory.appendingPathComponent("state.json").path }

    deinit {
        kit.stop()
        try? FileManager.default.removeItem(at: directory)
    }
}

import SystemPackage
#if canImport(Glibc)
import Glibc
#endif

/// A bare fd on the pty slave, for looking at (and misusing) its exclusive mode.
final class FileDescriptorProbe {
    private var fd: FileDescriptor?
    init(path: String) throws {
        fd = try FileDescriptor.open(path, .readWrite, options: [.nonBlocking, .closeOnExec, FileDescriptor.OpenOptions(rawValue: O_NOCTTY)])
    }
    func exclusive() -> Bool? { fd?.isInExclusiveMode() }
    func setExclusiveAndClose() {
        guard let fd else { return }
        // ioctl(TIOCEXCL): play a host that dies holding the port exclusively.
        _ = ioctl(fd.rawValue, UInt(TIOCEXCL))
        try? fd.close()
        self.fd = nil
    }
    func close() {
        try? fd?.close()
        fd = nil
    }
    deinit { close() }
}
