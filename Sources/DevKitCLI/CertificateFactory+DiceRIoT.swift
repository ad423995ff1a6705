import DiceRIoT
import DevKitWorkflows
import Foundation

/// The firmware measurer backed by the DiceRIoT generator, for `provision`,
/// `autoconfigure`, `watch` and `registry reissue`: the image is read, parsed and
/// measured once; the returned factory certifies each board.
func diceRIoTMeasurer() -> FirmwareMeasurer {
    { source in
        let image: RIoTImage
        do { image = try source.load() } catch CertError.firmware(let problem) {
            throw ProvisionError.firmware("\(problem)")
        } catch let error as CertError {
            throw ProvisionError.invalidInput(error.userMessage)
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
