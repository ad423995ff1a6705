import ArgumentParser
import DevKitConsole
import DevKitModel
import DevKitBoard

/// `devkit info`: firmware version, and with --reboot the MAC and registration ID.
package struct InfoCommand: ParsableCommand {
    package init() {}

    package static let configuration = CommandConfiguration(
        commandName: "info",
        abstract: "Show the DevKit's firmware version; with --reboot also its MAC and registration ID.",
        usage: """
            devkit info [--port <path>] [--reboot [--timeout <seconds>]] [--json]
                [<options>]
            """,
        discussion: """
            Runs `version` on the configuration console: the DevKitSDK version is the \
            firmware version the enrollment certificate depends on.

            No console command prints the MAC address. With --reboot, devkit runs \
            `exit` and reads the user-mode boot log, where the DPS sample sketch logs \
            `DevKit MAC Address:` and `DevKit Firmware Version:`; it then shows the \
            registration ID the device derives by itself, az-<mac>v<version, '.'→'v'>. \
            The board is left running its sketch in user mode. Release button A first, \
            or the board comes back in configuration mode and never prints its MAC.

            \(BoardHelp.modes)

            Examples:
              devkit info --port /dev/ttyACM0
              devkit info --port /dev/ttyACM0 --reboot --json

            \(BoardHelp.exitCodes)
            """)

    @OptionGroup package var port: PortOptions

    @Flag(help: "Also reboot the board and read its MAC address from the boot log.")
    package var reboot = false

    @Option(help: ArgumentHelp(
        "With --reboot: how long to wait for the boot log's MAC address line (default 30).",
        discussion: "Sketches other than the DPS sample may never print it.", valueName: "seconds"))
    package var timeout: Int?

    @Flag(help: "Print the result as one JSON object.")
    package var json = false

    /// --quiet / --verbose, as on every command.
    @OptionGroup package var outputLevel: OutputLevelOptions

    package struct Result: Encodable {
        let port: String
        let firmwareVersion: String
        // Absent values are `null`, not missing keys: scripts can rely on every key.
        @NullEncoded var micoVersion: String?
        @NullEncoded var mbedOSVersion: String?
        @NullEncoded var mbedTLSVersion: String?
        @NullEncoded var wifiVersion: String?
        @NullEncoded var macAddress: String?
        @NullEncoded var registrationID: String?
        enum CodingKeys: String, CodingKey {
            case port
            case firmwareVersion = "firmware_version"
            case micoVersion = "mico_version"
            case mbedOSVersion = "mbed_os_version"
            case mbedTLSVersion = "mbed_tls_version"
            case wifiVersion = "wifi_version"
            case macAddress = "mac_address"
            case registrationID = "registration_id"
        }
    }

    package func validate() throws {
        if let timeout {
            guard timeout >= 1 else { throw ValidationError("--timeout must be at least 1 second.") }
            guard reboot else { throw ValidationError("--timeout bounds the wait for the boot log: give it with --reboot.") }
        }
    }

    package func run() throws {
        try reportingErrors {
            let path = try port.resolvedPath()
            let info = try withConsoleSession(port) { session in
                try DevKitWorkflow(session: session, progress: progressReporter()).info(
                    reboot: reboot, bootLogTimeout: timeout.map { .seconds($0) },
                    waitingForBootLog: { wait in
                        // One line even when stderr is not a terminal: the wait can be long and silent.
                        guard OutputLevel.current != .quiet else { return }
                        printError("devkit: the board is rebooting; waiting up to \(ConsoleError.format(wait)) for its boot log "
                            + "to print `DevKit MAC Address:` (the DPS sample sketch does; others may not: --timeout shortens the wait)")
                    })
            }
            let v = info.versions
            let result = Result(
                port: path, firmwareVersion: v.firmwareVersion.text, micoVersion: v.mico, mbedOSVersion: v.mbedOS,
                mbedTLSVersion: v.mbedTLS, wifiVersion: v.wifi, macAddress: info.macAddress?.hex,
                registrationID: info.registrationID?.value)
            if json {
                try printJSON(result)
                return
            }
            // The versions are the board's own text: labelledLines escapes them.
            var lines: [(label: String, value: String)] = [("Firmware version", v.firmwareVersion.text)]
            if let mico = v.mico { lines.append(("Mico version", mico)) }
            if let mbed = v.mbedOS { lines.append(("mbed-os version", mbed)) }
            if let tls = v.mbedTLS { lines.append(("mbed TLS version", tls)) }
            lines.append(("Wi-Fi version", v.wifi ?? "unknown"))
            if reboot {
                lines.append(("MAC address", info.macAddress?.hex ?? "not in the boot log"))
                if let id = info.registrationID { lines.append(("Registration ID", id.value)) }
            }
            print(labelledLines(lines))
            if reboot {
                if let logged = info.bootLogFirmwareVersion, logged != v.firmwareVersion {
                    printWarning("the sketch logged firmware version \(logged), `version` said \(v.firmwareVersion)")
                }
            }
        }
    }
}
