
/// The registration IDs a batch has used so far, each with the line that first used
/// it: the duplicate check of `cert --batch`, exact and compact.
///
/// A `[String: Int]` cost ~70 bytes per ID and doubled its table while growing (the
/// peak on a 1,000,000-line batch was above 100 MB). Here the IDs' bytes and line
/// numbers are packed one after another in fixed 1 MiB chunks (nothing is copied as
/// they grow), and an open-addressing table holds one 8-byte reference per slot whose
/// upper bits cache part of the hash, so most probes never touch the chunks: about
/// 30 bytes per ID. A match is always confirmed on the stored bytes, so two IDs are
/// never confused, whatever their hashes. The hash is seeded per process (`Hasher`),
/// so a crafted file cannot force collisions.
struct SeenRegistrationIDs {
    private static let chunkSize = 1 << 20
    /// ID length (1 byte, IDs are at most 128 bytes), the ID, the line number (8 bytes LE).
    private var chunks: [[UInt8]] = []
    /// 0: empty; else (hash tag << 40) | (global offset + 1).
    private var slots: [UInt64] = [UInt64](repeating: 0, count: 1024)
    private(set) var count = 0

    private static let offsetBits: UInt64 = 40
    private static let offsetMask: UInt64 = (1 << offsetBits) - 1

    /// The line that first used `id`, recording `line` for it when it is new.
    mutating func firstLine(of id: String, recording line: Int) -> Int? {
        var id = id
        return id.withUTF8 { firstLine(of: $0, recording: line) }
    }

    private mutating func firstLine(of id: UnsafeBufferPointer<UInt8>, recording line: Int) -> Int? {
        precondition(id.count < 256)
        var hasher = Hasher()
        hasher.combine(bytes: UnsafeRawBufferPointer(id))
        let hash = UInt64(bitPattern: Int64(hasher.finalize()))
        let tag = hash >> Self.offsetBits
        let mask = slots.count - 1
        var i = Int(truncatingIfNeeded: hash) & mask
        while slots[i] != 0 {
            let slot = slots[i]
            if slot >> Self.offsetBits == tag, let earlier = entry(at: Int(slot & Self.offsetMask) - 1, matching: id) {
                return earlier
            }
            i = (i + 1) & mask
        }
        let offset = append(id, line: line)
        slots[i] = tag << Self.offsetBits | UInt64(offset + 1)
        count += 1
        if count * 2 > slots.count { grow() }
        return nil
    }

    /// The line stored at `offset` when its ID is `id`.
    private func entry(at offset: Int, matching id: UnsafeBufferPointer<UInt8>) -> Int? {
        let chunk = chunks[offset / Self.chunkSize]
        let start = offset % Self.chunkSize
        guard Int(chunk[start]) == id.count else { return nil }
        for j in 0..<id.count where chunk[start + 1 + j] != id[j] { return nil }
        var line = 0
        for j in 0..<8 { line |= Int(chunk[start + 1 + id.count + j]) << (8 * j) }
        return line
    }

    private mutating func append(_ id: UnsafeBufferPointer<UInt8>, line: Int) -> Int {
        let size = 1 + id.count + 8
        if chunks.isEmpty || chunks[chunks.count - 1].count + size > Self.chunkSize {
            chunks.append([])
            chunks[chunks.count - 1].reserveCapacity(Self.chunkSize)
        }
        let last = chunks.count - 1
        let offset = last * Self.chunkSize + chunks[last].count
        chunks[last].append(UInt8(id.count))
        chunks[last].append(contentsOf: id)
        for j in 0..<8 { chunks[last].append(UInt8(truncatingIfNeeded: line >> (8 * j))) }
        return offset
    }

    /// Doubles the table; the tags cached in the slots are the hashes' upper bits, so
    /// the slots are re-placed by rehashing the stored IDs.
    private mutating func grow() {
        let old = slots
        slots = [UInt64](repeating: 0, count: old.count * 2)
        let mask = slots.count - 1
        for slot in old where slot != 0 {
            let offset = Int(slot & Self.offsetMask) - 1
            let chunk = chunks[offset / Self.chunkSize]
            let start = offset % Self.chunkSize
            let length = Int(chunk[start])
            var hasher = Hasher()
            chunk.withUnsafeBytes { hasher.combine(bytes: UnsafeRawBufferPointer(rebasing: $0[(start + 1)..<(start + 1 + length)])) }
            var i = Int(truncatingIfNeeded: UInt64(bitPattern: Int64(hasher.finalize()))) & mask
            while slots[i] != 0 { i = (i + 1) & mask }
            slots[i] = slot
        }
    }
}
