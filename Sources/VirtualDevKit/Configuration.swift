/// What the virtual DevKit is and how it misbehaves.
public struct VirtualDevKitConfiguration: Sendable, Equatable {
    /// The mode the firmware picks at reset (which button is held).
    public enum Mode: String, Sendable, CaseIterable, Equatable {
        /// Button A held: the configuration console runs.
        case configuration = "config"
        /// Neither button: the flashed sketch runs and prints its boot log.
        case user
        /// Button B held: the Soft AP configuration web server runs.
        case ap
    }

    /// Ways the emulated board can fail, for testing hosts against them.
    public struct Faults: Sendable, Equatable {
        /// Every secure-element write fails: `ERROR: Failed to write EEPROM: 0x<zone>.`
        public var eepromWriteFailure = false
        /// Every write is followed by a read-back mismatch: `ERROR: Verify failed.`
        public var verifyFailure = false
        /// The board vanishes (the pty closes) once it has received this many bytes
        /// from the host; the last of them is still processed.
        public var unplugAfterReceivedBytes: Int? = nil
        /// Bytes of garbage the UART emits at every boot, before the banner.
        public var lineNoiseBytes = 0
        /// How long each secure-element write takes (a write and its verify each).
        public var secureElementWriteDelay: Duration = .zero
        /// In configuration mode, the first bytes from the host are answered with this
        /// many bytes of text that hold no prompt (a board stuck printing), at the
        /// rate the host reads them; no prompt ever comes.
        public var floodBytes: Int? = nil
        /// The secret commands reject their value and quote it back:
        /// `Invalid <command> value: <value>` (a host must not show it).
        public var echoSecretInErrors = false
        /// The board prints nothing and ignores the host (a port with no DevKit
        /// behind it, or a board whose Wi-Fi failed in configuration mode).
        public var silent = false
        /// The user-mode sketch does not log `DevKit MAC Address:` (nor its version).
        public var sketchWithoutMACLog = false
        /// The user-mode sketch finds no Wi-Fi: `>>>No Wi-Fi.` and nothing more.
        public var noWiFi = false
        /// The sketch cannot read the UDS from the secure element (as if none was
        /// set): `Unable to get DPS UDS string from EEPROM. ...`
        public var udsUnreadable = false
        /// The DICE engine refuses the UDS: `DiceInit failed! ...`
        public var diceInitFailure = false
        /// Not a DevKit: another board behind the ST-LINK USB ID (a Nucleo running a
        /// shell). It echoes, answers every line with `sh: <word>: not found` and the
        /// prompt `\r\n# `, the same four bytes as the DevKit's; no banner, no help text.
        public var notADevKit = false

        public init(
            eepromWriteFailure: Bool = false, verifyFailure: Bool = false,
            unplugAfterReceivedBytes: Int? = nil, lineNoiseBytes: Int = 0,
            secureElementWriteDelay: Duration = .zero, floodBytes: Int? = nil,
            echoSecretInErrors: Bool = false, silent: Bool = false, sketchWithoutMACLog: Bool = false,
            notADevKit: Bool = false, noWiFi: Bool = false, udsUnreadable: Bool = false, diceInitFailure: Bool = false
        ) {
            self.noWiFi = noWiFi
            self.udsUnreadable = udsUnreadable
            self.diceInitFailure = diceInitFailure
            self.eepromWriteFailure = eepromWriteFailure
            self.verifyFailure = verifyFailure
            self.unplugAfterReceivedBytes = unplugAfterReceivedBytes
            self.lineNoiseBytes = lineNoiseBytes
            self.secureElementWriteDelay = secureElementWriteDelay
            self.floodBytes = floodBytes
            self.echoSecretInErrors = echoSecretInErrors
            self.silent = silent
            self.sketchWithoutMACLog = sketchWithoutMACLog
            self.notADevKit = notADevKit
        }
    }

    /// The prefix of the sketch's log lines. The framework has two loggers (see
    /// the user-mode log doc); which one is active during DPS cannot be seen from
    /// source, so hosts must accept both.
    public enum LogStyle: String, Sendable, CaseIterable, Equatable {
        /// `2026-12-04 04:07:06 INFO:  <message>` / `... ERROR: <file> (ln <n>): <message>`
        /// (the IoT Hub client's logger; the default).
        case timestamped
        /// `Info: <message>` / `Error: Time:<ctime> File:<file> Func:<func> Line:<n> <message>`
        /// (the SDK's default console logger).
        case sdk
    }

    /// Mode at power-up (and after ``VirtualDevKit/replug()``).
    public var mode: Mode
    /// Wi-Fi MAC address: 12 lower-case hex digits, no separators.
    public var macAddress: String
    /// The DevKit SDK version `version` reports and the user-mode log prints.
    public var firmwareVersion: String
    public var micoVersion: String
    public var mbedOSVersion: String
    public var mbedTLSVersion: String
    /// nil prints `WIFI version: unknown`.
    public var wifiVersion: String?
    /// What `scan` finds; empty prints `No available network.`
    public var networks: [String]
    /// JSON file holding the secure-element contents across runs (nil: memory only).
    public var stateFile: String?
    /// A symlink kept pointing at the current pty (like /dev/serial/by-id/…).
    public var linkPath: String?
    /// When set, every byte in either direction takes 10/baud seconds, as on the wire,
    /// and output crosses USB in 1 ms frames.
    public var pacingBaudRate: Int?
    /// In user mode, the sketch logs a line this often after its boot log (a chatty
    /// sketch, e.g. one sending telemetry); nil: it prints its boot log only.
    public var sketchLogInterval: Duration?
    public var faults: Faults
    public var logStyle: LogStyle = .timestamped

    public init(
        mode: Mode = .configuration,
        macAddress: String = "a4cf120b9e31",
        firmwareVersion: String = "1.6.2",
        micoVersion: String = "31620002.049",
        mbedOSVersion: String = "5.4.3",
        mbedTLSVersion: String = "2.6.0",
        wifiVersion: String? = "wl0: Nov  7 2014 16:03:45 version 5.90.230.12 FWID 01-1d1c9f7c",
        networks: [String] = ["DevKitLab", "Guest"],
        stateFile: String? = nil,
        linkPath: String? = nil,
        pacingBaudRate: Int? = nil,
        sketchLogInterval: Duration? = nil,
        faults: Faults = Faults()
    ) {
        self.mode = mode
        self.macAddress = macAddress
        self.firmwareVersion = firmwareVersion
        self.micoVersion = micoVersion
        self.mbedOSVersion = mbedOSVersion
        self.mbedTLSVersion = mbedTLSVersion
        self.wifiVersion = wifiVersion
        self.networks = networks
        self.stateFile = stateFile
        self.linkPath = linkPath
        self.pacingBaudRate = pacingBaudRate
        self.sketchLogInterval = sketchLogInterval
        self.faults = faults
    }
}
