import Foundation
import SerialPort

/// A stop that a process handling stop signals itself (`watch`: several boards
/// followed at once) hands to the threads following boards' logs. ``cancel(signal:)``
/// cancels every port attached (their blocked reads wake at once), wakes any
/// ``sleep(for:)`` (the follower waiting for an unplugged board), and makes later
/// attaches cancel their port straight away: no board waits out its verify
/// timeout after the process was told to stop.
///
/// Where a relay per follower cannot be used: relays nest as a stack, which
/// threads ending in any order would break.
public final class FollowerStop: @unchecked Sendable {
    private let condition = NSCondition()
    private var ports: [ObjectIdentifier: SerialPort] = [:]
    private var stopSignal: Int32?

    public init() {}

    /// The stop signal given to ``cancel(signal:)``, nil while not stopped.
    public var signal: Int32? { condition.withLock { stopSignal } }

    /// Cancels `port`'s blocking calls at the stop (at once if stopped already);
    /// ``detach(_:)`` it before closing it.
    public func attach(_ port: SerialPort) {
        let stopped = condition.withLock {
            ports[ObjectIdentifier(port)] = port
            return stopSignal != nil
        }
        // SerialPort.cancel cancels the next wait when none is in progress.
        if stopped { port.cancel() }
    }

    public func detach(_ port: SerialPort) {
        condition.withLock { _ = ports.removeValue(forKey: ObjectIdentifier(port)) }
    }

    /// Stops: cancels the attached ports, wakes the sleepers. The first signal is kept.
    public func cancel(signal: Int32) {
        let attached = condition.withLock {
            if stopSignal == nil { stopSignal = signal }
            condition.broadcast()
            return Array(ports.values)
        }
        for port in attached { port.cancel() }
    }

    /// Sleeps for `duration` unless stopped meanwhile; the stop's signal if stopped.
    public func sleep(for duration: Duration) -> Int32? {
        let until = Date(timeIntervalSinceNow: Double(duration.components.seconds)
            + Double(duration.components.attoseconds) / 1e18)
        condition.lock()
        defer { condition.unlock() }
        while stopSignal == nil, condition.wait(until: until) {}
        return stopSignal
    }
}
