@testable import DevKitBoardCLI
@testable import DevKitCLI
import DevKitRegistry
import DevKitTestSupport
import Foundation
import Testing

/// One label style (issue 12, item 14): every command that prints labelled values
/// for people (`info`, `cert`, `registry show`, the result of `provision`) prints
/// `Label:  value`, the colon after the label, the values of a block in one column
/// at least two spaces after the longest label's colon.
@Suite("One label style", .serialized, .timeLimit(.minutes(5)))
struct LabelStyleTests {
    /// Checks `lines` form one labelled block in the style; `indent` before each label.
    static func expectOneStyle(_ lines: [String], indent: String = "", _ what: String,
                               sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(!lines.isEmpty, "\(what): no labelled lines", sourceLocation: sourceLocation)
        var columns: Set<Int> = []
        var longest = 0
        for line in lines {
            guard line.hasPrefix(indent), let colon = line.firstIndex(of: ":") else {
                Issue.record("\(what): not a labelled line: \(line.debugDescription)", sourceLocation: sourceLocation)
                continue
            }
            let label = line[line.index(line.startIndex, offsetBy: indent.count)..<colon]
            #expect(!label.isEmpty && label.last != " ", "\(what): \(line.debugDescription)", sourceLocation: sourceLocation)
            longest = max(longest, indent.count + label.count)
            let value = line[line.index(after: colon)...].prefix { $0 == " " }.count
            columns.insert(line.distance(from: line.startIndex, to: colon) + 1 + value)
        }
        #expect(columns.count == 1, "\(what): values in columns \(columns.sorted()): \(lines)", sourceLocation: sourceLocation)
        #expect(columns.first == longest + 3, "\(what): two spaces after the longest label's colon: \(lines)",
                sourceLocation: sourceLocation)
    }

    @Test func labelledLinesAlignsAndEscapes() {
        let text = labelledLines([("ID", "1"), ("Registration ID", "az-1"), ("Error", "lost\nState:  done\u{202E}")], indent: "  ")
        let pad = { (label: String) in label + ":" + String(repeating: " ", count: 17 - label.count) }
        #expect(text == "  \(pad("ID"))1\n  \(pad("Registration ID"))az-1\n  \(pad("Error"))lost\\nState:  done\\u{202E}")
    }

    @Test func certPrintsOneLabelledBlock() throws {
        let ws = try CertCommandTests.Workspace()
        defer { ws.remove() }
        let r = try TestProcess.run(
            [try TestProcess.devkitBinary, "cert", "--bin", CertCommandTests.firmware + "/Tiny.ino.bin",
             "--map", CertCommandTests.firmware + "/Tiny.ino.map", "--uds-file", ws.path + "/uds.hex",
             "--registration-id", "label-1", "--output-dir", ws.path + "/out"], timeout: 120)
        #expect(r.status == 0, "\(r.stderr)")
        Self.expectOneStyle(r.stdoutLines, "cert")
        #expect(r.stdoutLines.contains { $0.hasPrefix("Registration ID:") && $0.hasSuffix(" label-1") }, "\(r.stdout)")
    }

    @Test func infoRegistryShowAndProvisionResult() throws {
        let cli = ProvisionCLITests()
        let (v, dir, kit) = try cli.setup()
        defer { kit.stop(); try? FileManager.default.removeItem(atPath: dir) }
        let info = try TestProcess.run([try TestProcess.devkitBinary, "info", "--port", kit.devicePath], timeout: 120)
        #expect(info.status == 0, "\(info.stderr)")
        Self.expectOneStyle(info.stdoutLines, "info")

        let provision = try RegistryCLIProcess.run(cli.provisionArgs(v, dir, kit) + ["--uds-file", dir + "/board.uds"])
        #expect(provision.status == 0, "\(provision.stderr)")
        let lines = provision.stdout.components(separatedBy: "\n")
        let start = try #require(lines.firstIndex { $0.hasPrefix("Board #") && $0.hasSuffix(" provisioned.") }, "\(provision.stdout)")
        let end = try #require(lines.firstIndex(of: "Create the enrollment with:"), "\(provision.stdout)")
        Self.expectOneStyle(Array(lines[(start + 1)..<end]), indent: "  ", "provision")

        let show = try RegistryCLIProcess.run(["registry", "show", "1", "--registry", dir + "/registry.sqlite"])
        #expect(show.status == 0, "\(show.stderr)")
        Self.expectOneStyle(show.stdout.components(separatedBy: "\n").filter { !$0.isEmpty }, "registry show")
    }
}
