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
    /// With the `notADevKit` fault: every line the host typed at the shell.
    public var shellLines: [String] { shared.withLock { $0.shellLines } }
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
    public func waitUntilIdle(timeout: Duration = .seconds(60)) -> Bool {
        let deadline = Date().addingTimeInterval(Double(timeout.components.seconds) + Double(timeout.components.attoseconds) / 1e18)
        idleChanged.lock()
        defer { idleChanged.unlock() }
        while !shared.withLock({ $0.idle }) {
            if !idleChanged.wait(until: deadline) { return shared.withLock { $0.idle } }
        }
        return true
    }

    func setIdle(_ idle: Bool) {
        idleChanged.lock()
        shared.withLock { $0.idle = idle }
        idleChanged.broadcast()
        idleChanged.unlock()
    }

    /// Queues a request for the board thread and waits until it has been handled.
    /// Returns false when the thread is not running (nothing was queued).
    func send(_ request: Request) -> Bool {
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
}
