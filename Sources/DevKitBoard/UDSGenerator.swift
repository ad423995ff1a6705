import DevKitModel

/// Fresh Unique Device Secrets.
public enum UDSGenerator {
    /// 32 bytes from the system CSPRNG (getrandom(2) on Linux, via the standard
    /// library's `SystemRandomNumberGenerator`).
    public static func generate() -> UDS {
        var generator = SystemRandomNumberGenerator()
        return generate(using: &generator)
    }

    /// The same from any generator (deterministic ones for tests): four 64-bit
    /// words, each written most significant byte first.
    public static func generate<G: RandomNumberGenerator>(using generator: inout G) -> UDS {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(UDS.byteCount)
        for _ in 0..<(UDS.byteCount / 8) {
            let word = generator.next() as UInt64
            for shift in stride(from: 56, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: word >> UInt64(shift))) }
        }
        return try! UDS(bytes: bytes)  // 32 bytes by construction
    }
}
