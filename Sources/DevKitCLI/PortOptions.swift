import ArgumentParser

/// The `--port` / `--baud` options shared by every command that talks to a board.
struct PortOptions: ParsableArguments {
    @Option(
        name: .long,
        help: ArgumentHelp(
            "Serial device of the DevKit, e.g. /dev/ttyACM0 or a /dev/serial/by-id link.",
            discussion: "Optional when exactly one DevKit is attached.",
            valueName: "path"))
    var port: String?

    @Option(name: .long, help: "Baud rate of the serial port.")
    var baud: Int = 115_200

    /// The device path to open: `--port`, else the single attached DevKit.
    func resolvedPath() throws -> String {
        if let port { return port }
        // Discovery fills this in (issue 4); until then a port must be named.
        throw ValidationError(
            "No --port given. Name the DevKit's serial device, e.g. --port /dev/ttyACM0 "
                + "(or start a virtual one with `devkit emulate`).")
    }
}
