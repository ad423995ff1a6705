import DevKitBoardCLI
import DevKitModel
import DevKitSystem
import DevKitWorkflows
import Foundation
import SystemPackage
import TOMLKit

/// A profile that cannot be used: names the file, the key and what is allowed.
enum ProfileError: Error, Equatable, CustomStringConvertible {
    case unreadable(file: String, reason: String)
    case syntax(file: String, line: Int, column: Int, message: String)
    case invalid(file: String, key: String, message: String)

    var description: String {
        switch self {
        case .unreadable(let file, let reason):
            "cannot read profile \(escaped(file)): \(reason)"
        case .syntax(let file, let line, let column, let message):
            "profile \(escaped(file)):\(line):\(column): TOML syntax error: \(message)"
        case .invalid(let file, let key, let message):
            "profile \(escaped(file)): \(escaped(key)): \(message)"
        }
    }
}

extension ProfileError: CLIReportable {
    var exitStatus: ExitStatus {
        switch self {
        case .unreadable: .noInput
        case .syntax, .invalid: .dataError
        }
    }
    var userMessage: String { description }
}

/// Reads a provisioning profile (TOML). Relative paths in it are relative to the
/// profile's own directory, so a profile and its firmware can move together.
///
/// ```toml
/// output_dir = "enrollments"          # default: the profile's directory
/// registration_id = "derived"         # or a template: "bench-{mac}", "{serial}"
///
/// [firmware]                          # bin + map, or elf
/// bin = "DevKitDPS.ino.bin"
/// map = "DevKitDPS.ino.map"
///
/// [uds]
/// policy = "generate"                 # or "from-file" with directory = "uds"
///
/// [wifi]                              # optional
/// ssid = "bench"
/// password_file = "wifi.secret"
///
/// [dps]                               # optional
/// name = "my-dps"
/// resource_group = "my-rg"
/// id_scope = "0ne000A1B2C"
/// iot_hub = "my-hub.azure-devices.net"
/// provisioning_status = "enabled"     # or "disabled"
/// connection_string_file = "dps.secret"  # given: each board is enrolled in DPS
/// endpoint = "https://127.0.0.1:8443"    # optional: another base URL (local DPS)
/// ca_file = "dps-ca.pem"                 # optional: extra trust anchors
///
/// [verify]                            # optional: watch each board register
/// enabled = true
/// timeout = 120                       # seconds; default 180
/// [registry]                          # optional
/// key_file = "/root/registry.key"     # the registry key (default: the XDG one)
/// url = "postgresql://devkit@db.lab/devkit"  # optional: a shared PostgreSQL registry
/// password_file = "/root/pg.password" # optional: its password (else ~/.pgpass)
/// station = "line-2"                  # optional: recorded with each board (default: host name)
/// ```
enum ProfileLoader {
    /// Indented by two spaces, as `autoconfigure --help` shows it: the help text
    /// interpolates it as is, so no command pays for re-indenting it at start-up
    /// (ArgumentParser evaluates every subcommand's configuration on every run).
    static let example = """
          output_dir = "enrollments"
          registration_id = "derived"

          [firmware]
          bin = "DevKitDPS.ino.bin"
          map = "DevKitDPS.ino.map"

          [uds]
          policy = "generate"

          [wifi]
          ssid = "bench"
          password_file = "wifi.secret"

          [dps]
          name = "my-dps"
          resource_group = "my-rg"
          connection_string_file = "dps.secret"

          [verify]
          enabled = true
          timeout = 120
        """

    static func load(path: String) throws(ProfileError) -> ProvisioningProfile {
        return try parse(String(decoding: try readAll(path), as: UTF8.self), file: path)
    }

    /// The file's bytes, read with open/read so a failure says what errno says
    /// (Foundation reported a directory as "error 256" and /dev/null as a
    /// permission problem).
    private static func readAll(_ path: String) throws(ProfileError) -> [UInt8] {
        func failure(_ code: Int32) -> ProfileError {
            let reason: String
            switch code {
            case ENOENT: reason = "no such file"
            case EISDIR: reason = "it is a directory; give the profile's TOML file"
            case EACCES, EPERM: reason = "permission denied; make it readable by this user"
            default: reason = String(cString: strerror(code))
            }
            return .unreadable(file: path, reason: reason)
        }
        do { return try InputFile.read(path, limit: .profile, standardInputDash: false) } catch {
            switch error {
            case .tooLarge, .notAFile: throw .unreadable(file: path, reason: error.reason)
            default: break
            }
            throw failure(error.errno?.rawValue ?? EIO)
        }
    }

    static func parse(_ text: String, file: String) throws(ProfileError) -> ProvisioningProfile {
        func table(_ text: String) throws(ProfileError) -> TOMLTable {
            do {
                return try TOMLTable(string: text)
            } catch let error as TOMLParseError {
                throw .syntax(file: file, line: error.source.begin.line, column: error.source.begin.column,
                              message: error.description)
            } catch {
                throw .syntax(file: file, line: 0, column: 0, message: "\(error)")
            }
        }
        if let abort = TOMLAbortCheck.firstAbort(in: text) {
            // An error TOMLKit finds before that place is the first one: report it.
            do {
                _ = try table(abort.defused(text))
            } catch {
                if case .syntax(_, let line, let column, _) = error, (line, column) < (abort.line, abort.column) { throw error }
            }
            throw .syntax(file: file, line: abort.line, column: abort.column, message: abort.message)
        }
        let root = try table(text)
        let base = (parentDirectory(of: file) as NSString).standardizingPath
        var p = Parser(file: file, base: base.isEmpty ? FileManager.default.currentDirectoryPath : base)
        return try p.profile(root)
    }

    private struct Parser {
        let file: String
        let base: String

        func fail(_ key: String, _ message: String) -> ProfileError {
            .invalid(file: file, key: key, message: message)
        }

        func checkKeys(_ table: TOMLTable, _ prefix: String, allowed: [String]) throws(ProfileError) {
            for key in table.keys where !allowed.contains(key) {
                throw fail(prefix + key, "unknown key; allowed here: " + allowed.joined(separator: ", "))
            }
        }

        func string(_ table: TOMLTable, _ key: String, _ prefix: String) throws(ProfileError) -> String? {
            guard let value = table[key] else { return nil }
            guard let s = value.string else { throw fail(prefix + key, "must be a string (in quotes)") }
            guard !s.isEmpty else { throw fail(prefix + key, "must not be empty") }
            return s
        }

        func table(_ root: TOMLTable, _ key: String) throws(ProfileError) -> TOMLTable? {
            guard let value = root[key] else { return nil }
            guard let t = value.table else { throw fail(key, "must be a table: [\(key)]") }
            return t
        }

        func resolve(_ path: String) -> String {
            path.hasPrefix("/") ? path : ((base as NSString).appendingPathComponent(path) as NSString).standardizingPath
        }

        mutating func profile(_ root: TOMLTable) throws(ProfileError) -> ProvisioningProfile {
            try checkKeys(root, "", allowed: ["output_dir", "registration_id", "firmware", "uds", "wifi", "dps", "verify", "registry"])

            guard let fw = try table(root, "firmware") else {
                throw fail("firmware", "missing; give [firmware] with bin + map, or elf")
            }
            try checkKeys(fw, "firmware.", allowed: ["bin", "map", "elf"])
            let firmware: DevKitWorkflows.FirmwareSource
            switch (try string(fw, "bin", "firmware."), try string(fw, "map", "firmware."), try string(fw, "elf", "firmware.")) {
            case (let bin?, let map?, nil): firmware = .binAndMap(bin: resolve(bin), map: resolve(map))
            case (nil, nil, let elf?): firmware = .elf(resolve(elf))
            case (_, _, .some): throw fail("firmware", "give either elf, or bin + map, not both")
            case (.some, nil, nil): throw fail("firmware.map", "missing; bin needs the linker map of the same build")
            case (nil, .some, nil): throw fail("firmware.bin", "missing; map needs the .bin of the same build")
            case (nil, nil, nil): throw fail("firmware", "empty; give bin + map, or elf")
            }

            guard let udsTable = try table(root, "uds") else {
                throw fail("uds", "missing; give [uds] with policy = \"generate\" or \"from-file\"")
            }
            try checkKeys(udsTable, "uds.", allowed: ["policy", "directory"])
            let uds: UDSPolicy
            switch try string(udsTable, "policy", "uds.") {
            case "generate":
                if udsTable["directory"] != nil {
                    throw fail("uds.directory", "only used with policy = \"from-file\"")
                }
                uds = .generate
            case "from-file":
                guard let dir = try string(udsTable, "directory", "uds.") else {
                    throw fail("uds.directory", "missing; from-file reads <directory>/<USB serial>.uds")
                }
                uds = .fromDirectory(resolve(dir))
            case nil:
                throw fail("uds.policy", "missing; allowed: \"generate\", \"from-file\"")
            case let other?:
                throw fail("uds.policy", "'\(escaped(other))' is not a policy; allowed: \"generate\", \"from-file\"")
            }

            var wifi: WiFiSettings?
            if let w = try table(root, "wifi") {
                if w["password"] != nil {
                    throw fail("wifi.password", "secrets never go in the profile; put the password in a file and give password_file")
                }
                try checkKeys(w, "wifi.", allowed: ["ssid", "password_file"])
                guard let ssid = try string(w, "ssid", "wifi.") else { throw fail("wifi.ssid", "missing") }
                guard ssid.utf8.count <= 31 else { throw fail("wifi.ssid", "is \(ssid.utf8.count) bytes; the board takes at most 31") }
                guard let pw = try string(w, "password_file", "wifi.") else {
                    throw fail("wifi.password_file", "missing; the password is read from a file, never written in the profile")
                }
                wifi = WiFiSettings(ssid: ssid, passwordFile: resolve(pw))
            }

            let output = try string(root, "output_dir", "").map(resolve) ?? base

            var scheme = RegistrationIDScheme.derived
            if let s = try string(root, "registration_id", "") {
                do { scheme = try RegistrationIDScheme(parsing: s) } catch {
                    throw fail("registration_id", "\(error); or \"derived\" for az-<mac>v<version>")
                }
            }

            var dps = DPSSettings()
            if let d = try table(root, "dps") {
                if d["connection_string"] != nil {
                    throw fail("dps.connection_string", "secrets never go in the profile; put the DPS connection string in a file and give connection_string_file")
                }
                try checkKeys(d, "dps.", allowed: [
                    "name", "resource_group", "id_scope", "iot_hub", "provisioning_status", "connection_string_file",
                    "endpoint", "ca_file",
                ])
                dps.name = try string(d, "name", "dps.")
                dps.resourceGroup = try string(d, "resource_group", "dps.")
                dps.idScope = try string(d, "id_scope", "dps.")
                dps.iotHubHostName = try string(d, "iot_hub", "dps.")
                switch try string(d, "provisioning_status", "dps.") {
                case nil, "enabled": dps.provisioningEnabled = true
                case "disabled": dps.provisioningEnabled = false
                case let other?: throw fail("dps.provisioning_status", "'\(escaped(other))'; allowed: \"enabled\", \"disabled\"")
                }
                if let file = try string(d, "connection_string_file", "dps.") {
                    // A daemon's standard input is nobody's keyboard.
                    guard file != "-" else {
                        throw fail("dps.connection_string_file", "'-' (standard input) is for `devkit provision`; give a file")
                    }
                    dps.connectionStringFile = resolve(file)
                }
                dps.endpoint = try string(d, "endpoint", "dps.")
                dps.caFile = try string(d, "ca_file", "dps.").map(resolve)
                if dps.connectionStringFile == nil, dps.endpoint != nil || dps.caFile != nil {
                    throw fail(dps.endpoint != nil ? "dps.endpoint" : "dps.ca_file",
                               "only used to enroll boards; give connection_string_file too")
                }
            }
            var verify: VerifySettings?
            if let v = try table(root, "verify") {
                try checkKeys(v, "verify.", allowed: ["enabled", "timeout"])
                var enabled = true
                if let value = v["enabled"] {
                    guard let flag = value.bool else { throw fail("verify.enabled", "must be true or false") }
                    enabled = flag
                }
                var timeout = VerifySettings.defaultTimeout
                if let value = v["timeout"] {
                    guard let seconds = value.int, seconds >= 1 else {
                        throw fail("verify.timeout", "must be a whole number of seconds, at least 1")
                    }
                    timeout = seconds
                }
                if enabled { verify = VerifySettings(timeoutSeconds: timeout) }
            }
            var profile = ProvisioningProfile(
                firmware: firmware, uds: uds, wifi: wifi, outputDirectory: output,
                registrationID: scheme, dps: dps, verify: verify)
            if let r = try table(root, "registry") {
                try checkKeys(r, "registry.", allowed: ["key_file", "url", "password_file", "station"])
                profile.registryKeyFile = try string(r, "key_file", "registry.").map(resolve)
                profile.registryURL = try string(r, "url", "registry.")
                profile.registryPasswordFile = try string(r, "password_file", "registry.").map(resolve)
                profile.station = try string(r, "station", "registry.")
            }
            return profile
        }
    }
}
