import DevKitSystem
import SerialPort
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The signal that came while a port was open (0: none), kept from ``PortStopSignals/restore()``
/// to ``PortStopSignals/reraiseIfCaught()``, which run in different scopes.
private let caughtStopSignal = Atomic<Int32>(0)

/// While a one-shot command (set-uds, info, provision, autoconfigure, ...) has the
/// board's port open, SIGINT, SIGTERM and SIGHUP cancel the wait in progress instead
/// of killing the process on the spot. The session then erases a half-sent line,
/// the workflow records the failure in the registry, the port gets its terminal
/// settings back on close, and only then the process dies of the same signal, so a
/// shell or systemd sees what stopped it.
package struct PortStopSignals {
    private static let signals = [SIGINT, SIGTERM, SIGHUP]
    private let relay: SignalRelay?

    /// Relays the signals to `port`'s cancellation eventfd (what `cancel()` does);
    /// call ``restore()`` before the port closes. If no relay can be made the
    /// signals keep their default action.
    package init(cancelling port: SerialPort) {
        caughtStopSignal.store(0, ordering: .relaxed)
        // The eventfd wakes the port's poll; other calls (registry writes, fsync)
        // just go on rather than fail with EINTR.
        relay = try? SignalRelay(Self.signals, restartingCalls: true, wakingEventFD: port.cancellationEventDescriptor)
    }

    /// Notes the signal that came, if any, and puts the previous handlers back
    /// (before the port, and its eventfd, close).
    package func restore() {
        guard let relay else { return }
        if let signal = relay.takeSignals().first { caughtStopSignal.store(signal, ordering: .relaxed) }
        relay.restore()
    }

    /// After the port is closed: if a signal came while it was open, says so and dies
    /// of that signal (its default action).
    package static func reraiseIfCaught() {
        let caught = caughtStopSignal.load(ordering: .relaxed)
        guard caught != 0 else { return }
        printError("devkit: stopped by \(SignalRelay.name(of: caught)); the port's settings are restored.")
        SignalRelay.dieOf(caught)
    }
}
