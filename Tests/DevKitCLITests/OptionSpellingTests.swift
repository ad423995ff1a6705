import DevKitTestSupport
import Foundation
import Testing

/// One spelling per idea (issue 12, item 14): the new names in help, the old ones
/// still accepted but hidden, and ArgumentParser's usage errors with devkit's prefix.
@Suite("Option spelling and the one error prefix")
struct OptionSpellingTests {
    /// The root and every command, as their help is asked for.
    static let everyCommand: [[String]] = [
        [], ["provision"], ["console"], ["info"], ["set-uds"], ["set-wifi"], ["set-connection-string"], ["cert"], ["verify"],
        ["list"], ["autoconfigure"], ["watch"], ["registry"], ["registry", "list"], ["registry", "show"],
        ["registry", "export"], ["registry", "reissue"], ["emulate"], ["emulate-dps"],
        ["dps"], ["dps", "enroll"], ["dps", "show"], ["dps", "list"], ["dps", "status"], ["dps", "delete"],
    ]

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
        ["provision"], ["console"], ["info"], ["set-uds"], ["set-wifi"], ["set-connection-string"], ["cert"], ["verify"],
        ["list"], ["autoconfigure"], ["watch"], ["registry", "list"], ["registry", "show"],
        ["registry", "export"], ["registry", "reissue"], ["emulate"], ["emulate-dps"],
        ["dps", "enroll"], ["dps", "show"], ["dps", "list"], ["dps", "status"], ["dps", "delete"],
    ])
    func everyUsageNamesOptions(command: [String]) throws {
        let result = try ConsoleCLIProcess.run(command + ["--help"])
        let usage = result.stdout.components(separatedBy: "\n\n").first { $0.hasPrefix("USAGE:") } ?? ""
        #expect(usage.contains("--"), "\(command): \(usage)")
    }

    /// ArgumentParser prints a usage line as it is, however long: at 80 columns a
    /// terminal would wrap it mid-option. Every command's usage lines fit.
    @Test("usage lines fit 80 columns", arguments: Self.everyCommand)
    func usageFits(command: [String]) throws {
        let r = try TestProcess.run(
            [try TestProcess.devkitBinary] + command + ["--help"], environment: ["COLUMNS": "80"], timeout: 120)
        let usage = r.stdout.components(separatedBy: "\n\n").first { $0.hasPrefix("USAGE:") } ?? ""
        #expect(!usage.isEmpty, "\(command): \(r.stdout)")
        for line in usage.components(separatedBy: "\n") {
            #expect(line.count <= 80, "\(command): \(line.count) columns: \(line)")
        }
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
        ["provision"], ["console"], ["info"], ["set-uds"], ["set-wifi"], ["set-connection-string"], ["cert"], ["verify"],
        ["list"], ["autoconfigure"], ["watch"], ["registry"], ["registry", "list"], ["registry", "show"],
        ["registry", "export"], ["registry", "reissue"], ["emulate"], ["emulate-dps"],
        ["dps"], ["dps", "enroll"], ["dps", "show"], ["dps", "list"], ["dps", "status"], ["dps", "delete"],
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

    /// Help rendered at 80 columns (`COLUMNS=80`, a default terminal): every example
    /// command, an indented line starting with `devkit `, in any command's help
    /// (also `Example:` blocks and the root), is whole. It fits; the line after it
    /// continues it only when it ends in `\` or `|` and is indented further; else
    /// that line is blank or the next line of the block. ArgumentParser
    /// wraps a line that is too long at a space, and the rest would start the next
    /// line at the margin: a command cut in two, which copy-paste would run half of.
    @Test("every example is a whole command at 80 columns", arguments: Self.everyCommand)
    func examplesAreWholeCommands(command: [String]) throws {
        let r = try TestProcess.run(
            [try TestProcess.devkitBinary] + command + ["--help"], environment: ["COLUMNS": "80"], timeout: 120)
        #expect(r.status == 0, "\(r.stderr)")
        let lines = r.stdout.components(separatedBy: "\n")
        func indent(_ line: String) -> Int { line.prefix { $0 == " " }.count }
        var examples = 0
        var i = 0
        while i < lines.count {
            let line = lines[i]
            if line.hasPrefix("USAGE:") {  // the usage block is not an example
                while i < lines.count && !lines[i].isEmpty { i += 1 }
                continue
            }
            let margin = indent(line)
            guard margin >= 2, line.dropFirst(margin).hasPrefix("devkit ") else {
                i += 1
                continue
            }
            examples += 1
            var end = i
            while lines[end].hasSuffix("\\") || lines[end].hasSuffix("|"), end + 1 < lines.count {
                end += 1
                #expect(indent(lines[end]) > margin, "\(command): \(lines[end - 1]) / \(lines[end])")
            }
            for piece in lines[i...end] { #expect(piece.count <= 80, "\(command): too long: \(piece)") }
            // Next: a blank line or another line of the block. Not a line at the
            // margin (where ArgumentParser puts the rest of a line it wrapped), nor
            // one indented further without a `\` or `|` before it.
            if end + 1 < lines.count {
                let next = lines[end + 1]
                let fine = next.trimmingCharacters(in: .whitespaces).isEmpty || indent(next) == margin
                #expect(fine, "\(command): the example \(lines[i...end]) goes on in \(next.debugDescription)")
            }
            i = end + 1
        }
        if !command.isEmpty && command != ["registry"] {
            #expect(examples > 0, "\(command): no example found in \(r.stdout)")
        }
    }
}
