import DevKitBoardCLI
import ArgumentParser
import DevKitREPL
import DevKitSystem
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// `devkit console`: an interactive console on the board (a REPL on libedit), or a
/// plain raw terminal with `--raw`.
///
/// (Named `ConsoleREPLCommand` because DevKitConsole's typed `ConsoleCommand` is
/// used here too.)
struct ConsoleREPLCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "console",
        abstract: "Talk to the board's configuration console interactively.",
        usage: "devkit console [--port <path>] [--log <file>] [--raw] [<options>]",
        discussion: """
            Type the board's commands (help, version, scan, set_wifissid, ...) and see its \
            replies as they arrive. Tab completes command names, Up/Down recall history, \
            Ctrl-C stops waiting for a reply, Ctrl-D quits.

            Secrets stay secret: `set_dps_uds`, `set_wifipwd`, `set_az_iothub` and \
            `set_az_iotdps` ask for the value without showing it as soon as the space \
            after the name is typed (or Enter, typed alone); secrets never reach the \
            screen, the history file ($XDG_STATE_HOME/devkit/history, mode 0600) or the \
            --log transcript.

            devkit's own commands start with a colon: :help, :info (firmware version), \
            :uds generate FILE (new UDS saved to FILE first, then stored), \
            :cert --elf FILE --uds-file FILE --mac MAC [--output-dir DIR] (the Alias \
            certificate, with the firmware version read from the board), :quit.

            A board in user mode (running its sketch) has no console: what it prints \
            is shown as it comes, with a note; hold A and press reset for the \
            configuration console. After `set_dps_uds` the firmware prints `Invalid \
            UDS.` before its success line (an off-by-one length check): the UDS was \
            stored, and the console says so.

            When the board is unplugged the console says so and reconnects when the \
            device comes back, as tio does.

            --raw is a plain terminal instead: every key goes to the board (Ctrl-C \
            too); Ctrl-] quits. With standard input not a terminal it shows what the \
            board prints until stopped (SIGINT/SIGTERM).

            Example:
              devkit emulate --link /tmp/devkit0 &
              devkit console --port /tmp/devkit0 --log session.log
            """)

    @OptionGroup var portOptions: PortOptions

    @Option(name: .long, help: ArgumentHelp(
        "Append a timestamped transcript to this file (secrets masked, mode 0600).", valueName: "file"), completion: .file())
    var log: String?

    @Flag(name: .long, help: "Plain terminal: bytes both ways, no line editing; Ctrl-] quits.")
    var raw = false

    /// --quiet / --verbose, as on every command.
    @OptionGroup var outputLevel: OutputLevelOptions

    func run() throws {
        let stoppedBy = try reportingErrors { () throws -> Int32? in
            let path = try portOptions.resolvedPath()
            let baud = portOptions.baud
            let link = try ReplDeviceLink(
                path: path, opener: ReplDeviceLink.serialOpener(baudRate: baud), describeError: cliMessage)
            let transcript = try log.map { path throws(ReplTranscriptError) in try ReplTranscript(path: path) }
            link.start()
            defer { link.stop() }
            if raw { return ReplRawTerminal(link: link, transcript: transcript).run() }
            ReplInterrupts.install()
            let editor = LineEditor(
                program: "devkit", prompt: "devkit> ", historyFile: Self.historyPath())
            let session = ReplSession(
                link: link, editor: editor, transcript: transcript, interruptFD: ReplInterrupts.fd,
                describeError: cliMessage, certHandler: ReplCert.run)
            session.run()
            editor.finish()
            return nil
        }
        // Stopped by a signal (--raw): ended as the signal would end it, once the
        // port and the terminal are back (the shell sees 130 or 143).
        if let stoppedBy { SignalRelay.dieOf(stoppedBy) }
    }

    /// `$XDG_STATE_HOME/devkit/history`, else `~/.local/state/devkit/history`.
    static func historyPath() -> String? {
        let environment = ProcessInfo.processInfo.environment
        if let state = environment["XDG_STATE_HOME"], state.hasPrefix("/") {
            return state + "/devkit/history"
        }
        guard let home = environment["HOME"], !home.isEmpty else { return nil }
        return home + "/.local/state/devkit/history"
    }
}
