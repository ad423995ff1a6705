import CDevKitLinux
import Synchronization
import SystemPackage
#if canImport(Glibc)
import Glibc
#endif

/// The package's one signal handler: turns signals into bytes on a pipe that a
/// thread polls or waits on, so everything a signal should cause (cancel a wait,
/// restore the terminal, stop a loop) runs as ordinary code.
///
/// The handler (``CDevKitLinux_relay_handler``, in C) only writes the signal's
/// number as one byte to the relay's non-blocking pipe, and adds 1 to an optional
/// eventfd (a serial port's cancellation eventfd): both async-signal-safe. A
/// `DispatchSource` is not used because it is armed asynchronously after `resume()`:
/// a signal right after start-up could be lost.
///
/// Relays nest: a relay for a signal already relayed takes it over and
/// ``restore()`` gives it back (handler and descriptors).
public final class SignalRelay: @unchecked Sendable {
    /// The signals relayed.
    public let signals: [Int32]
    /// Readable while a relayed signal is pending: poll it beside other descriptors,
    /// then ``takeSignals()``.
    public var fd: Int32 { readEnd.rawValue }

    private let readEnd: FileDescriptor
    private let writeEnd: FileDescriptor
    private var previous: [(action: sigaction, pipe: Int32, event: Int32)] = []
    /// Whether restore() ran; held while it runs.
    private let restored = Mutex(false)

    /// Installs the handler for `signals`; they are unblocked in the calling thread
    /// (a parent may have left SIGINT blocked).
    ///
    /// - Parameters:
    ///   - restartingCalls: SA_RESTART: interrupted system calls go on rather than
    ///     fail with EINTR (poll and friends still return EINTR).
    ///   - wakingEventFD: an eventfd the handler also adds 1 to (-1: none).
    public init(_ signals: [Int32], restartingCalls: Bool = false, wakingEventFD: Int32 = -1) throws(Errno) {
        self.signals = signals
        (readEnd, writeEnd) = try FileDescriptor.closeOnExecPipe(nonBlocking: true)
        var action = sigaction()
        action.__sigaction_handler.sa_handler = CDevKitLinux_relay_handler
        sigemptyset(&action.sa_mask)
        action.sa_flags = restartingCalls ? SA_RESTART : 0
        var unblock = sigset_t()
        sigemptyset(&unblock)
        for signal in signals {
            var old = sigaction()
            let (oldPipe, oldEvent) = (CDevKitLinux_relay_pipe(signal), CDevKitLinux_relay_event(signal))
            // The descriptors first: the handler may run as soon as sigaction returns.
            CDevKitLinux_relay_set(signal, writeEnd.rawValue, wakingEventFD)
            _ = sigaction(signal, &action, &old)
            previous.append((old, oldPipe, oldEvent))
            sigaddset(&unblock, signal)
        }
        _ = pthread_sigmask(SIG_UNBLOCK, &unblock, nil)
    }

    deinit {
        restore()
    }

    /// The signals that came since the last call, oldest first ([] if none); does
    /// not block, and leaves `errno` as it was (a caller may check it after this,
    /// for the call before).
    public func takeSignals() -> [Int32] {
        let saved = errno
        defer { errno = saved }
        var taken: [Int32] = []
        while let bytes = try? readEnd.readAvailable(maxCount: 64), !bytes.isEmpty {
            taken += bytes.map { Int32($0) }
        }
        return taken
    }

    /// Blocks until a relayed signal comes; returns it (the oldest pending one).
    public func wait() -> Int32 {
        while true {
            if let byte = try? readEnd.readAvailable(maxCount: 1), let signal = byte.first { return Int32(signal) }
            var fds = [pollfd(fd: fd, events: Int16(POLLIN), revents: 0)]
            _ = poll(&fds, 1, -1)  // EINTR: read again
        }
    }

    /// Puts back the handlers (and relays) that were there before, then closes the
    /// pipe. Signals not yet taken are lost. Idempotent.
    public func restore() {
        restored.withLock { restored in
            guard !restored else { return }
            restored = true
            for (signal, var old) in zip(signals, previous).reversed() {
                _ = sigaction(signal, &old.action, nil)
                CDevKitLinux_relay_set(signal, old.pipe, old.event)
            }
            try? readEnd.close()
            try? writeEnd.close()
        }
    }

    /// Dies of `signal` as if it had not been caught: default disposition, unblocked,
    /// raised, so a shell or systemd sees what stopped the process.
    public static func dieOf(_ signal: Int32) -> Never {
        Glibc.signal(signal, SIG_DFL)
        var unblock = sigset_t()
        sigemptyset(&unblock)
        sigaddset(&unblock, signal)
        _ = pthread_sigmask(SIG_UNBLOCK, &unblock, nil)
        raise(signal)
        // Only for a signal whose default is to be ignored.
        exit(128 + signal)
    }

    /// The name of a signal ("SIGTERM").
    public static func name(of signal: Int32) -> String {
        switch signal {
        case SIGINT: "SIGINT"
        case SIGTERM: "SIGTERM"
        case SIGHUP: "SIGHUP"
        case SIGUSR1: "SIGUSR1"
        case SIGUSR2: "SIGUSR2"
        case SIGWINCH: "SIGWINCH"
        default: "signal \(signal)"
        }
    }
}
