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
    func frameEnd(containing instant: ContinuousClock.Instant) -> ContinuousClock.Instant {
        let frames = max(0, (frameEpoch.duration(to: instant) / Self.usbFrame).rounded(.up))
        return frameEpoch + Self.usbFrame * Int(frames)
    }

    /// When the oldest byte still in the bridge reaches the host.
    var bridgeDue: ContinuousClock.Instant? { bridgeDelivery.first }

    /// Hands the host, in one write, every byte whose frame has ended.
    func flushBridge() {
        let now = ContinuousClock.now
        guard let first = bridgeDelivery.first, first <= now else { return }
        let count = bridgeDelivery.firstIndex { $0 > now } ?? bridgeDelivery.count
        if let pty { writeDropping(Array(bridgeBytes[..<count]), to: pty.master) }
        bridgeBytes.removeFirst(count)
        bridgeDelivery.removeFirst(count)
    }

    func writeDropping(_ bytes: [UInt8], to master: FileDescriptor) {
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
    func watchHosts() {
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
    func settleHosts() {
        guard hostsMaybeGone else { return }
        hostsMaybeGone = false
        hostsOpen = countHostOpens()
        if hostsOpen == 0, let slaveHold { _ = tcflush(slaveHold.rawValue, TCIFLUSH) }
    }

    /// Bytes the board printed that no host has read yet (the slave's input queue).
    func unreadOutput() -> Int32 {
        guard let slaveHold else { return 0 }
        var count: Int32 = 0
        return ioctl(slaveHold.rawValue, UInt(FIONREAD), &count) == 0 ? count : 0
    }

    /// How many descriptors of any process refer to the slave, the board's own hold
    /// excluded (from /proc/*/fd; processes we may not look into are not counted).
    func countHostOpens() -> Int {
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
