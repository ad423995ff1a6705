import ArgumentParser
import SerialPort

/// A plain command line, read without ArgumentParser: long options each followed by
/// its value, and flags. Written by hand for start-up alone: ArgumentParser reflects a
/// command's properties on every parse, and each (type, protocol) pair it asks the
/// runtime about for the first time scans all ~12,000 protocol-conformance records of
/// the binary. That is two thirds of the instructions of a failing `devkit info`
/// (Docs/certificate.md, Start-up), and `info`, `autoconfigure` (one run per board a
/// udev rule sees) and `set-uds` are what scripts and the bench run most.
///
/// It only accepts; it never reports. A line it does not read whole and exactly as
/// ArgumentParser would (a short name, `--name=value`, a value other than `-` itself
/// that starts with `-`,
/// a name given twice or unknown, help, version, a value that does not convert, a
/// failed `validate()`) is declined, and ArgumentParser parses it as before: every
/// help text, error text and exit code stays its own. `PlainCommandLineTests` checks
/// that what this accepts is what ArgumentParser parses, value for value.
package struct PlainCommandLine {
    private enum Word {
        case flag
        case value(String)
    }

    // An array, not a dictionary: a handful of names, and a `Dictionary<String, _>`
    // costs one more conformance scan (String: Hashable) when first instantiated.
    private var words: [(name: String, word: Word)] = []
    private var declined = false
    /// Every name a command's reader asked for, in order: the tests compare them with
    /// the command's options as ArgumentParser knows them.
    private(set) var askedNames: [String] = []

    /// Splits `arguments` (without the command's name) into `--name value` and `--name`.
    /// A name followed by a word that does not start with `-` takes it as its value;
    /// whether that was right is checked when the command asks for the name.
    package init(_ arguments: ArraySlice<String>) {
        var rest = arguments
        while let word = rest.popFirst() {
            let name = String(word.dropFirst(2))
            guard word.count > 2, word.hasPrefix("--"), !word.contains("="), !words.contains(where: { $0.name == name })
            else {
                declined = true
                return
            }
            // A lone `-` is a value (standard input: `set-uds --uds-file -`), as it is
            // to ArgumentParser.
            if let next = rest.first, !next.hasPrefix("-") || next == "-" {
                words.append((name, .value(next)))
                rest.removeFirst()
            } else {
                words.append((name, .flag))
            }
        }
    }

    /// Takes `--name`'s word out of the line; nil when the line does not have it.
    private mutating func take(_ name: String) -> Word? {
        askedNames.append(name)
        guard let index = words.firstIndex(where: { $0.name == name }) else { return nil }
        return words.remove(at: index).word
    }

    /// `--name` given alone: true; absent: false.
    package mutating func flag(_ name: String) -> Bool {
        switch take(name) {
        case nil: return false
        case .flag: return true
        case .value: declined = true; return false
        }
    }

    /// `--name VALUE`'s value; nil when absent.
    package mutating func string(_ name: String) -> String? {
        switch take(name) {
        case nil: return nil
        case .value(let value): return value
        case .flag: declined = true; return nil
        }
    }

    /// `--name N`, converted as ArgumentParser converts an `Int` (`Int(argument:)`).
    package mutating func int(_ name: String) -> Int? {
        guard let text = string(name) else { return nil }
        guard let value = Int(argument: text) else {
            declined = true
            return nil
        }
        return value
    }

    /// Whether every word was asked for and read, and `validations` (the `validate()`s
    /// ArgumentParser would run: the option groups', in order, then the command's)
    /// pass; the line is declined if not.
    package func accepts(validating validations: () throws -> Void) -> Bool {
        guard !declined, words.isEmpty else { return false }
        do {
            try validations()
            return true
        } catch {
            return false
        }
    }
}

extension PlainCommandLine {
    /// The command `arguments` name (the first word), read by `read` from the rest.
    package static func command(
        _ arguments: [String], read: (String, inout PlainCommandLine) -> (any ParsableCommand)?
    ) -> (any ParsableCommand)? {
        guard let name = arguments.first else { return nil }
        var line = PlainCommandLine(arguments.dropFirst())
        return read(name, &line)
    }
}

/// The board commands read this way, by name (a switch: a dictionary of them would
/// cost a conformance scan of its own). Only synchronous commands: their runner runs
/// the result on the main thread without asking.
package enum PlainBoardCommands {
    /// The command a plain command line names, read by `PlainCommandLine`; nil when
    /// the command is not one read this way or the line is declined.
    package static func parsed(_ arguments: [String]) -> (any ParsableCommand)? {
        PlainCommandLine.command(arguments, read: read)
    }

    package static func read(_ name: String, _ line: inout PlainCommandLine) -> (any ParsableCommand)? {
        switch name {
        case "info": InfoCommand(plain: &line)
        case "set-uds": SetUDSCommand(plain: &line)
        default: nil
        }
    }
}

extension PortOptions {
    package init(plain line: inout PlainCommandLine) {
        self.init()
        port = line.string("port")
        baud = line.int("baud") ?? SerialPort.defaultBaudRate
    }
}

extension OutputLevelOptions {
    package init(plain line: inout PlainCommandLine) {
        self.init()
        quiet = line.flag("quiet")
        verbose = line.flag("verbose")
    }
}

extension UDSOptions {
    package init(plain line: inout PlainCommandLine) {
        self.init()
        udsFile = line.string("uds-file")
    }
}

extension InfoCommand {
    package init?(plain line: inout PlainCommandLine) {
        self.init()
        port = PortOptions(plain: &line)
        reboot = line.flag("reboot")
        timeout = line.int("timeout")
        json = line.flag("json")
        outputLevel = OutputLevelOptions(plain: &line)
        guard line.accepts(validating: { try port.validate(); try outputLevel.validate(); try validate() }) else {
            return nil
        }
    }
}

extension SetUDSCommand {
    package init?(plain line: inout PlainCommandLine) {
        self.init()
        port = PortOptions(plain: &line)
        udsOptions = UDSOptions(plain: &line)
        generateUDS = line.flag("generate-uds")
        generateAlias = line.flag("generate")
        save = line.string("save")
        json = line.flag("json")
        outputLevel = OutputLevelOptions(plain: &line)
        guard line.accepts(validating: { try port.validate(); try udsOptions.validate(); try outputLevel.validate(); try validate() })
        else {
            return nil
        }
    }
}
