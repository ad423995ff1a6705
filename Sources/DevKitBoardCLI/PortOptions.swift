import ArgumentParser
import DeviceDiscovery
import SerialPort

/// The `--port` / `--baud` options shared by every command that talks to a board.
package struct PortOptions: ParsableArguments {
    package init() {}

    @Option(
        name: .long,
        help: ArgumentHelp(
            "Serial device of the DevKit, e.g. /dev/ttyACM0 or a /dev/serial/by-id link.",
            discussion: "Optional when exactly one DevKit is attached.",
            valueName: "path"),
        completion: Self.portCompletion)
    package var port: String?

    @Option(name: .long, help: "Baud rate of the serial port.")
    package var baud: Int = SerialPort.defaultBaudRate

    /// Shell completion of a port: the attached DevKits' nodes (not probed: a
    /// completion must not open a port another program may be using).
    package static let portCompletion = CompletionKind.shellCommand("devkit list --names")

    /// The device path to open: `--port`, else the single attached DevKit's node.
    ///
    /// - Throws: `DiscoveryError.noBoardAttached` or `.multipleBoards` (which lists
    ///   the boards) when `--port` is missing and discovery cannot pick one board.
    package func resolvedPath() throws -> String {
        if let port { return port }
        return try DeviceDiscovery.singleBoard().devnode
    }
}
