import DevKitConsole
import SerialPort
#if canImport(Glibc)
import Glibc
#endif

/// Opens the board's serial port (exclusively: a second devkit fails at once),
/// runs `body` on a console session over it, and closes it, restoring its settings.
///
/// With `DEVKIT_WIRE_STATS=1` in the environment, prints the bytes sent and received
/// to stderr at the end (for `Scripts/bench-session.sh`; no contents, only counts).
@discardableResult
func withConsoleSession<T>(_ options: PortOptions, _ body: (ConsoleSession) throws -> T) throws -> T {
    let port = try SerialPort(path: try options.resolvedPath(), baudRate: options.baud)
    defer { port.close() }
    guard getenv("DEVKIT_WIRE_STATS") != nil else {
        return try body(ConsoleSession(transport: port))
    }
    let counter = CountingTransport(port)
    defer { printError("devkit: wire: sent \(counter.sentBytes) bytes, received \(counter.receivedBytes) bytes") }
    return try body(ConsoleSession(transport: counter))
}
