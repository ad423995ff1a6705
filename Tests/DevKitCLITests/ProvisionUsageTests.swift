import Foundation
import Testing

/// `devkit provision`, `autoconfigure` and `registry reissue` refuse bad usage before
/// touching anything (no port is opened: the ports named here do not exist).
@Suite struct ProvisionUsageTests {
    static let usage: [([String], String)] = [
        (["provision", "--port", "/nonexistent", "--uds-file", "u"], "--bin FILE --map FILE, or as --elf FILE"),
        (["provision", "--port", "/nonexistent", "--bin", "b", "--uds-file", "u"], "--bin FILE --map FILE, or as --elf FILE"),
        (["provision", "--port", "/nonexistent", "--elf", "e", "--bin", "b", "--map", "m", "--uds-file", "u"], "--elf FILE"),
        (["provision", "--port", "/nonexistent", "--elf", "e"], "exactly one of --uds-file FILE and --generate-uds"),
        (["provision", "--port", "/nonexistent", "--elf", "e", "--uds-file", "u", "--generate-uds"], "exactly one of"),
        (["provision", "--port", "/nonexistent", "--elf", "e", "--generate-uds", "--wifi-ssid", "x"], "together"),
        (["provision", "--port", "/nonexistent", "--elf", "e", "--resume", "1", "--generate-uds"], "reuses the UDS"),
        (["provision", "--port", "/nonexistent", "--elf", "e", "--uds-file", "-", "--wifi-ssid", "x", "--wifi-password-file", "-"], "standard input"),
        // A bad MAC or ID is refused where it enters, with the model's message.
        (["provision", "--port", "/nonexistent", "--elf", "e", "--generate-uds", "--mac", "a4cf12"], "not a MAC address"),
        (["provision", "--port", "/nonexistent", "--elf", "e", "--generate-uds", "--registration-id", "Has_Upper"], "only a-z, 0-9"),
        (["registry", "reissue", "--elf", "e", "--firmware-version", "1.6"], "is not a firmware version"),
        (["registry", "reissue"], "--elf FILE"),
    ]

    @Test(arguments: usage)
    func usageErrorsExit64(_ c: (args: [String], message: String)) throws {
        let dir = registryTestDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let r = try RegistryCLIProcess.run(c.args + ["--registry", dir + "/r.sqlite"])
        #expect(r.status == 64, "\(c.args): \(r.stderr)")
        #expect(r.stderr.contains(c.message), "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/r.sqlite"))
    }

    @Test func autoconfigureReportsProfileErrorsWithFileAndKey() throws {
        let dir = registryTestDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let profile = dir + "/bench.toml"
        try "[firmware]\nelf = \"a.elf\"\n[uds]\npolicy = \"sometimes\"\n".write(toFile: profile, atomically: false, encoding: .utf8)
        let r = try RegistryCLIProcess.run(["autoconfigure", "--port", "/nonexistent", "--profile", profile,
                                            "--registry", dir + "/r.sqlite"])
        #expect(r.status == 65)
        #expect(r.stderr.contains("profile \(profile): uds.policy: 'sometimes' is not a policy"))
        let missing = try RegistryCLIProcess.run(["autoconfigure", "--port", "/nonexistent", "--profile", dir + "/none.toml"])
        #expect(missing.status == 66)
    }

    @Test func helpTeaches() throws {
        for command in [["provision"], ["autoconfigure"], ["watch"], ["registry"], ["registry", "reissue"]] {
            let r = try RegistryCLIProcess.run(command + ["--help"])
            #expect(r.status == 0)
            #expect(r.stdout.contains("Examples:"), "\(command)")
        }
    }
}
