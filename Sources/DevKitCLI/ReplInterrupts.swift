#if canImport(Glibc)
import Glibc
#endif

/// The write end of the SIGINT self-pipe. A signal handler can only touch plain
/// globals; it is set once before the handler is installed and never changes after.
nonisolated(unsafe) private var interruptPipeWriteFD: Int32 = -1
/// Terminal settings to put back if SIGTERM/SIGHUP end the console.
nonisolated(unsafe) private var terminalToRestore = termios()
nonisolated(unsafe) private var hasTerminalToRestore = false
/// Set by the SIGWINCH handler, cleared by ``ReplInterrupts/takeResize()``.
nonisolated(unsafe) private var windowResized: Int32 = 0

/// Turns SIGINT (Ctrl-C) into a readable pipe, so the console can cancel the wait
/// in progress instead of dying: poll the ``fd`` alongside the device.
enum ReplInterrupts {
    /// Readable when Ctrl-C was pressed; drain it with `drainPipe`.
    nonisolated(unsafe) private(set) static var fd: Int32 = -1

    /// Installs the handler (once). Throws nothing: if the pipe cannot be made,
    /// Ctrl-C keeps its default meaning.
    static func install() {
        guard fd < 0 else { return }
        guard let fds = makeNonBlockingPipe() else { return }
        fd = fds.read
        interruptPipeWriteFD = fds.write
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { _ in
            let saved = errno
            var byte: UInt8 = 1
            _ = write(interruptPipeWriteFD, &byte, 1)
            errno = saved
        }
        sigemptyset(&action.sa_mask)
        action.sa_flags = 0  // no SA_RESTART: a blocked poll returns EINTR at once
        _ = sigaction(SIGINT, &action, nil)
        // A parent may have left SIGINT blocked; Ctrl-C must reach the handler.
        var unblock = sigset_t()
        sigemptyset(&unblock)
        sigaddset(&unblock, SIGINT)
        _ = pthread_sigmask(SIG_UNBLOCK, &unblock, nil)

        // libedit's own signal handling is off (it would make Ctrl-C fatal), so the
        // terminal size change is noted here and applied by the key reader.
        var resize = sigaction()
        resize.__sigaction_handler.sa_handler = { _ in windowResized = 1 }
        sigemptyset(&resize.sa_mask)
        resize.sa_flags = 0
        _ = sigaction(SIGWINCH, &resize, nil)
    }

    /// On SIGTERM or SIGHUP: put `settings` back on standard input, then die of the
    /// signal as usual (tcsetattr is async-signal-safe).
    static func restoreTerminalOnTermination(_ settings: termios) {
        terminalToRestore = settings
        hasTerminalToRestore = true
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { signal in
            if hasTerminalToRestore { _ = tcsetattr(STDIN_FILENO, TCSANOW, &terminalToRestore) }
            Glibc.signal(signal, SIG_DFL)
            raise(signal)
        }
        sigemptyset(&action.sa_mask)
        action.sa_flags = 0
        _ = sigaction(SIGTERM, &action, nil)
        _ = sigaction(SIGHUP, &action, nil)
    }

    /// True once after each terminal size change.
    static func takeResize() -> Bool {
        guard windowResized != 0 else { return false }
        windowResized = 0
        return true
    }
}
