/// Wraps a transport and counts the bytes each way, for wire-time benchmarks
/// (`Scripts/bench-session.sh` compares wall time with bytes × 10 bits / baud).
public final class CountingTransport: ConsoleTransport {
    public let base: any ConsoleTransport
    /// Bytes handed to `send` (host → board).
    public private(set) var sentBytes = 0
    /// Bytes returned by `receive` (board → host).
    public private(set) var receivedBytes = 0

    public init(_ base: any ConsoleTransport) { self.base = base }

    public func send(_ bytes: [UInt8], deadline: ContinuousClock.Instant) throws {
        try base.send(bytes, deadline: deadline)
        sentBytes += bytes.count
    }

    public func receive(deadline: ContinuousClock.Instant) throws -> [UInt8] {
        let bytes = try base.receive(deadline: deadline)
        receivedBytes += bytes.count
        return bytes
    }
}
