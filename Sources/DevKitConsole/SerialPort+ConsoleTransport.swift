import SerialPort

/// The real transport: a DevKit's USB serial port (or a virtual DevKit's pty).
/// Errors are `SerialPortError`, unchanged (unplugging: `.disconnected`).
extension SerialPort: ConsoleTransport {
    public func send(_ bytes: [UInt8], deadline: ContinuousClock.Instant) throws {
        try write(bytes, deadline: deadline)
    }

    public func receive(deadline: ContinuousClock.Instant) throws -> [UInt8] {
        try read(maxCount: 4096, deadline: deadline)
    }
}
