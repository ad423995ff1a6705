/// Just enough of an ELF32 little-endian reader to find symbols and read section
/// bytes. No package available here parses ELF, so this is written by hand; every
/// offset is bounds-checked so a truncated or garbled file is an error, not a crash.
struct ELFFile {
    private let bytes: [UInt8]
    private let path: String
    private let sections: [Section]

    struct Section {
        let name: UInt32
        let type: UInt32
        let flags: UInt32
        let address: UInt32
        let offset: UInt32
        let size: UInt32
        let link: UInt32
        let entrySize: UInt32
    }

    private static let symtabType: UInt32 = 2
    private static let nobitsType: UInt32 = 8
    private static let allocFlag: UInt32 = 0x2

    init(bytes: [UInt8], path: String) throws(FirmwareError) {
        self.bytes = bytes
        self.path = path
        guard bytes.count >= 52 else { throw .malformedELF(file: path, detail: "file is \(bytes.count) bytes, shorter than an ELF header (truncated?)") }
        guard bytes[0] == 0x7F, bytes[1] == 0x45, bytes[2] == 0x4C, bytes[3] == 0x46 else {
            throw .malformedELF(file: path, detail: "no ELF magic number")
        }
        guard bytes[4] == 1 else { throw .malformedELF(file: path, detail: "not a 32-bit ELF (class \(bytes[4]))") }
        guard bytes[5] == 1 else { throw .malformedELF(file: path, detail: "not little-endian (data encoding \(bytes[5]))") }
        let shoff = Int(Self.u32(bytes, 0x20))
        let shentsize = Int(Self.u16(bytes, 0x2E))
        let shnum = Int(Self.u16(bytes, 0x30))
        guard shnum > 0 else { throw .malformedELF(file: path, detail: "no section headers (stripped?)") }
        guard shentsize >= 40 else { throw .malformedELF(file: path, detail: "section header size \(shentsize) is too small") }
        guard shoff <= bytes.count, shnum * shentsize <= bytes.count - shoff else {
            throw .malformedELF(file: path, detail: "section headers at offset \(shoff) run past the end of the file (truncated?)")
        }
        var sections = [Section]()
        sections.reserveCapacity(shnum)
        for i in 0..<shnum {
            let o = shoff + i * shentsize
            sections.append(
                Section(
                    name: Self.u32(bytes, o), type: Self.u32(bytes, o + 4), flags: Self.u32(bytes, o + 8),
                    address: Self.u32(bytes, o + 12), offset: Self.u32(bytes, o + 16),
                    size: Self.u32(bytes, o + 20), link: Self.u32(bytes, o + 24),
                    entrySize: Self.u32(bytes, o + 36)))
        }
        // NOBITS sections (.bss) occupy no file bytes, so their offset and size are
        // not checked here; nothing is ever read from one (see ``contents(of:_:)``).
        for s in sections where s.type != Self.nobitsType {
            guard UInt64(s.offset) + UInt64(s.size) <= UInt64(bytes.count) else {
                throw .malformedELF(file: path, detail: "a section runs past the end of the file (truncated?)")
            }
        }
        self.sections = sections
    }

    /// The file bytes a section's contents occupy; an error for a NOBITS section (it
    /// has no bytes in the file, whatever its offset says) or one past the end. The
    /// sum is computed in UInt64, so no offset + size can overflow.
    private func contents(of s: Section, _ what: String) throws(FirmwareError) -> Range<Int> {
        guard s.type != Self.nobitsType else {
            throw .malformedELF(file: path, detail: "the \(what) is a NOBITS section: it has no bytes in the file")
        }
        let end = UInt64(s.offset) + UInt64(s.size)
        guard end <= UInt64(bytes.count) else {
            throw .malformedELF(file: path, detail: "the \(what) runs past the end of the file (truncated?)")
        }
        return Int(s.offset)..<Int(end)
    }

    /// The value of a symbol from `.symtab` (the last definition wins, as in the map).
    func symbolValue(_ name: String) throws(FirmwareError) -> UInt64 {
        guard let symtab = sections.first(where: { $0.type == Self.symtabType }) else {
            throw .malformedELF(file: path, detail: "no symbol table (stripped?)")
        }
        guard Int(symtab.link) < sections.count else {
            throw .malformedELF(file: path, detail: "the symbol table's string table index is out of range")
        }
        // Both tables are read from the file: each must lie inside it. Every read
        // below stays in these ranges, so a garbled table is an error, not a crash.
        let symbols = try contents(of: symtab, "symbol table")
        let strings = try contents(of: sections[Int(symtab.link)], "symbol table's string table")
        let entrySize = symtab.entrySize == 0 ? 16 : Int(symtab.entrySize)
        guard entrySize >= 16 else { throw .malformedELF(file: path, detail: "symbol entry size \(entrySize) is too small") }
        let wanted = Array(name.utf8)
        var result: UInt64?
        let count = symbols.count / entrySize
        for i in 0..<count {
            let o = symbols.lowerBound + i * entrySize  // o + entrySize <= symbols.upperBound
            let nameOffset = Int(Self.u32(bytes, o))
            guard nameOffset < strings.count else { continue }
            if matches(wanted, at: strings.lowerBound + nameOffset, limit: strings.upperBound) {
                result = UInt64(Self.u32(bytes, o + 4))
            }
        }
        guard let result else { throw .missingSymbol(file: path, symbol: name) }
        return result
    }

    /// The bytes of [start, stop) from the loaded section that contains the range.
    func bytes(from start: UInt64, to stop: UInt64, rangeName: String) throws(FirmwareError) -> [UInt8] {
        guard start <= stop else {
            throw .rangeOutsideImage(file: path, range: rangeName, detail: "the range ends before it starts")
        }
        for s in sections where s.flags & Self.allocFlag != 0 && s.type != Self.nobitsType && s.size > 0 {
            let base = UInt64(s.address), end = base + UInt64(s.size)
            if start >= base && stop <= end {
                let range = try contents(of: s, "loaded section holding the \(rangeName) range")
                let from = range.lowerBound + Int(start - base)  // start - base < s.size
                return Array(bytes[from..<from + Int(stop - start)])  // ends by range.upperBound
            }
        }
        throw .rangeOutsideImage(
            file: path, range: rangeName,
            detail: "no loaded section holds 0x\(String(start, radix: 16))..0x\(String(stop, radix: 16))")
    }

    /// Whether a NUL-terminated `wanted` is at `start`; `limit` (the string table's
    /// end) is within the file, so every byte compared is too.
    private func matches(_ wanted: [UInt8], at start: Int, limit: Int) -> Bool {
        guard start + wanted.count < limit, limit <= bytes.count else { return false }
        for (i, c) in wanted.enumerated() where bytes[start + i] != c { return false }
        return bytes[start + wanted.count] == 0
    }

    private static func u16(_ b: [UInt8], _ o: Int) -> UInt16 {
        guard o + 2 <= b.count else { return 0 }
        return UInt16(b[o]) | UInt16(b[o + 1]) << 8
    }

    /// The little-endian word at `o` (0 past the end): also the `.bin`'s reset vector.
    static func u32(_ b: [UInt8], _ o: Int) -> UInt32 {
        guard o + 4 <= b.count else { return 0 }
        return UInt32(b[o]) | UInt32(b[o + 1]) << 8 | UInt32(b[o + 2]) << 16 | UInt32(b[o + 3]) << 24
    }
}
