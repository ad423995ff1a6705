import ArgumentParser
import DevKitBoardCLI

extension DevKitCommand {
    /// The command a plain command line names (see `PlainCommandLine`): `autoconfigure`
    /// here, the board commands through `PlainBoardCommands`; nil when the line is
    /// declined or the command is not read this way.
    static func parsedPlain(_ arguments: [String]) -> (any ParsableCommand)? {
        PlainCommandLine.command(arguments, read: readPlain)
    }

    static func readPlain(_ name: String, _ line: inout PlainCommandLine) -> (any ParsableCommand)? {
        name == "autoconfigure" ? AutoconfigureCommand(plain: &line) : PlainBoardCommands.read(name, &line)
    }
}

extension RegistryOptions {
    init(plain line: inout PlainCommandLine) {
        self.init()
        path = line.string("registry")
        keyFile = line.string("key-file")
        passwordFile = line.string("registry-password-file")
    }
}

extension StationOptions {
    init(plain line: inout PlainCommandLine) {
        self.init()
        station = line.string("station")
    }
}

extension AutoconfigureCommand {
    init?(plain line: inout PlainCommandLine) {
        self.init()
        port = PortOptions(plain: &line)
        registry = RegistryOptions(plain: &line)
        station = StationOptions(plain: &line)
        let profile = line.string("profile")
        json = line.flag("json")
        outputLevel = OutputLevelOptions(plain: &line)
        // Required: a line without it is ArgumentParser's to refuse.
        guard let profile else { return nil }
        self.profile = profile
        guard line.accepts(validating: {
            try port.validate(); try registry.validate(); try station.validate(); try outputLevel.validate()
            try validate()
        }) else {
            return nil
        }
    }
}
