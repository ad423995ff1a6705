import DevKitTestSupport
import Foundation
import Testing
import VirtualDevKit

/// `--quiet` and `--verbose` on every command; the console banner off stdout when
/// piped (issue 12, item 15).
@Suite("--quiet, --verbose and the console banner")
struct OutputLevelTests {
    @Test("every command takes --quiet and --verbose, not both", arguments: [
        ["provision"], ["console"], ["info"], ["set-uds"], ["set-wifi"], ["set-connection-string"], ["cert"],
        ["list"], ["autoconfigure"], ["watch"], ["registry", "list"], ["registry", "show"],
        ["registry", "export"], ["registry", "reissue"], ["emulate"], ["emulate-dps"],
    ])
    func everyCommand(command: [String]) throws {
        let help = try ConsoleCLIProcess.run(command + ["--help"])
        #expect(help.stdout.contains("--quiet") && help.stdout.contains("--verbose"), "\(command)")
        let both = try ConsoleCLIProcess.run(command + ["--quiet", "--verbose"])
        #expect(both.status == 64, "\(command): \(both.stderr)")
        // A command missing a required argument says that first (ArgumentParser
        // checks presence before any validate()).
        if !both.stderr.contains("Missing expected argument") {
            #expect(both.stderr.contains("--quiet and --verbose"), "\(command): \(both.stderr)")
        }
    }

    @Test("cert: the fixed-nonce warning once, and none with --quiet")
    func certWarning() throws {
        let ws = try CertCommandTests.Workspace()
        defer { ws.remove() }
        let base = ["cert", "--bin", CertCommandTests.firmware + "/Tiny.ino.bin", "--map", CertCommandTests.firmware + "/Tiny.ino.map",
                    "--uds-file", ws.path + "/uds.hex", "--registration-id", "quiet-1", "--output-dir", ws.path + "/out"]
        let loud = try ConsoleCLIProcess.run(base)
        #expect(loud.status == 0, "\(loud.stderr)")
        #expect(loud.stderr.components(separatedBy: "fixed ECDSA nonce").count == 2)
        let quiet = try ConsoleCLIProcess.run(base + ["--quiet"])
        #expect(quiet.status == 0, "\(quiet.stderr)")
        #expect(quiet.stderr.isEmpty, "\(quiet.stderr)")
        #expect(quiet.stdout.contains("quiet-1"))
    }

    @Test("--verbose shows the console exchange with the secret masked")
    func verboseMasksSecrets() throws {
        let kit = try startedKit(.init(faults: .init(echoSecretInErrors: true)))
        defer { kit.stop() }
        let uds = try ConsoleCLIProcess.run(["set-uds", "--port", kit.devicePath, "--uds-file", "-", "--verbose"], stdin: cliUDS + "\n")
        #expect(uds.status == 74, "\(uds.stderr)")
        #expect(uds.stderr.contains("devkit: > set_dps_uds ***"), "\(uds.stderr)")
        #expect(uds.stderr.contains("devkit: < "))
        let lower = (uds.stdout + uds.stderr).lowercased()
        let secret = Array(cliUDS.lowercased())
        for start in 0...(secret.count - 8) {
            #expect(!lower.contains(String(secret[start..<(start + 8)])), "a part of the UDS was printed")
        }

        let plain = startedKitOrNil()
        defer { plain?.stop() }
        if let plain {
            let info = try ConsoleCLIProcess.run(["info", "--port", plain.devicePath, "--verbose"])
            #expect(info.status == 0, "\(info.stderr)")
            #expect(info.stderr.contains("devkit: > version"), "\(info.stderr)")
            let quiet = try ConsoleCLIProcess.run(["info", "--port", plain.devicePath])
            #expect(!quiet.stderr.contains("devkit: > version"))
        }
    }

    /// The board's echo of a password (one `*` per character) is shown as `***`:
    /// the verbose exchange does not give the secret's length.
    @Test("--verbose: the board's starred echo of a secret does not give its length")
    func verboseHidesTheSecretsLength() throws {
        let kit = try startedKit()
        defer { kit.stop() }
        let result = try ConsoleCLIProcess.run(
            ["set-wifi", "--port", kit.devicePath, "--ssid", "Lab", "--wifi-password-file", "-", "--verbose"], stdin: "S3cretPass!\n")
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stderr.contains("devkit: < # set_wifipwd ***\n") || result.stderr.contains("devkit: < set_wifipwd ***\n"),
                "\(result.stderr)")
        #expect(!result.stderr.contains("*****"), "\(result.stderr)")
    }

    func startedKitOrNil() -> VirtualDevKit? { try? startedKit() }

    @Test("echo version | devkit console: the banner is not on stdout")
    func consoleBannerOffStdout() throws {
        let kit = try startedKit()
        defer { kit.stop() }
        let result = try ConsoleCLIProcess.run(["console", "--port", kit.devicePath], stdin: "version\n")
        #expect(!result.stdout.contains("Connected to"), "\(result.stdout)")
        #expect(result.stderr.contains("Connected to \(kit.devicePath)"))
        #expect(result.stdout.contains("DevKitSDK version"), "the board's reply stays on stdout: \(result.stdout)")
    }
}
