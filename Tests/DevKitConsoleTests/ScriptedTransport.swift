import DevKitConsole

/// A fake console: plays scripted bytes and checks, send by send, that the session
/// types exactly the expected bytes and only after it read everything the board had
/// said (the prompt, or the echo of the previous piece).
final class ScriptedTransport: ConsoleTransport {
    enum Step {
        /// The next `send` must carry exactly these bytes. `requireDrained`: every
        /// earlier reply byte must have been read first.
        case expectSend([UInt8], requireDrained: Bool)
        /// Bytes the board prints next (after the preceding send).
        case reply([UInt8])
    }

    private var steps: [Step]
    private var next = 0
    private var queue: [UInt8] = []
    /// Bytes handed out so far (offsets for `splitPoints`).
    private(set) var delivered = 0
    /// Offsets of the received stream where a read must end (split reads).
    var splitPoints: Set<Int> = []
    /// Longest read (1 = byte by byte).
    var maxRead = Int.max
    private(set) var sends: [[UInt8]] = []
    private(set) var violations: [String] = []
    private(set) var emptyReceives = 0

    init(_ steps: [Step]) {
        self.steps = steps
        enqueueReplies()
    }

    /// Every step was played and every byte read.
    var finished: Bool { next == steps.count && queue.isEmpty }

    func send(_ bytes: [UInt8], deadline: ContinuousClock.Instant) throws {
        sends.append(bytes)
        guard next < steps.count, case .expectSend(let expected, let requireDrained) = steps[next] else {
            violations.append("unexpected send of \(bytes.count) bytes: \(show(bytes))")
            return
        }
        if requireDrained && !queue.isEmpty {
            violations.append("sent \(show(bytes)) with \(queue.count) reply bytes unread: \(show(queue))")
        }
        if bytes != expected { violations.append("sent \(show(bytes)), expected \(show(expected))") }
        next += 1
        enqueueReplies()
    }

    func receive(deadline: ContinuousClock.Instant) throws -> [UInt8] {
        guard !queue.isEmpty else {
            emptyReceives += 1
            return []  // the deadline "passes" at once: tests never wait
        }
        var count = min(queue.count, maxRead)
        if let split = splitPoints.filter({ $0 > delivered && $0 < delivered + count }).min() {
            count = split - delivered
        }
        let chunk = Array(queue.prefix(count))
        queue.removeFirst(count)
        delivered += count
        return chunk
    }

    private func enqueueReplies() {
        while next < steps.count, case .reply(let bytes) = steps[next] {
            queue += bytes
            next += 1
        }
    }

    private func show(_ bytes: [UInt8]) -> String {
        String(decoding: bytes, as: UTF8.self).debugDescription
    }
}

/// Script builders.
enum Board {
    static let prompt = "\r\n# "

    static func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

    /// `\r` answered by the prompt.
    static func sync(before: String = "") -> [ScriptedTransport.Step] {
        [.reply(bytes(before)), .expectSend([0x0D], requireDrained: false), .reply(bytes(prompt))]
    }

    /// The pieces the session must send for `line`, each answered by its echo; the
    /// last answered by the echo, `\r\n`, `output` and then `after` (the prompt).
    static func exchange(
        _ line: String, output: String, after: String = prompt, pieceLength: Int = 128,
        echo: [UInt8]? = nil
    ) -> [ScriptedTransport.Step] {
        let lineBytes = bytes(line)
        let echoBytes = echo ?? ConsoleTokenizer.echo(of: lineBytes)
        let wire = lineBytes + [0x0D]
        var steps: [ScriptedTransport.Step] = []
        var offset = 0
        while offset < wire.count {
            let end = min(offset + pieceLength, wire.count)
            steps.append(.expectSend(Array(wire[offset..<end]), requireDrained: true))
            let echoed = Array(echoBytes[min(offset, echoBytes.count)..<min(end, echoBytes.count)])
            if end == wire.count {
                steps.append(.reply(echoed + bytes("\r\n" + output + after)))
            } else {
                steps.append(.reply(echoed))
            }
            offset = end
        }
        return steps
    }

    static let versionOutput =
        "DevKitSDK version: 1.6.2\r\nMico version: 31.1.3\r\nmbed-os version: 5.4.3\r\n"
        + "mbed TLS version: 2.4.2\r\nWIFI version: wl0: Nov  7 2016 16:16:58 version 7.15.168.81 (r661235) FWID 01-19f3caf0\r\n"

    static let uds = "0123456789abcdef0123456789ABCDEF0123456789abcdef0123456789abcdef"

    static let banner =
        "\r\n************************************************\r\n** MXChip - Microsoft IoT Developer Kit **\r\n************************************************\r\n"

    static let userModeText =
        "You can 1. press Button A and reset to enter configuration mode.\r\n        2. press Button B and reset to enter AP mode.\r\n\r\n"

    static let userBootLog =
        banner + userModeText
        + "2026-11-28 09:00:01 INFO:  DevKit MAC Address: a4cf120b9e31\r\n"
        + "2026-11-28 09:00:01 INFO:  DevKit Firmware Version: 1.6.2\r\n"
        + "2026-11-28 09:00:02 INFO:  IoT Hub connecting...\r\n"
}

/// Fast timeouts for tests whose fake honours deadlines for real.
extension ConsoleSession.Timeouts {
    static var short: Self {
        var t = Self()
        t.promptAttempt = .milliseconds(40)
        t.echo = .milliseconds(40)
        t.response = .milliseconds(40)
        t.scan = .milliseconds(40)
        t.bootLog = .milliseconds(40)
        t.send = .milliseconds(40)
        return t
    }
}
