import DevKitBoardCLI
import DevKitBoard
import ArgumentParser
import DevKitModel
import DevKitSystem
import DevKitWorkflows
import DiceRIoT
import Foundation

/// `devkit cert`: the DICE/RIoT Alias certificate a DevKit will present to DPS.
struct CertCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cert",
        abstract: "Compute the DICE/RIoT enrollment certificate of a DevKit, byte for byte.",
        usage: """
            devkit cert (--elf <file> | --bin <file> --map <file>) --uds-file <file>
                (--registration-id <id> | --mac <mac> --firmware-version <version>)
                [--output-dir <dir>] [<options>]
            devkit cert (--elf <file> | --bin <file> --map <file>) --batch <file>
                [<options>]
            devkit cert (--elf <file> | --bin <file> --map <file>) --from-registry
                [<options>]
            """,
        discussion: """
            At every boot the DevKit derives its DeviceID and Alias keys from the Unique \
            Device Secret (UDS) in its secure element and from the firmware it runs, and \
            presents an Alias certificate to the Device Provisioning Service. This command \
            computes that certificate from the build outputs, ready to upload as an \
            individual X.509 enrollment. It is written to <output-dir>/<registration id>.pem.

            The firmware comes from the Arduino build: <sketch>.ino.bin with its \
            <sketch>.ino.map, or the <sketch>.ino.elf alone. The UDS is read from a file \
            holding 64 hex digits (or standard input with --uds-file -) and is never \
            printed. The registration ID is given, or derived as the firmware does when \
            the sketch sets none: az-<mac>v<version with '.' as 'v'>.

            Examples:
              devkit cert --bin DevKitDPS.ino.bin --map DevKitDPS.ino.map \\
                  --uds-file uds.hex --mac a4:cf:12:0b:9e:31 --firmware-version 1.6.2
              devkit cert --elf DevKitDPS.ino.elf --uds-file - \\
                  --registration-id thermostat-7 --output-dir certs --json < uds.hex

            Fleets (one firmware, many devices): --batch devices.jsonl, one JSON object \
            per line, {"uds": "<64 hex>", "registration_id": "<id>"} or \
            {"uds": "...", "mac": "...", "firmware_version": "x.y.z"}. The firmware is \
            measured once; a bad line is reported with its number and the others go on; \
            the exit code is 0 when every device succeeded, 1 when some failed.

            Exit codes: 64 invalid option or value, 65 malformed map/bin/elf, 66 input \
            not readable, 73 output cannot be created, 77 permission denied (the output \
            directory or an input), 74 a write failed, 1 some batch devices failed.
            """)

    @OptionGroup var firmware: FirmwareOptions

    /// --quiet / --verbose, as on every command.
    @OptionGroup var outputLevel: OutputLevelOptions

    func validate() throws {
        try firmware.requireGiven()
        if let jobs, jobs < 1 { throw ValidationError("--jobs must be at least 1") }
        // A single certificate has nothing to share out: said rather than ignored.
        if jobs != nil && batch == nil && !fromRegistry {
            throw ValidationError("--jobs goes with --batch FILE or --from-registry (one certificate takes one thread).")
        }
        try registry.requireFromRegistry(fromRegistry)
    }

    @OptionGroup var udsOptions: UDSOptions
    var udsFile: String? { udsOptions.udsFile }

    @Option(
        name: .customLong("registration-id"),
        help: ArgumentHelp("The DPS registration ID (1-126 of a-z, 0-9, '-'); the certificate's CN.", valueName: "id"))
    var registrationID: String?

    @Option(help: ArgumentHelp("The board's Wi-Fi MAC, to derive the registration ID (with --firmware-version).", valueName: "mac"))
    var mac: String?

    @Option(
        name: .customLong("firmware-version"),
        help: ArgumentHelp("The DevKit SDK version the board runs, e.g. 1.6.2 (with --mac).", valueName: "x.y.z"))
    var firmwareVersion: String?

    @Option(
        name: .customLong("output-dir"),
        help: ArgumentHelp(
            "Where to write the files (created if missing).",
            discussion: "'-' writes no files: the PEM goes to standard output (inside the JSON with --json), e.g. for a pipeline that uploads enrollments.",
            valueName: "dir"),
        completion: .directory)
    var outputDir: String = "."

    /// `--output-dir -`: certificates go to standard output, no files are written.
    var streamsOutput: Bool { outputDir == "-" }

    @Flag(name: .customLong("device-cert"), help: "Also write the self-signed DeviceID certificate, <id>.device.pem.")
    var deviceCert = false

    @Flag(help: "Also write the DeviceID public key (<id>.device-id.pub.pem) and the Alias private key (<id>.alias.key.pem, mode 0600).")
    var keys = false

    @Option(
        help: ArgumentHelp("JSON Lines file of devices to certify with the same firmware; '-' reads standard input.", valueName: "file"),
        completion: .file())
    var batch: String?

    @Option(
        help: ArgumentHelp(
            "Threads certifying --batch lines or --from-registry boards at once (default, and at most: the number of cores).",
            discussion: "The output is in the batch file's (or the registry's) order whatever the number.",
            valueName: "n"))
    var jobs: Int?

    /// The threads `--jobs` gives (``jobThreads(_:)``).
    var batchJobs: Int { jobThreads(jobs) }

    @Flag(help: "Print the result as JSON on standard output (one object per device in batch mode).")
    var json = false

    @Flag(
        name: .customLong("from-registry"),
        help: ArgumentHelp(
            "Re-issue the certificate of every board in the registry for this firmware (after a firmware update).",
            discussion: "Uses each board's recorded UDS; with --firmware-version, derived IDs follow the new version. Same as `devkit registry reissue`."))
    var fromRegistry = false

    @OptionGroup var registry: RegistryOptions

    func run() throws {
        try reportingErrors {
            if fromRegistry { try reissue() } else { try execute() }
        }
    }

    /// `--from-registry`: every recorded board, from its recorded UDS.
    private func reissue() throws {
        let source = try firmwareSource()
        guard udsFile == nil, registrationID == nil, mac == nil, batch == nil else {
            throw CertError.usage("--from-registry takes each board's UDS and ID from the registry; drop --uds-file, --registration-id, --mac and --batch")
        }
        guard !streamsOutput else {
            throw CertError.usage("--from-registry writes each board's .pem and enrollment file; give --output-dir DIR")
        }
        try makeDirectory(outputDir)  // as for single and batch certificates
        let version: FirmwareVersion?
        do throws(InputError) {
            version = try firmwareVersion.map { v throws(InputError) in try FirmwareVersion(v) }
        } catch {
            throw CertError.invalidInput(error, source: nil)
        }
        try reissueFromRegistry(
            registry: registry, firmware: source, firmwareVersion: version,
            outputDirectory: outputDir, boards: [], json: json, jobs: batchJobs)
    }

    /// Creates the output directory, or checks what `--output-dir -` allows.
    private func prepareOutput() throws(CertError) {
        guard streamsOutput else { return try makeDirectory(outputDir) }
        if keys { throw .usage("--keys writes the Alias private key only to a file (mode 0600); give --output-dir DIR") }
    }

    private func execute() throws(CertError) {
        let source = try firmwareSource()
        if let batch {
            guard udsFile == nil, registrationID == nil, mac == nil, firmwareVersion == nil else {
                throw .usage("--batch takes each device's UDS and ID from its lines; drop --uds-file, --registration-id, --mac and --firmware-version")
            }
            try prepareOutput()
            let firmware = MeasuredFirmware(try source.load())
            try CertBatch(command: self, firmware: firmware, jobs: batchJobs).run(path: batch)
            return
        }
        guard let udsFile else {
            throw .usage("missing --uds-file: give the file holding the device's UDS (64 hex digits), or '-' for standard input")
        }
        let id = try deviceRegistrationID()
        let uds = try readUDS(udsFile)
        try prepareOutput()
        let firmware = MeasuredFirmware(try source.load())
        let result = try certify(firmware: firmware, uds: uds, id: id)
        warnOnce(for: [result])
        try emit(result)
    }

    // MARK: - Shared with batch mode

    /// Computes and writes one device's files, all or none. `sha256Thumbprint: false`
    /// leaves that thumbprint out (a batch's plain lines print only the SHA-1 one: a
    /// hash and a hex string less per device).
    func certify(
        firmware: MeasuredFirmware, uds: UDS, id: RegistrationID, sha256Thumbprint: Bool = true
    ) throws(CertError) -> CertResult {
        try certify(Result { () throws(GenerationError) in try firmware.credentials(uds: uds, registrationID: id) },
                    id: id, sha256Thumbprint: sha256Thumbprint)
    }

    /// The same for credentials computed already (a batch computes several devices'
    /// together), or the error computing them gave.
    func certify(
        _ credentials: Result<DeviceCredentials, GenerationError>, id: RegistrationID, sha256Thumbprint: Bool = true
    ) throws(CertError) -> CertResult {
        let device: DeviceCredentials
        do { device = try credentials.get() } catch { throw .generation(error) }
        var result = CertResult(
            registrationID: id.value, sha1Thumbprint: device.sha1Thumbprint,
            sha256Thumbprint: sha256Thumbprint ? device.sha256Thumbprint : nil)
        if streamsOutput {
            result.certificatePEM = device.aliasCertificatePEM
            if deviceCert {
                do { result.deviceCertificatePEM = try device.deviceCertificatePEM() } catch { throw .generation(error) }
            }
        } else {
            try write(device, into: &result)
        }
        if let refusal = id.dpsRefusal {
            result.warnings.append(
                "registration ID \(id.value): the device can use it, but \(refusal): DPS and devkit dps enroll refuse it")
        }
        return result
    }

    /// Writes the device's files, all or none, and records their paths.
    private func write(_ device: DeviceCredentials, into result: inout CertResult) throws(CertError) {
        let base = outputDir.hasSuffix("/") ? outputDir + result.registrationID : outputDir + "/" + result.registrationID
        result.certificate = base + ".pem"
        var outputs: [(path: String, contents: String, mode: mode_t)] = [(base + ".pem", device.aliasCertificatePEM, 0o644)]
        do {
            if deviceCert {
                result.deviceCertificate = base + ".device.pem"
                outputs.append((base + ".device.pem", try device.deviceCertificatePEM(), 0o644))
            }
            if keys {
                result.deviceIDPublicKey = base + ".device-id.pub.pem"
                result.aliasPrivateKey = base + ".alias.key.pem"
                outputs.append((base + ".device-id.pub.pem", try device.deviceIDPublicKeyPEM(), 0o644))
                outputs.append((base + ".alias.key.pem", try device.aliasPrivateKeyPEM(), 0o600))
            }
        } catch {
            throw .generation(error)
        }
        var files = AtomicFileGroup()
        for output in outputs { try files.stage(output.contents, at: output.path, mode: output.mode) }
        try files.commit()
    }

    /// Prints one result: JSON, or the paths, ID and thumbprints (with
    /// `--output-dir -`, the PEM alone on stdout and the rest on stderr).
    func emit(_ result: CertResult) throws(CertError) {
        if json {
            print(result.jsonLine())
        } else if streamsOutput {
            print(result.streamedPEM, terminator: "")
            printError(labelledLines([("Registration ID", result.registrationID), ("SHA-1 thumbprint", result.sha1Thumbprint)]))
        } else {
            // The SHA-1 thumbprint is the one DPS shows for the enrollment.
            print(labelledLines(
                result.writtenFiles.map { (label: "Wrote", value: $0) }
                    + [("Registration ID", result.registrationID), ("SHA-1 thumbprint", result.sha1Thumbprint),
                       ("SHA-256 thumbprint", result.sha256Thumbprint ?? "")]))
        }
    }

    /// The fixed-nonce warning once per run, and each result's own warnings.
    func warnOnce(for results: [CertResult]) {
        for result in results { for warning in result.warnings { printWarning(warning) } }
        if !results.isEmpty { printWarning(fixedNonceWarning) }
    }

    // MARK: - Inputs

    private func deviceRegistrationID() throws(CertError) -> RegistrationID {
        switch (registrationID, mac, firmwareVersion) {
        case (let id?, nil, nil):
            do { return try RegistrationID(id) } catch { throw .invalidInput(error, source: "--registration-id") }
        case (nil, let mac?, let version?):
            // The derived ID obeys the same length rule as a given one (RegistrationID's init).
            do { return try RegistrationID(mac: try MACAddress(mac), firmwareVersion: try FirmwareVersion(version)) } catch {
                throw .invalidInput(error, source: nil)
            }
        case (nil, nil, nil):
            throw .usage("give --registration-id ID, or --mac and --firmware-version to derive the ID as the firmware does")
        case (_?, _, _):
            throw .usage("--registration-id cannot be combined with --mac/--firmware-version; give one or the other")
        default:
            throw .usage("--mac and --firmware-version go together: the derived ID is az-<mac>v<version>")
        }
    }

    private func readUDS(_ path: String) throws(CertError) -> UDS {
        // A UDS typed at a terminal is read hidden, as the board commands do.
        let bytes: [UInt8]
        if path == "-" && isatty(STDIN_FILENO) == 1 {
            do { bytes = try SecretFile.readHiddenLine() } catch {
                throw .unreadable(path: path, reason: "\(error)")
            }
        } else {
            bytes = try readWholeFile(path, limit: .secret)
        }
        do { return try UDS(hex: String(decoding: bytes, as: UTF8.self)) } catch {
            throw .invalidInput(error, source: path == "-" ? "standard input" : path)
        }
    }

    private func firmwareSource() throws(CertError) -> DevKitWorkflows.FirmwareSource {
        firmware.source  // FirmwareOptions.validate() checked the combination
    }
}

extension DevKitWorkflows.FirmwareSource {
    /// Reads and parses the firmware files (bin+map, or elf).
    func load() throws(CertError) -> RIoTImage {
        switch self {
        case .binAndMap(let bin, let map):
            let mapBytes = try readWholeFile(map, limit: .linkerMap)
            let binBytes = try readWholeFile(bin, limit: .firmwareBin)
            do { return try RIoTImage(bin: binBytes, map: mapBytes, binPath: bin, mapPath: map) } catch {
                throw .firmware(error)
            }
        case .elf(let path):
            let bytes = try readWholeFile(path, limit: .firmwareELF)
            do { return try RIoTImage(elf: bytes, path: path) } catch { throw .firmware(error) }
        }
    }
}

/// What was written for one device.
struct CertResult: Encodable {
    var registrationID: String
    var certificate: String?
    var deviceCertificate: String?
    var deviceIDPublicKey: String?
    var aliasPrivateKey: String?
    var sha1Thumbprint: String
    /// nil only where nothing prints it (see `certify`).
    var sha256Thumbprint: String?
    var warnings: [String] = []
    /// With `--output-dir -`: the certificates themselves.
    var certificatePEM: String?
    var deviceCertificatePEM: String?

    var writtenFiles: [String] {
        [certificate, deviceCertificate, deviceIDPublicKey, aliasPrivateKey].compactMap { $0 }
    }

    enum CodingKeys: String, CodingKey {
        case registrationID = "registration_id", certificate, deviceCertificate = "device_certificate"
        case deviceIDPublicKey = "device_id_public_key", aliasPrivateKey = "alias_private_key"
        case sha1Thumbprint = "sha1_thumbprint", sha256Thumbprint = "sha256_thumbprint", warnings
        case certificatePEM = "certificate_pem", deviceCertificatePEM = "device_certificate_pem"
    }

    /// The JSON object on one line: the bytes `JSONOutput.text(self)` gives (sorted
    /// keys, `/` unescaped; the tests compare them), written directly because a batch
    /// prints one per device and JSONEncoder's reflection cost more than the signature.
    func jsonLine() -> String { String(decoding: jsonLineBytes().dropLast(), as: UTF8.self) }

    /// What `--output-dir -` prints on stdout: the Alias certificate, then the
    /// DeviceID one with --device-cert.
    var streamedPEM: String { (certificatePEM ?? "") + (deviceCertificatePEM ?? "") }

    /// ``jsonLine()`` and its newline as bytes: what a batch writes, without a
    /// String in between.
    func jsonLineBytes() -> [UInt8] {
        var out = JSONLineWriter()
        out.field("alias_private_key", aliasPrivateKey)
        out.field("certificate", certificate)
        out.field("certificate_pem", certificatePEM)
        out.field("device_certificate", deviceCertificate)
        out.field("device_certificate_pem", deviceCertificatePEM)
        out.field("device_id_public_key", deviceIDPublicKey)
        out.field("registration_id", registrationID)
        out.field("sha1_thumbprint", sha1Thumbprint)
        out.field("sha256_thumbprint", sha256Thumbprint)
        out.field("warnings", warnings)
        // A string with a control character other than a newline: the encoder's own
        // escapes, not a second copy of its rules.
        guard let line = out.finishLine() else { return Array((try! JSONOutput.text(self) + "\n").utf8) }  // strings always encode
        return line
    }
}

/// One JSON object of string fields, keys given in sorted order; nil when a value
/// needs an escape other than `\"`, `\\` or `\n`.
struct JSONLineWriter {
    private var bytes: [UInt8] = [0x7B]  // {
    private var plain = true

    init() { bytes.reserveCapacity(1024) }

    mutating func field(_ key: StaticString, _ value: String?) {
        guard let value else { return }
        self.key(key)
        string(value)
    }

    mutating func field(_ key: StaticString, _ values: [String]) {
        self.key(key)
        bytes.append(0x5B)  // [
        for (i, value) in values.enumerated() {
            if i > 0 { bytes.append(0x2C) }
            string(value)
        }
        bytes.append(0x5D)  // ]
    }

    /// The object and a newline.
    mutating func finishLine() -> [UInt8]? {
        bytes.append(0x7D)  // }
        bytes.append(0x0A)
        return plain ? bytes : nil
    }

    private mutating func key(_ key: StaticString) {
        if bytes.count > 1 { bytes.append(0x2C) }
        bytes.append(0x22)
        key.withUTF8Buffer { bytes.append(contentsOf: $0) }
        bytes.append(0x22)
        bytes.append(0x3A)
    }

    /// Runs of bytes that need no escape are copied in one move (a PEM's 64
    /// characters between newlines), not appended byte by byte.
    private mutating func string(_ value: String) {
        bytes.append(0x22)
        var value = value
        value.withUTF8 { utf8 in
            var start = 0
            for (i, byte) in utf8.enumerated() where byte < 0x20 || byte == 0x22 || byte == 0x5C {
                bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[start..<i]))
                start = i + 1
                switch byte {
                case 0x22: bytes.append(0x5C); bytes.append(0x22)
                case 0x5C: bytes.append(0x5C); bytes.append(0x5C)
                case 0x0A: bytes.append(0x5C); bytes.append(0x6E)
                default: plain = false
                }
            }
            bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[start...]))
        }
        bytes.append(0x22)
    }
}
