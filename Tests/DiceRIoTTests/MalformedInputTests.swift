import Foundation
import Testing
@testable import DiceRIoT

/// Every malformed firmware input is a typed error naming the file and problem.
@Suite("Malformed firmware inputs")
struct MalformedInputTests {
    let bin = Fixtures.bytes("firmware/Tiny.ino.bin")
    let map = String(decoding: Fixtures.bytes("firmware/Tiny.ino.map"), as: UTF8.self)
    let elf = Fixtures.bytes("firmware/Tiny.ino.elf")

    private func image(map text: String, bin: [UInt8]? = nil) throws(FirmwareError) -> RIoTImage {
        try RIoTImage(bin: bin ?? self.bin, map: Array(text.utf8), binPath: "t.bin", mapPath: "t.map")
    }

    /// The map with the value on the line of `symbol` replaced.
    private func map(setting symbol: String, to value: String) -> String {
        map.split(separator: "\n", omittingEmptySubsequences: false).map { line in
            line.contains("\(symbol) = .") ? "                \(value)                        \(symbol) = ." : String(line)
        }.joined(separator: "\n")
    }

    private func map(without needle: String) -> String {
        map.split(separator: "\n", omittingEmptySubsequences: false).filter { !$0.contains(needle) }.joined(separator: "\n")
    }

    @Test("a missing symbol line", arguments: RIoTImage.Symbol.allCases)
    func missingSymbol(symbol: RIoTImage.Symbol) {
        #expect(throws: FirmwareError.missingSymbol(file: "t.map", symbol: symbol.rawValue)) {
            try image(map: map(without: "\(symbol.rawValue) = ."))
        }
    }

    /// A `.bin` and a `.map` of two builds: the image's reset vector is not where the map
    /// puts Reset_Handler (the ranges would be cut from the wrong bytes).
    @Test func binAndMapOfDifferentBuilds() throws {
        var other = bin
        other[4] = 0x11  // the reset vector 0x0800c009 becomes 0x0800c011
        let refusal = FirmwareError.differentBuilds(
            bin: "t.bin", map: "t.map", resetVector: 0x0800_c011, resetHandler: 0x0800_c008, flashOrigin: 0x0800_c000)
        #expect(throws: refusal) { try image(map: map, bin: other) }
        #expect(refusal.description == "t.bin does not match t.map: the image's reset vector is 0x800c011 but the map "
            + "puts Reset_Handler at 0x800c008, so they are not from the same build (or the .bin does not start at the "
            + "FLASH origin 0x800c000); give the .bin and .map one build wrote (or its .elf alone)")
        // The same build, CRLF line ends: no objection.
        _ = try image(map: map)
        _ = try image(map: map.replacingOccurrences(of: "\n", with: "\r\n"))
        // A map that lists neither the symbol nor the table is not checked.
        _ = try image(map: self.map(without: "                Reset_Handler"), bin: other)
        _ = try image(map: self.map(without: ".isr_vector"), bin: other)
        // The section line and a cross reference name Reset_Handler too, but carry no symbol address.
        let noisy = map + "\n .text.Reset_Handler\n                0x0800c010        0xc startup.o\nReset_Handler                                     startup.o\n"
        _ = try image(map: noisy)
    }

    /// A `.bin` much longer than the FLASH image its `.map` describes (a larger
    /// build's image with a small build's map, whose reset vectors happen to agree:
    /// walkthrough, helper-118) is refused; a trailer up to 4 KiB and every fixture
    /// pair, LF or CRLF, pass.
    @Test func aBinLongerThanItsMapsImageIsRefused() throws {
        let large = Fixtures.bytes("firmware/DevKitDPS.ino.bin")
        #expect(throws: FirmwareError.imageLongerThanMap(bin: "t.bin", map: "t.map", size: large.count, mapped: 574)) {
            try image(map: map, bin: large)
        }
        _ = try image(map: map, bin: bin + [UInt8](repeating: 0xFF, count: 4096))
        #expect(throws: FirmwareError.imageLongerThanMap(bin: "t.bin", map: "t.map", size: 574 + 4097, mapped: 574)) {
            try image(map: map, bin: bin + [UInt8](repeating: 0xFF, count: 4097))
        }
        for name in ["DevKitDPS", "Origin0800", "Pad55", "Pad56", "Pad64", "Tiny", "WindowsMap"] {
            let pairBin = Fixtures.bytes("firmware/\(name).ino.bin")
            let pairMap = Fixtures.bytes("firmware/\(name).ino.map")
            let parsed = try MapFile(contents: pairMap, path: name)
            #expect(parsed.flashImageBytes?.lowerBound == UInt64(pairBin.count), "\(name)")
            _ = try RIoTImage(bin: pairBin, map: pairMap)
            let crlf = String(decoding: pairMap, as: UTF8.self).replacingOccurrences(of: "\n", with: "\r\n")
            _ = try RIoTImage(bin: pairBin, map: Array(crlf.utf8))
        }
        // .data loaded into FLASH after .text widens the bound by its size; a map
        // without a FLASH length is not checked.
        let withData = map.replacingOccurrences(
            of: ".data           0x200001c4        0x0 load address 0x0800c23e",
            with: ".data           0x200001c4      0x100 load address 0x0800c240")
        #expect(try MapFile(contents: Array(withData.utf8), path: "d").flashImageBytes == 574...(0x240 + 0x100))
        // Any name at the start of a line in the memory map is an output section
        // (`riot_fw` from a script that names it so), on one line or two; a .bss's load
        // address does not widen the bound (the .bin holds none of it); the Memory
        // Configuration's FLASH line is no section.
        let named = map.replacingOccurrences(
            of: ".data           0x200001c4        0x0 load address 0x0800c23e",
            with: "riot_tail       0x0800c240     0x2000\n\na_very_long_output_section_name\n                0x0800e240      0x100\n"
                + ".data           0x200001c4        0x0 load address 0x0800c23e")
        #expect(try MapFile(contents: Array(named.utf8), path: "n").flashImageBytes == 0x2340...0x2340)
        _ = try image(map: named, bin: bin + [UInt8](repeating: 0, count: 0x2340 - 574))
        let bss = map.replacingOccurrences(
            of: ".bss            0x200001c4        0x0 load address 0x0800c23e",
            with: ".bss            0x200001c4     0x9c40 load address 0x0800c23e")
        #expect(try MapFile(contents: Array(bss.utf8), path: "b").flashImageBytes == 574...574)
        let noLength = map.replacingOccurrences(of: "0x000f4000", with: "")
        #expect(try MapFile(contents: Array(noLength.utf8), path: "n").flashImageBytes == nil)
        _ = try image(map: noLength, bin: large)
    }

    /// The vector table where the map puts it, not necessarily at the image's start.
    @Test func theVectorTableIsReadWhereTheMapPutsIt() throws {
        var shifted = bin
        // The table moved 8 bytes in: its reset word at offset 12 (a header before it).
        shifted[12..<16] = shifted[4..<8]
        shifted[4..<8] = [0, 0, 0, 0]
        let moved = map.replacingOccurrences(of: " .isr_vector    0x0800c000", with: " .isr_vector    0x0800c008")
        _ = try image(map: moved, bin: shifted)
        #expect(throws: FirmwareError.self) { try image(map: map, bin: shifted) }
    }

    @Test func noFlashLine() {
        #expect(throws: FirmwareError.noFlashLine(file: "t.map")) { try image(map: map(without: "FLASH            0x")) }
    }

    @Test func rangePastEndOfBin() {
        #expect {
            try image(map: map, bin: Array(bin.prefix(bin.count - 1)))
        } throws: { error in
            guard case FirmwareError.rangeOutsideImage(let file, let range, _) = error else { return false }
            return file == "t.bin" && range == "RIoT FW"
        }
    }

    @Test func reversedRange() {
        // __stop_riot_core (0x0800c238) before __start_riot_core.
        #expect(throws: FirmwareError.emptyOrReversedRange(file: "t.bin", range: "RIoT Core", start: 0x0800_c214, stop: 0x0800_c210)) {
            try image(map: map(setting: "__stop_riot_core", to: "0x0800c210"))
        }
    }

    @Test func emptyRange() {
        #expect(throws: FirmwareError.emptyOrReversedRange(file: "t.bin", range: "RIoT FW", start: 0x0800_c238, stop: 0x0800_c238)) {
            try image(map: map(setting: "__stop_riot_fw", to: "0x0800c238"))
        }
    }

    @Test func coreUnderEightBytes() {
        #expect(throws: FirmwareError.coreTooShort(file: "t.bin", length: 7)) {
            try image(map: map(setting: "__stop_riot_core", to: "0x0800c21b"))
        }
        // Exactly 8 is accepted.
        #expect(throws: Never.self) { try image(map: map(setting: "__stop_riot_core", to: "0x0800c21c")) }
    }

    @Test("the last matching line wins, and CRLF line ends are read")
    func lastMatchWinsAndCRLF() throws {
        let reference = try image(map: map)
        // An earlier, wrong definition is overridden by the real one after it.
        let decoy = "                0x0800c000                        __start_riot_core = .\n"
        let withDecoy = map.replacingFirst("Linker script and memory map", with: decoy + "Linker script and memory map")
        #expect(try image(map: withDecoy) == reference)
        let crlf = map.split(separator: "\n", omittingEmptySubsequences: false).joined(separator: "\r\n")
        #expect(try image(map: crlf) == reference)
    }

    @Test("the value is the number at the first 0x of the line")
    func firstHexOnLine() throws {
        let line = "                0x0800c214   0x0800c000   __start_riot_core = ."
        let edited = map.split(separator: "\n", omittingEmptySubsequences: false).map {
            $0.contains("__start_riot_core = .") ? line : String($0)
        }.joined(separator: "\n")
        #expect(try image(map: edited) == image(map: map))
    }

    @Test("truncated ELF files are errors, never crashes", arguments: [0, 3, 4, 40, 51, 52, 100, 1000, 2000, 4000, 5000])
    func truncatedELF(length: Int) {
        #expect(throws: FirmwareError.self) { try RIoTImage(elf: Array(elf.prefix(length)), path: "t.elf") }
    }

    @Test func notAnELF() {
        #expect(throws: FirmwareError.malformedELF(file: "m.map", detail: "no ELF magic number")) {
            try RIoTImage(elf: Fixtures.bytes("firmware/Tiny.ino.map"), path: "m.map")
        }
    }

    @Test("garbled ELF bytes never crash the reader")
    func garbledELF() {
        var generator = SplitMix64(seed: 0x5EED)
        for _ in 0..<2000 {
            var bytes = elf
            for _ in 0..<8 {
                let i = Int(generator.next() % UInt64(bytes.count))
                bytes[i] = UInt8(truncatingIfNeeded: generator.next())
            }
            _ = try? RIoTImage(elf: bytes, path: "g.elf")
        }
    }

    @Test func errorMessagesNameFileAndSymbol() {
        let message = "\(FirmwareError.missingSymbol(file: "a/b.map", symbol: "__stop_riot_fw"))"
        #expect(message.contains("a/b.map") && message.contains("__stop_riot_fw"))
    }
}

/// A small deterministic generator so the garbling test is repeatable.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

extension String {
    func replacingFirst(_ target: String, with replacement: String) -> String {
        guard let range = range(of: target) else { return self }
        return replacingCharacters(in: range, with: replacement)
    }
}
