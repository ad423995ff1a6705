import DevKitConsole

/// Opens the board's serial port, runs `body` on a console session over it, closes it.
@discardableResult
func withConsoleSession<T>(_ options: PortOptions, _ body: (ConsoleSession) throws -> T) throws -> T {
    _ = try options.resolvedPath()
    // Replaced by the SerialPort transport once the serial driver lands.
    throw ConsoleError.notSynchronized
}
