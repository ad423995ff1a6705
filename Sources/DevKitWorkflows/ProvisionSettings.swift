import Crypto
import DevKitModel
import DevKitRegistry
import DevKitSystem
import Foundation
import Synchronization

/// What `provision --resume N` needs besides the UDS, recorded with the board (the
/// registry's `provision_settings`, as JSON) so the resume hint works as printed:
/// the firmware files (absolute) with their SHA-256, the output directory
/// (absolute), the registration-ID scheme and where the Wi-Fi settings came from
/// (the SSID and the password *file*; never the password).
public struct ProvisionSettings: Codable, Sendable, Equatable {
    public var firmwareBin: String?
    public var firmwareMap: String?
    public var firmwareElf: String?
    /// Absolute firmware path → SHA-256 (lower-case hex) when it was recorded.
    public var firmwareSHA256: [String: String]
    public var outputDirectory: String
    /// `derived` or the template text (``RegistrationIDScheme/description``).
    public var registrationIDScheme: String
    public var wifiSSID: String?
    public var wifiPasswordFile: String?
    /// For the printed `az` command and the enrollment file (absent in rows recorded
    /// before they were).
    public var dpsName: String?
    public var resourceGroup: String?
    public var iotHubHostName: String?
    public var provisioningEnabled: Bool?
    /// Enrolling in DPS (issue 13): the connection string *file* (absolute, or `-`
    /// as given: standard input is not kept, so a resume must be given it again),
    /// the endpoint and the CA file.
    public var dpsConnectionStringFile: String?
    public var dpsEndpoint: String?
    public var dpsCAFile: String?

    enum CodingKeys: String, CodingKey {
        case firmwareBin = "firmware_bin", firmwareMap = "firmware_map", firmwareElf = "firmware_elf"
        case firmwareSHA256 = "firmware_sha256", outputDirectory = "output_directory"
        case registrationIDScheme = "registration_id_scheme"
        case wifiSSID = "wifi_ssid", wifiPasswordFile = "wifi_password_file"
        case dpsName = "dps_name", resourceGroup = "resource_group", iotHubHostName = "iot_hub_host_name"
        case provisioningEnabled = "provisioning_enabled"
        case dpsConnectionStringFile = "dps_connection_string_file", dpsEndpoint = "dps_endpoint"
        case dpsCAFile = "dps_ca_file"
    }

    /// The settings of `request`, its paths made absolute and its firmware hashed.
    /// `measured` are the stamps of the firmware files taken before they were
    /// measured: a file whose stamp changed since is refused, so the SHA-256 recorded
    /// is of the bytes the certificates come from, not of a file rewritten meanwhile.
    init(_ request: ProvisionRequest, measured: [FileStamp?]) throws(ProvisionError) {
        var hashes: [String: String] = [:]
        let stamps = Dictionary(zip(request.firmware.paths, measured), uniquingKeysWith: { a, _ in a })
        func record(_ path: String) throws(ProvisionError) -> String {
            let absolute = Self.absolute(path)
            let before = stamps[path] ?? nil
            let digest: String
            do throws(InputFileError) { digest = try Self.sha256(ofFile: absolute, stamp: before) } catch {
                throw .firmware("cannot record \(escaped(path)) for `--resume`: \(error.reason)")
            }
            guard let before, FileStamp(path: absolute) == before else {
                throw .firmware(
                    "\(escaped(path)) changed while devkit measured it; run again once it is no longer being written")
            }
            hashes[absolute] = digest
            return absolute
        }
        switch request.firmware {
        case .binAndMap(let bin, let map):
            firmwareBin = try record(bin)
            firmwareMap = try record(map)
        case .elf(let elf):
            firmwareElf = try record(elf)
        }
        firmwareSHA256 = hashes
        outputDirectory = Self.absolute(request.outputDirectory)
        registrationIDScheme = request.scheme.description
        wifiSSID = request.wifi?.ssid
        // Standard input cannot be read again on resume: recorded as given.
        wifiPasswordFile = request.wifi.map { $0.passwordFile == "-" ? "-" : Self.absolute($0.passwordFile) }
        dpsName = request.dps.name
        resourceGroup = request.dps.resourceGroup
        iotHubHostName = request.dps.iotHubHostName
        provisioningEnabled = request.dps.provisioningEnabled
        dpsConnectionStringFile = request.dps.connectionStringFile.map { $0 == "-" ? "-" : Self.absolute($0) }
        dpsEndpoint = request.dps.endpoint
        dpsCAFile = request.dps.caFile.map(Self.absolute)
    }

    /// The recorded DPS settings, each overridden by `given`'s when it has one.
    public func dps(overriddenBy given: DPSSettings) -> DPSSettings {
        DPSSettings(
            name: given.name ?? dpsName, resourceGroup: given.resourceGroup ?? resourceGroup, idScope: given.idScope,
            iotHubHostName: given.iotHubHostName ?? iotHubHostName,
            provisioningEnabled: provisioningEnabled ?? given.provisioningEnabled,
            connectionStringFile: given.connectionStringFile ?? dpsConnectionStringFile,
            endpoint: given.endpoint ?? dpsEndpoint, caFile: given.caFile ?? dpsCAFile)
    }

    public func json() -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: (try? encoder.encode(self)) ?? Data("{}".utf8), as: UTF8.self)
    }

    /// The recorded settings of `board`, or nil when it has none (recorded before
    /// schema v4).
    public static func recorded(in board: BoardRecord) throws(ProvisionError) -> ProvisionSettings? {
        guard let text = board.provisionSettings else { return nil }
        do {
            return try JSONDecoder().decode(ProvisionSettings.self, from: Data(text.utf8))
        } catch {
            throw .cannotResume("board #\(board.id ?? 0)'s recorded provisioning settings are unreadable (\(error))")
        }
    }

    /// The recorded firmware, after checking that each file is still what was
    /// measured: a changed file would give a certificate for another image.
    public func firmware(boardID: Int64) throws(ProvisionError) -> FirmwareSource {
        let source: FirmwareSource
        if let elf = firmwareElf {
            source = .elf(elf)
        } else if let bin = firmwareBin, let map = firmwareMap {
            source = .binAndMap(bin: bin, map: map)
        } else {
            throw .cannotResume("board #\(boardID) has no firmware recorded")
        }
        for path in [firmwareElf, firmwareBin, firmwareMap].compactMap({ $0 }) {
            let now: String
            do throws(InputFileError) { now = try Self.sha256(ofFile: path) } catch {
                throw .recordedFirmwareMissing(boardID: boardID, path: path)
            }
            if let recorded = firmwareSHA256[path], recorded != now {
                throw .firmwareChanged(boardID: boardID, path: path)
            }
        }
        return source
    }

    /// The recorded registration-ID scheme.
    public func scheme() throws(ProvisionError) -> RegistrationIDScheme {
        if registrationIDScheme == RegistrationIDScheme.derived.description { return .derived }
        do { return try RegistrationIDScheme(parsing: registrationIDScheme) } catch {
            throw .cannotResume("the recorded registration ID scheme '\(registrationIDScheme)' is invalid: \(error)")
        }
    }

    static func absolute(_ path: String) -> String {
        let full = path.hasPrefix("/") ? path : (FileManager.default.currentDirectoryPath as NSString).appendingPathComponent(path)
        return (full as NSString).standardizingPath
    }

    /// The SHA-256 of `path` when its stamp was `stamp` (the stamp taken before the
    /// firmware was measured): the digest this process last made of the file if it
    /// was made at that stamp (returned without looking at the file: the caller
    /// checks the file still has `stamp`), else a new one, remembered when the file
    /// still has that stamp afterwards. A station (`watch`) records every board's
    /// settings, and reading and hashing the 600 KB image again per board was a
    /// seventh of its CPU; the image itself is measured once (the measurer keeps it
    /// by the same stamps), so its digest can be too.
    ///
    /// A file changed within the last two seconds is not remembered: timestamps have
    /// a coarse clock (a few milliseconds, a second on some filesystems), so a
    /// rewrite of the same size in the same tick as the stamp (a linker's output
    /// patched at once, `rsync --inplace`) could keep the stamp ("racily clean", as
    /// git calls it); such a file is hashed again for each board until it settles.
    /// `settledFor`: the seconds that make a change old enough (the tests give 0).
    static func sha256(ofFile path: String, stamp: FileStamp?, settledFor: Int = 2) throws(InputFileError) -> String {
        if let stamp, let known = digests.withLock({ $0[path] }), known.stamp == stamp { return known.digest }
        let digest = try sha256(ofFile: path)
        if let stamp, FileStamp(path: path) == stamp, stamp.settled(for: settledFor) {
            digests.withLock { $0[path] = (stamp, digest) }
        }
        return digest
    }

    /// Firmware path → the digest ``sha256(ofFile:stamp:)`` made and the file's stamp then.
    private static let digests = Mutex<[String: (stamp: FileStamp, digest: String)]>([:])

    /// Firmware images are at most a few MB (1 MB of flash; an ELF with debug
    /// information somewhat more), read whole.
    static func sha256(ofFile path: String) throws(InputFileError) -> String {
        let limit = path.hasSuffix(".elf") ? InputLimit.firmwareELF : path.hasSuffix(".bin") ? .firmwareBin : .linkerMap
        let bytes = try InputFile.read(path, limit: limit, standardInputDash: false)
        return Hex.encode(SHA256.hash(data: bytes))
    }
}
