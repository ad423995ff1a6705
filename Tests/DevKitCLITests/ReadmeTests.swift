import Foundation
import Testing

/// Issue 12, item 17: the README as a newcomer reads it.
@Suite("README")
struct ReadmeTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()

    static func readme() throws -> String {
        try String(contentsOf: root.appendingPathComponent("README.md"), encoding: .utf8)
    }

    /// The text of the section under `heading` (up to the next `## `).
    static func section(_ heading: String, in text: String) -> String? {
        guard let start = text.range(of: "\n## \(heading)\n") else { return nil }
        let rest = text[start.upperBound...]
        return String(rest[..<(rest.range(of: "\n## ")?.lowerBound ?? rest.endIndex)])
    }

    @Test("install, how it works, the jargon and troubleshooting are there; setup keeps its two commands")
    func newcomerSections() throws {
        let text = try Self.readme()
        let install = try #require(Self.section("Install", in: text))
        #expect(install.contains("swift build -c release --static-swift-stdlib"))
        // Issue 12 item 16: the install script, for a user and system-wide, how to
        // enable completion, and the man pages.
        #expect(install.contains("Scripts/install.sh --prefix ~/.local"))
        #expect(install.contains("sudo env PATH=\"$PATH\" Scripts/install.sh --binary .build/release/devkit"))
        for shell in ["bash:", "zsh:", "fish:"] { #expect(install.contains("- \(shell)"), "\(shell)") }
        #expect(install.contains("man devkit-provision"))
        let how = try #require(Self.section("How it works", in: text))
        for word in ["**UDS**", "**CDI**", "**DeviceID**", "**Alias**", "**Registration ID**", "DPS", "console", "certificate"] {
            #expect(how.contains(word), "\(word)")
        }
        let trouble = try #require(Self.section("Troubleshooting", in: text))
        for topic in ["dialout", "ModemManager", "user mode", "no answer from the board", "Invalid certificate",
                      "firmware was rebuilt", "version or MAC"] {
            #expect(trouble.contains(topic), "\(topic)")
        }
        let setup = try #require(Self.section("Setup: two commands", in: text))
        #expect(setup.contains("Scripts/demo.sh     # the main job: builds devkit, provisions the virtual DevKit end to end"))
        #expect(setup.contains("Scripts/test.sh     # the tests: builds everything and runs every test"))
        // Measurements belong under Benchmarks.
        #expect(!setup.contains(" ms"), "\(setup)")
        #expect(try #require(Self.section("Benchmarks", in: text)).contains("`--version` 1.80-1.96 ms"))
    }

    @Test("every relative link points to a file in the repository")
    func linksResolve() throws {
        let text = try Self.readme()
        let regex = try NSRegularExpression(pattern: #"\]\(([^)#]+)(#[^)]*)?\)"#)
        let matches = regex.matches(in: text, range: NSRange(text.startIndex..., in: text))
        #expect(!matches.isEmpty)
        for match in matches {
            let target = String(text[Range(match.range(at: 1), in: text)!])
            #expect(!target.contains("://"), "external link \(target)")
            #expect(FileManager.default.fileExists(atPath: Self.root.appendingPathComponent(target).path), "\(target)")
        }
    }
}
