import DevKitSystem
import Foundation
import SerialPort
import Synchronization
import SystemPackage
#if canImport(Glibc)
import Glibc
#endif

/// The few port operations the console needs; `SerialPort` provides them.
public protocol ReplPort: AnyObject, Sendable {
    /// Bytes available before the deadline, [] when it passes or after `cancel()`.
    /// Throws when the device went away.
    func readBytes(maxCount: Int, deadline: ContinuousClock.Instant) throws -> [UInt8]
    func writeBytes(_ bytes: [UInt8], deadline: ContinuousClock.Instant) throws
    /// Wakes a blocked read (from another thread).
    func cancelRead()
    func closePort()
}

/// Raised to the console when the board is not there.
public enum ReplLinkError: Error, CustomStringConvertible {
    case disconnected(path: String)

    public var description: String {
        switch self {
        case .disconnected(let path):
            return "the board at \(path) is unplugged; plug it back in (the console reconnects by itself)"
        }
    }
}

/// Keeps a board's serial port open for the console, as tio does: a reader thread
/// hands received bytes to the main loop through a pipe it can poll, notices when
/// the board is unplugged, and waits for the device path to come back (inotify on
/// its directory, with a bounded retry interval as a fallback), then reopens it.
public final class ReplDeviceLink: @unchecked Sendable {
    /// What the reader thread reports.
    enum Event: Equatable, Sendable {
        case data([UInt8])
        case disconnected(reason: String)
        case reconnected
    }

    public typealias Opener = @Sendable (String) throws -> any ReplPort

    let path: String
    private let opener: Opener
    private let retryInterval: Int32
    private struct State {
        var port: (any ReplPort)?
        var events: [Event] = []
        var signalled = false
        var stopping = false
    }
    private let state: Mutex<State>
    private let eventPipe: (read: Int32, write: Int32)
    private let stopPipe: (read: Int32, write: Int32)
    private let finished = DispatchSemaphore(value: 0)
    /// Serialises writes (main thread) with closing a lost port (reader thread).
    private let writeLock = NSLock()
    private var started = false
    private let describeError: @Sendable (any Error) -> String

    /// Readable whenever ``takeEvents()`` has something.
    var eventFD: Int32 { eventPipe.read }

    /// Opens the port; throws the opener's error when that fails.
    /// - Parameter describeError: how an error reads for the user; the front end
    ///   (the CLI) knows its errors' messages, this module does not.
    public init(
        path: String, retryIntervalMilliseconds: Int32 = 500, opener: @escaping Opener,
        describeError: @escaping @Sendable (any Error) -> String = { String(describing: $0) }
    ) throws {
        self.path = path
        self.describeError = describeError
        self.opener = opener
        self.retryInterval = retryIntervalMilliseconds
        let port = try opener(path)
        state = Mutex(State(port: port))
        eventPipe = try Self.makePipe()
        stopPipe = try Self.makePipe()
    }

    deinit {
        for fd in [eventPipe.read, eventPipe.write, stopPipe.read, stopPipe.write] { close(fd) }
    }

    private static func makePipe() throws -> (read: Int32, write: Int32) {
        do {
            let (readEnd, writeEnd) = try FileDescriptor.closeOnExecPipe(nonBlocking: true)
            return (readEnd.rawValue, writeEnd.rawValue)
        } catch {
            throw POSIXError(POSIXErrorCode(rawValue: error.rawValue) ?? .EIO)
        }
    }

    var isConnected: Bool { state.withLock { $0.port != nil } }

    /// Starts the reader thread.
    public func start() {
        guard !started else { return }
        started = true
        let thread = Thread { [self] in
            readLoop()
            finished.signal()
        }
        thread.name = "devkit-console-reader"
        thread.start()
    }

    /// Stops the reader thread and closes the port. Waits for the thread (bounded).
    public func stop() {
        let port = state.withLock { state -> (any ReplPort)? in
            state.stopping = true
            return state.port
        }
        port?.cancelRead()
        var byte: UInt8 = 1
        _ = Glibc.write(stopPipe.write, &byte, 1)
        if started { _ = finished.wait(timeout: .now() + 3) }
        let last = state.withLock { state -> (any ReplPort)? in
            defer { state.port = nil }
            return state.port
        }
        last?.closePort()
    }

    /// Everything reported since the last call (consecutive data merged).
    func takeEvents() -> [Event] {
        FileDescriptor(rawValue: eventPipe.read).drain()
        return state.withLock { state in
            defer { state.events = []; state.signalled = false }
            return state.events
        }
    }

    /// Puts events back at the front (for a consumer that took more than it used).
    func putBack(_ events: [Event]) {
        guard !events.isEmpty else { return }
        post { $0.insert(contentsOf: events, at: 0) }
    }

    /// Writes to the board; throws ``ReplLinkError/disconnected(path:)`` when it is not there.
    func write(_ bytes: [UInt8], deadline: ContinuousClock.Instant) throws {
        // Held across the write: the reader thread closes a lost port only under this
        // lock, so a write never lands on a closed (or already reused) descriptor.
        writeLock.lock()
        defer { writeLock.unlock() }
        guard let port = state.withLock({ $0.port }) else { throw ReplLinkError.disconnected(path: path) }
        try port.writeBytes(bytes, deadline: deadline)
    }

    private func post(_ change: (inout [Event]) -> Void) {
        let needsSignal = state.withLock { state -> Bool in
            change(&state.events)
            defer { state.signalled = true }
            return !state.signalled
        }
        if needsSignal {
            var byte: UInt8 = 1
            _ = Glibc.write(eventPipe.write, &byte, 1)
        }
    }

    private func post(_ event: Event) {
        post { events in
            if case .data(let new) = event, case .data(let old)? = events.last {
                events[events.count - 1] = .data(old + new)
            } else {
                events.append(event)
            }
        }
    }

    // MARK: Reader thread

    private func readLoop() {
        while true {
            let (port, stopping) = state.withLock { ($0.port, $0.stopping) }
            if stopping { return }
            guard let port else {
                if !waitForDevice() { return }
                continue
            }
            do {
                let bytes = try port.readBytes(maxCount: 4096, deadline: .now + .seconds(5))
                if !bytes.isEmpty { post(.data(bytes)) }
            } catch {
                if state.withLock({ $0.stopping }) { return }
                state.withLock { $0.port = nil }
                // A write in progress ends soon (the device is gone, and writes have
                // deadlines); close only after it.
                writeLock.lock()
                port.closePort()
                writeLock.unlock()
                post(.disconnected(reason: describe(error)))
            }
        }
    }

    /// Why the port was lost, short: the REPL says what to do next itself.
    private func describe(_ error: Error) -> String {
        if let error = error as? SerialPortError, case .disconnected = error { return "it hung up" }
        return describeError(error)
    }

    /// Waits until the device path can be opened again. Returns false when stopping.
    private func waitForDevice() -> Bool {
        let directory = parentDirectory(of: path)
        let inotify = inotify_init1(Int32(IN_CLOEXEC | IN_NONBLOCK))
        defer { if inotify >= 0 { close(inotify) } }
        if inotify >= 0 {
            // Failure is fine: the retry interval still bounds the wait.
            _ = inotify_add_watch(inotify, directory, UInt32(IN_CREATE | IN_MOVED_TO | IN_ATTRIB))
        }
        // The first attempt waits one interval: a node that is going away may still
        // be there for a moment, and reopening it at once would only fail again.
        var first = true
        while true {
            if state.withLock({ $0.stopping }) { return false }
            if !first, access(path, F_OK) == 0, let port = try? opener(path) {
                let keep = state.withLock { state -> Bool in
                    guard !state.stopping else { return false }
                    state.port = port
                    return true
                }
                if !keep { port.closePort(); return false }
                post(.reconnected)
                return true
            }
            first = false
            var fds = [pollfd(fd: stopPipe.read, events: Int16(POLLIN), revents: 0)]
            if inotify >= 0 { fds.append(pollfd(fd: inotify, events: Int16(POLLIN), revents: 0)) }
            let ready = poll(&fds, nfds_t(fds.count), retryInterval)
            if ready > 0 {
                if fds[0].revents != 0 { return false }
                if inotify >= 0 { FileDescriptor(rawValue: inotify).drain() }
            }
        }
    }
}
