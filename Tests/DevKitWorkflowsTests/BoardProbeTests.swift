import DevKitConsole
import DevKitTestSupport
import Foundation
import SerialPort
import Synchronization
import Testing
import VirtualDevKit

@testable import DevKitWorkflows

/// `devkit list --probe`'s check (issue 12 item 11): what answers at a port, told the
/// way provision tells it before its first `set_` command, sending nothing else.
@Suite(.timeLimit(.minutes(5))) struct BoardProbeTests {
    @Test func aDevKitInConfigurationModeIsIdentifiedAndLeftAsItWas() throws {
        let kit = try startedKit(.init(firmwareVersion: "1.6.2"))
        defer { kit.stop() }
        #expect(kit.waitUntilIdle())
        let before = kit.state
        let result = BoardProbe(timeout: .seconds(3)).probe(kit.devicePath)
        guard case .devKit(.configuration, let versions?) = result.outcome else {
            Issue.record("not identified: \(result.outcome)")
            return
        }
        #expect(versions.firmwareVersion.text == "1.6.2")
        #expect(result.path == kit.devicePath)
        #expect(result.elapsed < .seconds(3))
        #expect(kit.state == before, "nothing was stored")
    }

    @Test func anotherBoardWithTheSamePromptGetsOnlyTheReadOnlyVersion() throws {
        let kit = try startedKit(.init(faults: .init(notADevKit: true)))
        defer { kit.stop() }
        let result = BoardProbe(timeout: .seconds(3)).probe(kit.devicePath)
        guard case .notADevKit(let reason) = result.outcome else {
            Issue.record("\(result.outcome)")
            return
        }
        #expect(reason.contains("DevKitSDK version"))
        #expect(kit.shellLines == ["version"], "only `version` reached it: \(kit.shellLines)")
    }

    /// A silent port ends at the timeout, not at the session's default waits (3 s of
    /// prompt tries, then more).
    @Test func aSilentPortIsNoAnswerAtTheTimeout() throws {
        let kit = try startedKit(.init(faults: .init(silent: true)))
        defer { kit.stop() }
        let result = BoardProbe(timeout: .milliseconds(900)).probe(kit.devicePath)
        #expect(result.outcome == .noAnswer(receivedBytes: 0))
        #expect(result.elapsed >= .milliseconds(880), "it waited the whole timeout: \(result.elapsed)")
        #expect(result.elapsed < .milliseconds(2000), "bounded by the timeout: \(result.elapsed)")
    }

    @Test func aFloodIsNoAnswerWithTheBytesCountedWithinTheTimeout() throws {
        let kit = try startedKit(.init(faults: .init(floodBytes: 2 << 20)))
        defer { kit.stop() }
        // Booted: its prompt is not left waiting for the probe (the flood follows the
        // host's first byte).
        #expect(kit.waitUntilIdle())
        let result = BoardProbe(timeout: .seconds(1)).probe(kit.devicePath)
        guard case .noAnswer(let received) = result.outcome else {
            Issue.record("\(result.outcome)")
            return
        }
        #expect(received > 0)
        #expect(result.elapsed < .milliseconds(2500), "bounded by the timeout, not the flood: \(result.elapsed)")
    }

    /// User-mode output seen while looking for the prompt (here: the banner of a
    /// reset while the port is open) makes it a DevKit in user mode.
    @Test func userModeOutputMakesItADevKitInUserMode() throws {
        let kit = try startedKit(.init(mode: .user))
        defer { kit.stop() }
        #expect(kit.waitUntilIdle())
        let probe = BoardProbe(timeout: .seconds(3))
        let result = Mutex<ProbeResult?>(nil)
        let thread = Thread { result.withLock { $0 = probe.probe(kit.devicePath) } }
        let started = ContinuousClock.now
        thread.start()
        // Reset once the probe has the port open (a board's boot output is not kept
        // for a host that opens later): the sketch's banner and log lines, and no
        // prompt, come during the prompt search.
        Thread.sleep(forTimeInterval: 0.15)
        kit.reset(into: .user)
        while result.withLock({ $0 == nil }) && ContinuousClock.now - started < .seconds(10) {
            Thread.sleep(forTimeInterval: 0.02)
        }
        let outcome = try #require(result.withLock { $0 }).outcome
        guard case .devKit(.user, nil) = outcome else {
            Issue.record("\(outcome)")
            return
        }
    }

    @Test func aPortHeldByAnotherProcessIsBusyNamingIt() throws {
        let kit = try startedKit()
        defer { kit.stop() }
        let holder = try SerialPort(path: kit.devicePath)
        defer { holder.close() }
        let result = BoardProbe(timeout: .seconds(3)).probe(kit.devicePath)
        #expect(result.outcome == .busy(pid: getpid()))
    }

    @Test func openErrorsMapToTheirStates() {
        let group = SerialPortError.serialGroup { getgrnam($0) != nil }
        #expect(BoardProbe.outcome(of: SerialPortError.permissionDenied(path: "/dev/ttyACM0")) == .permissionDenied(group: group))
        #expect(BoardProbe.outcome(of: SerialPortError.inUse(path: "/dev/ttyACM0", pid: 42)) == .busy(pid: 42))
        guard case .failed("gone", let message) = BoardProbe.outcome(of: SerialPortError.notFound(path: "/dev/ttyACM9")) else {
            Issue.record("a vanished port")
            return
        }
        #expect(message.contains("/dev/ttyACM9"))
        let missing = BoardProbe(timeout: .seconds(1)).probe("/dev/nonexistent-devkit-port")
        guard case .failed("gone", _) = missing.outcome else {
            Issue.record("\(missing.outcome)")
            return
        }
    }

    /// One thread per port: two silent ports take one timeout (2 s), not two.
    @Test func portsAreProbedAtOnce() throws {
        let silent = try (0..<2).map { _ in try startedKit(.init(faults: .init(silent: true))) }
        let devKit = try startedKit()
        defer { (silent + [devKit]).forEach { $0.stop() } }
        let start = ContinuousClock.now
        let results = BoardProbe(timeout: .seconds(2)).probeAll((silent + [devKit]).map(\.devicePath))
        let elapsed = ContinuousClock.now - start
        #expect(results.map(\.path) == (silent + [devKit]).map(\.devicePath), "in the order given")
        #expect(results.prefix(2).allSatisfy { $0.outcome == .noAnswer(receivedBytes: 0) })
        guard case .devKit(.configuration, _?) = results[2].outcome else {
            Issue.record("\(results[2].outcome)")
            return
        }
        #expect(elapsed < .milliseconds(3300), "two 2 s timeouts at once: \(elapsed)")
    }

    /// A stop signal's cancel ends every wait at once; the ports close.
    @Test func cancelEndsEveryProbeAtOnce() throws {
        let kits = try (0..<2).map { _ in try startedKit(.init(faults: .init(silent: true))) }
        defer { kits.forEach { $0.stop() } }
        let probe = BoardProbe(timeout: .seconds(20))
        let results = Mutex<[ProbeResult]?>(nil)
        let start = ContinuousClock.now
        let thread = Thread { results.withLock { $0 = probe.probeAll(kits.map(\.devicePath)) } }
        thread.start()
        Thread.sleep(forTimeInterval: 0.3)
        probe.cancel()
        while results.withLock({ $0 == nil }) && ContinuousClock.now - start < .seconds(10) {
            Thread.sleep(forTimeInterval: 0.01)
        }
        let done = try #require(results.withLock { $0 })
        #expect(ContinuousClock.now - start < .seconds(3))
        #expect(done.allSatisfy { if case .failed("cancelled", _) = $0.outcome { true } else { false } }, "\(done)")
        // Closed: the ports open again at once.
        for kit in kits { try SerialPort(path: kit.devicePath).close() }
    }
}
