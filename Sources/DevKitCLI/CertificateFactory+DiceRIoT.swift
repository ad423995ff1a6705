import DiceRIoT
import DevKitWorkflows
import Foundation

/// The firmware measurer backed by the DiceRIoT generator, for `provision`,
/// `autoconfigure`, `watch` and `registry reissue`: the image is read, parsed and
/// measured once; the returned factory certifies each board.
func diceRIoTMeasurer() -> FirmwareMeasurer {
    { source in
        let image: RIoTImage
        do {
            switch source {
            case .binAndMap(let bin, let map):
                image = try RIoTImage(bin: try readInput(bin), map: try readInput(map), binPath: bin, mapPath: map)
            case .elf(let elf):
                image = try RIoTImage(elf: try readInput(elf), path: elf)
            }
        } catch let error as FirmwareError {
            throw ProvisionError.firmware("\(error)")
        }
        let firmware = MeasuredFirmware(image)
        return { udsHex, registrationID in
            let credentials = try firmware.credentials(uds: try UDS(hex: udsHex), registrationID: try RegistrationID(registrationID))
            return AliasCertificate(
                pem: credentials.aliasCertificatePEM, sha1: credentials.sha1Thumbprint,
                sha256: credentials.sha256Thumbprint)
        }
    }
}

/// Reads a firmware file; a missing or unreadable file is a usage problem named by path.
private func readInput(_ path: String) throws -> [UInt8] {
    guard let data = FileManager.default.contents(atPath: path) else {
        throw ProvisionError.invalidInput(
            FileManager.default.fileExists(atPath: path)
                ? "cannot read firmware file \(path): permission denied"
                : "firmware file \(path) does not exist")
    }
    return [UInt8](data)
}
