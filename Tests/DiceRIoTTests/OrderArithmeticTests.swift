import BigInt
import Crypto
import Foundation
@testable import DiceRIoT
import Testing

/// The hand-written arithmetic mod n against BigInt (the implementation it replaced),
/// on edge values and on random ones.
@Suite("Arithmetic mod n")
struct OrderArithmeticTests {
    static let n = BigUInt("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551", radix: 16)!

    static func big(_ x: Scalar256) -> BigUInt { BigUInt(Data(x.bigEndianBytes)) }

    static func scalar(_ x: BigUInt) -> Scalar256 {
        let bytes = Array(x.serialize())
        return Scalar256(bigEndian: [UInt8](repeating: 0, count: 32 - bytes.count) + bytes)
    }

    /// 0, 1, 2, n−2, n−1, limb boundaries and values with every bit of a limb set.
    static let edges: [BigUInt] = [
        0, 1, 2, n - 2, n - 1, BigUInt(1) << 64, (BigUInt(1) << 64) - 1, (BigUInt(1) << 128) - 1,
        (BigUInt(1) << 192) + 1, (BigUInt(1) << 255), n >> 1, (n >> 1) + 1,
    ]

    /// Deterministic pseudo-random values below n (SHA-256 of a counter), so a failure repeats.
    static func randoms(_ count: Int, seed: String) -> [BigUInt] {
        (0..<count).map { i in BigUInt(Data(SHA256.hash(data: Array("\(seed)-\(i)".utf8)))) % n }
    }

    @Test("the constants: n·n' ≡ −1 mod 2⁶⁴, R² mod n")
    func constants() {
        #expect(OrderArithmetic.n.w0 &* OrderArithmetic.nPrime == UInt64.max)
        #expect(Self.big(OrderArithmetic.n) == Self.n)
        #expect(Self.big(OrderArithmetic.rSquared) == (BigUInt(1) << 512) % Self.n)
    }

    @Test("bytes round-trip, big-endian")
    func bytes() {
        let bytes: [UInt8] = Array(1...32)
        let x = Scalar256(bigEndian: bytes)
        #expect(x.bigEndianBytes == bytes)
        #expect(x.w3 == 0x0102_0304_0506_0708 && x.w0 == 0x191a_1b1c_1d1e_1f20)
        #expect(Self.big(x) == BigUInt(Data(bytes)))
    }

    @Test("a·b mod n and (a + b) mod n, edge values against each other")
    func edgeProductsAndSums() {
        for a in Self.edges {
            for b in Self.edges {
                let (x, y) = (Self.scalar(a % Self.n), Self.scalar(b % Self.n))
                #expect(Self.big(OrderArithmetic.multiply(x, y)) == (a % Self.n) * (b % Self.n) % Self.n, "\(a) · \(b)")
                #expect(Self.big(OrderArithmetic.add(x, y)) == ((a % Self.n) + (b % Self.n)) % Self.n, "\(a) + \(b)")
            }
        }
    }

    @Test("a·b mod n on 2,000 random pairs")
    func randomProducts() {
        let a = Self.randoms(2000, seed: "a"), b = Self.randoms(2000, seed: "b")
        let rInverse = (BigUInt(1) << 256).inverse(Self.n)!
        for (x, y) in zip(a, b) {
            #expect(Self.big(OrderArithmetic.multiply(Self.scalar(x), Self.scalar(y))) == x * y % Self.n)
            #expect(Self.big(OrderArithmetic.montgomeryProduct(Self.scalar(x), Self.scalar(y))) == x * y * rInverse % Self.n)
        }
    }

    @Test("a⁻¹ mod n, edge and random values")
    func inverses() {
        for a in Self.edges.filter({ $0 % Self.n != 0 }) + Self.randoms(20, seed: "inverse") {
            let x = a % Self.n
            #expect(Self.big(OrderArithmetic.inverse(Self.scalar(x))) == x.inverse(Self.n)!)
        }
        #expect(OrderArithmetic.inverse(.zero) == .zero)
    }

    @Test("any 256-bit value is reduced by one subtraction: 2²⁵⁶−1, n, n−1, 0")
    func reduction() {
        for x in [(BigUInt(1) << 256) - 1, Self.n, Self.n - 1, Self.n + 1, 0] {
            #expect(Self.big(OrderArithmetic.reduced(Self.scalar(x))) == x % Self.n)
        }
    }

    /// The signature formula the firmware uses, with BigInt, as the signer computed it before.
    static func referenceS(digest e: BigUInt, d: BigUInt) -> BigUInt {
        let k = BigUInt(Data(FixedNonceSigner.nonce))
        let r = Self.big(FixedNonceSigner.shared.r)
        return k.inverse(n)! * ((e + d * r) % n) % n
    }

    @Test("s = k⁻¹(e + r·d) mod n: digests of every size against BigInt, d = 1, n−1 and random")
    func signatures() {
        let digests = [BigUInt(0), 1, Self.n - 1, Self.n, (BigUInt(1) << 256) - 1] + Self.randoms(300, seed: "e")
        let keys = [BigUInt(1), 2, Self.n - 1] + Self.randoms(300, seed: "d")
        for (i, e) in digests.enumerated() {
            let d = keys[i % keys.count]
            let s = FixedNonceSigner.shared.s(digest: Self.scalar(e), privateScalar: Self.scalar(d))
            #expect(Self.big(s) == Self.referenceS(digest: e, d: d), "e \(e), d \(d)")
        }
    }

    @Test("r is x(k·G) mod n for the firmware's nonce")
    func constantR() {
        let kG = try! P256.Signing.PrivateKey(rawRepresentation: FixedNonceSigner.nonce).publicKey.x963Representation
        #expect(Self.big(FixedNonceSigner.shared.r) == BigUInt(Data(kG[1..<33])) % Self.n)
        #expect(FixedNonceSigner.shared.rBytes == Array(Self.big(FixedNonceSigner.shared.r).serialize()))
    }

    @Test("the hand-written certificate wrapper gives swift-asn1's bytes, for short, long, high-bit and leading-zero integers")
    func certificateWrapper() throws {
        let tbs: [[UInt8]] = [[0x30, 0x03, 0x02, 0x01, 0x05], [UInt8](repeating: 0x41, count: 120), [UInt8](repeating: 0x42, count: 300)]
        let integers: [[UInt8]] = [
            [0x01], [0x7F], [0x80], [0xFF] + [UInt8](repeating: 0x11, count: 31), [0x00, 0x00, 0x80, 0x01],
            [0x00, 0x05], Array(1...32), FixedNonceSigner.shared.rBytes,
        ]
        for t in tbs {
            for r in integers {
                for s in integers {
                    let reference = try DevKitDER.certificate(tbs: t, signature: (Array(r.drop { $0 == 0 }), Array(s.drop { $0 == 0 })))
                    #expect(DevKitDER.certificateBytes(tbs: t, r: r, s: s) == reference)
                }
            }
        }
    }

    @Test("Hd of two parts equals Hd of their concatenation, at every split around a block")
    func measurementOfTwoParts() {
        let message = (0..<200).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        for split in [0, 1, 31, 32, 55, 56, 63, 64, 65, 128, 199, 200] {
            #expect(MeasurementHash.hash(Array(message[..<split]), Array(message[split...])) == MeasurementHash.hash(message))
        }
    }
}
