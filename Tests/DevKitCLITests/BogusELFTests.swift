import DevKitTestSupport
import Foundation
import Testing

/// Issue 12, item 2, end to end: a bogus ELF (its string table a NOBITS section past
/// the end of the file) exits 65 with the file named, never a crash.
@Suite struct BogusELFTests {
    @Test func nobitsStringTableExits65() throws {
        let dir = registryTestDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var elf = try Array(Data(contentsOf: URL(fileURLWithPath: HugeInputTests.firmware + "/Tiny.ino.elf")))
        let shoff = Int(elf[0x20]) | Int(elf[0x21]) << 8 | Int(elf[0x22]) << 16 | Int(elf[0x23]) << 24
        let strtab = shoff + 5 * 40  // .strtab, linked from .symtab
        try #require(elf[strtab + 4] == 3)
        elf[strtab + 4] = 8  // SHT_NOBITS
        elf.replaceSubrange(strtab + 16..<strtab + 20, with: [0xF0, 0xFF, 0xFF, 0x7F])  // offset far past the end
        try Data(elf).write(to: URL(fileURLWithPath: dir + "/bogus.elf"))
        try (HugeInputTests.uds + "\n").write(toFile: dir + "/u.hex", atomically: false, encoding: .utf8)
        let r = try TestProcess.run(
            [TestProcess.devkitBinary, "cert", "--elf", dir + "/bogus.elf", "--uds-file", dir + "/u.hex",
             "--registration-id", "x", "--output-dir", dir + "/out"], timeout: 120)
        #expect(r.signal == nil, "killed by signal \(r.signal ?? 0)")
        #expect(r.status == 65, "exit \(r.status): \(r.stderr.suffix(300))")
        #expect(r.stderr.contains("bogus.elf") && r.stderr.contains("NOBITS"), "\(r.stderr.suffix(300))")
    }
}
