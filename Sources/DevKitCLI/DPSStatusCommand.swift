import DevKitBoardCLI
import ArgumentParser
import DPSModel
import DPSService
import DevKitModel

/// `devkit dps status ID`: how the device's registration went.
struct DPSStatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show a device's registration state (assigned hub, device ID, error).",
        usage: """
            devkit dps status <registration-id> --connection-string-file <file>
                [--endpoint <url>] [--ca-file <file>] [--json]
            """,
        discussion: """
            After the board has booted its sketch and contacted DPS: status \
            (assigned, assigning, failed, disabled, unassigned), the IoT Hub and \
            device ID it was assigned, and DPS's error when it failed. Exit 66 when \
            the device never registered (or its registration was deleted).

            Examples:
              devkit dps status az-a4cf120b9e31v1v6v2 --connection-string-file dps.cs
              devkit dps status az-a4cf120b9e31v1v6v2 --connection-string-file dps.cs \\
                  --json

            \(DPSHelp.exitCodes)
            """)

    @Argument(help: ArgumentHelp("The device's registration ID.", valueName: "registration-id"))
    var registrationID: String

    @OptionGroup var connection: DPSConnectionOptions

    @Flag(help: "The registration state as one JSON object.")
    var json = false

    @OptionGroup var outputLevel: OutputLevelOptions

    func run() async throws {
        try await reportingErrors {
            let state = try await withDPSClient(connection) { try await $0.registrationState(registrationID) }
            guard let state else { throw DPSNotFound.registration(registrationID) }
            if json {
                try printJSON(state)
                return
            }
            var rows: [(label: String, value: String)] = [("Registration ID", state.registrationId)]
            rows.append(("Status", state.status?.rawValue ?? "unknown"))
            if let s = state.substatus { rows.append(("Substatus", s)) }
            if let h = state.assignedHub { rows.append(("Assigned hub", h)) }
            if let d = state.deviceId { rows.append(("Device ID", d)) }
            if let c = state.errorCode { rows.append(("Error code", String(c))) }
            if let m = state.errorMessage { rows.append(("Error", m)) }
            if let t = state.createdDateTimeUtc { rows.append(("Created", t)) }
            if let t = state.lastUpdatedDateTimeUtc { rows.append(("Updated", t)) }
            print(labelledLines(rows))
        }
    }
}
