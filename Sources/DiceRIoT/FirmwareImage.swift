import DevKitModel
/// The two byte ranges of a firmware image that the DICE layer measures (Docs/certificate.md §1–§2).
public struct RIoTImage: Sendable, Equatable {
    /// [`__start_riot_core`, `__stop_riot_core`): hashed with `Hd` into the CDI.
    public let core: [UInt8]
    /// [`__start_riot_fw`, `__stop_riot_fw`): hashed with SHA-256 into the FWID.
    public let firmware: [UInt8]
    /// Where the RIoT Core lies in flash, when read from a map or ELF (the firmware
    /// prints both addresses at boot: `The riot_core start address: %p`).
    public private(set) var coreAddresses: Range<UInt64>?

    /// The firmware refuses to measure a RIoT Core shorter than this.
    public static let minimumCoreLength = 8
    /// How much longer than its map's FLASH image a `.bin` may be (a trailer a
    /// post-link step appends).
    static let trailerAllowance: UInt64 = 4096

    public init(core: [UInt8], firmware: [UInt8]) {
        self.core = core
        self.firmware = firmware
    }

    /// The symbols that bound the two ranges.
    public enum Symbol: String, Sendable, CaseIterable {
        case startCore = "__start_riot_core"
        case stopCore = "__stop_riot_core"
        case startFirmware = "__start_riot_fw"
        case stopFirmware = "__stop_riot_fw"
    }

    /// Reads the ranges from an Arduino build's `.bin` (FLASH image from its origin)
    /// and the GNU ld `.map` beside it.
    public init(bin: [UInt8], map: [UInt8], binPath: String = "<bin>", mapPath: String = "<map>") throws(FirmwareError) {
        let parsed = try MapFile(contents: map, path: mapPath)
        // A Cortex-M vector table's second word is the reset handler's address (bit 0
        // set: Thumb). Where the map gives both the table's place and Reset_Handler, the
        // image must agree: a map of another build would cut the wrong bytes out of this
        // image, a certificate the board never presents, found only at registration. A
        // check, not a proof: builds whose startup code did not move pass it.
        if let reset = parsed.resetHandler, let table = parsed.vectorTable, table >= parsed.flashOrigin,
           bin.count >= 8, table - parsed.flashOrigin <= UInt64(bin.count - 8)  // its first two words in the image
        {
            let vector = UInt64(ELFFile.u32(bin, Int(table - parsed.flashOrigin) + 4))
            guard vector & ~1 == reset & ~1 else {
                throw .differentBuilds(
                    bin: binPath, map: mapPath, resetVector: vector, resetHandler: reset, flashOrigin: parsed.flashOrigin)
            }
        }
        // The map also says how much FLASH its build fills: a .bin far longer than that
        // is another, larger build's (its bytes at the map's addresses are not the
        // RIoT ranges). A post-link step may append a trailer (a checksum, a
        // signature), so up to `trailerAllowance` bytes more pass; a shorter .bin is
        // left to the range checks below (a NOLOAD region placed in FLASH would make
        // a lower bound refuse a good image).
        if let most = parsed.flashImageBytes?.upperBound, UInt64(bin.count) > most,
           UInt64(bin.count) - most > Self.trailerAllowance
        {
            throw .imageLongerThanMap(bin: binPath, map: mapPath, size: bin.count, mapped: most)
        }
        func range(_ start: Symbol, _ stop: Symbol, _ name: String) throws(FirmwareError) -> [UInt8] {
            let s = try parsed.address(of: start), e = try parsed.address(of: stop)
            guard s >= parsed.flashOrigin else {
                throw .rangeOutsideImage(file: binPath, range: name, detail: "\(start.rawValue) = 0x\(String(s, radix: 16)) is below the FLASH origin 0x\(String(parsed.flashOrigin, radix: 16))")
            }
            return try Self.slice(bin, from: s - parsed.flashOrigin, to: e &- parsed.flashOrigin, start: start, stop: stop, startAddress: s, stopAddress: e, name: name, file: binPath)
        }
        let core = try range(.startCore, .stopCore, "RIoT Core")
        let firmware = try range(.startFirmware, .stopFirmware, "RIoT FW")
        try self.init(checking: core, firmware, file: binPath)
        coreAddresses = try parsed.address(of: .startCore)..<parsed.address(of: .stopCore)
    }

    /// Reads the ranges from the linked `.elf` alone: the symbol table gives the four
    /// addresses, the loadable section that holds them gives the bytes.
    public init(elf: [UInt8], path: String = "<elf>") throws(FirmwareError) {
        let file = try ELFFile(bytes: elf, path: path)
        func range(_ start: Symbol, _ stop: Symbol, _ name: String) throws(FirmwareError) -> [UInt8] {
            let s = try file.symbolValue(start.rawValue), e = try file.symbolValue(stop.rawValue)
            guard e > s else {
                throw .emptyOrReversedRange(file: path, range: name, start: s, stop: e)
            }
            return try file.bytes(from: s, to: e, rangeName: name)
        }
        let core = try range(.startCore, .stopCore, "RIoT Core")
        let firmware = try range(.startFirmware, .stopFirmware, "RIoT FW")
        try self.init(checking: core, firmware, file: path)
        coreAddresses = try file.symbolValue(Symbol.startCore.rawValue)..<file.symbolValue(Symbol.stopCore.rawValue)
    }

    private init(checking core: [UInt8], _ firmware: [UInt8], file: String) throws(FirmwareError) {
        guard core.count >= Self.minimumCoreLength else {
            throw .coreTooShort(file: file, length: core.count)
        }
        self.init(core: core, firmware: firmware)
    }

    private static func slice(
        _ bin: [UInt8], from: UInt64, to: UInt64, start: Symbol, stop: Symbol,
        startAddress: UInt64, stopAddress: UInt64, name: String, file: String
    ) throws(FirmwareError) -> [UInt8] {
        guard stopAddress > startAddress else {
            throw .emptyOrReversedRange(file: file, range: name, start: startAddress, stop: stopAddress)
        }
        guard to <= UInt64(bin.count) else {
            throw .rangeOutsideImage(
                file: file, range: name,
                detail: "\(stop.rawValue) is at offset \(to) but the image has only \(bin.count) bytes; is this the .bin of the same build as the .map?")
        }
        return Array(bin[Int(from)..<Int(to)])
    }
}

/// The parts of a GNU ld map file that locate the RIoT ranges.
struct MapFile {
    let flashOrigin: UInt64
    /// How many bytes from the FLASH origin a `.bin` of this build holds: at least the
    /// end of every output section placed in FLASH, at most the end of those loaded
    /// into FLASH from elsewhere as well (`.data`'s initial values; a NOLOAD section
    /// such as `.bss` lists a load address too, which only widens the bound). Nil
    /// when the map gives no FLASH length or no section in it.
    private(set) var flashImageBytes: ClosedRange<UInt64>?
    /// The `Reset_Handler` symbol's address, where the map lists it.
    private(set) var resetHandler: UInt64?
    /// Where `.isr_vector` (the vector table) lies, where the map lists it.
    private(set) var vectorTable: UInt64?
    private var addresses: [RIoTImage.Symbol: UInt64] = [:]
    private let path: String

    /// Scans the map line by line (`\n` or `\r\n`). For every pattern the *last*
    /// matching line wins, as in the reference tool; its value is the hex number that
    /// starts at the first `0x` of the line.
    init(contents: [UInt8], path: String) throws(FirmwareError) {
        self.path = path
        let flashKey = Array("FLASH            0x".utf8)  // FLASH + 12 spaces
        let symbolKeys = RIoTImage.Symbol.allCases.map { ($0, Array("\($0.rawValue) = .".utf8)) }
        var origin: UInt64?
        var lineNumber = 0
        var lineStart = 0
        var found: [RIoTImage.Symbol: UInt64] = [:]
        let resetKey = Array("Reset_Handler".utf8)
        let vectorKey = Array(".isr_vector".utf8)
        var reset: UInt64?
        var vector: UInt64?
        var flashLength: UInt64?
        // Output sections, in the memory map (after its heading): a name at the start
        // of a line (any name: `.text`, or `riot_core` from a script that names it so),
        // its address and size after it or, for a long name, on the next line; then
        // maybe `load address 0x…`. Lines at the start that are not sections (LOAD,
        // OUTPUT(…), START GROUP, the cross-reference table) have no two numbers there.
        var inMemoryMap = false
        var sections: [(address: UInt64, size: UInt64, load: UInt64?)] = []
        var pendingName: [UInt8]?
        func section(_ name: some Collection<UInt8>, _ tokens: ArraySlice<Slice<UnsafeBufferPointer<UInt8>>>) {
            let t = Array(tokens)
            guard t.count >= 2, let address = hexToken(t[0]), let size = hexToken(t[1]) else { return }
            var load: UInt64?
            // A section that holds no initial values (NOLOAD: .bss, a heap, a stack)
            // lists a load address too, though the .bin has none of it.
            let lower = String(decoding: name, as: UTF8.self).lowercased()
            let holdsNoData = ["bss", "heap", "stack", "noinit"].contains { lower.contains($0) }
            if !holdsNoData, t.count >= 5, t[2].elementsEqual("load".utf8), t[3].elementsEqual("address".utf8) {
                load = hexToken(t[4])
            }
            sections.append((address, size, load))
        }
        contents.withUnsafeBufferPointer { buf in
            while lineStart < buf.count {
                lineNumber += 1
                var lineEnd = lineStart
                while lineEnd < buf.count && buf[lineEnd] != 0x0A { lineEnd += 1 }
                let line = UnsafeBufferPointer(rebasing: buf[lineStart..<lineEnd])
                if line.firstRange(of: flashKey) != nil, let v = firstHex(line) {
                    origin = v
                    let numbers = line.split(whereSeparator: { $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }).compactMap(hexToken)
                    flashLength = numbers.count >= 2 ? numbers[1] : nil
                }
                // Cheap prefilter: every symbol line contains "__st".
                if line.count > 16, line.firstRange(of: Array("__st".utf8)) != nil {
                    for (symbol, key) in symbolKeys where line.firstRange(of: key) != nil {
                        if let v = firstHex(line) { found[symbol] = v }
                    }
                }
                // The symbol's own line is `<spaces>0x<address><spaces>Reset_Handler`; the
                // section line (.text.Reset_Handler) and the cross references are not.
                var end = line.count
                while end > 0 && (line[end - 1] == 0x0D || line[end - 1] == 0x20 || line[end - 1] == 0x09) { end -= 1 }
                if end >= resetKey.count, line[(end - resetKey.count)..<end].elementsEqual(resetKey) {
                    let tokens = line[..<end].split(whereSeparator: { $0 == 0x20 || $0 == 0x09 })
                    if tokens.count == 2, tokens[0].starts(with: Array("0x".utf8)), tokens[1].elementsEqual(resetKey) {
                        reset = firstHex(line)
                    }
                }
                if !inMemoryMap {
                    inMemoryMap = line.firstRange(of: Array("Linker script and memory map".utf8)) != nil
                } else if let first = line.first {
                    let indented = first == 0x20 || first == 0x09
                    if !indented || pendingName != nil {
                        let tokens = line[..<end].split(whereSeparator: { $0 == 0x20 || $0 == 0x09 })
                        if !indented {
                            pendingName = tokens.count == 1 ? Array(tokens[0]) : nil
                            if tokens.count >= 3 { section(tokens[0], tokens.dropFirst()) }
                        } else if let name = pendingName {
                            pendingName = nil
                            section(name, tokens[...])
                        }
                    }
                }
                // The table's section line (the output section, or the input section within
                // .text): `.isr_vector  0x0800c000  0x8 ...`; the first one gives the place.
                if vector == nil, line.firstRange(of: vectorKey) != nil {
                    let tokens = line[..<end].split(whereSeparator: { $0 == 0x20 || $0 == 0x09 })
                    if tokens.count >= 2, tokens[0].elementsEqual(vectorKey), tokens[1].starts(with: Array("0x".utf8)) {
                        vector = firstHex(line)
                    }
                }
                lineStart = lineEnd + 1
            }
        }
        guard let origin else { throw .noFlashLine(file: path) }
        self.flashOrigin = origin
        if let flashLength, origin <= UInt64.max - flashLength {
            let flash = origin..<(origin + flashLength)
            // Empty sections hold no byte of the image (and sit at aligned addresses past its end).
            let filled = sections.filter { $0.size > 0 }
            // Bytes from the origin to a section's end (nil past UInt64: a garbled map).
            func end(_ start: UInt64, _ size: UInt64) -> UInt64? {
                guard flash.contains(start) else { return nil }
                let (bytes, overflow) = (start - origin).addingReportingOverflow(size)
                return overflow ? nil : bytes
            }
            let placed = filled.compactMap { end($0.address, $0.size) }
            let loaded = filled.compactMap { s in s.load.flatMap { end($0, s.size) } }
            if let least = placed.max() { flashImageBytes = least...max(least, loaded.max() ?? least) }
        }
        self.resetHandler = reset
        self.vectorTable = vector
        self.addresses = found
    }

    func address(of symbol: RIoTImage.Symbol) throws(FirmwareError) -> UInt64 {
        guard let v = addresses[symbol] else { throw .missingSymbol(file: path, symbol: symbol.rawValue) }
        return v
    }
}

/// A whole token `0x…` as a number (at most 16 digits), else nil.
private func hexToken(_ token: Slice<UnsafeBufferPointer<UInt8>>) -> UInt64? {
    guard token.count > 2, token.count <= 18, token.starts(with: Array("0x".utf8)) else { return nil }
    var value: UInt64 = 0
    for byte in token.dropFirst(2) {
        guard let d = Hex.value(byte) else { return nil }
        value = value << 4 | UInt64(d)
    }
    return value
}

/// The hexadecimal number starting at the first `0x` of a line (at most 16 digits).
private func firstHex(_ line: UnsafeBufferPointer<UInt8>) -> UInt64? {
    guard let r = line.firstRange(of: Array("0x".utf8)) else { return nil }
    var value: UInt64 = 0
    var digits = 0
    var i = r.upperBound
    while i < line.count, let d = Hex.value(line[i]) {
        guard digits < 16 else { return nil }
        value = value << 4 | UInt64(d)
        digits += 1
        i += 1
    }
    return digits == 0 ? nil : value
}

/// Why a firmware input could not be used. Every case names the file and the problem.
public enum FirmwareError: Error, Equatable, Sendable, CustomStringConvertible {
    case noFlashLine(file: String)
    case missingSymbol(file: String, symbol: String)
    case emptyOrReversedRange(file: String, range: String, start: UInt64, stop: UInt64)
    case rangeOutsideImage(file: String, range: String, detail: String)
    case coreTooShort(file: String, length: Int)
    case malformedELF(file: String, detail: String)
    /// The `.bin`'s reset vector is not the `.map`'s `Reset_Handler`.
    case differentBuilds(bin: String, map: String, resetVector: UInt64, resetHandler: UInt64, flashOrigin: UInt64)
    /// The `.bin` is much longer than the FLASH image its `.map` describes.
    case imageLongerThanMap(bin: String, map: String, size: Int, mapped: UInt64)

    public var description: String {
        switch self {
        case .noFlashLine(let file):
            return "\(file): no 'FLASH            0x…' line in the Memory Configuration; is this the GNU ld map of an AZ3166 build?"
        case .missingSymbol(let file, let symbol):
            return "\(file): symbol \(symbol) not found; the sketch must be built with the DevKit's DICE/RIoT linker script"
        case .emptyOrReversedRange(let file, let range, let start, let stop):
            let what = stop == start ? "empty" : "reversed"
            return "\(file): the \(range) range is \(what) (start 0x\(String(start, radix: 16)), stop 0x\(String(stop, radix: 16)))"
        case .rangeOutsideImage(let file, let range, let detail):
            return "\(file): the \(range) range runs outside the image: \(detail)"
        case .coreTooShort(let file, let length):
            return "\(file): the RIoT Core range is \(length) bytes; the firmware measures at least \(RIoTImage.minimumCoreLength)"
        case .malformedELF(let file, let detail):
            return "\(file): not a usable ELF32 little-endian image: \(detail)"
        case .differentBuilds(let bin, let map, let vector, let handler, let origin):
            return "\(bin) does not match \(map): the image's reset vector is 0x\(String(vector, radix: 16)) but the map "
                + "puts Reset_Handler at 0x\(String(handler, radix: 16)), so they are not from the same build (or the .bin "
                + "does not start at the FLASH origin 0x\(String(origin, radix: 16))); give the .bin and .map one build "
                + "wrote (or its .elf alone)"
        case .imageLongerThanMap(let bin, let map, let size, let mapped):
            return "\(bin) is \(size) bytes, but \(map) describes a FLASH image of at most \(mapped) bytes, so they are "
                + "not from the same build; give the .bin and .map one build wrote (or its .elf alone)"
        }
    }
}
