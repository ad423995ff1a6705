import DevKitTestSupport
import Testing

/// A top-level command without subcommands of its own is parsed by that command
/// alone (start-up: ArgumentParser then reflects one command, not the tree); whatever
/// does not parse that way is parsed again from the root. Help, version, completion
/// and usage errors must read as the whole tree's: `devkit <command>` in the usage,
/// the root's `--version`, 64 for a usage error.
@Suite struct CommandDispatchTests {
    static let leaves = [
        "provision", "console", "info", "set-uds", "set-wifi", "set-connection-string", "cert", "verify",
        "list", "monitor", "autoconfigure", "watch", "emulate-dps", "emulate",
    ]

    @Test("help names the whole command", arguments: Self.leaves)
    func help(command: String) throws {
        let r = try TestProcess.run([try TestProcess.devkitBinary, command, "--help"], timeout: 60)
        #expect(r.status == 0)
        #expect(r.stdout.contains("USAGE: devkit \(command)"), "\(r.stdout)")
        #expect(r.stderr.isEmpty, "\(r.stderr)")
    }

    @Test("a bad command line is a usage error naming the whole command", arguments: Self.leaves)
    func unknownOption(command: String) throws {
        let r = try TestProcess.run([try TestProcess.devkitBinary, command, "--no-such-option"], timeout: 60)
        #expect(r.status == 64)
        #expect(r.stdout.isEmpty)
        // Some commands' own checks come first (e.g. set-uds: "Give exactly one of ...").
        #expect(r.stderr.hasPrefix("devkit: error: "), "\(r.stderr)")
        #expect(r.stderr.contains("Usage: devkit \(command)"), "\(r.stderr)")
        #expect(r.stderr.contains("See 'devkit \(command) --help' for more information."), "\(r.stderr)")
    }

    /// The version belongs to the root; after a command's name it is still answered.
    @Test("--version after a command's name is the root's", arguments: ["info", "cert", "watch"])
    func versionAfterCommand(command: String) throws {
        let r = try TestProcess.run([try TestProcess.devkitBinary, command, "--version"], timeout: 60)
        #expect(r.status == 0)
        #expect(r.stdout == "0.1.0\n")
    }

    /// `help <command>` and nested commands still go through the root.
    @Test func helpSubcommandAndNestedCommands() throws {
        let help = try TestProcess.run([try TestProcess.devkitBinary, "help", "info"], timeout: 60)
        #expect(help.status == 0)
        #expect(help.stdout.contains("USAGE: devkit info"), "\(help.stdout)")
        let nested = try TestProcess.run([try TestProcess.devkitBinary, "registry", "list", "--help"], timeout: 60)
        #expect(nested.status == 0)
        #expect(nested.stdout.contains("USAGE: devkit registry list"), "\(nested.stdout)")
        // A command's name that is not the first argument is an argument, as before.
        let extra = try TestProcess.run([try TestProcess.devkitBinary, "info", "help"], timeout: 60)
        #expect(extra.status == 64)
        #expect(extra.stderr.contains("Usage: devkit info"), "\(extra.stderr)")
    }

    /// The completion script is the whole tree's, wherever the flag is given.
    @Test func completionScriptAfterACommand() throws {
        let root = try TestProcess.run(
            [try TestProcess.devkitBinary, "--generate-completion-script", "bash"], timeout: 60)
        let after = try TestProcess.run(
            [try TestProcess.devkitBinary, "info", "--generate-completion-script", "bash"], timeout: 60)
        #expect(root.status == 0)
        #expect(after.status == root.status)
        #expect(after.stdout == root.stdout)
        #expect(root.stdout.contains("set-connection-string"))
    }
}
