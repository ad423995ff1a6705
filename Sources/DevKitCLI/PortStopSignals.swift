import SerialPort
#if canImport(Glibc)
import Glibc
#endif

/// The port's cancellation eventfd while a handler is installed, else -1. A signal
/// handler can only touch plain globals.
nonisolated(unsafe) private var stopSignalCancelFD: Int32 = -1
/// The signal that arrived while the port was open, else 0.
nonisolated(unsafe) private var stopSignalCaught: Int32 = 0

/// While a one-shot command (set-uds, info, provision, autoconfigure, ...) has the
/// board's port open, SIGINT, SIGTERM and SIGHUP cancel the wait in progress instead
/// of killing the process on the spot. The session then erases a half-sent line,
/// the workflow records the failure in the registry, the port gets its terminal
/// settings back on close, and only then the process dies of the same signal, so a
/// shell or systemd sees what stopped it.
struct PortStopSignals {
    private static let signals = [SIGINT, SIGTERM, SIGHUP]
    private var previous: [sigaction] = []

    /// Installs the handlers for `port`; call ``restore()`` before the port closes.
    init(cancelling port: SerialPort) {
        stopSignalCaught = 0
        stopSignalCancelFD = port.cancellationEventDescriptor
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { signal in
            let saved = errno
            stopSignalCaught = signal
            var one: UInt64 = 1
            _ = write(stopSignalCancelFD, &one, MemoryLayout<UInt64>.size)  // what cancel() does
            errno = saved
        }
        sigemptyset(&action.sa_mask)
        // The eventfd wakes the port's poll; other calls (registry writes, fsync)
        // just go on rather than fail with EINTR.
        action.sa_flags = SA_RESTART
        previous = Self.signals.map { signal in
            var old = sigaction()
            _ = sigaction(signal, &action, &old)
            return old
        }
    }

    /// Puts the previous handlers back (before the port, and its eventfd, close).
    func restore() {
        for (signal, var old) in zip(Self.signals, previous) { _ = sigaction(signal, &old, nil) }
        stopSignalCancelFD = -1
    }

    /// After the port is closed: if a signal came while it was open, says so and dies
    /// of that signal (its default action).
    static func reraiseIfCaught() {
        let caught = stopSignalCaught
        guard caught != 0 else { return }
        let name = caught == SIGINT ? "SIGINT" : caught == SIGTERM ? "SIGTERM" : "SIGHUP"
        printError("devkit: stopped by \(name); the port's settings are restored.")
        signal(caught, SIG_DFL)
        raise(caught)
    }
}
