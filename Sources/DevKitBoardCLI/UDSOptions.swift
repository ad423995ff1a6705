import ArgumentParser

/// Where a UDS comes from: `--uds-file FILE`, or `-` for standard input. Which
/// other sources it excludes (`--generate-uds`, `--batch`, ...) is each command's rule.
package struct UDSOptions: ParsableArguments {
    package init() {}

    @Option(
        name: .customLong("uds-file"),
        help: ArgumentHelp("File holding the UDS as 64 hex digits; '-' reads standard input.", valueName: "file"),
        completion: .file())
    package var udsFile: String?

    package func validate() throws {
        if udsFile?.isEmpty == true { throw ValidationError("--uds-file needs a path, or '-' for standard input.") }
    }
}
