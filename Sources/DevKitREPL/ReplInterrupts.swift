import DevKitSystem
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The console's signals, through ``SignalRelay``: SIGINT (Ctrl-C) as a readable
/// descriptor, so the console can cancel the wait in progress instead of dying
/// (poll ``fd`` alongside the device); SIGWINCH noted for the key reader; SIGTERM
/// and SIGHUP restoring the terminal before the process dies of them.
public enum ReplInterrupts {
    /// No SA_RESTART: a blocked poll returns EINTR at once. If the relay cannot be
    /// made, Ctrl-C keeps its default meaning.
    private static let interrupts = try? SignalRelay([SIGINT])
    /// libedit's own signal handling is off (it would make Ctrl-C fatal), so the
    /// terminal size change is noted here and applied by the key reader.
    private static let resizes = try? SignalRelay([SIGWINCH])

    /// Readable when Ctrl-C was pressed; drain it (`FileDescriptor.drain()`). -1
    /// if the relay could not be made.
    public static var fd: Int32 { interrupts?.fd ?? -1 }

    /// Installs the relays (once: they are made on first use).
    public static func install() {
        _ = interrupts
        _ = resizes
    }

    /// On SIGTERM or SIGHUP: put `settings` back on standard input, then die of the
    /// signal as usual. A thread of its own waits for them, so this happens
    /// wherever the console is blocked.
    static func restoreTerminalOnTermination(_ settings: termios) {
        guard let relay = try? SignalRelay([SIGTERM, SIGHUP]) else { return }
        let thread = Thread {
            let signal = relay.wait()
            var saved = settings
            _ = tcsetattr(STDIN_FILENO, TCSANOW, &saved)
            SignalRelay.dieOf(signal)
        }
        thread.name = "devkit-console signals"
        thread.start()
    }

    /// True once after each terminal size change.
    static func takeResize() -> Bool {
        !(resizes?.takeSignals().isEmpty ?? true)
    }
}
