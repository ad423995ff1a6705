import DevKitSystem
import DevKitModel
import ArgumentParser
import DeviceDiscovery
import Foundation

/// `devkit list [--json] [--watch]`: the DevKits attached over USB.
struct ListCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "List the DevKits attached over USB.",
        discussion: """
            Finds every serial port whose USB parent is the board's ST-LINK probe \
            (USB 0483:374b) through udev, and shows its device node, its \
            /dev/serial/by-id link (stable across replugs), the USB serial number and \
            the USB port path (stable for a socket of a hub). Other serial ports are \
            not listed. A board shows up in any mode; its console answers only in \
            configuration mode (hold A, press reset).

            With exactly one board attached, commands that talk to a board need no \
            --port.

            --watch keeps running and prints each board as it is plugged in or \
            unplugged, until interrupted. With --json it prints one object per \
            line: first {"event":"snapshot","devices":[...]} (once it is \
            listening), then {"event":"add"|"remove","device":{...}}.

            Examples:
              devkit list
              devkit list --json | jq -r '.devices[].node'
              devkit list --watch --json
            """)

    @Flag(name: .long, help: "Print JSON for scripts: {\"devices\": [...]}; with --watch, one JSON object per line.")
    var json = false

    @Flag(name: .long, help: "Keep running and report boards as they are plugged in and unplugged.")
    var watch = false

    /// --quiet / --verbose, as on every command.
    @OptionGroup var outputLevel: OutputLevelOptions

    func run() async throws {
        try await reportingErrors {
            if watch {
                try await runWatch()
            } else {
                let boards = try DeviceDiscovery.enumerate()
                if json {
                    listOutput(try ListOutput.json(["devices": AnyEncodable(boards)]))
                } else if boards.isEmpty {
                    printError(ListOutput.noBoardHint)
                } else {
                    listOutput(ListOutput.table(boards))
                }
            }
        }
    }

    /// Snapshot first (taken after the monitor is listening, so nothing is missed),
    /// then one line per event.
    private func runWatch() async throws {
        let monitor = try DeviceMonitor()
        defer { monitor.stop() }
        if json {
            listOutput(try ListOutput.json([
                "event": AnyEncodable("snapshot"),
                "devices": AnyEncodable(monitor.attached),
            ]))
        } else {
            if monitor.attached.isEmpty {
                printError(ListOutput.noBoardHint)
            } else {
                listOutput(ListOutput.table(monitor.attached))
            }
            printError("Watching for DevKits being plugged in or unplugged (Ctrl-C to stop)…")
        }
        for try await event in monitor.events {
            if json {
                listOutput(try ListOutput.json([
                    "event": AnyEncodable(event.action),
                    "device": AnyEncodable(event.device),
                ]))
            } else {
                let verb = event.action == "add" ? "plugged in" : "unplugged"
                var line = "\(verb): \(event.device)"
                if let link = event.device.byIDLink { line += " \(link)" }
                listOutput(escapedControlCharacters(line))
            }
        }
    }
}

/// Formatting for `devkit list`, kept apart so tests can check it.
enum ListOutput {
    static let noBoardHint =
        "No DevKit attached. Plug one in (hold A, reset to enter configuration mode); "
        + "`devkit emulate` starts a virtual one."

    /// Aligned columns: NODE, SERIAL, USB, BY-ID ("-" when unknown).
    static func table(_ boards: [DevKitDevice]) -> String {
        let header = ["NODE", "SERIAL", "USB", "BY-ID"]
        let rows = boards.map { board in
            // The USB serial is the board's own text (udev passes it on): escaped.
            [board.devnode, board.serialNumber ?? "-", board.usbPath ?? "-", board.byIDLink ?? "-"].map { escaped($0) }
        }
        let widths = header.indices.map { column in
            ([header] + rows).map { $0[column].count }.max() ?? 0
        }
        return ([header] + rows).map { row in
            row.enumerated().map { column, cell in
                column == row.count - 1 ? cell : cell.padding(toLength: widths[column], withPad: " ", startingAt: 0)
            }.joined(separator: "  ")
        }.joined(separator: "\n")
    }

    /// One line of JSON for `list --json` and each `--watch` event.
    static func json(_ object: [String: AnyEncodable]) throws -> String {
        try JSONOutput.text(object)
    }
}

/// Writes a line to standard output at once (unbuffered), so a reader on a pipe
/// sees each `--watch` event as it happens.
private func listOutput(_ text: String) {
    writeAll(STDOUT_FILENO, text + "\n")
}
