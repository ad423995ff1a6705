import BigInt
import Crypto
import Foundation

/// A P-256 key pair derived the way the DevKit's DICE/RIoT layer derives it.
public struct DerivedKey: Sendable {
    /// The private scalar d, 32 bytes big-endian.
    public let privateScalar: [UInt8]
    /// The public point d·G, uncompressed: 0x04 || X || Y (65 bytes).
    public let publicPoint: [UInt8]

    /// `DeriveKey(src, label)` (Docs/certificate.md §4): one HMAC-SHA-256 whose output, read
    /// little-endian, is the private scalar.
    static func derive(source: [UInt8], label: String) throws(GenerationError) -> DerivedKey {
        // 01 00 00 00 || label || 00 || 00 01 00 00: the counter and the bit length are
        // little-endian because the firmware's byte-order macro swaps nothing.
        var message: [UInt8] = [0x01, 0x00, 0x00, 0x00]
        message += Array(label.utf8)
        message += [0x00, 0x00, 0x01, 0x00, 0x00]
        let mac = HMAC<SHA256>.authenticationCode(for: message, using: SymmetricKey(data: source))
        let scalar = Array(mac.reversed())  // LE integer → BE bytes
        return try DerivedKey(scalar: scalar, label: label)
    }

    /// A key pair from a big-endian scalar; d must satisfy 0 < d < n.
    init(scalar: [UInt8], label: String) throws(GenerationError) {
        do {
            // swift-crypto computes d·G when it builds the key from the raw scalar, and
            // refuses d = 0 or d ≥ n.
            let key = try P256.Signing.PrivateKey(rawRepresentation: scalar)
            self.privateScalar = scalar
            self.publicPoint = Array(key.publicKey.x963Representation)
        } catch {
            throw .scalarOutOfRange(key: label)
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
/// the arithmetic mod n uses BigInt.
struct FixedNonceSigner: Sendable {
    static let order = BigUInt(
        "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551", radix: 16)!
    static let nonce: [UInt8] = Array(1...32)  // big-endian 01 02 … 20
    /// r = x(k·G) mod n, and k⁻¹ mod n: constants, computed once.
    static let shared = FixedNonceSigner()

    let r: BigUInt
    let rBytes: [UInt8]
    let kInverse: BigUInt

    private init() {
        let n = Self.order
        let kG = try! P256.Signing.PrivateKey(rawRepresentation: Self.nonce).publicKey.x963Representation
        let x = BigUInt(Data(kG[1..<33]))
        r = x % n
        rBytes = Array(r.serialize())
        kInverse = BigUInt(Data(Self.nonce)).inverse(n)!
    }

    /// The DER `SEQUENCE { INTEGER r, INTEGER s }` signature of `tbs` by `privateScalar`.
    func sign(_ tbs: [UInt8], privateScalar: [UInt8]) -> (r: [UInt8], s: [UInt8]) {
        let n = Self.order
        let e = BigUInt(Data(SHA256.hash(data: tbs)))  // not reduced first, as the firmware
        let d = BigUInt(Data(privateScalar))
        let s = (kInverse * ((e + d * r) % n)) % n
        return (rBytes, Array(s.serialize()))
    }
}
