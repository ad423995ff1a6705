import DevKitConsole
import Testing

@Suite("Console framer")
struct ConsoleFramerTests {
    private static func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

    /// Adjacent events of one kind merged, so differently chunked feeds compare equal.
    private static func merged(_ events: [ConsoleFramer.Event]) -> [ConsoleFramer.Event] {
        var out: [ConsoleFramer.Event] = []
        for event in events {
            switch (out.last, event) {
            case (.echo(let a)?, .echo(let b)): out[out.count - 1] = .echo(a + b)
            case (.reply(let a)?, .reply(let b)): out[out.count - 1] = .reply(a + b)
            case (.after(let a)?, .after(let b)): out[out.count - 1] = .after(a + b)
            default: out.append(event)
            }
        }
        return out
    }

    /// Feeds `wire` cut at `cuts` into a fresh framer.
    private static func frame(
        _ wire: [UInt8], cuts: [Int] = [], make: () -> ConsoleFramer
    ) -> (events: [ConsoleFramer.Event], framer: ConsoleFramer) {
        var framer = make()
        var events: [ConsoleFramer.Event] = []
        var start = 0
        for cut in cuts + [wire.count] where cut >= start {
            events += framer.feed(wire[start..<cut])
            start = cut
        }
        return (merged(events), framer)
    }

    @Test func framesEveryEventKindOfAReply() {
        let wire = Self.bytes("\r\n# \r\n# version\r\nDevKitSDK version: 1.6.2\r\n\r\n# ** late\r\n")
        let (events, framer) = Self.frame(wire) { ConsoleFramer(echo: Self.bytes("version"), untilReboot: false) }
        #expect(
            events == [
                .echo(Self.bytes("\r\n# \r\n# version\r\n")),  // stale prompts come before the echo
                .reply(Self.bytes("DevKitSDK version: 1.6.2\r\n")),
                .prompt,
                .after(Self.bytes("** late\r\n")),  // unsolicited output after the prompt
            ])
        #expect(framer.state == .done)
        #expect(framer.retainedByteCount == 0)
    }

    @Test func sameEventsAtEverySplit() {
        let wire = Self.bytes("\r\n# \r\n#set_dps_uds ****\r\nInvalid UDS.\r\n\r\nINFO: ok.\r\n\r\n# \r\n# x")
        let make = { ConsoleFramer(echo: Self.bytes("set_dps_uds ****"), untilReboot: false) }
        let whole = Self.frame(wire, make: make).events
        #expect(whole.contains(.prompt))
        #expect(whole.last == .after(Self.bytes("\r\n# x")))
        for first in 0...wire.count {
            #expect(Self.frame(wire, cuts: [first], make: make).events == whole, "split at \(first)")
            for second in first...wire.count {
                #expect(Self.frame(wire, cuts: [first, second], make: make).events == whole, "split at \(first), \(second)")
            }
        }
        #expect(Self.frame(wire, cuts: Array(0...wire.count), make: make).events == whole, "byte by byte")
    }

    @Test func secretEchoIsEchoNotReply() {
        let echo = "set_wifipwd " + String(repeating: "*", count: 12)
        let wire = Self.bytes(echo + "\r\nINFO: Set Wi-Fi password successfully.\r\n\r\n# ")
        let (events, _) = Self.frame(wire, cuts: [3, 15]) { ConsoleFramer(echo: Self.bytes(echo), untilReboot: false) }
        #expect(
            events == [
                .echo(Self.bytes(echo + "\r\n")), .reply(Self.bytes("INFO: Set Wi-Fi password successfully.\r\n")), .prompt,
            ])
    }

    @Test func exitEndsAtRebootWithTheRebootLineInTheReply() {
        let wire = Self.bytes("exit\r\nReboot\r\n\r\n****\r\n# not a prompt")
        for cut in 0...wire.count {
            let (events, framer) = Self.frame(wire, cuts: [cut]) { ConsoleFramer(echo: Self.bytes("exit"), untilReboot: true) }
            #expect(
                events == [
                    .echo(Self.bytes("exit\r\n")), .reply(Self.bytes("Reboot\r\n")), .reboot,
                    .after(Self.bytes("\r\n****\r\n# not a prompt")),
                ], "split at \(cut)")
            #expect(framer.state == .done)
        }
    }

    @Test func aReplyOfPromptLookalikesIsReleasedOnceDecided() {
        var framer = ConsoleFramer(echo: [], untilReboot: false)
        #expect(framer.feed(Self.bytes("a\r\n#")) == [.reply(Self.bytes("a"))])
        #expect(framer.retainedByteCount == 3)
        #expect(framer.heldBack == Self.bytes("\r\n#"))
        #expect(framer.feed(Self.bytes("#\r")) == [.reply(Self.bytes("\r\n##"))])
        #expect(framer.feed(Self.bytes("\n# ")) == [.prompt])
    }

    @Test func awaitingPromptReportsEachPromptAndTheBytesAround() {
        let wire = Self.bytes("boot\r\n\r\n# \r\n# tail\r\n")
        let (events, framer) = Self.frame(wire) { ConsoleFramer.awaitingPrompt() }
        #expect(events == [.after(Self.bytes("boot\r\n")), .prompt, .prompt, .after(Self.bytes("tail"))])
        #expect(framer.heldBack == Self.bytes("\r\n"))
        #expect(framer.state == .awaitingPrompt)
    }

    @Test func aTenMiBFloodKeepsTheFramerSmall() {
        // Lines full of prompt lookalikes (`\r\n#`), never the prompt itself.
        let chunk = Array(repeating: Self.bytes("flood \r\n#\r\n##\r"), count: 64).flatMap { $0 }
        var waiting = ConsoleFramer.awaitingPrompt()
        var replying = ConsoleFramer(echo: Self.bytes("scan"), untilReboot: false)
        var fed = 0
        var replied = 0
        var maxRetained = 0
        while fed < 10 * 1024 * 1024 {
            for event in waiting.feed(chunk) {
                if case .prompt = event { Issue.record("no prompt was sent") }
            }
            for event in replying.feed(fed == 0 ? Self.bytes("scan\r\n") + chunk : chunk) {
                switch event {
                case .reply(let text): replied += text.count
                case .echo: break
                default: Issue.record("unexpected \(event)")
                }
            }
            fed += chunk.count
            maxRetained = max(maxRetained, waiting.retainedByteCount, replying.retainedByteCount)
        }
        #expect(maxRetained <= ConsoleFramer.prompt.count - 1)
        // Every byte is passed on: nothing is kept but the held-back partial prompt.
        #expect(replied + replying.retainedByteCount == fed)
    }

    @Test func bytePatternFindsOverlappingMatchesOnce() {
        var pattern = BytePattern(Self.bytes("aab"))
        let hits = Self.bytes("aaabaab").map { pattern.advance($0) }
        #expect(hits == [false, false, false, true, false, false, true])
    }

    @Test func lineSplitterCapsAnEndlessLine() {
        var splitter = ConsoleLineSplitter(maxLineLength: 16)
        #expect(splitter.feed(Self.bytes("one\r\ntw")) == ["one"])
        for _ in 0..<1000 { _ = splitter.feed(Self.bytes("xxxxxxxx")) }
        #expect(splitter.retainedByteCount == 16)
        #expect(splitter.feed(Self.bytes("\n")) == ["tw" + String(repeating: "x", count: 14)])
        #expect(splitter.retainedByteCount == 0)
    }
}
