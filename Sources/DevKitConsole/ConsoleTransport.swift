/// A byte pipe to a DevKit's configuration console.
///
/// `SerialPort` is the real one; tests play scripted bytes through a fake. The
/// session never sleeps: it only waits inside `receive`, against a deadline.
public protocol ConsoleTransport: AnyObject {
    /// Writes all of `bytes`, or throws when the deadline passes first.
    func send(_ bytes: [UInt8], deadline: ContinuousClock.Instant) throws
    /// Bytes available before the deadline, or [] when it passes.
    func receive(deadline: ContinuousClock.Instant) throws -> [UInt8]
}
