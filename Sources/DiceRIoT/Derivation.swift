import Crypto
import Foundation

/// A P-256 key pair derived the way the DevKit's DICE/RIoT layer derives it.
public struct DerivedKey: Sendable {
    /// The private scalar d, 32 bytes big-endian.
    public let privateScalar: [UInt8]
    /// The public point d·G, uncompressed: 0x04 || X || Y (65 bytes).
    public let publicPoint: [UInt8]

    /// `DeriveKey(src, label)`'s private scalar (Docs/certificate.md §4): one HMAC-SHA-256
    /// whose output, read little-endian, is the scalar; returned big-endian, its range
    /// unchecked (the public points of several keys are computed together:
    /// `BasePoint.publicPoints`, which refuses a scalar outside 0 < d < n).
    static func scalar(source: SHA256Digest, label: Label) -> [UInt8] {
        var scalar = [UInt8](repeating: 0, count: 32)
        scalar.withUnsafeMutableBytes { out in
            source.withUnsafeBytes { HMACSHA256.authenticationCode(key: $0, message: label.message, into: out) }
            var bytes = out
            bytes.reverse()  // LE integer → BE bytes
        }
        return scalar
    }

    /// The two labels the firmware derives keys with, and their HMAC messages:
    /// 01 00 00 00 || label || 00 || 00 01 00 00 (the counter and the bit length are
    /// little-endian because the firmware's byte-order macro swaps nothing).
    struct Label: Sendable {
        let name: String
        let message: [UInt8]
        init(_ name: String) {
            self.name = name
            message = [0x01, 0x00, 0x00, 0x00] + Array(name.utf8) + [0x00, 0x00, 0x01, 0x00, 0x00]
        }
        static let identity = Label("Identity")
        static let alias = Label("Alias")
    }

    /// A key pair whose public point was computed already (d·G).
    init(privateScalar: [UInt8], publicPoint: [UInt8]) {
        self.privateScalar = privateScalar
        self.publicPoint = publicPoint
    }
}

/// HMAC-SHA-256 (RFC 2104) for keys of at most 64 bytes, on swift-crypto's SHA256 with
/// the pads on the stack: swift-crypto's `HMAC<H>` is generic across the module
/// boundary (unspecialised witness calls) and copies the key into a `SymmetricKey`.
enum HMACSHA256 {
    static func authenticationCode(key: UnsafeRawBufferPointer, message: [UInt8], into out: UnsafeMutableRawBufferPointer) {
        precondition(key.count <= 64 && out.count >= 32)
        withUnsafeTemporaryAllocation(byteCount: 64, alignment: 8) { pad in
            pad.initializeMemory(as: UInt8.self, repeating: 0x36)
            for i in 0..<key.count { pad[i] = key[i] ^ 0x36 }
            var inner = SHA256()
            inner.update(bufferPointer: UnsafeRawBufferPointer(pad))
            message.withUnsafeBytes { inner.update(bufferPointer: $0) }
            let innerDigest = inner.finalize()
            for i in 0..<64 { pad[i] ^= 0x36 ^ 0x5C }  // the outer pad: key ⊕ 0x5c
            var outer = SHA256()
            outer.update(bufferPointer: UnsafeRawBufferPointer(pad))
            innerDigest.withUnsafeBytes { outer.update(bufferPointer: $0) }
            outer.finalize().withUnsafeBytes { out.copyMemory(from: $0) }
            pad.initializeMemory(as: UInt8.self, repeating: 0)  // key material
        }
    }
}

/// Why generation failed after the inputs were accepted.
public enum GenerationError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The derived scalar is 0 or ≥ n; the firmware would loop forever on this input.
    case scalarOutOfRange(key: String)
    case encoding(String)

    public var description: String {
        switch self {
        case .scalarOutOfRange(let key):
            return "the derived \(key) private scalar is outside 1..n-1; this UDS and firmware give a key the device can never use (the firmware would hang): pick another UDS"
        case .encoding(let detail):
            return "could not encode the certificate: \(detail)"
        }
    }
}

/// ECDSA as the firmware does it: with the constant nonce
/// k = 0x0102…1f20 (Docs/certificate.md §5), so r is the same in every signature.
///
/// This cannot use swift-crypto's signer (which draws a random nonce, as it must);
/// the arithmetic mod n is ``OrderArithmetic``'s, on fixed-width limbs.
struct FixedNonceSigner: Sendable {
    static let nonce: [UInt8] = Array(1...32)  // big-endian 01 02 … 20
    /// r = x(k·G) mod n, and k⁻¹ mod n: constants, computed once.
    static let shared = FixedNonceSigner()

    let r: Scalar256
    let rBytes: [UInt8]
    /// r and k⁻¹ in the Montgomery domain (·R mod n): a product with one of them is
    /// then one Montgomery multiplication.
    private let rMontgomery: Scalar256
    private let kInverseMontgomery: Scalar256

    private init() {
        guard let kG = BasePoint.publicPoint(of: Self.nonce) else { preconditionFailure("the firmware's nonce is a valid scalar") }
        // x < p < 2n: one conditional subtraction reduces it.
        r = OrderArithmetic.reduced(Scalar256(bigEndian: kG[1..<33]))
        rBytes = Self.minimal(r)
        rMontgomery = OrderArithmetic.toMontgomery(r)
        kInverseMontgomery = OrderArithmetic.toMontgomery(OrderArithmetic.inverse(Scalar256(bigEndian: Self.nonce)))
    }

    /// s = k⁻¹·(e + r·d) mod n, with e the digest's integer (2²⁵⁶ < 2n: reduced by one
    /// subtraction, which gives the firmware's result, as it reduces only the sum).
    func s(digest e: Scalar256, privateScalar d: Scalar256) -> Scalar256 {
        let rd = OrderArithmetic.montgomeryProduct(d, rMontgomery)  // r·d·R·R⁻¹ = r·d
        let sum = OrderArithmetic.add(OrderArithmetic.reduced(e), rd)
        return OrderArithmetic.montgomeryProduct(sum, kInverseMontgomery)
    }

    /// The signature of `tbs` by `privateScalar` (32 bytes, big-endian): r and s as
    /// minimal big-endian integers (no leading zero bytes), as DER INTEGERs take them.
    func sign(_ tbs: [UInt8], privateScalar: [UInt8]) -> (r: [UInt8], s: [UInt8]) {
        // SHA256's own update on the buffer: `hash(data:)` goes through DataProtocol's regions.
        var hash = SHA256()
        tbs.withUnsafeBytes { hash.update(bufferPointer: $0) }
        let e = hash.finalize().withUnsafeBytes { Scalar256(bigEndian: $0) }
        let d = privateScalar.withUnsafeBytes { Scalar256(bigEndian: $0) }
        return (rBytes, Self.minimal(s(digest: e, privateScalar: d)))
    }

    /// The big-endian bytes without leading zeros (none for 0).
    static func minimal(_ x: Scalar256) -> [UInt8] {
        let bytes = x.bigEndianBytes
        return Array(bytes.drop { $0 == 0 })
    }
}
