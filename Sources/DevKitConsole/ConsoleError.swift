import DevKitModel
import SerialPort

/// The mode a DevKit chose at its last reset (Docs/console-protocol.md, "2. Modes chosen at reset").
public enum BoardMode: Sendable, Hashable, CustomStringConvertible {
    /// Button A held at reset: the configuration console runs.
    case configuration
    /// Neither button held: the flashed sketch runs; the console does not.
    case user(UserModeEvidence)
    /// Button B held: the board runs a Wi-Fi access point `AZ-<mac>`.
    case accessPoint(mac: MACAddress?)

    /// What made the session conclude the board is in user mode.
    public enum UserModeEvidence: Sendable, Hashable {
        /// The MXChip banner or the "You can 1. press Button A…" text.
        case banner
        /// SDK log lines (`INFO:` / `ERROR:`) from a running sketch.
        case logLines
    }

    public var description: String {
        switch self {
        case .configuration: return "configuration mode"
        case .user: return "user mode"
        case .accessPoint: return "AP mode"
        }
    }
}

/// Why a `set_*` command (or `enable_secure`) did not take effect, as the board said it.
public enum CommandFailure: Sendable, Hashable {
    /// `ERROR: Failed to write EEPROM: 0x<zone>.`: the secure element refused a write.
    case eepromWriteFailed(zone: UInt8)
    /// `ERROR: Verify failed.`: the read-back after the write differed.
    case verifyFailed
    /// `Invalid Wi-Fi SSID.` and the like: the board rejected the value.
    case invalidArgument(message: String)
    /// `Usage: …`: the command was sent without its argument.
    case usage(message: String)
    /// `INFO: Enable secure channel failed.`
    case secureChannelFailed
}

/// Everything that can go wrong talking to the configuration console.
///
/// Transport errors (for `SerialPort`: `SerialPortError`, e.g. the board was
/// unplugged) are not wrapped: they propagate unchanged. No case carries a secret.
public enum ConsoleError: Error, Sendable, Hashable {
    /// A command argument failed local validation; nothing was sent.
    case invalidArgument(command: String, reason: String)
    /// No prompt: the board is not in configuration mode (or not a DevKit).
    case wrongMode(BoardMode)
    /// No prompt, and nothing a DevKit prints in any mode: `receivedBytes` is how
    /// many bytes came back (0: silence). Not evidence of user mode.
    case noAnswer(receivedBytes: Int)
    /// A wait ran out. `expected` says what the session was waiting for.
    case timeout(expected: String, after: Duration, command: String?)
    /// After `exit` the board booted its sketch (its user-mode banner came) but printed
    /// no `DevKit MAC Address:` line within `after`: most likely a sketch that does not
    /// log it (only the DPS sample and its kind do), else a slow one.
    case bootLogWithoutMAC(after: Duration)
    /// The console echoed something other than the bytes sent, from byte `offset`
    /// of the line on (bytes were lost, or something else typed into the console).
    case echoMismatch(command: String, offset: Int)
    /// `Error: input buffer overflow`: the console's 1024-byte line buffer filled.
    case inputBufferOverflow(command: String)
    /// `Error:Invalid command: <name>`: this firmware has no such command.
    case invalidCommand(name: String)
    /// `Error:Syntax error`: the console could not split the line into words.
    case syntaxError(command: String)
    /// The board ran the command and reported a failure.
    case commandFailed(command: String, CommandFailure)
    /// The board's reply matched nothing the firmware prints for this command.
    /// `response` is omitted (empty) for commands with secret arguments.
    case unexpectedResponse(command: String, response: String)
    /// A command was attempted before `synchronize()` succeeded, or after `exit`.
    case notSynchronized
    /// Something answered at the port with a prompt, but not as a DevKit's
    /// configuration console does (`help` does not list `set_dps_uds`): another board
    /// behind the same ST-LINK USB ID 0483:374b. Nothing was set on it.
    case notADevKit(reason: String)
}

extension ConsoleError: CustomStringConvertible {
    /// One line: what happened and what to do next. Never contains a secret.
    public var description: String {
        switch self {
        case .invalidArgument(let command, let reason):
            return "invalid argument for \(command): \(reason) (nothing was sent to the board)"
        case .wrongMode(let mode):
            switch mode {
            case .configuration:
                return "board is in configuration mode but did not answer as expected: press reset while holding button A, try again"
            case .user(let evidence):
                let detail: String
                switch evidence {
                case .banner: detail = "it printed its user-mode banner"
                case .logLines: detail = "its sketch is logging"
                }
                return "board is in user mode: hold button A, press reset, try again (\(detail))"
            case .accessPoint(let mac):
                let ap = mac.map { " (Soft AP AZ-\($0))" } ?? ""
                return "board is in AP mode\(ap): release button B, hold button A, press reset, try again"
            }
        case .noAnswer(let received):
            let what = received == 0
                ? "nothing came back"
                : "only \(received) bytes that no DevKit prints came back (a flood, line noise, or the wrong baud rate: the DevKit uses \(SerialPort.defaultBaudRate))"
            return "no answer from the board: no console prompt, \(what). Likely causes: the board is not in configuration mode "
                + "(hold button A and press reset); the wrong port (is it a DevKit? `devkit list`); another program holds the board "
                + "(a serial terminal; ModemManager probing a new port: stop it or add the udev rule); "
                + "a board whose Wi-Fi failed in configuration mode is silent too (reset it)"
        case .bootLogWithoutMAC(let after):
            return "timed out after \(ConsoleError.format(after)) waiting for a `DevKit MAC Address:` line in the "
                + "user-mode boot log after `exit`: the board booted its sketch, which printed no MAC in that time "
                + "(only sketches such as the DPS sample print it); read the MAC off the board's screen in "
                + "configuration mode"
        case .timeout(let expected, let after, let command):
            let context = command.map { " after `\($0)`" } ?? ""
            return "timed out after \(ConsoleError.format(after)) waiting for \(expected)\(context): "
                + "check that the board is connected and still in configuration mode (hold button A, press reset), then try again"
        case .echoMismatch(let command, let offset):
            return "the console echoed different bytes than were sent for `\(command)` (from byte \(offset) of the line): "
                + "bytes were lost or another program is using the port; close it, reset the board into configuration mode, try again"
        case .inputBufferOverflow(let command):
            return "the console's line buffer overflowed while `\(command)` was sent: reset the board into configuration mode and try again"
        case .invalidCommand(let name):
            return "the board's firmware does not know the command `\(name)`: update the DevKit firmware (SDK 1.3 or later)"
        case .syntaxError(let command):
            return "the console could not parse the `\(command)` line (unbalanced quote): this is a devkit bug, please report it"
        case .commandFailed(let command, let failure):
            switch failure {
            case .eepromWriteFailed(let zone):
                let hex = String(zone, radix: 16)
                return "`\(command)` failed: the board could not write its secure element (EEPROM zone 0x\(hex.count < 2 ? "0" + hex : hex)): "
                    + "reset the board into configuration mode and try again; if it persists the secure element may be locked"
            case .verifyFailed:
                return "`\(command)` failed: the secure element's contents differed when read back after the write: "
                    + "reset the board into configuration mode and try again"
            case .invalidArgument(let message):
                return "`\(command)` failed: the board rejected the value (\"\(message)\"): check the value and try again"
            case .usage(let message):
                return "`\(command)` failed: the board printed its usage text (\"\(message)\"): the argument did not arrive; try again"
            case .secureChannelFailed:
                return "`\(command)` failed: the board could not enable the secure channel: check the level and key, reset, try again"
            }
        case .unexpectedResponse(let command, let response):
            let shown = response.isEmpty ? "" : ": \"\(response)\""
            return "unexpected reply to `\(command)`\(shown); is this an AZ3166 DevKit with SDK 1.3 or later? Reset it into configuration mode and try again"
        case .notSynchronized:
            return "the console session is not at a prompt (not synchronised yet, or the board rebooted): reconnect first"
        case .notADevKit(let reason):
            return "not a DevKit: \(reason); it was left alone (no setting was sent). Every ST Nucleo and Discovery board "
                + "shares the ST-LINK USB ID 0483:374b: choose the DevKit's port with --port (`devkit list` shows each board's /dev/serial/by-id name)"
        }
    }

    /// A duration as messages show it: `30 s`, `1500 ms`.
    public static func format(_ duration: Duration) -> String {
        let (seconds, attoseconds) = duration.components
        let milliseconds = seconds * 1000 + attoseconds / 1_000_000_000_000_000
        if milliseconds % 1000 == 0 { return "\(milliseconds / 1000) s" }
        return "\(milliseconds) ms"
    }
}
