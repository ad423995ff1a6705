import DevKitModel
import DevKitTestSupport
import DevKitWorkflows
import Foundation
import Testing
@testable import DevKitCLI

/// `devkit watch` measures a firmware once for all boards; a rebuilt image must be
/// measured again, never certified with the old measurement.
@Suite("Firmware measurement cache")
struct FirmwareCacheTests {
    static let firmware = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/dice-vectors/firmware").path

    @Test("a firmware file replaced on disk is measured again")
    func rebuiltFirmwareIsRemeasured() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("fwcache-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/sketch.ino.elf"
        let measure = diceRIoTMeasurer()
        let source = FirmwareSource.elf(path)

        let tiny = try #require(DiceVector.named("uppercase-uds"))
        try FileManager.default.copyItem(atPath: Self.firmware + "/Tiny.ino.elf", toPath: path)
        #expect(try measure(source)(UDS(hex: tiny.uds), RegistrationID(tiny.registrationID)).pem == tiny.aliasCertificate)
        // Asked again (as every board thread does), the same image gives the same certificate.
        #expect(try measure(source)(UDS(hex: tiny.uds), RegistrationID(tiny.registrationID)).pem == tiny.aliasCertificate)

        // The sketch is rebuilt: a new file at the same path.
        let pad = try #require(DiceVector.named("hash-padding-55"))
        try FileManager.default.removeItem(atPath: path)
        try FileManager.default.copyItem(atPath: Self.firmware + "/Pad55.ino.elf", toPath: path)
        #expect(try measure(source)(UDS(hex: pad.uds), RegistrationID(pad.registrationID)).pem == pad.aliasCertificate)
    }
}
