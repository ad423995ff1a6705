import DevKitBoardCLI
import DevKitBoard
import ArgumentParser
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
struct ReplCertRequest: ParsableArguments {
    @OptionGroup var firmware: FirmwareOptions
    @OptionGroup var udsOptions: UDSOptions

    @Option(help: ArgumentHelp("The board's Wi-Fi MAC; the firmware version is read from the board.", valueName: "mac"))
    var mac: String?

    @Option(name: .customLong("registration-id"), help: ArgumentHelp("The DPS registration ID.", valueName: "id"))
    var registrationID: String?

    @OptionGroup var output: OutputOptions

    static let usage = ":cert (--elf FILE | --bin FILE --map FILE) --uds-file FILE "
        + "(--mac MAC | --registration-id ID) [--output-dir DIR]"

    func validate() throws {
        try firmware.requireGiven()
        guard udsOptions.udsFile != nil else { throw ValidationError("give the board's UDS with --uds-file FILE") }
        guard (mac != nil) != (registrationID != nil) else {
            throw ValidationError("give either --mac MAC (with the board's firmware version) or --registration-id ID")
        }
    }

    /// Parses the words after `:cert` with the same option groups as `devkit cert`
    /// (ArgumentParser, so the console and the command cannot drift apart).
    static func parseWords(_ words: [String]) -> Result<ReplCertRequest, ReplCertUsage> {
        if words.contains("-h") || words.contains("--help") {
            return .failure(ReplCertUsage("writes <id>.pem, the board's Alias certificate"))
        }
        // ArgumentParser runs the option groups' validate() before it reports a word it
        // does not know, which would answer a typo with "give the firmware"; the names
        // it knows are those in its own help text.
        let help = helpMessage()
        if let unknown = words.first(where: { $0.hasPrefix("-") && !help.contains(" \($0) ") }) {
            return .failure(ReplCertUsage("unknown option \(unknown)"))
        }
        do {
            return .success(try parse(words))
        } catch {
            var reason = message(for: error)
            while reason.hasSuffix(".") { reason.removeLast() }
            return .failure(ReplCertUsage(reason))
        }
    }
}

/// `:cert` in the console, as the CLI runs it for the REPL: what to tell the user.
enum ReplCert {
    static func run(_ words: [String], firmwareVersion: () -> FirmwareVersion?) -> String {
        switch ReplCertRequest.parseWords(words) {
        case .failure(let usage):
            return "\(usage.reason); usage: \(ReplCertRequest.usage)"
        case .success(let request):
            do {
                return try request.run(firmwareVersion: firmwareVersion)
            } catch let error as ReplCertUsage {
                return error.reason
            } catch {
                return cliMessage(error)
            }
        }
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
    func run(firmwareVersion: () -> FirmwareVersion?) throws -> String {
        let image = try firmware.source.load()
        let uds = try SecretFile.readUDS(udsOptions.udsFile!)
        let id: RegistrationID
        if let registrationID {
            id = try RegistrationID(registrationID)
        } else {
            guard let version = firmwareVersion() else {
                throw ReplCertUsage("the board's firmware version is needed with --mac; the board did not give it")
            }
            id = try RegistrationID(mac: try MACAddress(mac!), firmwareVersion: version)
        }
        let credentials = try MeasuredFirmware(image).credentials(uds: uds, registrationID: id)
        let outputDirectory = output.outputDir
        try makeDirectory(outputDirectory)
        let path = (outputDirectory.hasSuffix("/") ? outputDirectory : outputDirectory + "/") + id.value + ".pem"
        var files = AtomicFileGroup()
        try files.stage(credentials.aliasCertificatePEM, at: path)
        try files.commit()
        return "wrote \(path) for registration ID \(id.value) (SHA-1 thumbprint \(credentials.sha1Thumbprint)); "
            + "this firmware signs with a fixed nonce, so the certificate reveals the DeviceID key."
    }
}
