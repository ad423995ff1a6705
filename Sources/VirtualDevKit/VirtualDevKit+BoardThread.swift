import DevKitModel
import CDevKitLinux
import DevKitSystem
import Foundation
import Synchronization
import SystemPackage
#if canImport(Glibc)
import Glibc
#endif

extension VirtualDevKit {
    // MARK: The board thread

    func run() {
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

    func boot(into mode: Mode) throws(BoardEvent) {
        shared.withLock { $0.mode = mode }
        ring.removeAll(keepingCapacity: true)
        ringArrival.removeAll(keepingCapacity: true)
        ringHead = 0
        wire.removeAll()
        commandRunning = false
        if configuration.faults.silent {
            while true { _ = try nextByte() }
        }
        if configuration.faults.notADevKit { try runForeignShell() }
        if configuration.faults.lineNoiseBytes > 0 {
            try emit(Self.noise(count: configuration.faults.lineNoiseBytes))
        }
        try emit(FirmwareText.banner)
        switch mode {
        case .configuration:
            var firmware = ConsoleFirmware(configuration: configuration)
            try firmware.start(on: self)
            if let count = configuration.faults.floodBytes {
                _ = try nextByte()
                try flood(count)
                while true { _ = try nextByte() }  // stuck: no console, no prompt
            }
            while true {
                let byte = try nextByte()
                try firmware.receive(byte, on: self)
            }
        case .user:
            if configuration.faults.sketchWithoutMACLog {
                try emit(FirmwareText.userMode + FirmwareText.logInfo("Sketch running.", style: configuration.logStyle))
            } else {
                try emit(
                    FirmwareText.userMode
                        + FirmwareText.logInfo("DevKit MAC Address: \(configuration.macAddress)", style: configuration.logStyle)
                        + FirmwareText.logInfo("DevKit Firmware Version: \(configuration.firmwareVersion)", style: configuration.logStyle))
            }
            if let sketch { try runSketch(sketch) }
            if let interval = configuration.sketchLogInterval {
                var count = 0
                while true {
                    try pause(until: .now + interval)
                    // The sketch ignores the console: what the host sent is dropped.
                    ring.removeAll(keepingCapacity: true)
                    ringArrival.removeAll(keepingCapacity: true)
                    ringHead = 0
                    count += 1
                    try emit(FirmwareText.logInfo("Sketch telemetry #\(count): temperature 24.5 C", style: configuration.logStyle))
                }
            }
            while true { _ = try nextByte() }  // the sketch ignores the console
        case .ap:
            try emit(FirmwareText.apMode(mac: configuration.macAddress))
            while true { _ = try nextByte() }
        }
    }

    /// Runs the user-mode sketch as a task and prints what it prints, until it
    /// returns; a reset, unplug or stop cancels it (the board's own events still
    /// come first). What the host sends meanwhile is dropped: the sketch ignores
    /// the console.
    func runSketch(_ sketch: any VirtualDevKitSketch) throws(BoardEvent) {
        let outbox = SketchOutbox()
        let board = SketchBoard(
            macAddress: configuration.macAddress, firmwareVersion: configuration.firmwareVersion,
            state: shared.withLock { $0.state }, faults: configuration.faults, logStyle: configuration.logStyle,
            outbox: outbox)
        let task = Task(executorPreference: SketchExecutor.shared) {
            await sketch.run(on: board)
            outbox.finish()
        }
        defer { task.cancel() }
        while true {
            let (text, finished) = outbox.drain()
            if !text.isEmpty { try emit(Array(text.utf8)) }
            if finished { return }
            try pause(until: .now + .milliseconds(10))
            ring.removeAll(keepingCapacity: true)
            ringArrival.removeAll(keepingCapacity: true)
            ringHead = 0
        }
    }

    /// The flood fault: `count` bytes of text without a prompt, written as fast as
    /// the host reads them (not dropped like unread output: every byte must reach
    /// the host). It stops early when the host reads nothing for a second (gone),
    /// and still answers requests (stop, unplug, reset) between chunks.
    func flood(_ count: Int) throws(BoardEvent) {
        let line = Array("flood: this board prints without pause 0123456789 abcdefghijklmnopqrstuvwxyz\r\n".utf8)
        var chunk: [UInt8] = []
        while chunk.count < 4096 { chunk += line }
        var sent = 0
        var lastProgress = ContinuousClock.now
        while sent < count {
            try handleRequests(pluggedIn: true)
            guard let pty else { throw .unplug }
            var fds = [
                pollfd(fd: pty.master.rawValue, events: Int16(POLLOUT), revents: 0),
                pollfd(fd: control.rawValue, events: Int16(POLLIN), revents: 0),
            ]
            _ = fds.withUnsafeMutableBufferPointer { Glibc.poll($0.baseAddress, 2, 100) }
            if fds[0].revents & Int16(POLLOUT) != 0 {
                let n = chunk.withUnsafeBytes { Glibc.write(pty.master.rawValue, $0.baseAddress, min($0.count, count - sent)) }
                if n > 0 {
                    sent += n
                    lastProgress = .now
                    continue
                }
            }
            if lastProgress.duration(to: .now) > .seconds(1) { return }
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
    /// The `notADevKit` fault: a shell on another ST board. Never returns.
    private func runForeignShell() throws(BoardEvent) -> Never {
        var line: [UInt8] = []
        while true {
            let byte = try nextByte()
            guard byte == 0x0D else {
                if byte >= 0x20 { line.append(byte); try emit([byte]) }
                continue
            }
            let text = String(decoding: line, as: UTF8.self)
            line.removeAll()
            var reply = "\r\n"
            if let word = text.split(separator: " ").first {
                shared.withLock { $0.shellLines.append(text) }
                reply += "sh: \(word): not found"
            }
            try emit(Array((reply + "\r\n# ").utf8))
        }
    }

    func nextByte() throws(BoardEvent) -> UInt8 {
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
    func absorbArrivals() {
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
    func hostInputBudget() -> Int {
        guard let limit = configuration.faults.unplugAfterReceivedBytes else { return 4096 }
        return min(4096, limit - shared.withLock { $0.received - $0.receivedAtPlug })
    }

    /// Reads what the host has written (within the unplug budget) onto the "wire".
    func readPending(from master: FileDescriptor) {
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
    func waitForInput() throws(BoardEvent) {
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

    func waitForControl() throws(BoardEvent) {
        var fd = pollfd(fd: control.rawValue, events: Int16(POLLIN), revents: 0)
        _ = Glibc.poll(&fd, 1, -1)
    }

    /// Lets time pass on the board (pacing, secure-element work), still taking
    /// arrivals into the ring and still answering requests.
    func pause(until deadline: ContinuousClock.Instant) throws(BoardEvent) {
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

    func handleRequests(pluggedIn: Bool) throws(BoardEvent) {
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
}

/// Waits for `fds` at most `timeout`, to the microsecond: ppoll(2), because poll's
/// millisecond timeout would round a wait for the next USB frame up by up to a
/// whole frame.
private func pollPrecisely(_ fds: UnsafeMutableBufferPointer<pollfd>, timeout: Duration) -> Int32 {
    let t = max(.zero, timeout)
    var ts = timespec(tv_sec: Int(t.components.seconds), tv_nsec: Int(t.components.attoseconds / 1_000_000_000))
    return CDevKitLinux_ppoll(fds.baseAddress, nfds_t(fds.count), &ts, nil)
}
