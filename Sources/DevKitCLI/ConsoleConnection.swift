import DevKitConsole
import SerialPort

/// Opens the board's serial port (exclusively: a second devkit fails at once),
/// runs `body` on a console session over it, and closes it, restoring its settings.
@discardableResult
func withConsoleSession<T>(_ options: PortOptions, _ body: (ConsoleSession) throws -> T) throws -> T {
    let port = try SerialPort(path: try options.resolvedPath(), baudRate: options.baud)
    defer { port.close() }
    return try body(ConsoleSession(transport: port))
}
