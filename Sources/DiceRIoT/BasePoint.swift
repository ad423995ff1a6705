#if canImport(CCryptoBoringSSL)
import CCryptoBoringSSL
#endif
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

    /// Writes d·G uncompressed (04 || X || Y, 65 bytes) into `out` for the 32-byte
    /// big-endian scalar `d`; false, with `out` untouched, unless 0 < d < n.
    static func publicPoint(scalar d: UnsafeRawBufferPointer, into out: UnsafeMutableRawBufferPointer) -> Bool {
        precondition(d.count == 32 && out.count >= 65)
        // Checked here, not left to the library: BoringSSL's EC_POINT_mul reduces a scalar
        // ≥ n instead of refusing it, and the firmware never uses such a key.
        let value = Scalar256(bigEndian: d)
        guard value != .zero, value.subtractingReportingBorrow(OrderArithmetic.n).1 else { return false }
        #if canImport(CCryptoBoringSSL)
        return boringSSL(scalar: d, into: out)
        #else
        return swiftCrypto(scalar: d, into: out)
        #endif
    }

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
