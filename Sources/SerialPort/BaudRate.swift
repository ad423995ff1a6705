#if canImport(Glibc)
import Glibc
#endif

extension SerialPort {
    /// The DevKit's console rate (its ST-LINK CDC-ACM port, 8N1): every default here and above.
    public static let defaultBaudRate = 115_200

    /// The standard termios rates (Linux `B50` … `B4000000`) this driver accepts.
    public static let supportedBaudRates: [Int] = baudTable.map(\.rate)

    /// Rate → termios speed constant. Linux has no arbitrary-rate API in termios
    /// (only through termios2/BOTHER ioctls), so non-standard rates are refused.
    static let baudTable: [(rate: Int, speed: speed_t)] = [
        (50, speed_t(B50)), (75, speed_t(B75)), (110, speed_t(B110)), (134, speed_t(B134)),
        (150, speed_t(B150)), (200, speed_t(B200)), (300, speed_t(B300)), (600, speed_t(B600)),
        (1200, speed_t(B1200)), (1800, speed_t(B1800)), (2400, speed_t(B2400)),
        (4800, speed_t(B4800)), (9600, speed_t(B9600)), (19200, speed_t(B19200)),
        (38400, speed_t(B38400)), (57600, speed_t(B57600)), (115_200, speed_t(B115200)),
        (230_400, speed_t(B230400)), (460_800, speed_t(B460800)), (500_000, speed_t(B500000)),
        (576_000, speed_t(B576000)), (921_600, speed_t(B921600)),
        (1_000_000, speed_t(B1000000)), (1_152_000, speed_t(B1152000)),
        (1_500_000, speed_t(B1500000)), (2_000_000, speed_t(B2000000)),
        (2_500_000, speed_t(B2500000)), (3_000_000, speed_t(B3000000)),
        (3_500_000, speed_t(B3500000)), (4_000_000, speed_t(B4000000)),
    ]

    /// The termios speed constant for `rate`, or nil when it is not a standard rate.
    static func speed(for rate: Int) -> speed_t? {
        baudTable.first(where: { $0.rate == rate })?.speed
    }
}
