import Testing
@testable import DevKitConsole

/// Plays a script, then, once `floodAfterSends` sends were made and the script has
/// nothing more to say, hands out `flood` on every read, forever: a board that never
/// stops talking. Only the session's deadlines can end a wait.
final class FloodingTransport: ConsoleTransport {
    let script: ScriptedTransport
    let flood: [UInt8]
    let floodAfterSends: Int
    private(set) var flooded = 0

    init(_ steps: [ScriptedTransport.Step], flood: String, floodAfterSends: Int) {
        script = ScriptedTransport(steps)
        self.flood = Array(flood.utf8)
        self.floodAfterSends = floodAfterSends
    }

    func send(_ bytes: [UInt8], deadline: ContinuousClock.Instant) throws {
        try script.send(bytes, deadline: deadline)
    }

    func receive(deadline: ContinuousClock.Instant) throws -> [UInt8] {
        let scripted = try script.receive(deadline: deadline)
        guard scripted.isEmpty, script.sends.count >= floodAfterSends else { return scripted }
        flooded += flood.count
        return flood
    }
}

@Suite("Console session under a flood")
struct ConsoleFloodTests {
    private static var timeouts: ConsoleSession.Timeouts {
        var t = ConsoleSession.Timeouts()
        t.promptAttempt = .milliseconds(200)
        t.promptAttempts = 2
        t.echo = .seconds(5)
        t.response = .seconds(5)
        t.bootLog = .milliseconds(200)
        return t
    }

    private static let noise = String(repeating: "noise without a prompt\r\n#\r\n", count: 40)

    @Test func synchronizeEndsAtItsDeadlineWhileTheBoardFloods() throws {
        let transport = FloodingTransport(
            [.expectSend([0x0D], requireDrained: false), .expectSend([0x0D], requireDrained: false)],
            flood: Self.noise, floodAfterSends: 1)
        let session = ConsoleSession(transport: transport, timeouts: Self.timeouts)
        let error = #expect(throws: ConsoleError.self) { try session.synchronize() }
        guard case .noAnswer(let received)? = error else {
            Issue.record("expected noAnswer, got \(String(describing: error))")
            return
        }
        #expect(received == transport.flooded)
        #expect(transport.script.violations == [])
        #expect(transport.script.sends.count == 2)
        #expect(transport.flooded > 0)
        #expect(session.state == .unsynchronized)
    }

    @Test func aReplyWithoutEndIsAnErrorAtTheCap() throws {
        let transport = FloodingTransport(
            Board.sync() + Board.exchange("version", output: "", after: ""), flood: Self.noise, floodAfterSends: 2)
        let session = ConsoleSession(transport: transport, timeouts: Self.timeouts)
        try session.synchronize()
        do {
            _ = try session.version()
            Issue.record("a reply without a prompt was accepted")
        } catch ConsoleError.unexpectedResponse(let command, let response) {
            #expect(command == "version")
            #expect(response.contains("more than a reply can be"))
            #expect(response.contains("\(ConsoleSession.maxReplyLength)"))
        }
        #expect(transport.script.violations == [])
        // It stopped at the cap, not at the response deadline.
        #expect(transport.flooded > ConsoleSession.maxReplyLength)
        #expect(transport.flooded < ConsoleSession.maxReplyLength + 2 * Self.noise.utf8.count)
        #expect(session.state == .unsynchronized)
    }

    @Test func bootLogWaitEndsAtItsDeadlineWhileTheBoardFloods() throws {
        let transport = FloodingTransport(
            Board.sync() + Board.exchange("exit", output: "Reboot\r\n", after: ""), flood: Self.noise, floodAfterSends: 2)
        let session = ConsoleSession(transport: transport, timeouts: Self.timeouts)
        try session.synchronize()
        do {
            _ = try session.exitAndReadBootLog()
            Issue.record("a boot log without a MAC address was accepted")
        } catch ConsoleError.timeout(_, let after, let command) {
            #expect(command == "exit")
            #expect(after == .milliseconds(200))
        }
        #expect(transport.script.violations == [])
        #expect(session.state == .rebooted)
        #expect(transport.flooded > 0)
    }
}
