import DevKitSystem
import Foundation
import SystemPackage
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Real signals sent to this process. Serialized: dispositions are process-wide.
/// SIGUSR1/SIGUSR2 only, which nothing else in the test process uses.
@Suite(.serialized) struct SignalRelayTests {
    /// The handler now installed for `signal`, as the bytes of its address.
    private func currentHandler(_ signal: Int32) -> [UInt8] {
        var action = sigaction()
        _ = sigaction(signal, nil, &action)
        return withUnsafeBytes(of: &action.__sigaction_handler) { Array($0) }
    }

    @Test func aRaisedSignalBecomesAByteOnThePipe() throws {
        let relay = try SignalRelay([SIGUSR1, SIGUSR2])
        defer { relay.restore() }
        #expect(relay.takeSignals().isEmpty)
        raise(SIGUSR2)
        raise(SIGUSR1)
        var fds = [pollfd(fd: relay.fd, events: Int16(POLLIN), revents: 0)]
        #expect(poll(&fds, 1, 0) == 1)
        #expect(relay.takeSignals() == [SIGUSR2, SIGUSR1])
        // Nothing left (its read fails with EAGAIN), and errno is left as it was:
        // the console checks poll's EINTR after taking the window-size signal.
        errno = EINTR
        #expect(relay.takeSignals().isEmpty)
        #expect(errno == EINTR)
        #expect(poll(&fds, 1, 0) == 0)
    }

    @Test func waitReturnsASignalSentFromAnotherThread() throws {
        let relay = try SignalRelay([SIGUSR1])
        defer { relay.restore() }
        // To this thread, not the process: other suites' calls running in parallel
        // are not interrupted.
        let waiter = pthread_self()
        Thread {
            usleep(20_000)
            pthread_kill(waiter, SIGUSR1)
        }.start()
        #expect(relay.wait() == SIGUSR1)
    }

    @Test func theHandlerAlsoWakesAnEventFDAndKeepsErrno() throws {
        let event = try FileDescriptor.eventFD()
        defer { try? event.close() }
        let relay = try SignalRelay([SIGUSR1], wakingEventFD: event.rawValue)
        defer { relay.restore() }
        errno = EDOM
        raise(SIGUSR1)
        #expect(errno == EDOM)
        let counter = try event.readAvailable(maxCount: 8)
        #expect(counter == [1, 0, 0, 0, 0, 0, 0, 0])
        #expect(relay.takeSignals() == [SIGUSR1])
    }

    @Test func restorePutsThePreviousHandlerBack() throws {
        let before = signal(SIGUSR1, SIG_IGN)
        defer { signal(SIGUSR1, before) }
        let ignored = currentHandler(SIGUSR1)
        let relay = try SignalRelay([SIGUSR1])
        #expect(currentHandler(SIGUSR1) != ignored)
        relay.restore()
        #expect(currentHandler(SIGUSR1) == ignored)
        raise(SIGUSR1)  // ignored again: the test process lives on
        relay.restore()  // idempotent
    }

    @Test func nestedRelaysHandTheSignalBack() throws {
        let outer = try SignalRelay([SIGUSR2])
        defer { outer.restore() }
        let inner = try SignalRelay([SIGUSR2])
        raise(SIGUSR2)
        #expect(inner.takeSignals() == [SIGUSR2])
        #expect(outer.takeSignals().isEmpty)
        inner.restore()
        raise(SIGUSR2)
        #expect(outer.takeSignals() == [SIGUSR2])
    }

    @Test func restartingCallsSetsSARestart() throws {
        let relay = try SignalRelay([SIGUSR1], restartingCalls: true)
        defer { relay.restore() }
        var action = sigaction()
        _ = sigaction(SIGUSR1, nil, &action)
        #expect(action.sa_flags & SA_RESTART != 0)
        let plain = try SignalRelay([SIGUSR2])
        defer { plain.restore() }
        _ = sigaction(SIGUSR2, nil, &action)
        #expect(action.sa_flags & SA_RESTART == 0)
    }

    @Test func namesSignals() {
        #expect(SignalRelay.name(of: SIGTERM) == "SIGTERM")
        #expect(SignalRelay.name(of: SIGHUP) == "SIGHUP")
        #expect(SignalRelay.name(of: SIGINT) == "SIGINT")
    }
}
