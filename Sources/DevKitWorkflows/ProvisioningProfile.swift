/// Where the firmware image to measure comes from.
public enum FirmwareSource: Sendable, Equatable {
    /// `<sketch>.ino.bin` plus the linker map `<sketch>.ino.map`.
    case binAndMap(bin: String, map: String)
    /// `<sketch>.ino.elf` alone.
    case elf(String)

    /// Its files, in the order given.
    public var paths: [String] {
        switch self {
        case .binAndMap(let bin, let map): [bin, map]
        case .elf(let elf): [elf]
        }
    }
}

/// Where a board's UDS comes from.
public enum UDSPolicy: Sendable, Equatable {
    /// A fresh UDS from the system CSPRNG, recorded in the registry before it is sent.
    case generate
    /// `<directory>/<USB serial>.uds` (64 hex digits), prepared in advance per board.
    case fromDirectory(String)
}

/// Wi-Fi credentials to store on the board. The password stays in its file until used.
public struct WiFiSettings: Sendable, Equatable {
    public var ssid: String
    /// File holding the password (trailing newline ignored); never a literal in the profile.
    public var passwordFile: String

    public init(ssid: String, passwordFile: String) {
        self.ssid = ssid
        self.passwordFile = passwordFile
    }
}

/// The DPS the enrollment is meant for: used in the enrollment file and the `az`
/// command, and, with a connection string file, to enroll each board as the last
/// step of provisioning.
public struct DPSSettings: Sendable, Equatable {
    /// The DPS resource name (`az ... --dps-name`).
    public var name: String?
    /// Its resource group (`az ... --resource-group`).
    public var resourceGroup: String?
    /// The ID scope, printed for the device configuration.
    public var idScope: String?
    /// The IoT hub to assign the device to (`iotHubHostName`), if fixed.
    public var iotHubHostName: String?
    /// Whether the enrollment starts enabled.
    public var provisioningEnabled: Bool
    /// The file holding the DPS shared access policy's connection string (`-`:
    /// standard input). Given, each board is enrolled in DPS once its files are
    /// written; the string itself is read when the inputs are checked, never kept.
    public var connectionStringFile: String?
    /// The service's base URL when it is not `https://<HostName>` (a private
    /// endpoint, the local DPS); the SAS token still names the HostName.
    public var endpoint: String?
    /// PEM certificates to trust besides the system's, for the DPS endpoint.
    public var caFile: String?

    /// Whether boards are enrolled in DPS as the last step.
    public var enrolls: Bool { connectionStringFile != nil }

    public init(
        name: String? = nil, resourceGroup: String? = nil, idScope: String? = nil,
        iotHubHostName: String? = nil, provisioningEnabled: Bool = true, connectionStringFile: String? = nil,
        endpoint: String? = nil, caFile: String? = nil
    ) {
        self.connectionStringFile = connectionStringFile
        self.endpoint = endpoint
        self.caFile = caFile
        self.name = name
        self.resourceGroup = resourceGroup
        self.idScope = idScope
        self.iotHubHostName = iotHubHostName
        self.provisioningEnabled = provisioningEnabled
    }
}

/// What `devkit autoconfigure` and `devkit watch` do to every board: read from a
/// TOML profile by the CLI. Paths are absolute (resolved against the profile's
/// directory when parsed).
public struct ProvisioningProfile: Sendable, Equatable {
    public var firmware: FirmwareSource
    public var uds: UDSPolicy
    public var wifi: WiFiSettings?
    public var outputDirectory: String
    public var registrationID: RegistrationIDScheme
    public var dps: DPSSettings
    /// Given: each board's registration is verified as provisioning's last step.
    public var verify: VerifySettings?
    /// `[registry] key_file`: the registry key to open the registry with, when
    /// `--key-file` does not name one (nil: the default key).
    public var registryKeyFile: String?
    /// `[registry] url`: a shared PostgreSQL registry (`postgresql://…`), when
    /// `--registry` does not name one (nil: the SQLite file).
    public var registryURL: String?
    /// `[registry] password_file`: the PostgreSQL password's file (else ~/.pgpass).
    public var registryPasswordFile: String?
    /// `[registry] station`: the name recorded with each board, when `--station`
    /// does not give one (nil: the host name).
    public var station: String?

    public init(
        firmware: FirmwareSource, uds: UDSPolicy, wifi: WiFiSettings? = nil,
        outputDirectory: String, registrationID: RegistrationIDScheme = .derived,
        dps: DPSSettings = DPSSettings(), verify: VerifySettings? = nil
    ) {
        self.verify = verify
        self.firmware = firmware
        self.uds = uds
        self.wifi = wifi
        self.outputDirectory = outputDirectory
        self.registrationID = registrationID
        self.dps = dps
    }
}

/// Verifying a board's registration after provisioning (`provision --verify`,
/// a profile's `[verify]` table): how long to follow its log for an outcome.
public struct VerifySettings: Sendable, Equatable {
    /// `devkit verify`'s default too: a board joins Wi-Fi, syncs its clock and
    /// registers, which on a slow network takes a minute or two.
    public static let defaultTimeout = 180
    public var timeoutSeconds: Int

    public init(timeoutSeconds: Int = VerifySettings.defaultTimeout) {
        self.timeoutSeconds = timeoutSeconds
    }
}
