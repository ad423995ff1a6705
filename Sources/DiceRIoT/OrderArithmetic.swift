/// Arithmetic modulo the P-256 group order n on four 64-bit limbs, for the signature
/// s = k⁻¹·(e + r·d) mod n.
///
/// Written by hand because no library here offers it: BoringSSL's scalar arithmetic is
/// internal (its public BIGNUM functions allocate per operation), swift-crypto's
/// signer draws a random nonce, while the firmware's nonce is fixed; a general
/// big-integer type (BigInt) allocates per operation, which was a large share of a
/// certificate's cost. The integers here have a fixed width, live on the stack and
/// use Montgomery multiplication (CIOS), so a signature costs two multiplications.
///
/// Not constant-time, on purpose: with the firmware's fixed nonce the DeviceID key is
/// computable from any one certificate anyway (Docs/certificate.md §5), so a timing
/// channel would reveal nothing that is not already public.
struct Scalar256: Sendable, Equatable {
    /// Least significant limb first.
    var w0, w1, w2, w3: UInt64

    init(_ w0: UInt64, _ w1: UInt64, _ w2: UInt64, _ w3: UInt64) {
        (self.w0, self.w1, self.w2, self.w3) = (w0, w1, w2, w3)
    }

    static let zero = Scalar256(0, 0, 0, 0)
    static let one = Scalar256(1, 0, 0, 0)

    /// The integer of 32 big-endian bytes (any value below 2²⁵⁶).
    init(bigEndian bytes: UnsafeRawBufferPointer) {
        precondition(bytes.count == 32)
        func limb(_ i: Int) -> UInt64 { UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: 24 - 8 * i, as: UInt64.self)) }
        self.init(limb(0), limb(1), limb(2), limb(3))
    }

    init<Bytes: Collection<UInt8>>(bigEndian bytes: Bytes) {
        var copy = (UInt64(0), UInt64(0), UInt64(0), UInt64(0))
        precondition(bytes.count == 32)
        withUnsafeMutableBytes(of: &copy) { $0.copyBytes(from: bytes) }
        self = withUnsafeBytes(of: &copy) { Scalar256(bigEndian: $0) }
    }

    /// Writes 32 big-endian bytes.
    func store(bigEndianInto out: UnsafeMutableRawBufferPointer) {
        precondition(out.count >= 32)
        out.storeBytes(of: w3.bigEndian, toByteOffset: 0, as: UInt64.self)
        out.storeBytes(of: w2.bigEndian, toByteOffset: 8, as: UInt64.self)
        out.storeBytes(of: w1.bigEndian, toByteOffset: 16, as: UInt64.self)
        out.storeBytes(of: w0.bigEndian, toByteOffset: 24, as: UInt64.self)
    }

    /// 32 big-endian bytes.
    var bigEndianBytes: [UInt8] {
        [UInt8](unsafeUninitializedCapacity: 32) { buffer, count in
            store(bigEndianInto: UnsafeMutableRawBufferPointer(buffer))
            count = 32
        }
    }

    /// Bit `i` (0 = least significant).
    func bit(_ i: Int) -> Bool {
        let limb = i < 64 ? w0 : i < 128 ? w1 : i < 192 ? w2 : w3
        return (limb >> UInt64(i & 63)) & 1 == 1
    }

    /// self − other and the borrow out.
    @inline(__always)
    func subtractingReportingBorrow(_ other: Scalar256) -> (Scalar256, Bool) {
        let (d0, b0) = w0.subtractingReportingOverflow(other.w0)
        let (d1, b1) = sub(w1, other.w1, b0)
        let (d2, b2) = sub(w2, other.w2, b1)
        let (d3, b3) = sub(w3, other.w3, b2)
        return (Scalar256(d0, d1, d2, d3), b3)
    }

    /// self + other and the carry out.
    @inline(__always)
    func addingReportingCarry(_ other: Scalar256) -> (Scalar256, Bool) {
        let (s0, c0) = w0.addingReportingOverflow(other.w0)
        let (s1, c1) = add(w1, other.w1, c0)
        let (s2, c2) = add(w2, other.w2, c1)
        let (s3, c3) = add(w3, other.w3, c2)
        return (Scalar256(s0, s1, s2, s3), c3)
    }
}

@inline(__always)
private func add(_ a: UInt64, _ b: UInt64, _ carry: Bool) -> (UInt64, Bool) {
    let (s, c1) = a.addingReportingOverflow(b)
    let (t, c2) = s.addingReportingOverflow(carry ? 1 : 0)
    return (t, c1 || c2)
}

@inline(__always)
private func sub(_ a: UInt64, _ b: UInt64, _ borrow: Bool) -> (UInt64, Bool) {
    let (d, b1) = a.subtractingReportingOverflow(b)
    let (e, b2) = d.subtractingReportingOverflow(borrow ? 1 : 0)
    return (e, b1 || b2)
}

/// a·b + c + d as (high, low); never overflows 128 bits.
@inline(__always)
private func mulAdd(_ a: UInt64, _ b: UInt64, _ c: UInt64, _ d: UInt64) -> (UInt64, UInt64) {
    let (high, low) = a.multipliedFullWidth(by: b)
    let (l1, o1) = low.addingReportingOverflow(c)
    let (l2, o2) = l1.addingReportingOverflow(d)
    return (high &+ (o1 ? 1 : 0) &+ (o2 ? 1 : 0), l2)
}

/// Integers modulo n, the order of P-256's base point.
enum OrderArithmetic {
    /// n = ffffffff00000000 ffffffffffffffff bce6faada7179e84 f3b9cac2fc632551.
    /// (Computed properties, not `static let`s: literals the optimiser folds into the
    /// multiplication instead of a lazily initialised global read on every use.)
    @inline(__always)
    static var n: Scalar256 { Scalar256(0xf3b9_cac2_fc63_2551, 0xbce6_faad_a717_9e84, 0xffff_ffff_ffff_ffff, 0xffff_ffff_0000_0000) }

    /// −n⁻¹ mod 2⁶⁴, Montgomery's constant (the tests check n·n' ≡ −1).
    @inline(__always)
    static var nPrime: UInt64 { 0xccd1_c8aa_ee00_bc4f }

    /// R² mod n with R = 2²⁵⁶: converts into the Montgomery domain.
    static let rSquared: Scalar256 = {
        var x = Scalar256.one
        for _ in 0..<512 { x = add(x, x) }  // 2⁵¹² mod n
        return x
    }()

    /// x mod n for any x below 2²⁵⁶ (< 2n, so one subtraction at most).
    static func reduced(_ x: Scalar256) -> Scalar256 {
        let (d, borrow) = x.subtractingReportingBorrow(n)
        return borrow ? x : d
    }

    /// (a + b) mod n, for a, b < n.
    static func add(_ a: Scalar256, _ b: Scalar256) -> Scalar256 {
        let (s, carry) = a.addingReportingCarry(b)
        let (d, borrow) = s.subtractingReportingBorrow(n)
        // s ≥ n exactly when the 257-bit sum carried out or the subtraction did not borrow.
        return carry || !borrow ? d : s
    }

    /// a·b·R⁻¹ mod n (Montgomery multiplication, CIOS), for a, b < n.
    static func montgomeryProduct(_ a: Scalar256, _ b: Scalar256) -> Scalar256 {
        var t: (UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0)
        montgomeryStep(a, b.w0, &t)
        montgomeryStep(a, b.w1, &t)
        montgomeryStep(a, b.w2, &t)
        montgomeryStep(a, b.w3, &t)
        // t < 2n: subtract n once if t ≥ n.
        let low = Scalar256(t.0, t.1, t.2, t.3)
        let (d, borrow) = low.subtractingReportingBorrow(n)
        return t.4 != 0 || !borrow ? d : low
    }

    /// One word of CIOS: t = (t + a·bi + m·n) / 2⁶⁴, m chosen so the division is exact.
    @inline(__always)
    private static func montgomeryStep(_ a: Scalar256, _ bi: UInt64, _ t: inout (UInt64, UInt64, UInt64, UInt64, UInt64)) {
        var carry: UInt64
        (carry, t.0) = mulAdd(a.w0, bi, t.0, 0)
        (carry, t.1) = mulAdd(a.w1, bi, t.1, carry)
        (carry, t.2) = mulAdd(a.w2, bi, t.2, carry)
        (carry, t.3) = mulAdd(a.w3, bi, t.3, carry)
        let (top, topOverflow) = t.4.addingReportingOverflow(carry)
        let m = t.0 &* nPrime
        (carry, _) = mulAdd(m, n.w0, t.0, 0)
        (carry, t.0) = mulAdd(m, n.w1, t.1, carry)
        (carry, t.1) = mulAdd(m, n.w2, t.2, carry)
        (carry, t.2) = mulAdd(m, n.w3, t.3, carry)
        let (last, lastOverflow) = top.addingReportingOverflow(carry)
        t.3 = last
        t.4 = (topOverflow ? 1 : 0) &+ (lastOverflow ? 1 : 0)
    }

    /// x·R mod n.
    static func toMontgomery(_ x: Scalar256) -> Scalar256 { montgomeryProduct(x, rSquared) }

    /// x·R⁻¹ mod n.
    static func fromMontgomery(_ x: Scalar256) -> Scalar256 { montgomeryProduct(x, .one) }

    /// (a · b) mod n, for a, b < n.
    static func multiply(_ a: Scalar256, _ b: Scalar256) -> Scalar256 {
        montgomeryProduct(montgomeryProduct(a, b), rSquared)
    }

    /// a⁻¹ mod n for 0 < a < n, as a^(n−2) (n is prime); 0 for 0.
    static func inverse(_ a: Scalar256) -> Scalar256 {
        let (exponent, _) = n.subtractingReportingBorrow(Scalar256(2, 0, 0, 0))
        let base = toMontgomery(a)
        var result = toMontgomery(.one)
        for i in stride(from: 255, through: 0, by: -1) {
            result = montgomeryProduct(result, result)
            if exponent.bit(i) { result = montgomeryProduct(result, base) }
        }
        return fromMontgomery(result)
    }
}
