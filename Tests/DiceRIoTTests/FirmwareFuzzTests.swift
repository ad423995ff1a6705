import DiceRIoT
import Foundation
import Testing

/// Issue 12, item 2: a bogus firmware file never crashes the readers. Each mutated
/// input must either parse or throw a ``FirmwareError``; a bounds or overflow trap
/// would kill the test process. Seeded (SplitMix64), so every run tries the same
/// inputs and a failure reproduces.
@Suite struct FirmwareFuzzTests {
    static let elfFixtures = ["Tiny", "Pad55", "Origin0800", "WindowsMap"].map { Fixtures.bytes("firmware/\($0).ino.elf") }

    /// The Tiny.ino.elf fixture with its `.strtab` (section 5, linked from `.symtab`)
    /// turned into a NOBITS section whose offset lies past the end of the file.
    static func nobitsStringTable() -> [UInt8] {
        var elf = Fixtures.bytes("firmware/Tiny.ino.elf")
        let shoff = Int(le32(elf, 0x20)), shentsize = Int(elf[0x2E]) | Int(elf[0x2F]) << 8
        let strtab = shoff + 5 * shentsize
        precondition(le32(elf, strtab + 4) == 3, "fixture changed: section 5 is not the string table")
        put32(&elf, strtab + 4, 8)  // sh_type = SHT_NOBITS
        put32(&elf, strtab + 16, 0x7FFF_FFF0)  // sh_offset far past the end
        return elf
    }

    @Test("a NOBITS string table past the end of the file is an error, not a crash")
    func nobitsStringTableIsAnError() {
        #expect(throws: FirmwareError.self) { try RIoTImage(elf: Self.nobitsStringTable(), path: "nobits.elf") }
    }

    @Test("a NOBITS symbol table, or a string table running past the end, is an error")
    func otherTableShapes() {
        var elf = Fixtures.bytes("firmware/Tiny.ino.elf")
        let shoff = Int(le32(elf, 0x20))
        put32(&elf, shoff + 4 * 40 + 4, 8)  // .symtab becomes NOBITS
        put32(&elf, shoff + 4 * 40 + 20, 0xFFFF_FFF0)  // with a 4 GiB size
        #expect(throws: FirmwareError.self) { try RIoTImage(elf: elf, path: "nobits-symtab.elf") }
    }

    /// Values that hit the edges: zero, the file size and its neighbours, the top of
    /// the 32-bit range (overflow), NOBITS, SYMTAB and STRTAB section types.
    static func interesting(_ g: inout SplitMix64, fileSize: Int) -> UInt32 {
        let choices: [UInt32] = [0, 1, 2, 3, 8, 16, 40, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFF0, 0xFFFF_FFFF,
                                 UInt32(fileSize), UInt32(fileSize - 1), UInt32(fileSize + 1), UInt32(fileSize / 2)]
        return g.next() % 4 == 0 ? UInt32(truncatingIfNeeded: g.next()) : choices[Int(g.next() % UInt64(choices.count))]
    }

    @Test("10,000 mutated ELF files (header and section table fields, random bytes, truncation) parse or throw")
    func fuzzELF() {
        var g = SplitMix64(seed: 0xE1F_F022)
        var parsed = 0, rejected = 0
        for round in 0..<10_000 {
            var elf = Self.elfFixtures[round % Self.elfFixtures.count]
            let shoff = Int(le32(elf, 0x20)), shnum = Int(elf[0x30]) | Int(elf[0x31]) << 8
            for _ in 0..<(1 + Int(g.next() % 3)) {
                switch g.next() % 5 {
                case 0, 1:  // one field (name, type, flags, addr, offset, size, link, info, align, entsize) of one section
                    let field = shoff + Int(g.next() % UInt64(shnum)) * 40 + Int(g.next() % 10) * 4
                    if field + 4 <= elf.count { put32(&elf, field, Self.interesting(&g, fileSize: elf.count)) }
                case 2:  // e_shoff, or e_shentsize/e_shnum/e_shstrndx
                    if g.next() % 2 == 0 {
                        put32(&elf, 0x20, Self.interesting(&g, fileSize: elf.count))
                    } else {
                        let o = [0x2E, 0x30, 0x32][Int(g.next() % 3)], v = Self.interesting(&g, fileSize: elf.count)
                        elf[o] = UInt8(truncatingIfNeeded: v)
                        elf[o + 1] = UInt8(truncatingIfNeeded: v >> 8)
                    }
                case 3:  // random bytes anywhere
                    for _ in 0..<(1 + Int(g.next() % 8)) {
                        elf[Int(g.next() % UInt64(elf.count))] = UInt8(truncatingIfNeeded: g.next())
                    }
                default:  // truncation
                    elf.removeLast(Int(g.next() % UInt64(elf.count)))
                }
                if elf.count < 0x34 { break }
            }
            do {
                _ = try RIoTImage(elf: elf, path: "fuzz.elf")
                parsed += 1
            } catch {
                rejected += 1
            }
        }
        // The mutations reach both outcomes (a fuzzer that only ever fails the magic check tests nothing).
        #expect(parsed > 0 && rejected > 0, "parsed \(parsed), rejected \(rejected)")
    }

    @Test("3,000 mutated bin+map pairs (addresses, FLASH origin, garbage lines, truncation) parse or throw")
    func fuzzBinAndMap() {
        var g = SplitMix64(seed: 0xB1A_3A9)
        let pairs = ["Tiny", "Origin0800", "WindowsMap", "Pad64"].map {
            (Fixtures.bytes("firmware/\($0).ino.bin"), Fixtures.bytes("firmware/\($0).ino.map"))
        }
        let edgeHex = ["0x0", "0xffffffffffffffff", "0x8000000000000000", "0x10000000000000000", "0x", "0x0800c000",
                       "0x0800c001", "0x7fffffffffffffff", "0xfffffffffffffff0"]
        var parsed = 0, rejected = 0, differentBuilds = 0
        for round in 0..<3000 {
            var (bin, map) = pairs[round % pairs.count]
            for _ in 0..<(1 + Int(g.next() % 3)) {
                switch g.next() % 4 {
                case 0:  // replace one 0x number in the map with an edge value
                    let text = String(decoding: map, as: UTF8.self)
                    let numbers = text.ranges(of: /0x[0-9a-fA-F]+/)
                    if !numbers.isEmpty {
                        let r = numbers[Int(g.next() % UInt64(numbers.count))]
                        map = Array(text.replacingCharacters(in: r, with: edgeHex[Int(g.next() % UInt64(edgeHex.count))]).utf8)
                    }
                case 1:  // random bytes in the map
                    for _ in 0..<(1 + Int(g.next() % 8)) where !map.isEmpty {
                        map[Int(g.next() % UInt64(map.count))] = UInt8(truncatingIfNeeded: g.next())
                    }
                case 2:  // truncate the bin
                    if !bin.isEmpty { bin.removeLast(Int(g.next() % UInt64(bin.count))) }
                default:  // truncate the map
                    if !map.isEmpty { map.removeLast(Int(g.next() % UInt64(map.count))) }
                }
            }
            do {
                _ = try RIoTImage(bin: bin, map: map, binPath: "fuzz.bin", mapPath: "fuzz.map")
                parsed += 1
            } catch {
                rejected += 1
                if case .differentBuilds = error { differentBuilds += 1 }
            }
        }
        #expect(parsed > 0 && rejected > 0, "parsed \(parsed), rejected \(rejected)")
        // Edge values in the map's Reset_Handler or .isr_vector line reach the same-build check.
        #expect(differentBuilds > 0, "no mutation reached the reset-vector check")
    }
}

private func le32(_ b: [UInt8], _ o: Int) -> UInt32 {
    UInt32(b[o]) | UInt32(b[o + 1]) << 8 | UInt32(b[o + 2]) << 16 | UInt32(b[o + 3]) << 24
}

private func put32(_ b: inout [UInt8], _ o: Int, _ v: UInt32) {
    for i in 0..<4 { b[o + i] = UInt8(truncatingIfNeeded: v >> (8 * UInt32(i))) }
}
