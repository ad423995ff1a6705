@testable import DevKitBoardCLI
import ArgumentParser
@testable import DevKitCLI
import Foundation
import Testing

/// `info`, `autoconfigure` and `set-uds` with plain options are read without ArgumentParser
/// (start-up; what is declined: PlainCommandLine). What that reader accepts must be
/// exactly what ArgumentParser parses, every property with the same value.
///
/// Serialized: both parses run `OutputLevelOptions.validate()`, which sets the
/// process's output level (once, on the main thread, in devkit itself).
@Suite(.serialized) struct PlainCommandLineTests {
    /// Lines read without ArgumentParser. A property wrapper's description is its
    /// value, or `Option(*definition*)` (and so on) when it was never set, so equal
    /// descriptions, byte for byte, with no definition left mean equal commands.
    static let acceptedLines: [[String]] = [
        ["info"],
        ["info", "--port", "/dev/ttyACM0"],
        ["info", "--port", "/dev/serial/by-id/usb-STMicroelectronics_STM32_STLink_0672FF-if02", "--json"],
        ["info", "--json", "--port", "/tmp/ttyDevKit", "--baud", "57600", "--quiet"],
        ["info", "--port", "/nonexistent", "--reboot", "--timeout", "5", "--verbose"],
        ["info", "--reboot", "--port", ""],
        ["autoconfigure", "--profile", "bench.toml"],
        ["autoconfigure", "--port", "/dev/ttyACM3", "--profile", "/etc/devkit/profile.toml", "--json"],
        ["autoconfigure", "--profile", "p.toml", "--registry", "postgresql://devkit@db:5432/devkit",
         "--key-file", "/etc/devkit/registry.key", "--station", "bench-2", "--quiet", "--baud", "115200"],
        ["autoconfigure", "--profile", "p.toml", "--registry", "postgresql://devkit@db/devkit",
         "--registry-password-file", "/etc/devkit/pg.password"],
        ["set-uds", "--port", "/dev/ttyACM0", "--uds-file", "uds.hex"],
        ["set-uds", "--generate-uds", "--save", "/run/devkit/uds.hex", "--json", "--port", "/tmp/tty"],
        ["set-uds", "--generate", "--verbose"],
        ["info", "--port", "/dev/caf\u{E9}"],
        ["info", "--port", "/dev/cafe\u{301}"],
        ["info", "--port", "a=b", "--baud", "+9600"],
        ["info", "--port", "port"],
        ["info", "--port", "help", "--reboot", "--timeout", "05"],
        ["autoconfigure", "--profile", "", "--verbose"],
        // A lone `-` is a value to ArgumentParser too (standard input for --uds-file).
        ["set-uds", "--port", "/dev/ttyACM0", "--uds-file", "-"],
        ["info", "--port", "-"],
    ]

    @Test("what is read plainly is what ArgumentParser parses", arguments: Self.acceptedLines)
    func sameAsArgumentParser(line: [String]) throws {
        OutputLevel.current = .normal
        let plain = try #require(DevKitCommand.parsedPlain(line), "declined: \(line)")
        let level = line.contains("--quiet") ? OutputLevel.quiet : line.contains("--verbose") ? .verbose : .normal
        #expect(OutputLevel.current == level)
        OutputLevel.current = .normal
        let parsed = try DevKitCommand.parseAsRoot(line)
        #expect(OutputLevel.current == level)
        OutputLevel.current = .normal
        #expect(type(of: plain) == type(of: parsed))
        // runAsRoot runs what it reads plainly on the main thread, synchronously.
        #expect(!(plain is any AsyncParsableCommand))
        #expect(Array(String(reflecting: plain).utf8) == Array(String(reflecting: parsed).utf8))
        #expect(!String(reflecting: plain).contains("*definition*"), "a property left unset: \(plain)")
    }

    /// Every line of up to three words over each command's option names and awkward
    /// values (with autoconfigure's required --profile first, and without): declined,
    /// or parsed by ArgumentParser to the same command. This is what catches an
    /// accepted line ArgumentParser would refuse, e.g. an option group's `validate()`
    /// a reader forgot.
    @Test("short lines over the options and awkward values: declined, or ArgumentParser's parse")
    func generatedLines() throws {
        defer { OutputLevel.current = .normal }
        let values = ["", "x", "-", "--", "-1", "9600", "+9600", "0", "a=b", "--help", "--x=y", "cafe\u{301}"]
        var accepted = 0
        for (name, command) in Self.readCommands {
            let dump = try JSONDecoder().decode(HelpDump.self, from: Data(command._dumpHelp().utf8))
            let options = (dump.command.arguments ?? []).flatMap { ($0.names ?? []).map { $0.kind == "long" ? "--" + $0.name : "-" + $0.name } }
            let words = options + values
            var lines: [[String]] = [[]]
            for _ in 0..<3 { lines += lines.filter { $0.count == lines.last!.count }.flatMap { line in words.map { line + [$0] } } }
            let prefixes: [[String]] = name == "autoconfigure" ? [[name], [name, "--profile", "p.toml"]] : [[name]]
            for prefix in prefixes {
                for words in lines {
                    let line = prefix + words
                    guard let plain = DevKitCommand.parsedPlain(line) else { continue }
                    accepted += 1
                    guard let parsed = try? DevKitCommand.parseAsRoot(line) else {
                        Issue.record("read plainly, refused by ArgumentParser: \(line)")
                        continue
                    }
                    #expect(Array(String(reflecting: plain).utf8) == Array(String(reflecting: parsed).utf8), "\(line)")
                }
            }
        }
        #expect(accepted > 400)
    }

    /// Lines ArgumentParser reads differently, refuses, or answers with help:
    /// declined, so its own parse (and texts) decide.
    static let declinedLines: [[String]] = [
        [],
        ["provision", "--port", "/dev/ttyACM0"],
        ["info", "--help"],
        ["info", "-h"],
        ["info", "--version"],
        ["info", "--generate-completion-script", "bash"],
        ["info", "--port=/dev/ttyACM0"],
        ["info", "--port"],
        ["info", "--port", "--json"],
        ["info", "--port", "a", "--port", "b"],
        ["info", "--json", "extra"],
        ["info", "--json", "--json"],
        ["info", "--baud", "fast"],
        ["info", "--timeout", "-1", "--reboot"],
        ["info", "--timeout", "5"],  // validate(): --timeout needs --reboot
        ["info", "--quiet", "--verbose"],  // validate() of the option group
        ["info", "--no-such-option"],
        ["info", "--"],
        ["info", "-"],
        ["autoconfigure"],  // --profile is required
        ["autoconfigure", "--profile", "p.toml", "--station", ""],  // StationOptions.validate()
        ["autoconfigure", "--profile", "p.toml", "--reboot"],
        ["set-uds", "--port", "/dev/ttyACM0"],  // validate(): a UDS source is required
        ["set-uds", "--uds-file", "u.hex", "--generate-uds"],
        ["set-uds", "--uds-file", "u.hex", "--save", "s.hex"],
        ["set-uds", "--uds-file", ""],  // UDSOptions.validate()
    ]

    @Test("a line ArgumentParser must decide is declined", arguments: Self.declinedLines)
    func declined(line: [String]) {
        #expect(DevKitCommand.parsedPlain(line) == nil, "read plainly: \(line)")
    }

    /// The commands read plainly, and no others: each one's reader asks for exactly
    /// the long names its options have in ArgumentParser (hidden ones included), so an
    /// option added or renamed later fails here until the reader knows it.
    static let readCommands: [(name: String, type: any ParsableCommand.Type)] = [
        ("info", InfoCommand.self), ("autoconfigure", AutoconfigureCommand.self), ("set-uds", SetUDSCommand.self),
    ]

    @Test("each reader asks for exactly the options ArgumentParser knows")
    func readersKnowEveryOption() throws {
        for (name, command) in Self.readCommands {
            let dump = try JSONDecoder().decode(HelpDump.self, from: Data(command._dumpHelp().utf8))
            var longNames: [String] = []
            for argument in dump.command.arguments ?? [] {
                #expect(argument.kind != "positional", "\(name): a positional argument is not read plainly")
                longNames += (argument.names ?? []).filter { $0.kind == "long" }.map(\.name)
            }
            var line = PlainCommandLine([])
            _ = DevKitCommand.readPlain(name, &line)
            #expect(Set(line.askedNames) == Set(longNames).subtracting(["help", "version"]), "\(name)")
            #expect(line.askedNames.count == Set(line.askedNames).count, "\(name) asks for a name twice")
        }
        // Every other top-level command is left to ArgumentParser (it asks for nothing).
        for subcommand in DevKitCommand.configuration.subcommands {
            let name = try #require(subcommand.configuration.commandName)
            guard !Self.readCommands.contains(where: { $0.name == name }) else { continue }
            var line = PlainCommandLine([])
            #expect(DevKitCommand.readPlain(name, &line) == nil)
            #expect(line.askedNames.isEmpty, "\(name) is read plainly: add it to readCommands")
        }
    }

    /// The part of ArgumentParser's `--experimental-dump-help` JSON this test reads.
    struct HelpDump: Decodable {
        struct Command: Decodable { let arguments: [Argument]? }
        struct Argument: Decodable {
            struct Name: Decodable { let kind: String; let name: String }
            let kind: String
            let names: [Name]?
        }
        let command: Command
    }
}
