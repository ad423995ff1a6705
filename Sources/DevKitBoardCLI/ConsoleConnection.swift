import DevKitConsole
import SerialPort
#if canImport(Glibc)
import Glibc
#endif

/// Opens the board's serial port (exclusively: a second devkit fails at once),
/// runs `body` on a console session over it, and closes it, restoring its settings.
///
/// With `DEVKIT_WIRE_STATS=1` in the environment, prints the bytes sent and received
/// and the session's time (port open to close) to stderr at the end (for `Scripts/bench-session.sh`; no contents, only counts).
@discardableResult
package func withConsoleSession<T>(_ options: PortOptions, _ body: (ConsoleSession) throws -> T) throws -> T {
    let port = try SerialPort(path: try options.resolvedPath(), baudRate: options.baud)
    let signals = PortStopSignals(cancelling: port)
    defer {
        signals.restore()
        port.close()
        PortStopSignals.reraiseIfCaught()
    }
    let transport = VerboseTransport.ifVerbose(port)
    guard getenv("DEVKIT_WIRE_STATS") != nil else {
        return try body(ConsoleSession(transport: transport))
    }
    let counter = CountingTransport(transport)
    let start = ContinuousClock.now
    defer {
        let (seconds, attoseconds) = (ContinuousClock.now - start).components
        let microseconds = seconds * 1_000_000 + attoseconds / 1_000_000_000_000
        printError("devkit: wire: sent \(counter.sentBytes) bytes, received \(counter.receivedBytes) bytes, "
            + "session \(microseconds) us")
    }
    return try body(ConsoleSession(transport: counter))
}
