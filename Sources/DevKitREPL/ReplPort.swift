import SerialPort

/// The console's port is the SerialPort driver (exclusive, raw 8N1, poll deadlines).
extension SerialPort: ReplPort {
    public func readBytes(maxCount: Int, deadline: ContinuousClock.Instant) throws -> [UInt8] {
        do {
            return try read(maxCount: maxCount, deadline: deadline)
        } catch .cancelled {
            return []  // `cancelRead()` woke us: the link checks whether it is stopping
        }
    }

    public func writeBytes(_ bytes: [UInt8], deadline: ContinuousClock.Instant) throws {
        try write(bytes, deadline: deadline)
    }

    public func cancelRead() { cancel() }

    public func closePort() { close() }
}

extension ReplDeviceLink {
    /// Opens the board's port with the SerialPort driver at `baudRate`.
    public static func serialOpener(baudRate: Int) -> Opener {
        { path in try SerialPort(path: path, baudRate: baudRate) }
    }
}
