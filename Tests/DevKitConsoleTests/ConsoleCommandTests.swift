import DevKitModel
import Testing
@testable import DevKitConsole

@Suite("Command lines: validation, quoting, echo")
struct ConsoleCommandTests {
    @Test("quote() round-trips through the console tokenizer for every string over {a, space, \", \\} up to 6 bytes")
    func quotingRoundTrips() throws {
        let alphabet: [Character] = ["a", " ", "\"", "\\"]
        var strings = [""]
        var frontier = [""]
        for _ in 0..<6 {
            frontier = frontier.flatMap { s in alphabet.map { s + String($0) } }
            strings += frontier
        }
        #expect(strings.count == 5461)
        for argument in strings where !argument.isEmpty {
            let line = Array("set_wifissid ".utf8) + ConsoleTokenizer.quote(argument)
            let words = try ConsoleTokenizer.words(line).get()
            #expect(words == [Array("set_wifissid".utf8), Array(argument.utf8)], "argument \(argument.debugDescription)")
        }
    }

    @Test func tokenizerFollowsTheFirmware() throws {
        func words(_ s: String) -> [String]? {
            (try? ConsoleTokenizer.words(Array(s.utf8)).get())?.map { String(decoding: $0, as: UTF8.self) }
        }
        #expect(words("set_wifissid \"my home\"") == ["set_wifissid", "my home"])
        #expect(words("a\\ b c") == ["a b", "c"])
        #expect(words("a\\\"b") == ["a\"b"])
        #expect(words("a\\b") == ["a\\b"])
        #expect(words("  a   b  ") == ["a", "b"])
        #expect(words("\"\"") == [""])
        #expect(words("\"ab\"cd") == ["ab", "cd"])
        #expect(words("ab\"cd") == ["ab\"cd"])
        #expect(words("\"unterminated") == nil)
        #expect(words("") == [])
    }

    @Test func linesAreQuoted() throws {
        #expect(try ConsoleCommand.setWiFiSSID("My \"Home\" Net").line() == Array("set_wifissid My\\ \\\"Home\\\"\\ Net".utf8))
        #expect(try ConsoleCommand.version.line() == Array("version".utf8))
        #expect(try ConsoleCommand.setWiFiPassword(.openNetwork).line() == Array("set_wifipwd".utf8))
        #expect(try ConsoleCommand.setDPSUDS(UDS(hex: Board.uds)).line() == Array(("set_dps_uds " + Board.uds.lowercased()).utf8))
        #expect(try ConsoleCommand.enableSecure(level: 2, key: "abc").line() == Array("enable_secure 2 abc".utf8))
    }

    @Test func echoMasksSecretArguments() {
        let line = Array(("set_dps_uds " + Board.uds).utf8)
        #expect(ConsoleTokenizer.echo(of: line) == Array("set_dps_uds ".utf8) + Array(repeating: 0x2A, count: 64))
        #expect(ConsoleTokenizer.echo(of: Array("set_wifipwd a b".utf8)) == Array("set_wifipwd ***".utf8))
        #expect(ConsoleTokenizer.echo(of: Array("set_wifissid a b".utf8)) == Array("set_wifissid a b".utf8))
        #expect(ConsoleTokenizer.echo(of: Array("set_wifipwd".utf8)) == Array("set_wifipwd".utf8))
        #expect(ConsoleTokenizer.echo(of: Array("set_az_iothub HostName=x".utf8)) == Array("set_az_iothub HostName=x".utf8))
    }

    @Test("local validation", arguments: [
        (ConsoleCommand.setWiFiSSID(""), "empty"),
        (.setWiFiSSID(String(repeating: "s", count: 32)), "at most 31"),
        (.setWiFiSSID("tab\there"), "control character"),
        (.setIoTHubConnectionString(try! ConnectionString(String(repeating: " ", count: 511))), "line buffer holds 1023"),
        (.enableSecure(level: -1, key: nil), "non-negative"),
        (.enableSecure(level: 1, key: ""), "empty"),
    ])
    func validation(command: ConsoleCommand, reason: String) {
        #expect {
            _ = try command.line()
        } throws: { error in
            guard case .invalidArgument(let name, let why) = error as? ConsoleError else { return false }
            return name == command.name && why.contains(reason)
        }
    }

    /// Secrets are checked where they are parsed, here from a typed line.
    @Test("local secret validation", arguments: [
        ("set_dps_uds " + String(Board.uds.dropLast()), "64 hex"),
        ("set_dps_uds " + String(Board.uds.dropLast()) + "g", "non-hex"),
        ("set_dps_uds " + Board.uds + "0", "64 hex"),
        ("set_wifipwd " + String(repeating: "p", count: 64), "at most 63"),
        ("set_wifipwd new\nline", "control character"),
        ("set_az_iothub " + String(repeating: "c", count: 512), "at most 511"),
        ("set_az_iotdps \"\"", "empty"),
    ])
    func secretValidation(line: String, reason: String) {
        let name = String(line.prefix { $0 != " " })
        #expect {
            _ = try ConsoleCommand(parsing: line)
        } throws: { error in
            guard case .invalidArgument(let command, let why) = error as? ConsoleError else { return false }
            return command == name && why.contains(reason) && !why.contains(Board.uds)
        }
    }

    @Test func limitsAreInclusive() throws {
        _ = try ConsoleCommand.setWiFiSSID(String(repeating: "s", count: 31)).line()
        _ = try ConsoleCommand.setWiFiSSID("é" + String(repeating: "s", count: 29)).line()
        _ = try ConsoleCommand.setWiFiPassword(WiFiPassword(String(repeating: "p", count: 63))).line()
        _ = try ConsoleCommand.setIoTHubConnectionString(ConnectionString(String(repeating: "c", count: 511))).line()
        #expect(throws: ConsoleError.self) { try ConsoleCommand.setWiFiSSID("é" + String(repeating: "s", count: 30)).line() }
    }

    @Test func validationMessagesHoldNoSecret() {
        let secret = String(repeating: "k", count: 70)
        for line in ["set_dps_uds " + secret, "set_wifipwd " + secret, "set_az_iothub " + secret + String(repeating: "x", count: 500)] {
            do {
                _ = try ConsoleCommand(parsing: line)
                Issue.record("\(line.prefix(12)) accepted")
            } catch {
                #expect(!"\(error)".contains(secret))
            }
        }
        let shortSecret = String(secret.prefix(40))
        for command in [ConsoleCommand.setWiFiPassword(try! WiFiPassword(shortSecret)), .setIoTHubConnectionString(try! ConnectionString(shortSecret))] {
            #expect(!command.redactedDescription.contains(shortSecret))
            #expect(!String(describing: command).contains(shortSecret))
        }
    }

    @Test func parsingTypedLines() throws {
        #expect(try ConsoleCommand(parsing: "version") == .version)
        #expect(try ConsoleCommand(parsing: "set_wifissid \"my net\"") == .setWiFiSSID("my net"))
        #expect(try ConsoleCommand(parsing: "set_wifipwd") == .setWiFiPassword(.openNetwork))
        #expect(try ConsoleCommand(parsing: "enable_secure 2 key") == .enableSecure(level: 2, key: "key"))
        #expect(throws: ConsoleError.self) { try ConsoleCommand(parsing: "set_dps_uds 1234") }
        #expect(throws: ConsoleError.self) { try ConsoleCommand(parsing: "frobnicate") }
        #expect(throws: ConsoleError.self) { try ConsoleCommand(parsing: "version extra") }
        // The user's unbalanced quote is their argument's fault, said as such, not a devkit bug.
        let error = #expect(throws: ConsoleError.self) { try ConsoleCommand(parsing: "set_wifissid \"open") }
        #expect(error.map { "\($0)" }?.contains("a quote is not closed") == true)
        #expect(error.map { "\($0)" }?.contains("devkit bug") == false)
    }
}
