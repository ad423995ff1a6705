import ArgumentParser
@testable import DevKitCLI
import Foundation
import Testing

/// `info` and `autoconfigure` with plain options are read without ArgumentParser
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
    ]

    @Test("a line ArgumentParser must decide is declined", arguments: Self.declinedLines)
    func declined(line: [String]) {
        #expect(DevKitCommand.parsedPlain(line) == nil, "read plainly: \(line)")
    }

    /// Every option the two commands have is one the reader knows: an option added
    /// to them (or renamed) is read by neither until it is added there, and this fails.
    @Test("the reader knows every option of the commands it reads", arguments: [
        (InfoCommand.self as any ParsableCommand.Type, ["info"]),
        (AutoconfigureCommand.self as any ParsableCommand.Type, ["autoconfigure", "--profile", "p.toml"]),
    ])
    func knowsEveryOption(command: any ParsableCommand.Type, base: [String]) throws {
        let dump = try JSONDecoder().decode(HelpDump.self, from: Data(command._dumpHelp().utf8))
        let arguments = (dump.command.arguments ?? []).filter {
            !($0.names ?? []).contains { ["help", "version"].contains($0.name) }
        }
        #expect(arguments.count >= 5)
        for argument in arguments {
            #expect(argument.kind != "positional", "a positional argument is not read plainly")
            let long = try #require(argument.names?.first { $0.kind == "long" }?.name)
            var line = long == "profile" ? [base[0]] : base
            line += argument.kind == "flag" ? ["--\(long)"] : ["--\(long)", "9600"]
            if long == "timeout" { line.append("--reboot") }
            #expect(DevKitCommand.parsedPlain(line) != nil, "--\(long) is not read plainly: \(line)")
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
