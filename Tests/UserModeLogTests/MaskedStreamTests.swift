import Testing
@testable import UserModeLog

@Suite("MaskedStream: a board's bytes shown as they come, secrets never")
struct MaskedStreamTests {
    static let uds = String(repeating: "0123456789abcdef", count: 4)

    /// Feeds `text` in pieces of `size` bytes with a quiet spell (flushPartial)
    /// after each; returns all that was shown and the lines.
    static func run(_ text: String, pieces size: Int) -> (shown: String, lines: [String]) {
        var stream = MaskedStream()
        var shown: [UInt8] = []
        var lines: [String] = []
        let bytes = Array(text.utf8)
        var i = 0
        while i < bytes.count {
            let piece = bytes[i..<min(i + size, bytes.count)]
            let (out, done) = stream.feed(piece)
            shown += out
            lines += done
            shown += stream.flushPartial()
            i += size
        }
        let (out, last) = stream.finish()
        shown += out
        if let last { lines.append(last) }
        return (String(decoding: shown, as: UTF8.self), lines)
    }

    @Test("a UDS and a SharedAccessKey never appear, whatever the chunking and quiet spells", arguments: [1, 2, 3, 7, 64, 4096])
    func secretsMaskedAtEveryChunking(size: Int) {
        let text = "boot\r\nUDS: \(Self.uds)\r\nHostName=h.net;DeviceId=d;SharedAccessKey=c2VjcmV0a2V5;x=1\r\nprompt> "
        let (shown, lines) = Self.run(text, pieces: size)
        #expect(!shown.contains(Self.uds))
        #expect(!shown.contains("0123456789abcdef0123"))
        #expect(!shown.contains("c2VjcmV0"))
        #expect(!shown.contains("c2V"))
        #expect(shown.contains("UDS: ***"))
        #expect(shown.contains("SharedAccessKey=***;x=1"))
        #expect(lines == ["boot", "UDS: ***", "HostName=h.net;DeviceId=d;SharedAccessKey=***;x=1", "prompt> "])
        // Shown exactly once, in order: line ends kept, the unfinished prompt at the end.
        #expect(shown == "boot\r\nUDS: ***\r\nHostName=h.net;DeviceId=d;SharedAccessKey=***;x=1\r\nprompt> ")
    }

    @Test("an unfinished line is shown after a quiet spell up to a possible secret, the rest at its end")
    func partialLines() {
        var stream = MaskedStream()
        #expect(stream.feed(Array("Connecting".utf8)).shown.isEmpty)
        #expect(String(decoding: stream.flushPartial(), as: UTF8.self) == "Connecting")
        #expect(stream.feed(Array("... abc".utf8)).shown.isEmpty)
        // `abc` could be the start of a hex secret: held back.
        #expect(String(decoding: stream.flushPartial(), as: UTF8.self) == "... ")
        let (shown, lines) = stream.feed(Array(" done\r\n".utf8))
        #expect(String(decoding: shown, as: UTF8.self) == "abc done\r\n")
        #expect(lines == ["Connecting... abc done"])
    }

    @Test("control characters from the board are escaped; line ends pass")
    func controlCharacters() {
        var stream = MaskedStream()
        let (shown, lines) = stream.feed(Array("\u{1B}[2Jcleared\u{07}\r\n".utf8))
        #expect(String(decoding: shown, as: UTF8.self) == "\\u{1B}[2Jcleared\\u{7}\r\n")
        #expect(lines == ["\u{1B}[2Jcleared\u{07}"])
    }
}
