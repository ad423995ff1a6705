import ArgumentParser
import DevKitWorkflows

/// The firmware build a certificate is computed from: `--bin` with `--map`, or
/// `--elf`. Shared by `cert`, `provision`, `registry reissue` and the console's
/// `:cert`, so the rule and its messages are written once.
struct FirmwareOptions: ParsableArguments {
    @Option(
        help: ArgumentHelp("The sketch's raw FLASH image, <sketch>.ino.bin (with --map).", valueName: "file"),
        completion: .file(extensions: ["bin"]))
    var bin: String?

    @Option(
        help: ArgumentHelp("The GNU ld map of the same build, <sketch>.ino.map (with --bin).", valueName: "file"),
        completion: .file(extensions: ["map"]))
    var map: String?

    @Option(
        help: ArgumentHelp("The linked <sketch>.ino.elf, instead of --bin and --map.", valueName: "file"),
        completion: .file(extensions: ["elf"]))
    var elf: String?

    /// None given is allowed here (`provision --resume` reuses the recorded
    /// firmware); commands that always need it call ``requireGiven()``.
    func validate() throws {
        switch (bin, map, elf) {
        case (_?, _?, nil), (nil, nil, _?), (nil, nil, nil): return
        case (_, _, _?): throw ValidationError("Give either --elf FILE, or --bin FILE with --map FILE, not both.")
        case (_?, nil, nil):
            throw ValidationError(
                "--bin needs --map (the .map of the same build locates the RIoT ranges): "
                    + "give the firmware as --bin FILE --map FILE, or as --elf FILE.")
        case (nil, _?, nil):
            throw ValidationError(
                "--map needs --bin (the .bin of the same build): give the firmware as --bin FILE --map FILE, or as --elf FILE.")
        }
    }

    /// Throws the usage error when no firmware was given.
    func requireGiven() throws {
        if !isGiven { throw ValidationError("Give the firmware as --bin FILE --map FILE, or as --elf FILE.") }
    }

    var isGiven: Bool { bin != nil || map != nil || elf != nil }

    /// The files to measure; call only after `validate()` and ``requireGiven()`` passed.
    var source: FirmwareSource { elf.map { .elf($0) } ?? .binAndMap(bin: bin!, map: map!) }
}

/// Where the certificate files go (`provision`, `registry reissue`, `:cert`).
struct OutputOptions: ParsableArguments {
    @Option(
        name: .customLong("output-dir"),
        help: ArgumentHelp(
            "Where <id>.pem and <id>.enrollment.json go (created if missing; default: the current directory).",
            valueName: "dir"),
        completion: .directory)
    var outputDirGiven: String?

    /// The directory to use: given, or the current one.
    var outputDir: String { outputDirGiven ?? "." }

    func validate() throws {
        if outputDirGiven?.isEmpty == true { throw ValidationError("--output-dir needs a directory.") }
    }
}

/// Enrolling the boards a command provisions or re-issues in DPS (`provision`,
/// `registry reissue --enroll`): the `--dps-` spelling of `devkit dps`'s
/// connection options, beside the command's own `--output-dir` and `--registry`.
struct DPSEnrollOptions: ParsableArguments {
    @Option(help: ArgumentHelp(
        "Enroll in DPS with the connection string of a DPS shared access policy in this file ('-': standard input).",
        valueName: "file"), completion: .file())
    var dpsConnectionStringFile: String?
    @Option(help: ArgumentHelp(
        "DPS base URL when it is not https://<HostName> (a private endpoint, `devkit emulate-dps`).", valueName: "url"))
    var dpsEndpoint: String?
    @Option(help: ArgumentHelp("PEM certificates to trust for DPS besides the system's.", valueName: "pem"),
        completion: .file(extensions: ["pem", "crt"]))
    var dpsCAFile: String?
    @Option(help: ArgumentHelp("IoT hub to assign the device to (enrollment and enrollment file).", valueName: "host"))
    var iotHub: String?

    func validate() throws {
        if dpsConnectionStringFile?.isEmpty == true {
            throw ValidationError("--dps-connection-string-file needs a path, or '-' for standard input.")
        }
        if dpsCAFile == "-" || dpsCAFile?.isEmpty == true {
            throw ValidationError("--dps-ca-file takes a PEM file (not standard input).")
        }
        if dpsConnectionStringFile == nil, dpsEndpoint != nil || dpsCAFile != nil {
            throw ValidationError(
                "\(dpsEndpoint != nil ? "--dps-endpoint" : "--dps-ca-file") is used to enroll in DPS; "
                    + "give --dps-connection-string-file too.")
        }
        if let iotHub, iotHub.isEmpty || iotHub.contains(where: { $0 == "/" || $0 == " " }) {
            throw ValidationError("--iot-hub takes the hub's host name, e.g. my-hub.azure-devices.net.")
        }
    }

    /// The settings given, over `base` (the DPS name and resource group for the `az` line).
    func settings(over base: DPSSettings = DPSSettings()) -> DPSSettings {
        var dps = base
        dps.iotHubHostName = iotHub ?? base.iotHubHostName
        dps.connectionStringFile = dpsConnectionStringFile ?? base.connectionStringFile
        dps.endpoint = dpsEndpoint ?? base.endpoint
        dps.caFile = dpsCAFile ?? base.caFile
        return dps
    }
}
