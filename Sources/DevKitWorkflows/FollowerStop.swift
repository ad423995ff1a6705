import Dispatch
import SerialPort
import Synchronization

/// A stop that a process handling stop signals itself (`watch`: several boards
/// followed at once) hands to the threads following boards' logs. ``cancel(signal:)``
/// cancels every port attached (their blocked reads wake at once), wakes any
/// ``sleep(for:)`` (the follower waiting for an unplugged board), and makes later
/// attaches cancel their port straight away: no board waits out its verify
/// timeout after the process was told to stop.
///
/// Where a relay per follower cannot be used: relays nest as a stack, which
/// threads ending in any order would break.
public final class FollowerStop: Sendable {
    private let ports = PortCancellation()
    private let stopSignal = Mutex<Int32?>(nil)
    /// Entered once at creation, left at the stop: sleepers wait on it. A dispatch
    /// wait's deadline is on the monotonic clock, so setting the wall clock neither
    /// cuts a sleep short nor stretches it.
    private let stopped = DispatchGroup()

    public init() { stopped.enter() }

    // libdispatch refuses to free a group still entered: leave it if never stopped.
    deinit { if signal == nil { stopped.leave() } }

    /// The stop signal given to ``cancel(signal:)``, nil while not stopped.
    public var signal: Int32? { stopSignal.withLock { $0 } }

    /// Cancels `port`'s blocking calls at the stop (at once if stopped already);
    /// ``detach(_:)`` it before closing it.
    public func attach(_ port: SerialPort) {
        _ = ports.attach(port)
    }

    public func detach(_ port: SerialPort) {
        ports.detach(port)
    }

    /// Stops: cancels the attached ports, wakes the sleepers. The first signal is kept.
    public func cancel(signal: Int32) {
        let first = stopSignal.withLock { stop in
            defer { if stop == nil { stop = signal } }
            return stop == nil
        }
        ports.cancel()
        if first { stopped.leave() }
    }

    /// Sleeps for `duration` unless stopped meanwhile; the stop's signal if stopped.
    public func sleep(for duration: Duration) -> Int32? {
        let (seconds, attoseconds) = duration.components
        // Clamped: a day is far longer than any follower sleeps, and cannot overflow.
        let nanoseconds = seconds >= 86_400 ? 86_400_000_000_000 : max(0, seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
        _ = stopped.wait(timeout: .now() + .nanoseconds(Int(nanoseconds)))
        return signal
    }
}
