import DevKitTestSupport
import Foundation
import Testing

/// One spelling per idea (issue 12, item 14): the new names in help, the old ones
/// still accepted but hidden, and ArgumentParser's usage errors with devkit's prefix.
@Suite("Option spelling and the one error prefix")
struct OptionSpellingTests {
    @Test("help shows the new names and not the old ones", arguments: [
        ("set-uds", "--generate-uds", ["--generate "]),
        ("set-wifi", "--wifi-password-file", ["--password-file"]),
        ("set-connection-string", "--connection-string-file", ["--file "]),
    ])
    func helpNames(command: String, new: String, old: [String]) throws {
        let result = try ConsoleCLIProcess.run([command, "--help"])
        #expect(result.status == 0)
        #expect(result.stdout.contains(new))
        // `--password-file` is a substring of `--wifi-password-file`: look for it
        // as a word of its own.
        let words = result.stdout.split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "[" || $0 == "]" })
        for name in old {
            let bare = name.trimmingCharacters(in: .whitespaces)
            #expect(!words.contains(Substring(bare)), "\(command) --help still shows \(bare)")
        }
    }

    @Test("usage lines name the main options", arguments: [
        ("set-uds", "--uds-file"), ("set-wifi", "--ssid"), ("set-connection-string", "--connection-string-file"),
    ])
    func usageLine(command: String, option: String) throws {
        let result = try ConsoleCLIProcess.run([command, "--help"])
        let usage = result.stdout.components(separatedBy: "\n\n").first { $0.hasPrefix("USAGE:") } ?? ""
        #expect(usage.contains(option), "\(usage)")
        #expect(!usage.contains("<options>"))
    }

    @Test("every usage line names options, not only <options>", arguments: [
        ["provision"], ["console"], ["info"], ["set-uds"], ["set-wifi"], ["set-connection-string"], ["cert"],
        ["list"], ["autoconfigure"], ["watch"], ["registry", "list"], ["registry", "show"],
        ["registry", "export"], ["registry", "reissue"], ["emulate"],
    ])
    func everyUsageNamesOptions(command: [String]) throws {
        let result = try ConsoleCLIProcess.run(command + ["--help"])
        let usage = result.stdout.components(separatedBy: "\n\n").first { $0.hasPrefix("USAGE:") } ?? ""
        #expect(usage.contains("--"), "\(command): \(usage)")
    }

    @Test("old names still work (they reach the file check, not a usage error)", arguments: [
        ["set-wifi", "--port", "/x", "--ssid", "lab", "--password-file", "/nonexistent/pw"],
        ["set-connection-string", "--port", "/x", "--file", "/nonexistent/cs"],
        ["set-wifi", "--port", "/x", "--ssid", "lab", "--wifi-password-file", "/nonexistent/pw"],
        ["set-connection-string", "--port", "/x", "--connection-string-file", "/nonexistent/cs"],
    ])
    func oldNamesWork(arguments: [String]) throws {
        let result = try ConsoleCLIProcess.run(arguments)
        #expect(result.status == 66, "\(arguments): \(result.stderr)")
        #expect(result.stderr.contains("cannot read /nonexistent/"))
    }

    @Test func generateAliasStillWorksAndConflictsAreUsage() throws {
        // --generate with --uds-file is the same conflict as --generate-uds with it.
        for flag in ["--generate", "--generate-uds"] {
            let both = try ConsoleCLIProcess.run(["set-uds", "--port", "/x", flag, "--uds-file", "f"])
            #expect(both.status == 64)
            #expect(both.stderr.contains("--generate-uds"))
            // Alone it passes validation and fails on the port.
            let alone = try ConsoleCLIProcess.run(["set-uds", "--port", "/nonexistent/port", flag, "--save", "/nonexistent/dir/u.hex"])
            #expect(alone.status != 64, "\(flag): \(alone.stderr)")
        }
        let twice = try ConsoleCLIProcess.run(["set-wifi", "--port", "/x", "--ssid", "s", "--password-file", "a", "--wifi-password-file", "b"])
        #expect(twice.status == 64)
    }

    @Test("ArgumentParser's validation errors carry devkit's prefix and exit 64", arguments: [
        ["set-uds", "--port", "/x"],
        ["set-wifi", "--no-such-option"],
        ["set-connection-string", "--port", "/x"],
        ["no-such-command"],
    ])
    func validationPrefix(arguments: [String]) throws {
        let result = try ConsoleCLIProcess.run(arguments)
        #expect(result.status == 64, "\(arguments): \(result.stderr)")
        #expect(result.stderr.hasPrefix("devkit: error: "), "\(result.stderr)")
        #expect(!result.stderr.contains("Error: "))
    }

    /// ArgumentParser wraps help text at 80 columns by breaking at a space, which
    /// would cut an example in two without a `\`: every example line fits, and a
    /// line indented further continues one that ends in `\` or `|` (copy-paste works).
    @Test("examples never wrap inside a command", arguments: [
        ["provision"], ["console"], ["info"], ["set-uds"], ["set-wifi"], ["set-connection-string"], ["cert"],
        ["list"], ["autoconfigure"], ["watch"], ["registry"], ["registry", "list"], ["registry", "show"],
        ["registry", "export"], ["registry", "reissue"], ["emulate"],
    ])
    func examplesFit(command: [String]) throws {
        let result = try ConsoleCLIProcess.run(command + ["--help"])
        #expect(result.status == 0)
        let lines = result.stdout.components(separatedBy: "\n")
        guard let start = lines.firstIndex(where: { $0.hasSuffix("Examples:") }) else { return }
        var previous = ""
        for line in lines[(start + 1)...] {
            if line.trimmingCharacters(in: .whitespaces).isEmpty { break }
            #expect(line.count <= 79, "\(command): \(line)")
            #expect(line.hasPrefix("  "), "\(command): a wrapped example: \(line)")
            if line.hasPrefix("   ") {
                #expect(previous.hasSuffix("\\") || previous.hasSuffix("|"), "\(command): \(previous) / \(line)")
            }
            previous = line
        }
    }
}
