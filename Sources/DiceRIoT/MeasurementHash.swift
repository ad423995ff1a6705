#if canImport(CCryptoBoringSSL)
import CCryptoBoringSSL
#endif

/// The DICE layer's measurement hash `Hd` (Docs/certificate.md §3).
///
/// The firmware's SHA-256 was compiled for a big-endian host but runs little-endian,
/// so it loads message words, appends the bit length and writes the digest
/// little-endian. No library hashes with those byte orders, so the padding and the
/// word order are written here; the compression itself is BoringSSL's
/// (`SHA256_TransformBlocks`, the CPU's SHA extensions where it has them) on blocks
/// whose words are byte-swapped first, which is the same as loading them
/// little-endian. Where BoringSSL's C target is not importable, a compression
/// written in Swift does the same job (the tests compare the two).
public enum MeasurementHash {
    /// `Hd(message)`: 32 bytes.
    public static func hash<Bytes: Collection>(_ message: Bytes) -> [UInt8] where Bytes.Element == UInt8 {
        if let digest = message.withContiguousStorageIfAvailable({ hash(UnsafeRawBufferPointer($0)) }) { return digest }
        return Array(message).withUnsafeBytes { hash($0) }
    }

    /// `Hd(a || b)` without building the concatenation.
    static func hash(_ a: [UInt8], _ b: [UInt8]) -> [UInt8] {
        a.withUnsafeBytes { a in
            b.withUnsafeBytes { b in
                digest { absorb in absorb(a); absorb(b) }
            }
        }
    }

    static func hash(_ bytes: UnsafeRawBufferPointer) -> [UInt8] {
        digest { absorb in absorb(bytes) }
    }

    /// `Hd(message)` through the compression written in Swift only: what the tests
    /// compare BoringSSL's path with.
    static func hashInSwift(_ message: [UInt8]) -> [UInt8] {
        message.withUnsafeBytes { bytes in digest(boringSSL: false) { absorb in absorb(bytes) } }
    }

    /// Runs the compression over everything `feed` hands to `absorb`, then pads.
    /// The state, the pending block and the schedule live on the stack: a device's
    /// two Hd computations allocate nothing but their digests. Whole blocks are
    /// compressed where they lie and a block's pieces copied in one move, not byte
    /// by byte (2,500 instructions fewer per certificate of a batch).
    private static func digest(
        boringSSL: Bool = true, _ feed: (_ absorb: (UnsafeRawBufferPointer) -> Void) -> Void
    ) -> [UInt8] {
        var state: InlineArray<8, UInt32> = [
            0x6a09_e667, 0xbb67_ae85, 0x3c6e_f372, 0xa54f_f53a,
            0x510e_527f, 0x9b05_688c, 0x1f83_d9ab, 0x5be0_cd19,
        ]
        withUnsafeTemporaryAllocation(byteCount: 64, alignment: 8) { block in
            let block = block.baseAddress!
            var pending = 0
            var total: UInt64 = 0
            feed { bytes in
                guard var next = bytes.baseAddress else { return }
                total &+= UInt64(bytes.count)
                var left = bytes.count
                while left > 0 {
                    if pending == 0 && left >= 64 {
                        // Every whole block where it lies, in one call.
                        let blocks = left / 64
                        compress(&state, UnsafeRawPointer(next), blocks: blocks, boringSSL: boringSSL)
                        next += 64 * blocks
                        left -= 64 * blocks
                        continue
                    }
                    let n = min(64 - pending, left)
                    (block + pending).copyMemory(from: next, byteCount: n)
                    pending += n
                    next += n
                    left -= n
                    if pending == 64 { compress(&state, UnsafeRawPointer(block), blocks: 1, boringSSL: boringSSL); pending = 0 }
                }
            }
            // Padding: 0x80, zeros to 56 mod 64, then the bit length as 64-bit *little*-endian.
            block.storeBytes(of: 0x80, toByteOffset: pending, as: UInt8.self)
            pending += 1
            if pending > 56 {
                (block + pending).initializeMemory(as: UInt8.self, repeating: 0, count: 64 - pending)
                compress(&state, UnsafeRawPointer(block), blocks: 1, boringSSL: boringSSL)
                pending = 0
            }
            (block + pending).initializeMemory(as: UInt8.self, repeating: 0, count: 56 - pending)
            block.storeBytes(of: (total &* 8).littleEndian, toByteOffset: 56, as: UInt64.self)
            compress(&state, UnsafeRawPointer(block), blocks: 1, boringSSL: boringSSL)
        }
        return [UInt8](unsafeUninitializedCapacity: 32) { out, count in
            for word in 0..<8 {
                for i in 0..<4 { out[4 * word + i] = UInt8(truncatingIfNeeded: state[word] >> (8 * UInt32(i))) }
            }
            count = 32
        }
    }

    private static let roundConstants: [UInt32] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
    ]

    @inline(__always)
    private static func rotr(_ x: UInt32, _ n: UInt32) -> UInt32 { (x >> n) | (x << (32 - n)) }

    /// The SHA-256 compression of `blocks` 64-byte blocks from `data`, their
    /// message words loaded little-endian.
    private static func compress(
        _ state: inout InlineArray<8, UInt32>, _ data: UnsafeRawPointer, blocks: Int, boringSSL: Bool
    ) {
        #if canImport(CCryptoBoringSSL)
        if boringSSL {
            compressSwapped(&state, data, blocks: blocks)
            return
        }
        #endif
        for i in 0..<blocks { compressInSwift(&state, data + 64 * i) }
    }

    #if canImport(CCryptoBoringSSL)
    /// BoringSSL's compression (big-endian word loads) of the blocks with each
    /// 4-byte word reversed: a little-endian load of the original. Up to 16
    /// blocks at a time are swapped into a 1,024-byte buffer, the most that
    /// `withUnsafeTemporaryAllocation` puts on the stack without asking (above it,
    /// Linux's runtime allocates on the heap); the state gets its own 32 bytes.
    /// A device's two `Hd` take three blocks; the firmware's core measurement
    /// (9 KB in the vectors' firmware) goes through in 1 KB steps.
    private static func compressSwapped(_ state: inout InlineArray<8, UInt32>, _ data: UnsafeRawPointer, blocks: Int) {
        withUnsafeTemporaryAllocation(of: UInt32.self, capacity: 8) { words in
            let words = words.baseAddress!
            for i in 0..<8 { words[i] = state[i] }
            withUnsafeTemporaryAllocation(byteCount: swapBlocks * 64, alignment: 16) { swapped in
                var done = 0
                while done < blocks {
                    let n = min(swapBlocks, blocks - done)
                    let source = data + 64 * done
                    for i in 0..<(16 * n) {
                        // The little-endian word, stored big-endian: what BoringSSL loads.
                        let word = UInt32(littleEndian: source.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))
                        swapped.storeBytes(of: word.bigEndian, toByteOffset: 4 * i, as: UInt32.self)
                    }
                    let bytes = swapped.bindMemory(to: UInt8.self).baseAddress!
                    CCryptoBoringSSL_SHA256_TransformBlocks(words, bytes, n)
                    done += n
                }
            }
            for i in 0..<8 { state[i] = words[i] }
        }
    }

    /// Blocks swapped per call: 16 (1,024 bytes) keeps the buffer on the stack.
    static var swapBlocks: Int { 16 }

    /// Whether ``hash(_:)-(Bytes)`` compresses with BoringSSL (the tests check the
    /// path they compare with the Swift compression is the one that runs).
    static let compressesWithBoringSSL = true
    #else
    static let compressesWithBoringSSL = false
    #endif

    /// The ordinary SHA-256 compression of the 64 bytes at `block`, with the
    /// schedule words loaded little-endian (about 4,400 instructions a block, the
    /// scalar floor of SHA-256 without the CPU's SHA extensions).
    private static func compressInSwift(_ state: inout InlineArray<8, UInt32>, _ block: UnsafeRawPointer) {
        withUnsafeTemporaryAllocation(of: UInt32.self, capacity: 64) { schedule in
            let w = schedule.baseAddress!
            for i in 0..<16 { w[i] = UInt32(littleEndian: block.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)) }
            for i in 16..<64 {
                let s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3)
                let s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10)
                w[i] = w[i - 16] &+ s0 &+ w[i - 7] &+ s1
            }
            var a = state[0], b = state[1], c = state[2], d = state[3]
            var e = state[4], f = state[5], g = state[6], h = state[7]
            roundConstants.withUnsafeBufferPointer { k in
                let k = k.baseAddress!
                for i in 0..<64 {
                    let s1 = rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)
                    let ch = (e & f) ^ (~e & g)
                    let t1 = h &+ s1 &+ ch &+ k[i] &+ w[i]
                    let s0 = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)
                    let maj = (a & b) ^ (a & c) ^ (b & c)
                    let t2 = s0 &+ maj
                    h = g; g = f; f = e; e = d &+ t1
                    d = c; c = b; b = a; a = t1 &+ t2
                }
            }
            state[0] &+= a; state[1] &+= b; state[2] &+= c; state[3] &+= d
            state[4] &+= e; state[5] &+= f; state[6] &+= g; state[7] &+= h
        }
    }
}
