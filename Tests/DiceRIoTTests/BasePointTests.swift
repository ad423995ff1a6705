import Crypto
@testable import DiceRIoT
import Testing

/// d·G through BoringSSL directly against swift-crypto's public API, and the range the
/// firmware accepts. The vectors check whole certificates; these check the one operation
/// on scalars no vector reaches (the ends of the range, random ones).
@Suite struct BasePointTests {
    /// n, big-endian.
    static let n: [UInt8] = [
        0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
    ]

    static func adding(_ bytes: [UInt8], _ delta: Int) -> [UInt8] {
        var out = bytes
        var carry = delta
        for i in stride(from: 31, through: 0, by: -1) where carry != 0 {
            let v = Int(out[i]) + carry
            out[i] = UInt8(truncatingIfNeeded: v)
            carry = v >> 8  // arithmetic shift: -1 for a borrow
        }
        return out
    }

    static func point(_ d: [UInt8], direct: Bool) -> [UInt8]? {
        var out = [UInt8](repeating: 0xee, count: 65)
        let ok = d.withUnsafeBytes { d in
            out.withUnsafeMutableBytes { out in
                direct ? BasePoint.publicPoint(scalar: d, into: out) : BasePoint.swiftCrypto(scalar: d, into: out)
            }
        }
        return ok ? out : nil
    }

    @Test func thisBuildCallsBoringSSLDirectly() {
        // The speed this file is for; a build where the import fell away should say so here.
        #expect(BasePoint.usesBoringSSLDirectly)
    }

    @Test func randomScalarsMatchSwiftCrypto() {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<500 {
            let d = (0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) }
            let reference = Self.point(d, direct: false)  // nil when d ≥ n (odds ~2⁻³²)
            #expect(Self.point(d, direct: true) == reference)
        }
    }

    /// The batch (one field inversion for all, through BoringSSL's internal EC
    /// functions) against swift-crypto, point by point: batches of 1 to 40 random
    /// scalars with out-of-range ones mixed in, which get nil and leave the others right.
    @Test func batchesMatchSwiftCrypto() {
        // The check `publicPoints` relies on: false would mean one key at a time (slower).
        #expect(BasePoint.batchesAgree)
        var generator = SystemRandomNumberGenerator()
        let outside: [[UInt8]] = [[UInt8](repeating: 0, count: 32), Self.n, [UInt8](repeating: 0xff, count: 32)]
        for size in [1, 2, 3, 8, 40] {
            var scalars = (0..<size).map { _ in (0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) } }
            if size > 1 { scalars[size / 2] = outside[size % outside.count] }
            let points = BasePoint.publicPoints(of: scalars)
            #expect(points.count == size)
            for (d, point) in zip(scalars, points) {
                #expect(point == Self.point(d, direct: false), "batch of \(size)")
            }
        }
        // The batch itself ran (a fallback would give the same points, more slowly).
        #expect(BasePoint.layoutMatches)
        for size in [8, 40, 64] {
            let valid = (0..<size).map { i in [UInt8](repeating: 0, count: 30) + [UInt8(i >> 8), UInt8(i & 0xff) | 1] }
            #expect(BasePoint.batch(valid) == valid.map { Self.point($0, direct: false)! }, "batch of \(size)")
        }
        // More than one call's 64 points.
        let many = (0..<130).map { _ in (0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) } }
        #expect(BasePoint.publicPoints(of: many) == many.map { Self.point($0, direct: false) })
        #expect(BasePoint.publicPoints(of: []).isEmpty)
        #expect(BasePoint.publicPoints(of: outside) == [nil, nil, nil])
    }

    @Test func theEndsOfTheRange() throws {
        let one = [UInt8](repeating: 0, count: 31) + [1]
        // 1·G is the generator itself.
        let g = try #require(Self.point(one, direct: true))
        #expect(g == [0x04] + Array(P256Generator.x) + Array(P256Generator.y))
        let nMinus1 = Self.adding(Self.n, -1)
        let minusG = try #require(Self.point(nMinus1, direct: true))
        #expect(minusG == Self.point(nMinus1, direct: false))
        #expect(minusG[1..<33] == g[1..<33])  // −G: the same x, y negated
        #expect(minusG[33...] != g[33...])
    }

    @Test(arguments: [
        ("zero", [UInt8](repeating: 0, count: 32)),
        ("n", BasePointTests.n),
        ("n + 1", BasePointTests.adding(BasePointTests.n, 1)),
        ("2²⁵⁶ − 1", [UInt8](repeating: 0xff, count: 32)),
    ])
    func outOfRangeIsRefusedAndLeavesTheOutputAlone(name: String, d: [UInt8]) {
        var out = [UInt8](repeating: 0xee, count: 65)
        let ok = d.withUnsafeBytes { d in out.withUnsafeMutableBytes { BasePoint.publicPoint(scalar: d, into: $0) } }
        #expect(!ok, "\(name)")
        #expect(out == [UInt8](repeating: 0xee, count: 65), "\(name)")
        #expect(Self.point(d, direct: false) == nil, "swift-crypto refuses \(name) too")
    }
}

/// P-256's base point (SEC 2, §2.4.2).
enum P256Generator {
    static let x: [UInt8] = hex("6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296")
    static let y: [UInt8] = hex("4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5")
    static func hex(_ s: String) -> [UInt8] {
        let c = Array(s.utf8)
        return stride(from: 0, to: c.count, by: 2).map { UInt8(String(decoding: c[$0..<$0 + 2], as: UTF8.self), radix: 16)! }
    }
}
