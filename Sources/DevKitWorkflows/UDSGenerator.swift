/// Fresh Unique Device Secrets.
public enum UDSGenerator {
    /// 32 bytes from the system CSPRNG (getrandom(2) on Linux, via the standard
    /// library's `SystemRandomNumberGenerator`), as 64 lower-case hex digits.
    public static func generate() -> String {
        var generator = SystemRandomNumberGenerator()
        return generate(using: &generator)
    }

    /// The same from any generator (deterministic ones for tests).
    public static func generate<G: RandomNumberGenerator>(using generator: inout G) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(64)
        for _ in 0..<4 {
            let word = generator.next() as UInt64
            for shift in stride(from: 60, through: 0, by: -4) {
                out.append(digits[Int((word >> UInt64(shift)) & 0xF)])
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
