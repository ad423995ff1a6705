import SerialPort
import Synchronization

/// The ports one stop cancels: the one home of "cancel every port open now, and
/// any opened after", shared by ``BoardProbe/cancel()`` and ``FollowerStop``.
/// A port is attached once open and detached before it closes, so a cancellation
/// never touches a closed port (both happen under the same lock).
final class PortCancellation: Sendable {
    private let state = Mutex<(cancelled: Bool, ports: [ObjectIdentifier: SerialPort])>((false, [:]))

    /// Attaches `port`, whose blocking calls ``cancel()`` then cancels. Returns
    /// false when cancelled already: the port is then cancelled at once (its next
    /// wait throws `cancelled`) and not attached; close it without using it.
    func attach(_ port: SerialPort) -> Bool {
        state.withLock { state in
            if state.cancelled {
                // SerialPort.cancel cancels the next wait when none is in progress.
                port.cancel()
                return false
            }
            state.ports[ObjectIdentifier(port)] = port
            return true
        }
    }

    /// Before `port` closes.
    func detach(_ port: SerialPort) {
        state.withLock { _ = $0.ports.removeValue(forKey: ObjectIdentifier(port)) }
    }

    /// Cancels every attached port (their blocked calls wake at once) and every
    /// port attached later. Returns whether this call cancelled (false: an earlier one did).
    @discardableResult
    func cancel() -> Bool {
        state.withLock { state in
            // Once: a later signal must not cancel the clean-up a cancelled
            // exchange runs (erasing a half-sent line) on the same ports.
            guard !state.cancelled else { return false }
            state.cancelled = true
            for port in state.ports.values { port.cancel() }
            return true
        }
    }
}
