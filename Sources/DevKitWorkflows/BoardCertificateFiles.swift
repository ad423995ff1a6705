import DevKitModel
import DevKitRegistry
import Foundation

/// A recorded board's certificate and enrollment file: the one path from its UDS and
/// registration ID to `<id>.pem` and `<id>.enrollment.json`, shared by `provision`
/// (its certificate step) and by `registry reissue` / `cert --from-registry`
/// (``CertificateReissue``).
struct BoardCertificateFiles {
    let registrationID: RegistrationID
    let certificate: AliasCertificate
    let enrollment: EnrollmentFile
    let certificatePath: String
    let enrollmentPath: String

    /// `<directory>/<id><suffix>.pem` and `<directory>/<id><suffix>.enrollment.json`.
    static func paths(
        registrationID: RegistrationID, outputDirectory: String, suffix: String = ""
    ) -> (certificate: String, enrollment: String) {
        let base = (outputDirectory as NSString).appendingPathComponent("\(registrationID)\(suffix)")
        return (base + ".pem", base + ".enrollment.json")
    }

    /// Computes the certificate and writes both files in one go: one directory fsync
    /// for the pair (shared with boards finishing at the same moment). The caller then
    /// records both steps in one registry commit (``update(firmwareVersion:)``), so a
    /// crash before that commit redoes both files.
    static func write(
        uds: UDS, registrationID: RegistrationID, factory: CertificateFactory, outputDirectory: String,
        dps: DPSSettings
    ) throws -> BoardCertificateFiles {
        let certificate = try factory(uds, registrationID)
        let pemPath = paths(registrationID: registrationID, outputDirectory: outputDirectory).certificate
        let enrollment = EnrollmentFile(registrationID: registrationID.value, certificatePEM: certificate.pem, dps: dps)
        let enrollmentPath = enrollment.path(in: outputDirectory)
        try OutputFile.writeAtomically(
            [(Data(certificate.pem.utf8), pemPath), (enrollment.json(), enrollmentPath)], mode: 0o644)
        return BoardCertificateFiles(
            registrationID: registrationID, certificate: certificate, enrollment: enrollment,
            certificatePath: pemPath, enrollmentPath: enrollmentPath)
    }

    /// The registry update that goes with `certificateWritten` and `enrollmentWritten`;
    /// `firmwareVersion` when it changed (a re-issue for new firmware).
    func update(firmwareVersion: FirmwareVersion? = nil) -> BoardUpdate {
        BoardUpdate(
            registrationID: registrationID, firmwareVersion: firmwareVersion, certificateSHA1: certificate.sha1,
            certificateSHA256: certificate.sha256, certificatePath: certificatePath, enrollmentPath: enrollmentPath)
    }

    func result(boardID: Int64, mac: MACAddress, firmwareVersion: FirmwareVersion) -> ProvisionResult {
        ProvisionResult(
            boardID: boardID, registrationID: registrationID.value, mac: mac.hex, firmwareVersion: firmwareVersion.text,
            certificatePath: certificatePath, enrollmentPath: enrollmentPath, certificateSHA1: certificate.sha1,
            certificateSHA256: certificate.sha256, azCommand: enrollment.azCommand(certificatePath: certificatePath))
    }
}
