import ArgumentParser
@testable import DevKitCLI
import Foundation
import Testing

/// `info`, `autoconfigure` and `set-uds` with plain options are read without ArgumentParser
/// (start-up). What that reader accepts must be exactly what ArgumentParser parses,
/// every property with the same value; what it cannot read as ArgumentParser would is
/// declined and left to ArgumentParser (its texts and exit codes).
@Suite struct PlainCommandLineTests {
    /// Lines read without ArgumentParser. A property wrapper's description is its
    /// value, or `Option(*definition*)` (and so on) when it was never set, so equal
    /// descriptions with no definition left mean equal commands.
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
        ["set-uds", "--port", "/dev/ttyACM0", "--uds-file", "uds.hex"],
        ["set-uds", "--generate-uds", "--save", "/run/devkit/uds.hex", "--json", "--port", "/tmp/tty"],
        ["set-uds", "--generate", "--verbose"],
    ]

    @Test("what is read plainly is what ArgumentParser parses", arguments: Self.acceptedLines)
    func sameAsArgumentParser(line: [String]) throws {
        let plain = try #require(DevKitCommand.parsedPlain(line), "declined: \(line)")
        let parsed = try DevKitCommand.parseAsRoot(line)
        #expect(type(of: plain) == type(of: parsed))
        // runAsRoot runs what it reads plainly on the main thread, synchronously.
        #expect(!(plain is any AsyncParsableCommand))
        #expect(String(reflecting: plain) == String(reflecting: parsed))
        #expect(!String(reflecting: plain).contains("*definition*"), "a property left unset: \(plain)")
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
        ["info", "--port", "-"],
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
        ["set-uds", "--uds-file", "-"],  // standard input: a value that starts with '-'
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
