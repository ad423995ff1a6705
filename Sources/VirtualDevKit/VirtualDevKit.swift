import DevKitModel
import CDevKitLinux
import DevKitSystem
import Foundation
import Synchronization
import SystemPackage
#if canImport(Glibc)
import Glibc
#endif

/// An emulated MXChip AZ3166 DevKit on a pseudo-terminal, byte for byte as its
/// firmware's console (docs/devkit-console.md), for trying devkit without a board
/// and for tests.
///
/// ```swift
/// let kit = try VirtualDevKit(configuration: .init(stateFile: "/tmp/kit.json"))
/// try kit.start()
/// let port = try SerialPort(path: kit.devicePath)   // talk to it like a real board
/// ...
/// kit.stop()
/// ```
///
/// The board runs on its own thread. Like the real one it has a 256-byte UART receive
/// ring and no flow control: bytes that arrive while a command runs and do not fit
/// in the ring are lost (counted in ``droppedByteCount``). With
/// ``VirtualDevKitConfiguration/pacingBaudRate`` set, each byte in either direction
/// takes 10/baud seconds, as 8N1 on the wire, and what the board prints reaches the
/// host at the end of the 1 ms USB frame in which it left the line (``usbFrame``).
///
/// As with the real board, what it prints while no host has the port open is lost
/// (not replayed to the next host): a host sends `\r` and waits for the prompt, or
/// opens the port first and then calls ``reset(into:)`` to see the boot output.
public final class VirtualDevKit: @unchecked Sendable {
    public typealias Configuration = VirtualDevKitConfiguration
    public typealias Mode = VirtualDevKitConfiguration.Mode

    public let configuration: Configuration

    /// The UART receive ring of the board's MCU.
    static let ringCapacity = 256
    /// A USB full-speed frame. The ST-LINK's USB bridge hands the host what its
    /// UART received in bulk packets, not one transfer per byte; with pacing, what
    /// the board printed reaches the host at the end of the frame in which it left
    /// the line. (Byte by byte, 16 boards echoing at once spent most of two cores
    /// on wake-ups that real hardware never causes.)
    static let usbFrame = Duration.milliseconds(1)

    private struct Shared {
        var requests: [(Request, DispatchSemaphore?)] = []
        var devicePath = ""
        var state: VirtualDevKitState
        var pluggedIn = false
        var running = false
        var received = 0
        /// `received` when the board was last plugged in: the unplug fault counts
        /// from there, so a replugged board takes N bytes again.
        var receivedAtPlug = 0
        var dropped = 0
        var mode: Mode
        var lastError: VirtualDevKitError?
        /// The board thread is blocked waiting for the host with nothing to do.
        var idle = false
        /// USB frame latency added to the last byte of each reply (see `flushBridge`).
        var replyFrameDelay: Duration = .zero
        var replies = 0
    }

    private enum Request {
        case stop
        case unplug
        case replug
        case reset(Mode)
    }

    private let shared: Mutex<Shared>
    /// Wakes the board thread when a request is queued.
    private let control: FileDescriptor
    private let finished = DispatchSemaphore(value: 0)
    private let idleChanged = NSCondition()

    // Owned by the board thread (or by the caller before start()/after stop()).
    private var pty: PseudoTerminal?
    private var slaveHold: FileDescriptor?
    /// inotify on the slave node: tells when hosts open and close it.
    private var hostWatch: FileDescriptor?
    /// Open host file descriptions on the slave (the board's own hold excluded): exact
    /// after a count, a lower bound after opens (see `watchHosts`).
    private var hostsOpen = 0
    /// A host closed the port and none opened it since: no host may be left, and
    /// only a /proc scan can tell (see `settleHosts`).
    private var hostsMaybeGone = false
    /// The host may have written since the last read of the master found nothing.
    private var hostInputPending = true
    /// The inotify watch may have events: set by the waits that saw it readable
    /// (paced output checks for hosts only then, not with a read per chunk).
    private var hostWatchPending = true
    private var ring: [UInt8] = []
    /// When each byte in the ring had fully arrived (the board's time for it).
    private var ringArrival: [ContinuousClock.Instant] = []
    private var ringHead = 0
    private var wire: [UInt8] = []
    private var wireStart = ContinuousClock.now
    private var txFreeAt = ContinuousClock.now
    private var commandRunning = false
    /// Where the board's own time stands after a `pause`: the deadline it waited
    /// for, not the moment the OS woke the thread (later, by the timer's latency).
    /// nil after a wait for the host, which has no deadline.
    private var resumedAt: ContinuousClock.Instant?
    private let byteTime: Duration
    /// Paced output that has left the UART but not yet crossed USB, each byte with
    /// the end of the frame it left the line in, when the host gets it (see `flushBridge`).
    private var bridgeBytes: [UInt8] = []
    private var bridgeDelivery: [ContinuousClock.Instant] = []
    /// When the last byte a host will see left the line, until the firmware next
    /// waits for the host (then it ends a reply; see `waitForInput`).
    private var replyEnd: ContinuousClock.Instant?
    /// The start of USB frame 0; frames follow every ``usbFrame``.
    private let frameEpoch = ContinuousClock.now

    /// Creates the board and its pty (so ``devicePath`` is valid at once); it
    /// starts talking after ``start()``.
    public init(configuration: Configuration) throws(VirtualDevKitError) {
        let mac = configuration.macAddress
        // The board's own spelling only (what it prints): 12 lower-case digits.
        guard (try? MACAddress(mac))?.hex == mac else {
            throw .invalidConfiguration(
                "Invalid MAC address \"\(mac)\": give 12 lower-case hex digits, e.g. a4cf120b9e31.")
        }
        guard (try? FirmwareVersion(configuration.firmwareVersion))?.text == configuration.firmwareVersion else {
            throw .invalidConfiguration(
                "Invalid firmware version \"\(configuration.firmwareVersion)\": give major.minor.patch, e.g. 1.6.2.")
        }
        if let baud = configuration.pacingBaudRate, baud <= 0 {
            throw .invalidConfiguration("Invalid baud rate \(baud): give a positive rate such as 115200.")
        }
        if let n = configuration.faults.unplugAfterReceivedBytes, n < 1 {
            throw .invalidConfiguration("The unplug-after byte count must be at least 1.")
        }
        self.configuration = configuration
        let state =
            if let path = configuration.stateFile { try VirtualDevKitState.load(from: path) } else { VirtualDevKitState() }
        // Written once now: a state file that cannot be written fails here, at start,
        // rather than later as what would look like the board's EEPROM failing.
        if let path = configuration.stateFile { try state.save(to: path) }
        shared = Mutex(Shared(state: state, mode: configuration.mode))
        if let baud = configuration.pacingBaudRate {
            byteTime = .nanoseconds(Int64((10 * 1_000_000_000 / Double(baud)).rounded()))
        } else {
            byteTime = .zero
        }
        do {
            control = try FileDescriptor.eventFD()
        } catch {
            throw .pseudoTerminal(errno: error)
        }
        ring.reserveCapacity(Self.ringCapacity)
        try plug()
    }

    deinit {
        stop()
        try? control.close()
    }

    // MARK: Public controls

    /// The pty slave a host opens (changes with each ``replug()``).
    public var devicePath: String { shared.withLock { $0.devicePath } }
    /// False between an unplug (fault or ``unplug()``) and ``replug()``.
    public var isPluggedIn: Bool { shared.withLock { $0.pluggedIn } }
    /// The secure-element contents now.
    public var state: VirtualDevKitState { shared.withLock { $0.state } }
    /// The mode the firmware last booted into.
    public var mode: Mode { shared.withLock { $0.mode } }
    /// Bytes the board has taken from the host.
    public var receivedByteCount: Int { shared.withLock { $0.received } }
    /// Bytes lost because the receive ring was full while a command ran.
    public var droppedByteCount: Int { shared.withLock { $0.dropped } }
    /// With pacing: how long the last byte of each reply the board finished (before
    /// it waited for the host again) sat in the USB bridge after it left the line,
    /// in total, and over how many replies. A host's wall time includes it on top of
    /// the wire time, as with a real ST-LINK.
    public var usbReplyLatency: (total: Duration, replies: Int) {
        shared.withLock { ($0.replyFrameDelay, $0.replies) }
    }
    /// The last failure to save the state file, if any (the board reports it as an EEPROM write failure).
    public var lastError: VirtualDevKitError? { shared.withLock { $0.lastError } }

    /// Powers the board on: it boots into the configured mode on its own thread.
    public func start() {
        let alreadyRunning = shared.withLock { s in
            defer { s.running = true }
            return s.running
        }
        guard !alreadyRunning else { return }
        let thread = Thread { [self] in
            self.run()
            self.finished.signal()
        }
        thread.name = "VirtualDevKit"
        thread.start()
    }

    /// Stops the board, closes its pty and removes the link. Idempotent.
    public func stop() {
        if send(.stop) {
            finished.wait()
            shared.withLock { $0.running = false }
        }
        unplugNow()
    }

    /// Pulls the USB cable: the pty closes (the host sees a hang-up) and the link goes.
    public func unplug() {
        if !send(.unplug) { unplugNow() }
    }

    /// Plugs the board back in: a new pty (see ``devicePath``), the link re-pointed,
    /// and a fresh boot in the configured mode.
    public func replug() throws(VirtualDevKitError) {
        if !send(.replug) {
            if pty == nil { try plug() }
        }
        if let error = shared.withLock({ $0.lastError }), !isPluggedIn { throw error }
    }

    /// Presses reset with a button held (``Mode/configuration``: A, ``Mode/ap``: B,
    /// ``Mode/user``: none). The pty stays open.
    public func reset(into mode: Mode) {
        // Busy from now on, so a waitUntilIdle() that follows waits for the new boot
        // instead of seeing the idle state from before the reset.
        setIdle(false)
        _ = send(.reset(mode))
    }

    /// Waits until the board has nothing left to do (everything it had to print is
    /// out, and it waits for the host), e.g. after ``reset(into:)`` or ``start()``.
    /// Returns false if that did not happen within `timeout`.
    public func waitUntilIdle(timeout: Duration = .seconds(10)) -> Bool {
        let deadline = Date().addingTimeInterval(Double(timeout.components.seconds) + Double(timeout.components.attoseconds) / 1e18)
        idleChanged.lock()
        defer { idleChanged.unlock() }
        while !shared.withLock({ $0.idle }) {
            if !idleChanged.wait(until: deadline) { return shared.withLock { $0.idle } }
        }
        return true
    }

    private func setIdle(_ idle: Bool) {
        idleChanged.lock()
        shared.withLock { $0.idle = idle }
        idleChanged.broadcast()
        idleChanged.unlock()
    }

    /// Queues a request for the board thread and waits until it has been handled.
    /// Returns false when the thread is not running (nothing was queued).
    private func send(_ request: Request) -> Bool {
        let done = DispatchSemaphore(value: 0)
        let queued = shared.withLock { s -> Bool in
            guard s.running else { return false }
            s.requests.append((request, done))
            return true
        }
        guard queued else { return false }
        var one: UInt64 = 1
        _ = withUnsafeBytes(of: &one) { try? control.writeSome($0) }
        done.wait()
        return true
    }

    // MARK: The board thread

    private func run() {
        var bootMode = configuration.mode
        while true {
            if pty == nil {
                // Unplugged: nothing runs until a replug or stop.
                do {
                    try waitForControl()
                    try handleRequests(pluggedIn: false)
                } catch .stop {
                    return
                } catch .reboot {
                    bootMode = configuration.mode
                } catch {}
                continue
            }
            do {
                try boot(into: bootMode)
            } catch .reboot(let mode) {
                bootMode = mode
            } catch .unplug {
                unplugNow()
                bootMode = configuration.mode
            } catch .stop {
                return
            } catch {}
        }
    }

    private func boot(into mode: Mode) throws(BoardEvent) {
        shared.withLock { $0.mode = mode }
        ring.removeAll(keepingCapacity: true)
        ringArrival.removeAll(keepingCapacity: true)
        ringHead = 0
        wire.removeAll()
        commandRunning = false
        if configuration.faults.lineNoiseBytes > 0 {
            try emit(Self.noise(count: configuration.faults.lineNoiseBytes))
        }
        try emit(FirmwareText.banner)
        switch mode {
        case .configuration:
            var firmware = ConsoleFirmware(configuration: configuration)
            try firmware.start(on: self)
            while true {
                let byte = try nextByte()
                try firmware.receive(byte, on: self)
            }
        case .user:
            try emit(
                FirmwareText.userMode
                    + FirmwareText.logInfo("DevKit MAC Address: \(configuration.macAddress)")
                    + FirmwareText.logInfo("DevKit Firmware Version: \(configuration.firmwareVersion)"))
            while true { _ = try nextByte() }  // the sketch ignores the console
        case .ap:
            try emit(FirmwareText.apMode(mac: configuration.macAddress))
            while true { _ = try nextByte() }
        }
    }

    /// Power-up garbage: high-bit bytes and NULs, never a prompt or a newline.
    static func noise(count: Int) -> [UInt8] {
        var x: UInt32 = 0x9e37_79b9
        return (0..<count).map { _ in
            x ^= x << 13
            x ^= x >> 17
            x ^= x << 5
            let b = UInt8(truncatingIfNeeded: x)
            return b < 0x80 ? (b & 1 == 0 ? 0x00 : 0xff) : b
        }
    }

    /// The next byte from the receive ring, waiting for the host as long as needed.
    private func nextByte() throws(BoardEvent) -> UInt8 {
        while true {
            try handleRequests(pluggedIn: true)
            if ringHead < ring.count {
                let byte = ring[ringHead]
                // The firmware handles it as of its arrival, though the thread may
                // take it up to a frame later (see below): its echo leaves the line
                // when it would have on the board.
                if byteTime > .zero { resumedAt = ringArrival[ringHead] }
                ringHead += 1
                if ringHead == ring.count {
                    ring.removeAll(keepingCapacity: true)
                    ringArrival.removeAll(keepingCapacity: true)
                    ringHead = 0
                }
                return byte
            }
            if let limit = configuration.faults.unplugAfterReceivedBytes, wire.isEmpty,
                shared.withLock({ $0.received - $0.receivedAtPlug }) >= limit
            {
                throw .unplug
            }
            absorbArrivals()
            if ringHead < ring.count { continue }
            if !wire.isEmpty {
                // The next byte is still on the wire. Nothing it causes can reach the
                // host before the end of the USB frame it arrives in, so the thread
                // sleeps until then and takes every byte that arrived by that time
                // (one wake-up a frame, not one a byte).
                try pause(until: frameEnd(containing: wireStart + byteTime))
            } else {
                try waitForInput()
            }
        }
    }

    /// Moves bytes that have reached the UART from the pty into the ring. While a
    /// command runs, those that do not fit are lost, as on the board.
    private func absorbArrivals() {
        guard let pty else { return }
        readPending(from: pty.master)
        guard !wire.isEmpty else { return }
        if ringHead > 0 {
            ring.removeFirst(ringHead)
            ringArrival.removeFirst(ringHead)
            ringHead = 0
        }
        var arrived = wire.count
        let now = ContinuousClock.now
        if byteTime > .zero {
            arrived = now < wireStart ? 0 : min(wire.count, Int((now - wireStart) / byteTime))
        }
        var taken = 0
        var lost = 0
        for byte in wire.prefix(arrived) {
            if ring.count < Self.ringCapacity {
                ring.append(byte)
                ringArrival.append(byteTime > .zero ? wireStart + byteTime * (taken + 1) : now)
            } else if commandRunning {
                lost += 1
            } else {
                break  // idle: the firmware will drain the ring before more arrives
            }
            taken += 1
        }
        wire.removeFirst(taken)
        wireStart = wireStart + byteTime * taken
        if lost > 0 { shared.withLock { $0.dropped += lost } }
    }

    /// How many more bytes the board may take from the host (the unplug fault's budget).
    private func hostInputBudget() -> Int {
        guard let limit = configuration.faults.unplugAfterReceivedBytes else { return 4096 }
        return min(4096, limit - shared.withLock { $0.received - $0.receivedAtPlug })
    }

    /// Reads what the host has written (within the unplug budget) onto the "wire".
    private func readPending(from master: FileDescriptor) {
        // Only after a wait saw input (or before the first): most calls come between
        // frames with nothing new, and each read that says so costs a syscall.
        guard hostInputPending else { return }
        while true {
            let budget = hostInputBudget()
            if budget <= 0 { return }
            let bytes: [UInt8]
            do {
                bytes = try master.readAvailable(maxCount: budget)
            } catch {
                hostInputPending = false
                return  // EAGAIN: nothing more; EIO: no host side open
            }
            if bytes.isEmpty {
                hostInputPending = false
                return
            }
            if wire.isEmpty { wireStart = max(wireStart, ContinuousClock.now) }
            wire += bytes
            shared.withLock { $0.received += bytes.count }
            // A short read emptied the pty: asking again would only say EAGAIN (most
            // of the emulator's reads did, one per host write).
            if bytes.count < budget {
                hostInputPending = false
                return
            }
        }
    }

    /// Blocks until the host writes, or a request arrives.
    private func waitForInput() throws(BoardEvent) {
        guard let pty else { throw .unplug }
        var fds = [
            pollfd(fd: pty.master.rawValue, events: Int16(POLLIN), revents: 0),
            pollfd(fd: control.rawValue, events: Int16(POLLIN), revents: 0),
            pollfd(fd: hostWatch?.rawValue ?? -1, events: Int16(POLLIN), revents: 0),
        ]
        // The firmware now waits for the host: what it printed last ends a reply,
        // and the host sees that byte only at the end of its USB frame.
        if let end = replyEnd {
            replyEnd = nil
            let latency = end.duration(to: frameEnd(containing: end))
            shared.withLock {
                $0.replyFrameDelay += latency
                $0.replies += 1
            }
        }
        flushBridge()
        // Output no host read must not wait in the pty for the next host.
        if hostsMaybeGone, unreadOutput() > 0 { settleHosts() }
        if let due = bridgeDue {
            // Output still crossing USB: wait for the host only until its frame ends.
            _ = fds.withUnsafeMutableBufferPointer { pollPrecisely($0, timeout: ContinuousClock.now.duration(to: due)) }
        } else {
            setIdle(true)
            _ = fds.withUnsafeMutableBufferPointer { Glibc.poll($0.baseAddress, 3, -1) }
        }
        setIdle(false)
        resumedAt = nil
        if fds[0].revents != 0 { hostInputPending = true }
        if fds[2].revents & Int16(POLLIN) != 0 { watchHosts() }
        try handleRequests(pluggedIn: true)
    }

    private func waitForControl() throws(BoardEvent) {
        var fd = pollfd(fd: control.rawValue, events: Int16(POLLIN), revents: 0)
        _ = Glibc.poll(&fd, 1, -1)
    }

    /// Lets time pass on the board (pacing, secure-element work), still taking
    /// arrivals into the ring and still answering requests.
    private func pause(until deadline: ContinuousClock.Instant) throws(BoardEvent) {
        while true {
            try handleRequests(pluggedIn: true)
            absorbArrivals()
            flushBridge()
            let now = ContinuousClock.now
            if now >= deadline {
                resumedAt = deadline
                return
            }
            // Wake for the deadline, or earlier when a USB frame is due.
            var remaining = now.duration(to: deadline)
            if let due = bridgeDue, due < deadline { remaining = max(.zero, now.duration(to: due)) }
            // Also woken by the host's writes, which are then taken onto the wire at
            // once (not when the sleep ends), unless the unplug budget is spent.
            var fds = [
                pollfd(fd: hostInputBudget() > 0 ? pty?.master.rawValue ?? -1 : -1, events: Int16(POLLIN), revents: 0),
                pollfd(fd: control.rawValue, events: Int16(POLLIN), revents: 0),
                pollfd(fd: hostWatchPending ? -1 : hostWatch?.rawValue ?? -1, events: Int16(POLLIN), revents: 0),
            ]
            _ = fds.withUnsafeMutableBufferPointer { pollPrecisely($0, timeout: remaining) }
            if fds[0].revents != 0 { hostInputPending = true }
            if fds[2].revents != 0 { hostWatchPending = true }
        }
    }

    private func handleRequests(pluggedIn: Bool) throws(BoardEvent) {
        let pending = shared.withLock { s in
            defer { s.requests.removeAll() }
            return s.requests
        }
        guard !pending.isEmpty else { return }
        setIdle(false)  // before any requester is released: it may wait for idle next
        var drain: UInt64 = 0
        _ = withUnsafeMutableBytes(of: &drain) { Glibc.read(control.rawValue, $0.baseAddress, 8) }
        var event: BoardEvent?
        for (request, done) in pending {
            switch request {
            case .stop:
                event = .stop
            case .unplug:
                if pluggedIn {
                    unplugNow()
                    if event == nil { event = .unplug }
                }
            case .replug:
                if pty == nil {
                    do {
                        try plug()
                        if event == nil { event = .reboot(configuration.mode) }
                    } catch {
                        shared.withLock { $0.lastError = error }
                    }
                }
            case .reset(let mode):
                if pty != nil && event == nil { event = .reboot(mode) }
            }
            done?.signal()
        }
        if let event {
            // Unplugging already happened above; the board loop only needs to restart.
            throw event == .unplug ? .reboot(configuration.mode) : event
        }
    }

    // MARK: BoardHardware

    /// Sends bytes to the host, paced when configured. Output the host is not
    /// reading is dropped once the pty buffer is full, as the USB bridge would.
    func emitImpl(_ bytes: [UInt8]) throws(BoardEvent) {
        guard let pty else { throw .unplug }
        // Unpaced output never waits, so it asks inotify every time; paced output
        // pauses between chunks, and the pause's poll says when there is news (a
        // read per chunk was most of the emulator's system calls, all EAGAIN).
        if hostWatchPending || byteTime == .zero {
            hostWatchPending = false
            watchHosts()
        }
        settleHosts()
        // Nobody listening: the bytes still leave the UART (and take their time),
        // but the USB bridge drops them.
        let listening = hostsOpen > 0 || hostWatch == nil
        if byteTime == .zero {
            if listening { writeDropping(bytes, to: pty.master) }
            if commandRunning { absorbArrivals() }
            try handleRequests(pluggedIn: true)
            return
        }
        // The line carries one byte per byteTime. As with the UART's transmit
        // register (the firmware's putc waits for it to be empty), the firmware is
        // held until its last byte starts on the line, not until that byte has left:
        // holding it to the end made every echoed byte cost a receive wait plus a
        // transmit wait (two sleeps, each overshooting), so echoes ran at about half
        // the configured rate.
        // Output starts when the line is free and the firmware has it, in the board's
        // time: after a pause that is the pause's deadline (bounded, in case the
        // thread was held up for real), so timer latency is not added to the wire
        // time of every chunk and line.
        let now = ContinuousClock.now
        var firmwareNow = now
        if let resumedAt, resumedAt <= now, resumedAt.duration(to: now) < .milliseconds(2) { firmwareNow = resumedAt }
        if txFreeAt < firmwareNow { txFreeAt = firmwareNow }
        for byte in bytes {
            txFreeAt = txFreeAt + byteTime
            if listening {
                bridgeBytes.append(byte)
                bridgeDelivery.append(frameEnd(containing: txFreeAt))
                replyEnd = txFreeAt
            }
        }
        let lastByteStarts = txFreeAt - byteTime
        if lastByteStarts > ContinuousClock.now {
            try pause(until: lastByteStarts)
        } else {
            // No flush here: the bytes of a frame go out in one write, from the
            // waits (pause, waitForInput), once the firmware has caught up.
            if commandRunning { absorbArrivals() }
            try handleRequests(pluggedIn: true)
        }
    }

    /// The end of the USB frame in which `instant` falls (itself, on a boundary).
    private func frameEnd(containing instant: ContinuousClock.Instant) -> ContinuousClock.Instant {
        let frames = max(0, (frameEpoch.duration(to: instant) / Self.usbFrame).rounded(.up))
        return frameEpoch + Self.usbFrame * Int(frames)
    }

    /// When the oldest byte still in the bridge reaches the host.
    private var bridgeDue: ContinuousClock.Instant? { bridgeDelivery.first }

    /// Hands the host, in one write, every byte whose frame has ended.
    private func flushBridge() {
        let now = ContinuousClock.now
        guard let first = bridgeDelivery.first, first <= now else { return }
        let count = bridgeDelivery.firstIndex { $0 > now } ?? bridgeDelivery.count
        if let pty { writeDropping(Array(bridgeBytes[..<count]), to: pty.master) }
        bridgeBytes.removeFirst(count)
        bridgeDelivery.removeFirst(count)
    }

    private func writeDropping(_ bytes: [UInt8], to master: FileDescriptor) {
        var rest = bytes[...]
        while !rest.isEmpty {
            let n = rest.withUnsafeBytes { Glibc.write(master.rawValue, $0.baseAddress, $0.count) }
            if n > 0 {
                rest = rest.dropFirst(n)
            } else if n < 0 && errno == EINTR {
                continue
            } else {
                return
            }
        }
    }

    /// Follows hosts opening and closing the port (inotify on the slave node).
    ///
    /// The board holds the slave open so the line never hangs up between hosts;
    /// two things a real ttyACM does on a host's last close must then be done here:
    /// - forget a TIOCEXCL left by a host that died without clearing it (kill -9),
    ///   or every later non-root open fails with EBUSY (hosts still exclude each
    ///   other with flock, which the kernel drops with the dead process);
    /// - drop unread output, and print nothing while no host listens: what the
    ///   board printed before a host opened the port is not replayed.
    private func watchHosts() {
        guard let hostWatch else { return }
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(hostWatch.rawValue, $0.baseAddress, $0.count) }
            guard n > 0 else { return }
            var offset = 0
            var closed = false
            // struct inotify_event { int wd; uint32_t mask, cookie, len; char name[len]; }
            // In order: an open after a close proves a host, a close after an open
            // may have been the last one.
            while offset + 16 <= n {
                let mask = buffer.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self) }
                let length = buffer.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset + 12, as: UInt32.self) }
                if mask & UInt32(IN_OPEN) != 0 {
                    hostsOpen = max(hostsOpen, 1)
                    hostsMaybeGone = false
                }
                if mask & UInt32(IN_CLOSE_WRITE | IN_CLOSE_NOWRITE) != 0 {
                    hostsMaybeGone = true
                    closed = true
                }
                offset += 16 + Int(length)
            }
            if closed { slaveHold?.clearExclusiveMode() }
        }
    }

    /// After a close, counts the hosts left, and drops unread output if none is.
    ///
    /// inotify merges identical unread events, so counting them is unreliable: the
    /// count comes from /proc, which stats every descriptor of every process (ms,
    /// more on a loaded machine). So it runs only when the answer matters: before
    /// the board prints, or when printed output is still unread at idle. A host that
    /// read everything and closed costs nothing; doing it on every close made a
    /// fleet of emulators spend 40% of their CPU in these scans.
    private func settleHosts() {
        guard hostsMaybeGone else { return }
        hostsMaybeGone = false
        hostsOpen = countHostOpens()
        if hostsOpen == 0, let slaveHold { _ = tcflush(slaveHold.rawValue, TCIFLUSH) }
    }

    /// Bytes the board printed that no host has read yet (the slave's input queue).
    private func unreadOutput() -> Int32 {
        guard let slaveHold else { return 0 }
        var count: Int32 = 0
        return ioctl(slaveHold.rawValue, UInt(FIONREAD), &count) == 0 ? count : 0
    }

    /// How many descriptors of any process refer to the slave, the board's own hold
    /// excluded (from /proc/*/fd; processes we may not look into are not counted).
    private func countHostOpens() -> Int {
        guard let pty, let slaveHold else { return 0 }
        var own = Glibc.stat()
        guard fstat(slaveHold.rawValue, &own) == 0 else { return 1 }
        let me = getpid()
        var count = 0
        guard let proc = opendir("/proc") else { return 1 }
        defer { closedir(proc) }
        while let entry = readdir(proc) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) {
                String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            guard let pid = Int32(name) else { continue }
            let fdDirectory = "/proc/\(name)/fd"
            guard let fds = opendir(fdDirectory) else { continue }
            defer { closedir(fds) }
            while let fdEntry = readdir(fds) {
                let fdName = withUnsafeBytes(of: fdEntry.pointee.d_name) {
                    String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self)
                }
                guard let fd = Int32(fdName), !(pid == me && fd == slaveHold.rawValue) else { continue }
                var s = Glibc.stat()
                if stat("\(fdDirectory)/\(fdName)", &s) == 0, (s.st_mode & S_IFMT) == S_IFCHR,
                    s.st_rdev == own.st_rdev
                {
                    count += 1
                }
            }
        }
        _ = pty
        return count
    }

    // MARK: Plugging

    private func plug() throws(VirtualDevKitError) {
        let pty: PseudoTerminal
        let slave: FileDescriptor
        do {
            pty = try PseudoTerminal()
            slave = try pty.openSlave()
        } catch {
            throw .pseudoTerminal(errno: error)
        }
        // Hold the slave open so the line never hangs up between hosts, and make it
        // raw, so even a host that leaves the settings alone sees the board's bytes.
        var t = termios()
        if tcgetattr(slave.rawValue, &t) == 0 {
            cfmakeraw(&t)
            t.c_cflag |= tcflag_t(CLOCAL | CREAD)
            cfsetspeed(&t, speed_t(B115200))
            _ = tcsetattr(slave.rawValue, TCSANOW, &t)
        }
        // Watch for hosts before the link appears: a host that opens the port as soon
        // as the link shows up (as `devkit console` does on replug) must be counted.
        var newWatch: FileDescriptor?
        let watch = inotify_init1(Int32(IN_CLOEXEC | IN_NONBLOCK))
        if watch >= 0,
            inotify_add_watch(watch, pty.slavePath, UInt32(IN_OPEN | IN_CLOSE_WRITE | IN_CLOSE_NOWRITE)) >= 0
        {
            newWatch = FileDescriptor(rawValue: watch)
        } else if watch >= 0 {
            Glibc.close(watch)  // without a watch the board always prints (see emit)
        }
        if let link = configuration.linkPath {
            // Another emulator's link to a live pty (a pts node exists only while its
            // master is open) is not taken over: that emulator would lose its link.
            var buffer = [CChar](repeating: 0, count: 256)
            let n = readlink(link, &buffer, buffer.count - 1)
            if n > 0 {
                let target = String(decoding: buffer[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
                if target.hasPrefix("/dev/pts/"), target != pty.slavePath, access(target, F_OK) == 0 {
                    try? newWatch?.close()
                    try? slave.close()
                    try? pty.master.close()
                    throw .linkInUse(path: link, target: target)
                }
            }
            let temporary = link + ".tmp-\(getpid())"
            unlink(temporary)
            if symlink(pty.slavePath, temporary) != 0 || rename(temporary, link) != 0 {
                let err = Errno(rawValue: errno)
                unlink(temporary)
                try? newWatch?.close()
                try? slave.close()
                try? pty.master.close()
                throw .link(path: link, errno: err)
            }
        }
        self.pty = pty
        self.slaveHold = slave
        hostsOpen = 0
        hostsMaybeGone = false
        hostInputPending = true
        hostWatch = newWatch
        txFreeAt = .now
        wireStart = .now
        shared.withLock {
            $0.devicePath = pty.slavePath
            $0.pluggedIn = true
            $0.receivedAtPlug = $0.received
        }
    }

    private func unplugNow() {
        guard let pty else { return }
        // Flag first: a host that sees the hang-up must also see isPluggedIn == false.
        shared.withLock { $0.pluggedIn = false }
        removeLinkIfOurs(pointingAt: pty.slavePath)
        try? slaveHold?.close()
        try? pty.master.close()
        try? hostWatch?.close()
        self.pty = nil
        slaveHold = nil
        hostWatch = nil
        wire.removeAll()
        ring.removeAll(keepingCapacity: true)
        ringArrival.removeAll(keepingCapacity: true)
        ringHead = 0
        bridgeBytes.removeAll()
        bridgeDelivery.removeAll()
        replyEnd = nil
    }

    private func removeLinkIfOurs(pointingAt target: String) {
        guard let link = configuration.linkPath else { return }
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink(link, &buffer, buffer.count - 1)
        guard n > 0 else { return }
        let current = String(decoding: buffer[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        if current == target { unlink(link) }
    }
}

extension VirtualDevKit: BoardHardware {
    func emit(_ bytes: [UInt8]) throws(BoardEvent) { try emitImpl(bytes) }

    func setCommandRunning(_ running: Bool) { commandRunning = running }

    func writeSecureElement(
        zone: UInt8, value: [UInt8], store: (inout VirtualDevKitState) -> Void
    ) throws(BoardEvent) -> SecureElementOutcome {
        let delay = configuration.faults.secureElementWriteDelay
        if delay > .zero { try pause(until: .now + delay) }
        // The firmware writes the string with its NUL.
        if configuration.faults.eepromWriteFailure || value.count + 1 > Zone.size(zone) {
            return .writeFailed
        }
        if delay > .zero { try pause(until: .now + delay) }  // the read-back
        if configuration.faults.verifyFailure { return .verifyFailed }
        return commit(store) ? .ok : .writeFailed
    }

    func enableSecureChannel(level: Int) throws(BoardEvent) -> Int {
        let delay = configuration.faults.secureElementWriteDelay
        if delay > .zero { try pause(until: .now + delay) }
        if shared.withLock({ $0.state.secureChannelEnabled }) { return 1 }
        // Levels 2 and 3 are not implemented by the firmware.
        guard level == 1, !configuration.faults.eepromWriteFailure else { return -1 }
        return commit { $0.secureChannelEnabled = true } ? 0 : -1
    }

    /// Applies a change and persists it; false (state unchanged) if saving failed.
    private func commit(_ change: (inout VirtualDevKitState) -> Void) -> Bool {
        var next = shared.withLock { $0.state }
        change(&next)
        if let path = configuration.stateFile {
            do {
                try next.save(to: path)
            } catch {
                shared.withLock { $0.lastError = error }
                return false
            }
        }
        shared.withLock { $0.state = next }
        return true
    }
}

/// Waits for `fds` at most `timeout`, to the microsecond: ppoll(2), because poll's
/// millisecond timeout would round a wait for the next USB frame up by up to a
/// whole frame.
private func pollPrecisely(_ fds: UnsafeMutableBufferPointer<pollfd>, timeout: Duration) -> Int32 {
    let t = max(.zero, timeout)
    var ts = timespec(tv_sec: Int(t.components.seconds), tv_nsec: Int(t.components.attoseconds / 1_000_000_000))
    return CDevKitLinux_ppoll(fds.baseAddress, nfds_t(fds.count), &ts, nil)
}
