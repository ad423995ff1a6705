#if canImport(CCryptoBoringSSL)
import CCryptoBoringSSL
#endif
import CDiceRIoT
import Crypto

/// d·G on P-256: a private scalar's public point, the one elliptic-curve operation a
/// certificate needs (twice: the DeviceID and the Alias key).
///
/// On Linux swift-crypto is BoringSSL, and its `P256.Signing.PrivateKey(rawRepresentation:)`
/// plus `x963Representation` spends 12.5 µs per key here: an `EC_KEY`, an on-curve check,
/// BIGNUM and `Data` copies around the multiplication. The same BoringSSL code called
/// directly (`EC_POINT_mul` with the base-point table, then one affine conversion) takes
/// 10.4 µs, which saves 4 µs (~10 %) per certificate (Docs/certificate.md, "The curve").
/// It is the same implementation, already linked, not a second one.
/// `CCryptoBoringSSL` is swift-crypto's C target, not one of its products: SwiftPM makes it
/// importable as a dependency of `Crypto`. Where it is not (another platform, a SwiftPM that
/// hides it), the public API does the same job; the tests compare the two.
enum BasePoint {
    /// Whether `publicPoint` runs on BoringSSL directly (true on this project's Linux builds).
    static var usesBoringSSLDirectly: Bool {
        #if canImport(CCryptoBoringSSL)
        true
        #else
        false
        #endif
    }

    /// 0 < d < n. Checked here, not left to the library: BoringSSL's EC_POINT_mul
    /// reduces a scalar ≥ n instead of refusing it, and the firmware never uses such a key.
    static func isPrivateScalar(_ d: Scalar256) -> Bool {
        d != .zero && d.subtractingReportingBorrow(OrderArithmetic.n).1
    }

    /// Writes d·G uncompressed (04 || X || Y, 65 bytes) into `out` for the 32-byte
    /// big-endian scalar `d`; false, with `out` untouched, unless 0 < d < n.
    static func publicPoint(scalar d: UnsafeRawBufferPointer, into out: UnsafeMutableRawBufferPointer) -> Bool {
        precondition(d.count == 32 && out.count >= 65)
        guard isPrivateScalar(Scalar256(bigEndian: d)) else { return false }
        #if canImport(CCryptoBoringSSL)
        return boringSSL(scalar: d, into: out)
        #else
        return swiftCrypto(scalar: d, into: out)
        #endif
    }

    /// d·G for each 32-byte big-endian scalar, uncompressed (65 bytes each), in order;
    /// nil for a scalar outside 0 < d < n. The points are computed together with one
    /// field inversion for all (`CDiceRIoT_p256_public_points`) where that was checked
    /// to give swift-crypto's points; one by one otherwise.
    static func publicPoints(of scalars: [[UInt8]]) -> [[UInt8]?] {
        let inRange = scalars.map { isPrivateScalar(Scalar256(bigEndian: $0)) }
        let valid = scalars.indices.filter { inRange[$0] }.map { scalars[$0] }
        // At most 64 points a call: the inversion is then 1/64 of their cost, and the
        // C side's arrays stay small whatever a caller hands in.
        var points: [[UInt8]] = []
        points.reserveCapacity(valid.count)
        for start in stride(from: 0, to: valid.count, by: 64) {
            let part = Array(valid[start..<min(start + 64, valid.count)])
            guard batchesAgree, let batch = batch(part) else {
                points += part.map { publicPoint(of: $0)! }  // in range: checked above
                continue
            }
            points += batch
        }
        var next = points.makeIterator()
        return inRange.map { $0 ? next.next() : nil }
    }

    /// The points of scalars in range through CDiceRIoT; nil where it is not used
    /// (another platform, a BoringSSL laid out differently) or failed.
    static func batch(_ scalars: [[UInt8]]) -> [[UInt8]]? {
        #if canImport(CCryptoBoringSSL) && (arch(x86_64) || arch(arm64))
        guard !scalars.isEmpty else { return [] }
        guard layoutMatches else { return nil }
        var packed = [UInt8]()
        packed.reserveCapacity(scalars.count * 32)
        for d in scalars { packed += d }
        defer { packed.withUnsafeMutableBytes { _ = $0.initializeMemory(as: UInt8.self, repeating: 0) } }  // key material
        var out = [UInt8](repeating: 0, count: scalars.count * 65)
        let ok = out.withUnsafeMutableBytes { out in
            packed.withUnsafeBytes { packed in
                CDiceRIoT_p256_public_points(
                    CCryptoBoringSSL_EC_group_p256(), packed.baseAddress!.assumingMemoryBound(to: UInt8.self), scalars.count,
                    out.baseAddress!.assumingMemoryBound(to: UInt8.self))
            }
        }
        guard ok == 1 else { return nil }
        return (0..<scalars.count).map { Array(out[$0 * 65..<($0 + 1) * 65]) }
        #else
        return nil
        #endif
    }

    /// Whether BoringSSL's internal structures are the ones CDiceRIoT declares (on the
    /// group's own data, before any internal function writes into them): a later
    /// swift-crypto could change them, and the batch would then write past its arrays.
    static let layoutMatches: Bool = {
        #if canImport(CCryptoBoringSSL) && (arch(x86_64) || arch(arm64))
        CDiceRIoT_layout_matches(CCryptoBoringSSL_EC_group_p256()) == 1
        #else
        false
        #endif
    }()

    /// Whether the batch gives swift-crypto's points here, checked once: it calls
    /// BoringSSL's internal EC functions (CDiceRIoT), which a later swift-crypto may
    /// change (a function's meaning as well as the structures `layoutMatches` checks).
    /// Where they differ, every key goes one by one.
    static let batchesAgree: Bool = {
        // 1, 2, n - 1 and the firmware's nonce: the ends of the range and a mixed one.
        let scalars: [[UInt8]] = [
            [UInt8](repeating: 0, count: 31) + [1], [UInt8](repeating: 0, count: 31) + [2],
            OrderArithmetic.n.subtractingReportingBorrow(.one).0.bigEndianBytes,
            FixedNonceSigner.nonce,
        ]
        guard let batch = batch(scalars) else { return false }
        return zip(scalars, batch).allSatisfy { d, point in
            var reference = [UInt8](repeating: 0, count: 65)
            let made = d.withUnsafeBytes { d in reference.withUnsafeMutableBytes { swiftCrypto(scalar: d, into: $0) } }
            return made && reference == point
        }
    }()

    /// d·G for a 32-byte big-endian scalar, uncompressed (65 bytes); nil unless 0 < d < n.
    static func publicPoint(of d: [UInt8]) -> [UInt8]? {
        var point = [UInt8](repeating: 0, count: 65)
        let ok = d.withUnsafeBytes { d in point.withUnsafeMutableBytes { publicPoint(scalar: d, into: $0) } }
        return ok ? point : nil
    }

    #if canImport(CCryptoBoringSSL)
    /// Allocating the point, the BIGNUM and (inside EC_POINT_mul) a BN_CTX per call costs
    /// nothing measurable (10.46 against 10.42 µs per key with all three reused, a C loop),
    /// so there is no per-thread state to keep.
    static func boringSSL(scalar d: UnsafeRawBufferPointer, into out: UnsafeMutableRawBufferPointer) -> Bool {
        // EC_group_p256() is a static group: never freed.
        let group = CCryptoBoringSSL_EC_group_p256()
        guard let point = CCryptoBoringSSL_EC_POINT_new(group) else { return false }
        defer { CCryptoBoringSSL_EC_POINT_free(point) }
        guard let bn = CCryptoBoringSSL_BN_bin2bn(d.baseAddress!.assumingMemoryBound(to: UInt8.self), 32, nil) else { return false }
        // The scalar is key material: cleared before the BIGNUM's memory is freed.
        defer { CCryptoBoringSSL_BN_clear_free(bn) }
        // A NULL BN_CTX: EC_POINT_mul makes one for the call; point2oct uses none.
        guard CCryptoBoringSSL_EC_POINT_mul(group, point, bn, nil, nil, nil) == 1 else { return false }
        let written = CCryptoBoringSSL_EC_POINT_point2oct(
            group, point, POINT_CONVERSION_UNCOMPRESSED,
            out.baseAddress!.assumingMemoryBound(to: UInt8.self), 65, nil)
        return written == 65
    }
    #endif

    /// The same through swift-crypto's public API: the fallback, and the tests' reference.
    static func swiftCrypto(scalar d: UnsafeRawBufferPointer, into out: UnsafeMutableRawBufferPointer) -> Bool {
        // The private key's X9.63 form (04 || X || Y || d) starts with the public point:
        // read there, it costs no second key object (publicKey duplicates the EC_KEY).
        guard let key = try? P256.Signing.PrivateKey(rawRepresentation: d) else { return false }
        key.x963Representation.withUnsafeBytes { out.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[..<65])) }
        return true
    }
}
