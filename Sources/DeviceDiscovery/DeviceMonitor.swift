import CLibUDev
import DevKitSystem
import Synchronization
import SystemPackage
#if canImport(Glibc)
import Glibc
#endif

/// A DevKit appearing or disappearing.
public enum DeviceEvent: Sendable, Hashable {
    /// A DevKit console appeared (udev `add`).
    case added(DevKitDevice)
    /// A DevKit console disappeared (udev `remove`). The device is described as it
    /// was when it appeared, when the monitor saw it; otherwise from the event.
    case removed(DevKitDevice)

    /// The device the event is about.
    public var device: DevKitDevice {
        switch self {
        case .added(let device), .removed(let device): return device
        }
    }

    /// `"add"` or `"remove"`, as udev names the actions.
    public var action: String {
        switch self {
        case .added: return "add"
        case .removed: return "remove"
        }
    }
}

/// Watches udev for DevKits being plugged in and unplugged.
///
/// Listening starts in `init`: every event from then on is kept until read from
/// ``events``, and ``attached`` is the list of boards present once listening had
/// started, so no board is missed between the snapshot and the first event.
///
/// ```swift
/// let monitor = try DeviceMonitor()
/// for board in monitor.attached { print("present", board.devnode) }
/// for try await event in monitor.events {
///     print(event.action, event.device.devnode)
/// }
/// ```
///
/// A dedicated thread blocks in `poll(2)` on the udev monitor socket and on a
/// pipe used to stop it: no timer, no CPU while nothing happens. ``stop()`` (or
/// dropping the monitor, or ending the iteration of ``events``) ends it.
public final class DeviceMonitor: Sendable {
    /// The add/remove events, in the order udev sent them. Single consumer. It ends
    /// after ``stop()``, and throws a ``DiscoveryError`` if the socket fails.
    public let events: AsyncThrowingStream<DeviceEvent, any Error>
    /// The DevKits present when the monitor started listening.
    public let attached: [DevKitDevice]

    private let wakeup: Wakeup
    private let thread: MonitorThread

    /// Whether udev's daemon runs here (its control socket exists, as libudev's own
    /// checks assume). Without it the "udev" netlink source is silent: boards plugged
    /// in are never announced (a container, a chroot, CI).
    public static var udevIsRunning: Bool { access("/run/udev/control", F_OK) == 0 }

    /// Starts listening for `tty` uevents from udev (`udev_monitor_new_from_netlink`
    /// on the "udev" source, so devices are announced after udev's rules ran and
    /// their node and links exist).
    ///
    /// - Throws: ``DiscoveryError/monitorFailed(operation:errno:)`` or
    ///   ``DiscoveryError/udevFailed(operation:errno:)`` when the socket, the wake-up pipe,
    ///   the initial scan or the thread cannot be set up.
    public init() throws(DiscoveryError) {
        let context = try UDevContext()
        errno = 0
        guard let monitor = udev_monitor_new_from_netlink(context.udev, "udev") else {
            throw .monitorFailed(operation: "udev_monitor_new_from_netlink", errno: errno)
        }
        var monitorOwned = true
        defer { if monitorOwned { udev_monitor_unref(monitor) } }
        var rc = udev_monitor_filter_add_match_subsystem_devtype(monitor, "tty", nil)
        if rc < 0 { throw .monitorFailed(operation: "udev_monitor_filter_add_match_subsystem_devtype", errno: -rc) }
        rc = udev_monitor_enable_receiving(monitor)
        if rc < 0 { throw .monitorFailed(operation: "udev_monitor_enable_receiving", errno: -rc) }
        let socket = udev_monitor_get_fd(monitor)
        if socket < 0 { throw .monitorFailed(operation: "udev_monitor_get_fd", errno: -socket) }
        // Draining reads until EAGAIN must never block the loop.
        let flags = fcntl(socket, F_GETFL)
        if flags < 0 || fcntl(socket, F_SETFL, flags | O_NONBLOCK) < 0 {
            throw .monitorFailed(operation: "fcntl(O_NONBLOCK)", errno: errno)
        }
        let wakeup = try Wakeup()

        // Scanned after listening started: a board plugged in meanwhile shows up
        // in both, and the loop drops the duplicate `add`.
        let attached = try context.enumerateDevKits()

        let (stream, continuation) = AsyncThrowingStream.makeStream(
            of: DeviceEvent.self, throwing: (any Error).self, bufferingPolicy: .unbounded)
        // Only signals: the termination handler can run on the monitor thread itself.
        continuation.onTermination = { _ in wakeup.signal() }

        let loop = MonitorLoop(
            context: context, monitor: monitor, socket: socket, wakeup: wakeup,
            continuation: continuation, known: attached)
        monitorOwned = false  // the loop owns it now
        do {
            self.thread = try MonitorThread.start(loop)
        } catch {
            continuation.finish()
            throw error
        }
        self.events = stream
        self.attached = attached
        self.wakeup = wakeup
    }

    /// Stops listening and waits for the monitor thread to exit; ``events`` then
    /// ends. Safe to call more than once and from any thread.
    public func stop() {
        wakeup.signal()
        thread.join()
    }

    deinit { stop() }
}

/// A self-pipe the monitor thread polls next to the udev socket, to be woken for
/// stop.
private final class Wakeup: Sendable {
    /// Polled by the monitor thread.
    let fd: Int32
    private let writeEnd: Int32

    init() throws(DiscoveryError) {
        do {
            let (readEnd, writeEnd) = try FileDescriptor.closeOnExecPipe(nonBlocking: true)
            self.fd = readEnd.rawValue
            self.writeEnd = writeEnd.rawValue
        } catch {
            throw .monitorFailed(operation: "pipe", errno: error.rawValue)
        }
    }

    /// Makes `fd` readable for good (nothing ever reads it).
    func signal() {
        var byte: UInt8 = 1
        // EAGAIN: the pipe is full, so it is readable already.
        while write(writeEnd, &byte, 1) < 0 && errno == EINTR {}
    }

    deinit {
        close(fd)
        close(writeEnd)
    }
}

/// The monitor's thread: started once, joined once.
private final class MonitorThread: @unchecked Sendable {
    // Held while a join runs: a second join returns once the thread is gone.
    private let handle: Mutex<pthread_t?>

    private init(handle: pthread_t) { self.handle = Mutex(handle) }

    static func start(_ loop: MonitorLoop) throws(DiscoveryError) -> MonitorThread {
        var handle = pthread_t()
        let argument = Unmanaged.passRetained(loop).toOpaque()
        let rc = pthread_create(&handle, nil, { argument in
            let loop = Unmanaged<MonitorLoop>.fromOpaque(argument!).takeRetainedValue()
            loop.run()
            return nil
        }, argument)
        if rc != 0 {
            Unmanaged<MonitorLoop>.fromOpaque(argument).release()
            throw .monitorFailed(operation: "pthread_create", errno: rc)
        }
        return MonitorThread(handle: handle)
    }

    func join() {
        handle.withLock { handle in
            guard let thread = handle else { return }
            handle = nil
            if pthread_equal(thread, pthread_self()) != 0 {
                pthread_detach(thread)  // cannot join itself; it is on its way out
            } else {
                pthread_join(thread, nil)
            }
        }
    }
}

/// Runs on the monitor thread and owns every libudev object it uses from then on.
private final class MonitorLoop: @unchecked Sendable {
    let context: UDevContext
    let monitor: OpaquePointer
    let socket: Int32
    let wakeup: Wakeup
    let continuation: AsyncThrowingStream<DeviceEvent, any Error>.Continuation
    /// DevKits seen present, by syspath: a `remove` reports what `add` saw.
    var known: [String: DevKitDevice]

    init(
        context: UDevContext, monitor: OpaquePointer, socket: Int32, wakeup: Wakeup,
        continuation: AsyncThrowingStream<DeviceEvent, any Error>.Continuation,
        known: [DevKitDevice]
    ) {
        self.context = context
        self.monitor = monitor
        self.socket = socket
        self.wakeup = wakeup
        self.continuation = continuation
        self.known = Dictionary(known.map { ($0.syspath, $0) }, uniquingKeysWith: { a, _ in a })
    }

    deinit { udev_monitor_unref(monitor) }

    func run() {
        var fds = [
            pollfd(fd: socket, events: Int16(POLLIN), revents: 0),
            pollfd(fd: wakeup.fd, events: Int16(POLLIN), revents: 0),
        ]
        while true {
            fds[0].revents = 0
            fds[1].revents = 0
            // Blocks until an event or a stop: no timeout, no polling on a timer.
            let ready = poll(&fds, nfds_t(fds.count), -1)
            if ready < 0 {
                if errno == EINTR { continue }
                continuation.finish(throwing: DiscoveryError.monitorFailed(operation: "poll", errno: errno))
                return
            }
            if fds[1].revents != 0 {
                continuation.finish()
                return
            }
            let revents = Int32(fds[0].revents)
            if revents & Int32(POLLIN) != 0 {
                drain()
            } else if revents & Int32(POLLERR | POLLHUP | POLLNVAL) != 0 {
                continuation.finish(throwing: DiscoveryError.monitorFailed(operation: "poll on the socket", errno: 0))
                return
            }
        }
    }

    /// Reads every queued event. NULL means: queue empty (EAGAIN), a message that
    /// was not for us, or lost messages (ENOBUFS), after which a rescan finds what
    /// changed.
    private func drain() {
        while true {
            errno = 0
            guard let device = udev_monitor_receive_device(monitor) else {
                if errno == ENOBUFS { resynchronize(); continue }
                return
            }
            handle(device)
            udev_device_unref(device)
        }
    }

    private func handle(_ device: OpaquePointer) {
        guard let action = UDevContext.string(udev_device_get_action(device)),
            let syspath = UDevContext.string(udev_device_get_syspath(device))
        else { return }
        switch action {
        case "add":
            // Already known: the initial scan or an earlier add reported it.
            guard known[syspath] == nil, let board = UDevContext.devKit(from: device) else { return }
            known[syspath] = board
            continuation.yield(.added(board))
        case "remove":
            if let board = known.removeValue(forKey: syspath) {
                continuation.yield(.removed(board))
            } else if let board = UDevContext.devKit(from: device) {
                continuation.yield(.removed(board))
            }
        default:
            break  // change/bind/move do not change which boards are present
        }
    }

    /// After lost events, compares a fresh scan with what is known.
    private func resynchronize() {
        guard let present = try? context.enumerateDevKits() else { return }
        let presentPaths = Set(present.map(\.syspath))
        for (syspath, board) in known where !presentPaths.contains(syspath) {
            known[syspath] = nil
            continuation.yield(.removed(board))
        }
        for board in present where known[board.syspath] == nil {
            known[board.syspath] = board
            continuation.yield(.added(board))
        }
    }
}
