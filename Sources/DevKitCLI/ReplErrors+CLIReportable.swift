import DevKitBoardCLI
import DevKitREPL

extension ReplLinkError: CLIReportable {
    public var exitStatus: ExitStatus { .unavailable }
    public var userMessage: String { description }
}

extension ReplTranscriptError: CLIReportable {
    public var exitStatus: ExitStatus { .cannotCreate }
    public var userMessage: String { description + ": choose a writable path for --log" }
}
