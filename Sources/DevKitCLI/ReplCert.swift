import DevKitModel
import DevKitWorkflows
import DiceRIoT

/// `:cert` in the console: the board's Alias certificate from its firmware and UDS,
/// with the firmware version read from the board itself when the registration ID
/// is derived from the MAC address.
///
/// ```
/// :cert --elf DevKitDPS.ino.elf --uds-file board.uds --mac a4cf120b9e31 [--output-dir DIR]
/// :cert --bin X.ino.bin --map X.ino.map --uds-file board.uds --registration-id my-device
/// ```
struct ReplCertRequest: Equatable {
    var elf: String?
    var bin: String?
    var map: String?
    var udsFile: String?
    var mac: String?
    var registrationID: String?
    var outputDirectory = "."

    static let usage = ":cert (--elf FILE | --bin FILE --map FILE) --uds-file FILE "
        + "(--mac MAC | --registration-id ID) [--output-dir DIR]"

    /// Parses the words after `:cert`; nil with a reason when they do not fit.
    static func parse(_ words: [String]) -> Result<ReplCertRequest, ReplCertUsage> {
        var request = ReplCertRequest()
        var index = 0
        while index < words.count {
            let option = words[index]
            guard index + 1 < words.count else { return .failure(.init("\(option) needs a value")) }
            let value = words[index + 1]
            switch option {
            case "--elf": request.elf = value
            case "--bin": request.bin = value
            case "--map": request.map = value
            case "--uds-file": request.udsFile = value
            case "--mac": request.mac = value
            case "--registration-id": request.registrationID = value
            case "--output-dir": request.outputDirectory = value
            default: return .failure(.init("unknown option \(option)"))
            }
            index += 2
        }
        let hasELF = request.elf != nil
        let hasBinMap = request.bin != nil && request.map != nil
        guard hasELF != hasBinMap, hasELF || (request.bin != nil) == (request.map != nil) else {
            return .failure(.init("give the firmware as --elf FILE, or as --bin FILE with --map FILE"))
        }
        guard request.udsFile != nil else { return .failure(.init("give the board's UDS with --uds-file FILE")) }
        guard (request.mac != nil) != (request.registrationID != nil) else {
            return .failure(.init("give either --mac MAC (with the board's firmware version) or --registration-id ID"))
        }
        return .success(request)
    }
}

/// A `:cert` line that does not fit the usage.
struct ReplCertUsage: Error, Equatable {
    let reason: String
    init(_ reason: String) { self.reason = reason }
}

extension ReplCertRequest {
    /// Computes and writes `<output dir>/<registration id>.pem` (atomically) and
    /// returns what to tell the user. `firmwareVersion` is asked for only with `--mac`.
    func run(firmwareVersion: () -> String?) throws -> String {
        let source: DevKitWorkflows.FirmwareSource = elf.map { .elf($0) } ?? .binAndMap(bin: bin!, map: map!)
        let image = try source.load()
        let uds = try SecretFile.readUDS(udsFile!)
        let id: RegistrationID
        if let registrationID {
            id = try RegistrationID(registrationID)
        } else {
            guard let version = firmwareVersion() else {
                throw ReplCertUsage("the board's firmware version is needed with --mac; the board did not give it")
            }
            id = try RegistrationID(mac: try MACAddress(mac!), firmwareVersion: try FirmwareVersion(version))
        }
        let credentials = try MeasuredFirmware(image).credentials(uds: uds, registrationID: id)
        try makeDirectory(outputDirectory)
        let path = (outputDirectory.hasSuffix("/") ? outputDirectory : outputDirectory + "/") + id.value + ".pem"
        var files = AtomicFileGroup()
        try files.stage(credentials.aliasCertificatePEM, at: path)
        try files.commit()
        return "wrote \(path) for registration ID \(id.value) (SHA-1 thumbprint \(credentials.sha1Thumbprint)); "
            + "this firmware signs with a fixed nonce, so the certificate reveals the DeviceID key."
    }
}
