import DevKitTestSupport
import DevKitWorkflows
import Foundation
import SerialPort
import Testing
import VirtualDevKit

#if canImport(Glibc)
import Glibc
#endif

/// `FollowerStop`: what lets `watch` end a board's log following at once, where a
/// signal relay per follower cannot be used. The deadlines here are far beyond
/// the stop's 300 ms: a run that the stop does not end ends at its deadline, and
/// fails on its end (`.deadline`, not the signal) instead of hanging the suite.
@Suite struct FollowerStopTests {
    var far: ContinuousClock.Instant { .now + .seconds(120) }

    @Test func cancellingEndsAReadInProgress() throws {
        let kit = try startedKit()
        defer { kit.stop() }
        let stop = FollowerStop()
        // From another thread, once the follower is likely reading; earlier or later
        // ends it the same way (a port attached after the stop is cancelled at once).
        let canceller = Thread {
            usleep(300_000)
            stop.cancel(signal: SIGTERM)
        }
        canceller.start()
        let end = try BoardLogFollower.follow(
            .init(path: kit.devicePath, relaysStopSignals: false, stop: stop), deadline: far) { _ in true }
        #expect(end == .signal(SIGTERM))
        #expect(stop.signal == SIGTERM)
    }

    @Test func cancellingEndsTheWaitForAnUnpluggedBoard() throws {
        // A link, as /dev/serial/by-id gives: a path that can come back (a bare pty cannot).
        let link = NSTemporaryDirectory() + "devkit-follower-stop-\(UUID().uuidString)"
        defer { unlink(link) }
        let kit = try startedKit(VirtualDevKitConfiguration(linkPath: link))
        defer { kit.stop() }
        let stop = FollowerStop()
        var disconnected = false
        // Open before the unplug is scheduled: on a loaded machine the unplug could
        // otherwise come first, and the follower would find no port at all.
        let port = try SerialPort(path: link)
        let unplugger = Thread {
            usleep(300_000)
            kit.unplug()
        }
        unplugger.start()
        // No reconnect timeout: without the stop it would wait for the board until the deadline.
        let end = try BoardLogFollower.follow(
            port: port, .init(path: link, reconnectTimeout: nil, relaysStopSignals: false, stop: stop), deadline: far
        ) { event in
            if event == .disconnected {
                disconnected = true
                // While the follower waits for the port to come back.
                Thread {
                    usleep(300_000)
                    stop.cancel(signal: SIGINT)
                }.start()
            }
            return true
        }
        #expect(disconnected)
        #expect(end == .signal(SIGINT))
    }

    @Test func aStoppedTokenStopsLaterFollowersAndSleepsAtOnce() throws {
        let kit = try startedKit()
        defer { kit.stop() }
        let stop = FollowerStop()
        #expect(stop.signal == nil)
        stop.cancel(signal: SIGHUP)
        stop.cancel(signal: SIGTERM)  // the first signal is kept
        #expect(stop.sleep(for: .seconds(3600)) == SIGHUP)
        let end = try BoardLogFollower.follow(
            .init(path: kit.devicePath, relaysStopSignals: false, stop: stop), deadline: far) { _ in true }
        #expect(end == .signal(SIGHUP))
    }

    /// A verification that starts after the stop (watch told to stop while the
    /// board was provisioned) ends as stopped without opening the port: here a
    /// path with no port, whose open would throw "not found".
    @Test func aVerificationAfterTheStopDoesNotOpenThePort() throws {
        let stop = FollowerStop()
        stop.cancel(signal: SIGTERM)
        var hooks = RegistrationCheck.Hooks()
        hooks.stop = stop
        hooks.followerRelaysStopSignals = false
        let missing = NSTemporaryDirectory() + "devkit-no-port-\(UUID().uuidString)"
        do {
            _ = try RegistrationCheck.observe(path: missing, deadline: far, hooks: hooks)
            Issue.record("the verification ran")
        } catch {
            #expect(error as? RegistrationCheckError == .stopped(signal: SIGTERM), "\(error)")
        }
    }

    /// The wording of a stopped verification names the signal and the port.
    @Test func aStoppedVerificationSaysHowToVerifyLater() {
        #expect(RegistrationCheckError.notVerified(signal: SIGTERM, port: "/dev/ttyACM3")
            == "not verified: stopped by SIGTERM; `devkit verify --port /dev/ttyACM3` verifies it")
        #expect(RegistrationCheckError.stopped(signal: SIGINT).description == "stopped by SIGINT")
    }
}
