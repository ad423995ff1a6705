import DevKitModel

/// A conversation with a DevKit's configuration console over a `ConsoleTransport`.
///
/// The console has no flow control besides its echo, so the session types the way
/// the firmware can follow: the next line only after the prompt, a long line in
/// pieces of at most `maxPieceLength` bytes, each after the echo of the previous one
/// came back (the board's receive ring holds 256 bytes). It never sleeps; every wait
/// is a `receive` against a deadline, and running out throws `ConsoleError.timeout`
/// saying what was expected.
///
/// ```swift
/// let session = ConsoleSession(transport: port)
/// try session.synchronize()               // throws .wrongMode(.user(…)) etc.
/// let info = try session.version()
/// try session.setUDS(uds)                 // validated before anything is sent
/// let boot = try session.exitAndReadBootLog()
/// ```
///
/// Errors: `ConsoleError`, or the transport's own (e.g. `SerialPortError` when the
/// board is unplugged), unchanged. After an error the session is unsynchronised:
/// call `synchronize()` again before the next command. Not thread-safe: one owner.
public final class ConsoleSession {
    /// How long each wait may take.
    public struct Timeouts: Sendable, Hashable {
        /// Wait for the prompt after each `\r` sent by `synchronize()`.
        public var promptAttempt: Duration = .seconds(1)
        /// How many `\r` `synchronize()` sends before concluding the board is not in
        /// configuration mode (one may be lost while the board is still booting).
        public var promptAttempts = 3
        /// Wait for the echo of one piece of a line.
        public var echo: Duration = .seconds(2)
        /// Wait for a command's reply and the prompt after it.
        public var response: Duration = .seconds(10)
        /// Wait for `scan` (the board scans every Wi-Fi channel).
        public var scan: Duration = .seconds(30)
        /// Wait after `exit` for the boot log to give the MAC address.
        public var bootLog: Duration = .seconds(30)
        /// Wait for the transport to accept bytes.
        public var send: Duration = .seconds(2)

        public init() {}
    }

    /// Where the console is.
    public enum State: Sendable, Hashable {
        /// Not known to be at a prompt: `synchronize()` first.
        case unsynchronized
        /// At the prompt, ready for a command.
        case atPrompt
        /// `exit` was run: the board reset and the console is gone.
        case rebooted
    }

    public let transport: any ConsoleTransport
    public var timeouts: Timeouts
    /// Longest piece written before waiting for its echo.
    public let maxPieceLength: Int
    public private(set) var state: State = .unsynchronized
    /// Sees every chunk as it is received (echoes included; the board masks secret
    /// echoes itself). For live display and transcripts.
    public var receiveObserver: (([UInt8]) -> Void)?

    private var inbox: [UInt8] = []
    private let clock = ContinuousClock()

    /// - Parameter maxPieceLength: at most 128 is safe for the board's 256-byte ring.
    public init(transport: any ConsoleTransport, timeouts: Timeouts = Timeouts(), maxPieceLength: Int = 128) {
        precondition(maxPieceLength > 0)
        self.transport = transport
        self.timeouts = timeouts
        self.maxPieceLength = maxPieceLength
    }

    // MARK: Synchronisation

    /// Sends `\r` until the prompt answers; otherwise tells which mode the board is in.
    ///
    /// - Throws: `ConsoleError.wrongMode` with the mode read from what the board
    ///   printed instead (user-mode banner or logs, AP-mode line), or
    ///   `ConsoleError.noAnswer` when nothing it printed tells (silence, noise).
    public func synchronize() throws {
        state = .unsynchronized
        // Only the prompt search sees every byte (linear, see `ConsoleFramer`); the
        // first `classificationWindow` bytes are kept to tell the mode if none comes.
        var framer = ConsoleFramer.awaitingPrompt()
        var seen: [UInt8] = []
        var received = 0
        var pending = inbox
        inbox.removeAll()
        // True when a prompt came; the inbox then holds what followed the last one (a
        // second prompt may be on its way: the echo reader skips stale prompts).
        func absorb(_ bytes: [UInt8]) -> Bool {
            received += bytes.count
            if seen.count < Self.classificationWindow { seen += bytes.prefix(Self.classificationWindow - seen.count) }
            var tail: [UInt8]?
            for event in framer.feed(bytes) {
                switch event {
                case .prompt: tail = []
                case .after(let more): tail? += more
                default: break
                }
            }
            guard let tail else { return false }
            inbox = tail + framer.heldBack
            state = .atPrompt
            return true
        }
        for _ in 0..<max(1, timeouts.promptAttempts) {
            try transport.send([0x0D], deadline: clock.now + timeouts.send)
            let deadline = clock.now + timeouts.promptAttempt
            if !pending.isEmpty {
                if absorb(pending) { return }
                pending.removeAll()
            }
            while let chunk = try receiveChunk(until: deadline) {
                if absorb(chunk) { return }
            }
        }
        inbox.removeAll()
        if let mode = Self.classify(seen) { throw ConsoleError.wrongMode(mode) }
        throw ConsoleError.noAnswer(receivedBytes: received)
    }

    /// How much of what a board printed instead of a prompt is kept to tell its mode
    /// (the banner, AP-mode and boot-log lines come first); a flood beyond it is not kept.
    static let classificationWindow = 64 * 1024

    /// The longest reply kept: 64 KiB, far beyond any the firmware prints (the help
    /// text is under 1 KiB). A longer one is a board (or line noise) gone wrong, and
    /// an error rather than memory growing without limit.
    public static let maxReplyLength = 64 * 1024

    /// Reads the mode from what a board printed when it did not give a prompt; nil
    /// when nothing in it is what a DevKit prints (silence, noise, a flood).
    static func classify(_ bytes: [UInt8]) -> BoardMode? {
        let text = String(decoding: bytes, as: UTF8.self)
        let log = BootLog.parse(text)
        switch log.mode {
        case .accessPoint(let mac): return .accessPoint(mac: mac)
        case .configuration: return .configuration
        default: break
        }
        if log.sawBanner || text.contains("You can 1. press Button A") { return .user(.banner) }
        if case .user(let evidence)? = log.mode { return .user(evidence) }
        return nil
    }

    // MARK: Identity

    /// Checks that the console at the prompt is a DevKit's, before anything is set on it.
    ///
    /// Why: the prompt `\r\n# ` is four bytes any shell may print, and the ST-LINK USB
    /// ID 0483:374b is shared by every ST Nucleo and Discovery board. The banner that
    /// would tell was printed before the port was opened, so `version` (read-only) is
    /// asked: only a DevKit's names its `DevKitSDK version`. `version` rather than
    /// `help`: its reply is ~130 bytes against ~690 (about 40 ms less at 115200 baud),
    /// and provisioning needs the firmware version anyway (``identifiedVersions``).
    ///
    /// - Returns: the versions the board reported, also kept in ``identifiedVersions``.
    /// - Throws: `ConsoleError.notADevKit` when the reply is not a DevKit's version
    ///   text; a timeout or the transport's errors unchanged. Call after `synchronize()`.
    @discardableResult
    public func identify() throws -> VersionInfo {
        do {
            let versions = try version()
            identifiedVersions = versions
            return versions
        } catch let error as ConsoleError {
            switch error {
            case .invalidCommand, .unexpectedResponse, .syntaxError, .echoMismatch, .commandFailed:
                throw ConsoleError.notADevKit(
                    reason: "it answered with a prompt, but its `version` names no DevKitSDK version")
            default: throw error
            }
        }
    }

    /// The versions read by the last successful ``identify()`` on this session (the
    /// same board: a session does not outlive its port), so they need not be asked twice.
    public private(set) var identifiedVersions: VersionInfo?

    // MARK: Typed commands

    /// `help`: the commands the firmware offers.
    public func help() throws -> [HelpEntry] {
        let lines = try execute(.help)
        let entries = lines.compactMap { line -> HelpEntry? in
            guard line.hasPrefix(" - "), let colon = line.firstRange(of: ": ") else { return nil }
            let name = String(line[line.index(line.startIndex, offsetBy: 3)..<colon.lowerBound])
            var help = String(line[colon.upperBound...])
            if help.hasSuffix(".") { help.removeLast() }
            return HelpEntry(name: name, help: help)
        }
        guard !entries.isEmpty else { throw Self.unexpected(.help, lines) }
        return entries
    }

    /// `version`: the firmware (DevKitSDK) version and the other component versions.
    public func version() throws -> VersionInfo {
        let lines = try execute(.version)
        guard let info = Self.parseVersion(lines) else { throw Self.unexpected(.version, lines) }
        return info
    }

    static func parseVersion(_ lines: [String]) -> VersionInfo? {
        var values: [String: String] = [:]
        for line in lines {
            guard let colon = line.firstRange(of: ": ") else { continue }
            values[String(line[..<colon.lowerBound])] = String(line[colon.upperBound...]).trimmingSpaces()
        }
        guard let sdk = values["DevKitSDK version"], let firmware = try? FirmwareVersion(sdk) else { return nil }
        let wifi = values["WIFI version"]
        return VersionInfo(
            firmwareVersion: firmware, mico: values["Mico version"], mbedOS: values["mbed-os version"],
            mbedTLS: values["mbed TLS version"], wifi: wifi == "unknown" ? nil : wifi)
    }

    /// `scan`: the SSIDs of the Wi-Fi networks in range (empty when none).
    public func scan() throws -> [String] {
        let lines = try execute(.scan)
        if lines.contains("No available network.") { return [] }
        guard let header = lines.firstIndex(of: "Available networks:") else { throw Self.unexpected(.scan, lines) }
        return lines[(header + 1)...].filter { $0.hasPrefix("  ") }.map { String($0.dropFirst(2)) }
    }

    /// `set_wifissid`.
    public func setWiFiSSID(_ ssid: String) throws {
        try runSetting(.setWiFiSSID(ssid), success: "INFO: Set Wi-Fi SSID successfully.")
    }

    /// `set_wifipwd`; an empty password clears it.
    public func setWiFiPassword(_ password: WiFiPassword) throws {
        try runSetting(.setWiFiPassword(password), success: "INFO: Set Wi-Fi password successfully.")
    }

    /// `set_az_iothub`.
    public func setIoTHubConnectionString(_ connectionString: ConnectionString) throws {
        try runSetting(
            .setIoTHubConnectionString(connectionString),
            success: "INFO: Set Azure Iot hub connection string successfully.")
    }

    /// `set_az_iotdps`.
    public func setDPSConnectionString(_ connectionString: ConnectionString) throws {
        try runSetting(.setDPSConnectionString(connectionString), success: "INFO: Set DPS connection string successfully.")
    }

    /// `set_dps_uds`: stores the UDS in the secure element. `Invalid UDS.` followed
    /// by the success line is success (the firmware's off-by-one length check).
    public func setUDS(_ uds: UDS) throws {
        try runSetting(.setDPSUDS(uds), success: "INFO: Set DPS UDS successfully.")
    }

    /// `enable_secure <level> [key]`.
    public func enableSecureChannel(level: Int, key: String? = nil) throws -> SecureChannelResult {
        let command = ConsoleCommand.enableSecure(level: level, key: key)
        let lines = try execute(command)
        try Self.throwIfStorageFailed(lines, command)
        if lines.contains("INFO: Enable secure channel successfully.") { return .enabled }
        if lines.contains("INFO: Secure channel has already been enabled.") { return .alreadyEnabled }
        if lines.contains("INFO: Enable secure channel failed.") {
            throw ConsoleError.commandFailed(command: command.name, .secureChannelFailed)
        }
        if let usage = lines.first(where: { $0.lowercased().hasPrefix("usage") }) {
            throw ConsoleError.commandFailed(command: command.name, .usage(message: command.masking(usage)))
        }
        throw Self.unexpected(command, lines)
    }

    /// `exit`, then the boot log until the board told its MAC address: the user-mode
    /// `DevKit MAC Address:` and `DevKit Firmware Version:` lines (DPS sample sketch),
    /// or the AP-mode `Soft AP AZ-<mac>` line. A board that comes back in
    /// configuration mode (button A still held) returns at once with `mode ==
    /// .configuration` and no MAC. After this the session is `.rebooted`.
    ///
    /// - Throws: `ConsoleError.bootLogWithoutMAC` when the sketch came up but printed
    ///   no MAC line within `timeout`, `ConsoleError.timeout` when the board did not
    ///   come up at all (a MAC without the version line is returned at the deadline).
    public func exitAndReadBootLog(timeout: Duration? = nil) throws -> BootLog {
        _ = try execute(.exit)
        let wait = timeout ?? timeouts.bootLog
        let deadline = clock.now + wait
        var log = BootLog()
        var receivedAnything = !inbox.isEmpty
        var lines = ConsoleLineSplitter()
        var chunk = inbox
        inbox.removeAll()
        while true {
            for line in lines.feed(chunk) { log.consume(line: line) }
            if log.isComplete {
                inbox = lines.partial
                if log.mode == .configuration { state = .unsynchronized }
                return log
            }
            guard let more = try receiveChunk(until: deadline) else { break }
            chunk = more
            receivedAnything = true
        }
        if log.macAddress != nil { return log }
        // Its sketch came up (user mode known) and printed no MAC by the deadline.
        if case .user? = log.mode { throw ConsoleError.bootLogWithoutMAC(after: wait) }
        let expected = receivedAnything
            ? "a `DevKit MAC Address:` line in the user-mode boot log (only sketches such as the DPS sample print it; "
                + "otherwise read the MAC off the board's screen in configuration mode)"
            : "the board to reboot after `Reboot` (nothing came back)"
        throw ConsoleError.timeout(expected: expected, after: wait, command: "exit")
    }

    /// Hands over the bytes read but not yet consumed (after `exit`: the start of the
    /// boot log), so a reader that follows the port next loses none of them.
    public func takeUnread() -> [UInt8] {
        defer { inbox.removeAll() }
        return inbox
    }

    // MARK: Lines

    /// Runs a command: validates and quotes it, types it, checks the echo, and returns
    /// the reply lines up to the next prompt (for `exit`: up to `Reboot`).
    ///
    /// - Throws: `.invalidCommand`, `.syntaxError` and `.inputBufferOverflow` when the
    ///   reply says so; device replies specific to a command are left to the caller.
    @discardableResult
    public func execute(_ command: ConsoleCommand, timeout: Duration? = nil) throws -> [String] {
        let line = try command.line()
        let lines = try transact(
            line, command: command.name, untilReboot: command == .exit,
            timeout: timeout ?? (command == .scan ? timeouts.scan : timeouts.response))
        try Self.throwIfConsoleError(lines, command.name)
        return lines
    }

    /// Types any line (the REPL's raw input) with the same framing and returns the reply
    /// lines without interpreting them. A line whose first word is `exit` reads up to
    /// `Reboot` and leaves the session `.rebooted`.
    public func execute(line text: String, timeout: Duration? = nil) throws -> [String] {
        let line = Array(text.utf8)
        let name = text.split(separator: " ").first.map(String.init) ?? ""
        guard !name.isEmpty else { throw ConsoleError.invalidArgument(command: "line", reason: "the line is empty") }
        guard line.count <= ConsoleCommand.maxLineLength else {
            throw ConsoleError.invalidArgument(command: name, reason: "the line is longer than \(ConsoleCommand.maxLineLength) bytes")
        }
        guard !line.contains(where: { $0 < 0x20 || $0 == 0x7F }) else {
            throw ConsoleError.invalidArgument(command: name, reason: "the line contains a control character")
        }
        // Split as the firmware splits it: a fifth word is stored past the end of its
        // argument array, and an unterminated quote only gets `Error:Syntax error`.
        switch ConsoleTokenizer.words(line) {
        case .failure:
            throw ConsoleError.invalidArgument(
                command: name, reason: "a quote is not closed (a word in \"...\" ends at the next \")")
        case .success(let words) where words.count > ConsoleCommand.maxWords:
            throw ConsoleError.invalidArgument(
                command: name,
                reason: "the console takes at most \(ConsoleCommand.maxWords) words, this line has \(words.count) "
                    + "(a fifth would overrun the firmware's argument array); quote a value with spaces as \"...\"")
        case .success:
            break
        }
        return try transact(
            line, command: name, untilReboot: name == "exit",
            timeout: timeout ?? (name == "scan" ? timeouts.scan : timeouts.response))
    }

    private func transact(_ line: [UInt8], command: String, untilReboot: Bool, timeout: Duration) throws -> [String] {
        guard state == .atPrompt else { throw ConsoleError.notSynchronized }
        state = .unsynchronized  // until the reply is framed
        let echo = ConsoleTokenizer.echo(of: line)
        let wire = line + [0x0D]
        var offset = 0
        // Bytes of the line the board may hold without its `\r`.
        var unfinished = 0
        do {
            while offset < wire.count {
                let end = min(offset + maxPieceLength, wire.count)
                unfinished = min(end, line.count)  // a failed write may have sent part of it
                try transport.send(Array(wire[offset..<end]), deadline: clock.now + timeouts.send)
                if end == wire.count { unfinished = 0 }  // the `\r` went: the line runs
                let echoEnd = min(end, line.count)
                if offset < echoEnd {
                    try consumeEcho(echo[offset..<echoEnd], lineOffset: offset, skipStalePrompts: offset == 0, command: command)
                }
                offset = end
            }
        } catch {
            // Stopped part-way (cancelled, timed out, wrong echo): the bytes already
            // sent wait in the console's line buffer, and the next `\r` (ours, or the
            // next session's) would run the truncated line, e.g. store half a
            // connection string. Erase them first. (An overflow dropped the line.)
            if case ConsoleError.inputBufferOverflow = error {} else {
                eraseSentBytes(unfinished)
            }
            throw error
        }

        let deadline = clock.now + timeout
        // The echo is consumed: the framer reads the reply up to its terminator.
        var framer = ConsoleFramer(echo: [], untilReboot: untilReboot)
        var reply: [UInt8] = []
        var rest: [UInt8] = []
        var framed = false
        func absorb(_ bytes: [UInt8]) throws {
            for event in framer.feed(bytes) {
                switch event {
                case .reply(let text):
                    reply += text
                    guard reply.count <= Self.maxReplyLength else {
                        throw ConsoleError.unexpectedResponse(
                            command: command,
                            response: "the board sent more than a reply can be (over \(Self.maxReplyLength) bytes without "
                                + (untilReboot ? "`Reboot`" : "a prompt") + ")")
                    }
                case .prompt, .reboot: framed = true
                case .after(let more): rest += more
                case .echo: break
                }
            }
        }
        let pending = inbox
        inbox.removeAll()
        try absorb(pending)
        while !framed {
            guard let chunk = try receiveChunk(until: deadline) else {
                let what = untilReboot ? "`Reboot`" : "the prompt that ends the reply"
                throw ConsoleError.timeout(expected: what, after: timeout, command: command)
            }
            try absorb(chunk)
        }
        inbox = rest
        state = untilReboot ? .rebooted : .atPrompt
        if reply.starts(with: [0x0D, 0x0A]) { reply.removeFirst(2) }
        return Self.lines(reply)
    }

    /// Consumes the echo of one piece, byte for byte as it arrives.
    private func consumeEcho(_ expected: ArraySlice<UInt8>, lineOffset: Int, skipStalePrompts: Bool, command: String) throws {
        let deadline = clock.now + timeouts.echo
        var remaining = expected
        var skipping = skipStalePrompts
        while !remaining.isEmpty {
            if skipping {
                // A prompt from an earlier `\r` (or the boot) may still be arriving.
                // Each byte is looked at once: the prompts are counted, then dropped together.
                var stale = 0
                while inbox[stale...].starts(with: ConsoleFramer.prompt) { stale += ConsoleFramer.prompt.count }
                inbox.removeFirst(stale)
                if !inbox.isEmpty && ConsoleFramer.prompt.starts(with: inbox) {
                    guard try receiveMore(until: deadline) else { throw echoTimeout(command) }
                    continue
                }
            }
            let count = min(inbox.count, remaining.count)
            for i in 0..<count where inbox[i] != remaining[remaining.startIndex + i] {
                let offset = lineOffset + (expected.count - remaining.count) + i
                inbox.removeFirst(i)
                throw diagnoseMismatch(command: command, offset: offset)
            }
            if count > 0 { skipping = false }
            inbox.removeFirst(count)
            remaining = remaining.dropFirst(count)
            if !remaining.isEmpty {
                guard try receiveMore(until: deadline) else { throw echoTimeout(command) }
            }
        }
    }

    /// Sends DEL for up to `count` bytes of an unfinished line, in pieces paced by
    /// their `\b \b` echoes (the console's only flow control). Best effort, ended by an
    /// echo timeout of silence: a board that holds fewer bytes (some were lost) echoes
    /// fewer erasures, and DEL on an empty line is ignored. The time is counted from the
    /// last erasure seen, not from the start: each erased byte echoes three, so 256 of
    /// them take 3.2 s at 2400 baud, and an erase cut short leaves the line's start in
    /// the console, which the next `\r` would run (half a connection string stored).
    private func eraseSentBytes(_ count: Int) {
        guard count > 0 else { return }
        // Counted as they arrive, each `\b \b` once (non-overlapping).
        var erasure = BytePattern([0x08, 0x20, 0x08])
        var erased = 0
        func tally(_ bytes: [UInt8]) {
            for byte in bytes where erasure.advance(byte) {
                erased += 1
                erasure.reset()
            }
        }
        tally(inbox)
        var sent = 0
        while sent < count {
            let n = min(maxPieceLength, count - sent)
            guard (try? transport.send([UInt8](repeating: 0x7F, count: n), deadline: clock.now + timeouts.send)) != nil
            else { break }
            sent += n
            var deadline = clock.now + timeouts.echo
            while erased < sent {
                guard let chunk = try? receiveChunk(until: deadline) else { break }
                let before = erased
                tally(chunk)
                if erased > before { deadline = clock.now + timeouts.echo }
            }
            if erased < sent { break }
        }
        inbox.removeAll()
    }

    private func echoTimeout(_ command: String) -> ConsoleError {
        .timeout(expected: "the echo of the `\(command)` line", after: timeouts.echo, command: nil)
    }

    /// After a wrong echo byte: reads on to the prompt (bounded) to tell a buffer
    /// overflow from lost or foreign bytes.
    private func diagnoseMismatch(command: String, offset: Int) -> ConsoleError {
        var overflow = BytePattern(Array("Error: input buffer overflow".utf8))
        var prompt = BytePattern(ConsoleFramer.prompt)
        var isOverflow = false
        var sawPrompt = false
        func scan(_ bytes: [UInt8]) {
            for byte in bytes {
                if overflow.advance(byte) { isOverflow = true }
                if prompt.advance(byte) { sawPrompt = true }
            }
        }
        scan(inbox)
        let deadline = clock.now + timeouts.echo
        while !isOverflow && !sawPrompt {
            guard let chunk = try? receiveChunk(until: deadline) else { break }
            scan(chunk)
        }
        inbox.removeAll()
        return isOverflow ? .inputBufferOverflow(command: command) : .echoMismatch(command: command, offset: offset)
    }

    /// Receives one chunk into the inbox; false when the deadline passed.
    private func receiveMore(until deadline: ContinuousClock.Instant) throws -> Bool {
        guard let bytes = try receiveChunk(until: deadline) else { return false }
        inbox += bytes
        return true
    }

    /// Receives one chunk (shown to the observer); nil when the deadline passed. The
    /// deadline is checked before every read, so a board that never stops talking
    /// cannot keep a wait going past it.
    private func receiveChunk(until deadline: ContinuousClock.Instant) throws -> [UInt8]? {
        guard clock.now < deadline else { return nil }
        let bytes = try transport.receive(deadline: deadline)
        guard !bytes.isEmpty else { return nil }
        receiveObserver?(bytes)
        return bytes
    }

    // MARK: Replies

    private func runSetting(_ command: ConsoleCommand, success: String) throws {
        let lines = try execute(command)
        try Self.checkSetting(lines, command: command, success: success)
    }

    static func checkSetting(_ lines: [String], command: ConsoleCommand, success: String) throws {
        try throwIfStorageFailed(lines, command)
        let invalid = lines.firstIndex { $0.hasPrefix("Invalid ") }
        // A board may quote the value it rejects: for a secret command, that is the secret.
        func rejected(_ index: Int) -> ConsoleError {
            .commandFailed(command: command.name, .invalidArgument(message: command.masking(lines[index])))
        }
        if let done = lines.firstIndex(of: success) {
            // The UDS quirk: a valid 64-digit UDS prints `Invalid UDS.`, then stores it.
            if let invalid, !(command.name == "set_dps_uds" && invalid < done) { throw rejected(invalid) }
            return
        }
        if let invalid { throw rejected(invalid) }
        if let usage = lines.first(where: { $0.hasPrefix("Usage:") }) {
            throw ConsoleError.commandFailed(command: command.name, .usage(message: command.masking(usage)))
        }
        throw Self.unexpected(command, lines)
    }

    /// Secure-element failures: `ERROR: Failed to write EEPROM: 0x<zone>.`, `ERROR: Verify failed.`
    static func throwIfStorageFailed(_ lines: [String], _ command: ConsoleCommand) throws {
        let prefix = "ERROR: Failed to write EEPROM: 0x"
        for line in lines {
            if line.hasPrefix(prefix) {
                let digits = line.dropFirst(prefix.count).prefix { $0 != "." }
                throw ConsoleError.commandFailed(
                    command: command.name, .eepromWriteFailed(zone: UInt8(digits, radix: 16) ?? 0xFF))
            }
            if line == "ERROR: Verify failed." {
                throw ConsoleError.commandFailed(command: command.name, .verifyFailed)
            }
        }
    }

    static func throwIfConsoleError(_ lines: [String], _ command: String) throws {
        for line in lines {
            if line.hasPrefix("Error:Invalid command:") {
                throw ConsoleError.invalidCommand(name: String(line.dropFirst("Error:Invalid command:".count)).trimmingSpaces())
            }
            if line.hasPrefix("Error:Syntax error") { throw ConsoleError.syntaxError(command: command) }
            if line.hasPrefix("Error: input buffer overflow") { throw ConsoleError.inputBufferOverflow(command: command) }
        }
    }

    static func unexpected(_ command: ConsoleCommand, _ lines: [String]) -> ConsoleError {
        let text = lines.joined(separator: " | ")
        let shown = command.hasSecretArgument ? "" : String(text.prefix(200))
        return .unexpectedResponse(command: command.name, response: shown)
    }

    /// Splits a reply into lines (`\r\n`, or a lone `\n`), without a final empty one.
    static func lines(_ bytes: [UInt8]) -> [String] {
        var lines = bytes.split(separator: 0x0A, omittingEmptySubsequences: false).map { line in
            String(decoding: line.last == 0x0D ? line.dropLast() : line, as: UTF8.self)
        }
        if lines.last == "" { lines.removeLast() }
        return lines
    }

    static func firstRange(of needle: [UInt8], in haystack: [UInt8]) -> Range<Int>? {
        guard !needle.isEmpty, haystack.count >= needle.count else { return nil }
        for start in 0...(haystack.count - needle.count)
        where haystack[start] == needle[0] && haystack[start..<(start + needle.count)].elementsEqual(needle) {
            return start..<(start + needle.count)
        }
        return nil
    }
}
