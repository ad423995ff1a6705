import DevKitSystem
import SerialPort
import UserModeLog
#if canImport(Glibc)
import Glibc
#endif

/// Follows what a board prints in user mode, read-only, through unplugs: the one
/// reader behind `devkit monitor` and `devkit verify`. It never writes to the port.
///
/// Bytes are handed on masked (``MaskedStream``) as they arrive; an unfinished line
/// is shown after ``Settings/partialLineDelay`` of quiet, up to where it cannot turn
/// into a secret. When the port goes away (unplug, reset of the USB bridge) it waits
/// for the same path to open again, so a `/dev/serial/by-id` link follows the board.
/// SIGINT, SIGTERM and SIGHUP end the run at once (the read wakes through the
/// port's cancellation eventfd), reported as ``End/signal(_:)`` for the caller to
/// clean up and then die of.
public enum BoardLogFollower {
    public struct Settings: Sendable {
        public var path: String
        public var baudRate: Int
        /// How long to wait for the board to come back after it went away; nil: as
        /// long as the run lasts.
        public var reconnectTimeout: Duration?
        /// Quiet time after which an unfinished line is shown.
        public var partialLineDelay: Duration
        /// Whether stop signals end the run. Off where the process handles them
        /// itself (`watch`, following several boards at once: the relays nest as a
        /// stack, which threads ending in any order would break).
        public var relaysStopSignals: Bool
        /// Where the process handles stop signals itself: what ends the run when it
        /// is cancelled (reported as ``End/signal(_:)``), waiting for the port included.
        public var stop: FollowerStop?

        public init(path: String, baudRate: Int = SerialPort.defaultBaudRate, reconnectTimeout: Duration? = nil,
                    partialLineDelay: Duration = .milliseconds(100), relaysStopSignals: Bool = true,
                    stop: FollowerStop? = nil) {
            self.relaysStopSignals = relaysStopSignals
            self.stop = stop
            self.path = path
            self.baudRate = baudRate
            self.reconnectTimeout = reconnectTimeout
            self.partialLineDelay = partialLineDelay
        }
    }

    public enum Event: Sendable, Equatable {
        /// Bytes to show (masked, control characters escaped, line ends kept).
        case shown([UInt8])
        /// A complete line, masked, without its line end.
        case line(String)
        /// The port went away; the follower waits for it.
        case disconnected
        /// The port opened again.
        case reconnected
    }

    public enum End: Sendable, Equatable {
        /// The handler asked to stop (e.g. a line matched).
        case stopped
        /// The deadline passed.
        case deadline
        /// The board did not come back within ``Settings/reconnectTimeout`` (at once for a
        /// path that cannot come back, see `SerialPort.canComeBack(path:)`).
        case gone
        /// A stop signal came (its number).
        case signal(Int32)
    }

    static let stopSignals = [SIGINT, SIGTERM, SIGHUP]

    /// Follows the board until the handler returns false, `deadline`, a stop signal,
    /// or the board stays away too long.
    ///
    /// - Parameters:
    ///   - port: an already open port to start with (verify's, after `exit`); it is
    ///     closed when the run ends. nil: `settings.path` is opened.
    /// - Throws: the first open's ``SerialPortError`` (no board, permission, busy);
    ///   later failures to reopen are waited out.
    public static func follow(
        port: SerialPort? = nil, _ settings: Settings, deadline: ContinuousClock.Instant? = nil,
        handle: (Event) -> Bool
    ) throws(SerialPortError) -> End {
        var current: SerialPort?
        if let port { current = port } else { current = try SerialPort(path: settings.path, baudRate: settings.baudRate) }
        var stream = MaskedStream()
        defer {
            if let current {
                settings.stop?.detach(current)
                current.close()
            }
        }
        while true {
            if let open = current {
                settings.stop?.attach(open)
                let end = read(open, settings, deadline: deadline, stream: &stream, handle: handle)
                guard let end else {
                    // The port went away: what was unfinished is shown, then wait.
                    let (shown, line) = stream.finish()
                    if !shown.isEmpty, !handle(.shown(shown)) { return .stopped }
                    if let line, !handle(.line(line)) { return .stopped }
                    settings.stop?.detach(open)
                    open.close()
                    current = nil
                    if !handle(.disconnected) { return .stopped }
                    continue
                }
                if end != .stopped {
                    let (shown, line) = stream.finish()
                    if !shown.isEmpty { _ = handle(.shown(shown)) }
                    if let line { _ = handle(.line(line)) }
                }
                return end
            }
            switch waitForPort(settings, deadline: deadline) {
            case .reopened(let reopened):
                current = reopened
                if !handle(.reconnected) { return .stopped }
            case .ended(let end):
                return end
            }
        }
    }

    /// Reads until an end (returned) or the port going away (nil).
    private static func read(
        _ port: SerialPort, _ settings: Settings, deadline: ContinuousClock.Instant?,
        stream: inout MaskedStream, handle: (Event) -> Bool
    ) -> End? {
        // The relay wakes the port's poll; its own pipe says which signal came.
        let relay = settings.relaysStopSignals
            ? try? SignalRelay(stopSignals, restartingCalls: true, wakingEventFD: port.cancellationEventDescriptor) : nil
        defer { relay?.restore() }
        while true {
            let far = ContinuousClock.now + .seconds(86_400)
            var until = deadline ?? far
            if stream.hasUnshownText { until = min(until, .now + settings.partialLineDelay) }
            let bytes: [UInt8]
            do {
                bytes = try port.read(deadline: until)
            } catch .cancelled {
                return .signal(relay?.takeSignals().first ?? settings.stop?.signal ?? SIGINT)
            } catch {
                return nil  // disconnected, or an I/O error that means the same
            }
            if bytes.isEmpty {
                if let deadline, ContinuousClock.now >= deadline { return .deadline }
                let partial = stream.flushPartial()
                if !partial.isEmpty, !handle(.shown(partial)) { return .stopped }
                continue
            }
            let (shown, lines) = stream.feed(bytes)
            if !shown.isEmpty, !handle(.shown(shown)) { return .stopped }
            for line in lines where !handle(.line(line)) { return .stopped }
        }
    }

    /// Tries to open the path every 100 ms until it opens, the deadline, the
    /// reconnect timeout, or a stop signal.
    private enum Wait { case reopened(SerialPort), ended(End) }

    private static func waitForPort(_ settings: Settings, deadline: ContinuousClock.Instant?) -> Wait {
        let relay = settings.relaysStopSignals ? try? SignalRelay(stopSignals) : nil
        defer { relay?.restore() }
        // A pty's number is reused by the next terminal: what would open is not the board.
        guard SerialPort.canComeBack(path: settings.path) else { return .ended(.gone) }
        let giveUp = settings.reconnectTimeout.map { ContinuousClock.now + $0 }
        while true {
            if let signal = settings.stop?.signal { return .ended(.signal(signal)) }
            // Any failure (no node yet, permissions not yet set by udev, busy) is
            // waited out: the board is on its way back or not.
            if let port = try? SerialPort(path: settings.path, baudRate: settings.baudRate) { return .reopened(port) }
            let now = ContinuousClock.now
            if let deadline, now >= deadline { return .ended(.deadline) }
            if let giveUp, now >= giveUp { return .ended(.gone) }
            if let relay {
                var fds = [pollfd(fd: relay.fd, events: Int16(POLLIN), revents: 0)]
                _ = poll(&fds, 1, 100)
                if let signal = relay.takeSignals().first { return .ended(.signal(signal)) }
            } else if let stop = settings.stop {
                if let signal = stop.sleep(for: .milliseconds(100)) { return .ended(.signal(signal)) }
            } else {
                usleep(100_000)
            }
        }
    }
}
