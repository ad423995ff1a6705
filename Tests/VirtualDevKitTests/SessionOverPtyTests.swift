import DevKitConsole
import DevKitModel
import SerialPort
import SystemPackage
import Testing
import VirtualDevKit

#if canImport(Glibc)
import Glibc
#endif

/// A scripted console on the master side of a real pty, on its own thread: echoes
/// (with masking) and answers each line. Enough to drive the real `SerialPort`
/// transport; the byte-exact firmware is the emulator's job.
final class PtyScriptedConsole: @unchecked Sendable {
    let pty: PseudoTerminal
    var slavePath: String { pty.slavePath }
    private let stop: (read: Int32, write: Int32)
    /// Held open so the master never sees "no slave" (EIO) between host opens.
    private let heldSlave: FileDescriptor
    private var thread: pthread_t?
    /// Hang up (close the master) once this many bytes were received.
    let unplugAfter: Int?
    let reply: @Sendable (String) -> (output: String, prompt: Bool)

    init(unplugAfter: Int? = nil, reply: @escaping @Sendable (String) -> (output: String, prompt: Bool)) throws {
        pty = try PseudoTerminal()
        heldSlave = try pty.openSlave()
        var fds: [Int32] = [0, 0]
        precondition(pipe(&fds) == 0)
        // Not inherited by processes other tests spawn meanwhile.
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        stop = (fds[0], fds[1])
        self.unplugAfter = unplugAfter
        self.reply = reply
        let box = Unmanaged.passRetained(self)
        var t = pthread_t()
        precondition(pthread_create(&t, nil, { arg in
            let console = Unmanaged<PtyScriptedConsole>.fromOpaque(arg!).takeRetainedValue()
            console.serve()
            return nil
        }, box.toOpaque()) == 0)
        thread = t
    }

    /// Stops the thread and closes the master.
    func shutDown() {
        var one: UInt8 = 1
        _ = write(stop.write, &one, 1)
        if let thread { pthread_join(thread, nil) }
        thread = nil
        close(stop.read)
        close(stop.write)
        try? heldSlave.close()
    }

    private func serve() {
        let master = pty.master.rawValue
        var line: [UInt8] = []
        var received = 0
        var buffer = [UInt8](repeating: 0, count: 4096)
        defer { close(master) }
        while true {
            var fds = [pollfd(fd: master, events: Int16(POLLIN), revents: 0), pollfd(fd: stop.read, events: Int16(POLLIN), revents: 0)]
            guard poll(&fds, 2, -1) >= 0 || errno == EINTR else { return }
            if fds[1].revents != 0 { return }
            let n = buffer.withUnsafeMutableBytes { read(master, $0.baseAddress, $0.count) }
            guard n > 0 else {
                if n < 0 && (errno == EAGAIN || errno == EINTR) { continue }
                return
            }
            var out: [UInt8] = []
            for byte in buffer[..<n] {
                received += 1
                if let limit = unplugAfter, received > limit {
                    writeAll(master, out)
                    return  // closes the master: the host sees a hangup
                }
                if byte == 0x0D {
                    let text = String(decoding: line, as: UTF8.self)
                    line.removeAll()
                    if text.isEmpty { out += Array("\r\n# ".utf8); continue }
                    let (output, prompt) = reply(text)
                    out += Array(("\r\n" + output + (prompt ? "\r\n# " : "")).utf8)
                } else if byte >= 0x20 {
                    let masked = line.firstIndex(of: 0x20).map {
                        ["set_wifipwd", "set_dps_uds"].contains(String(decoding: line[..<$0], as: UTF8.self))
                    } ?? false
                    line.append(byte)
                    out.append(masked ? 0x2A : byte)
                }
            }
            writeAll(master, out)
        }
    }

    private func writeAll(_ fd: Int32, _ bytes: [UInt8]) {
        var rest = bytes[...]
        while !rest.isEmpty {
            let n = rest.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if n > 0 { rest = rest.dropFirst(n); continue }
            var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            _ = poll(&p, 1, 100)
        }
    }
}

@Sendable func scriptedFirmware(_ line: String) -> (output: String, prompt: Bool) {
    let name = String(line.prefix { $0 != " " })
    switch name {
    case "version":
        return ("DevKitSDK version: 1.6.2\r\nMico version: 31.1.3\r\nmbed-os version: 5.4.3\r\nmbed TLS version: 2.4.2\r\nWIFI version: unknown", true)
    case "set_dps_uds": return ("Invalid UDS.\r\nINFO: Set DPS UDS successfully.", true)
    case "set_wifissid": return ("INFO: Set Wi-Fi SSID successfully.", true)
    case "set_wifipwd": return ("INFO: Set Wi-Fi password successfully.", true)
    case "set_az_iothub": return ("INFO: Set Azure Iot hub connection string successfully.", true)
    case "exit":
        return ("Reboot\r\n\r\n** MXChip - Microsoft IoT Developer Kit **\r\n"
            + "2026-11-28 09:00:01 INFO:  DevKit MAC Address: a4cf120b9e31\r\n"
            + "2026-11-28 09:00:01 INFO:  DevKit Firmware Version: 1.6.2\r\n", false)
    default: return ("Error:Invalid command: \(name)", true)
    }
}

@Suite("Session over a real pty with the SerialPort transport")
struct SessionOverPtyTests {
    @Test func everyTypedCommandOverSerialPort() throws {
        let board = try PtyScriptedConsole(reply: scriptedFirmware)
        defer { board.shutDown() }
        let port = try SerialPort(path: board.slavePath)
        defer { port.close() }
        let session = ConsoleSession(transport: port)
        try session.synchronize()
        #expect(try session.version().firmwareVersion.text == "1.6.2")
        try session.setUDS(UDS(hex: String(repeating: "ab", count: 32)))
        try session.setWiFiSSID("Lab Net")
        try session.setWiFiPassword(WiFiPassword("correct horse"))
        try session.setIoTHubConnectionString(ConnectionString(
            "HostName=h.azure-devices.net;DeviceId=d;SharedAccessKey=" + String(repeating: "k", count: 400)))
        let log = try session.exitAndReadBootLog(timeout: .seconds(5))
        #expect(log.macAddress?.hex == "a4cf120b9e31")
    }

    @Test("unplugged mid-command → SerialPortError.disconnected, no hang")
    func unplugMidCommand() throws {
        let board = try PtyScriptedConsole(unplugAfter: 1 + 40, reply: scriptedFirmware)
        defer { board.shutDown() }
        let port = try SerialPort(path: board.slavePath)
        defer { port.close() }
        let session = ConsoleSession(transport: port)
        try session.synchronize()
        let start = ContinuousClock.now
        #expect(throws: SerialPortError.disconnected(path: board.slavePath)) {
            try session.setIoTHubConnectionString(ConnectionString(
                "HostName=h.azure-devices.net;DeviceId=d;SharedAccessKey=" + String(repeating: "k", count: 400)))
        }
        #expect(ContinuousClock.now - start < .seconds(3))
    }

    @Test("a second session on the same port fails at once")
    func secondOpenFailsFast() throws {
        let board = try PtyScriptedConsole(reply: scriptedFirmware)
        defer { board.shutDown() }
        let first = try SerialPort(path: board.slavePath)
        defer { first.close() }
        let start = ContinuousClock.now
        #expect(throws: SerialPortError.self) { _ = try SerialPort(path: board.slavePath) }
        #expect(ContinuousClock.now - start < .seconds(1))
    }
}
