// A registry of N provisioned boards for Scripts/bench-enroll.sh: each with a
// random UDS, a MAC, the derived registration ID and a real DevKit Alias
// certificate (`<id>.pem`), its row `done` as `devkit provision` leaves it.
//
// Why a program of our own and not SQL or 1,000 virtual boards: rows are made
// through DevKitRegistry's API (recordNewBoard, markSteps), so they follow the
// current schema and its rules whatever the schema becomes; certificates come
// from DiceRIoT, the generator `devkit provision` and `devkit cert` use, so DPS
// sees what a real fleet would send. Provisioning 1,000 emulated boards over
// ptys would take minutes and measure the console, not enrollment. One small
// file on libraries devkit already builds: little added build time.
//
// Usage: BenchRegistry --registry PATH --output-dir DIR --elf FIRMWARE.elf [--boards N]
import DevKitModel
import DevKitRegistry
import DiceRIoT
import Foundation
import Synchronization

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("BenchRegistry: \(message)\n".utf8))
    exit(64)
}

var options: [String: String] = [:]
var arguments = CommandLine.arguments.dropFirst()
while let name = arguments.popFirst() {
    guard ["--registry", "--output-dir", "--elf", "--boards"].contains(name), let value = arguments.popFirst() else {
        fail("usage: BenchRegistry --registry PATH --output-dir DIR --elf FIRMWARE.elf [--boards N]")
    }
    options[name] = value
}
guard let registryPath = options["--registry"], let outputDirectory = options["--output-dir"],
      let elfPath = options["--elf"]
else { fail("give --registry, --output-dir and --elf") }
guard let boards = Int(options["--boards"] ?? "1000"), (1...0xFFFF).contains(boards) else {
    fail("--boards takes 1 to 65535")
}

do {
    let started = Date()
    let elf = try [UInt8](Data(contentsOf: URL(fileURLWithPath: elfPath)))
    let firmware = MeasuredFirmware(try RIoTImage(elf: elf, path: elfPath))
    let version = try FirmwareVersion("1.6.2")
    try FileManager.default.createDirectory(atPath: outputDirectory, withIntermediateDirectories: true)
    let registry = try Registry(path: registryPath)
    // The remaining steps of a board the workflow finished, in one commit per board.
    let steps = ProvisioningStep.allCases.filter { $0 > .udsSent }
    let failures = Mutex<[String]>([])
    // Several threads: the registry's group commit shares one synced commit among
    // the boards recorded at the same moment, as `devkit watch` does for a fleet.
    DispatchQueue.concurrentPerform(iterations: 8) { worker in
        for i in stride(from: worker, to: boards, by: 8) {
            do {
                var random = SystemRandomNumberGenerator()
                let uds = try UDS(bytes: (0..<UDS.byteCount).map { _ in UInt8.random(in: 0...255, using: &random) })
                let mac = try MACAddress(String(format: "a4cf12be%04x", i))
                let id = try RegistrationID(mac: mac, firmwareVersion: version)
                let credentials = try firmware.credentials(uds: uds, registrationID: id)
                let path = (outputDirectory as NSString).appendingPathComponent("\(id).pem")
                // A fixture: no fsync (a crash just means making it again).
                try Data(credentials.aliasCertificatePEM.utf8).write(to: URL(fileURLWithPath: path))
                let board = try registry.recordNewBoard(
                    uds: uds, mac: mac, registrationID: id, firmwareVersion: version, alsoMark: [.udsSent])
                try registry.markSteps(
                    steps, boardID: board.id!,
                    update: BoardUpdate(
                        certificateSHA1: credentials.sha1Thumbprint, certificateSHA256: credentials.sha256Thumbprint,
                        certificatePath: path))
            } catch {
                failures.withLock { $0.append("board \(i): \(error)") }
            }
        }
    }
    let errors = failures.withLock { $0 }
    guard errors.isEmpty else { fail(errors.prefix(5).joined(separator: "\n")) }
    print(String(format: "%d boards recorded in %@ in %.2f s", boards, registryPath, Date().timeIntervalSince(started)))
} catch {
    fail("\(error)")
}
