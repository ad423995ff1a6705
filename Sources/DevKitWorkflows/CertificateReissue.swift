import DevKitRegistry
import Foundation

/// Re-issues certificates for recorded boards after a firmware update: the
/// firmware is measured once, then every board with a known MAC gets a new
/// `<id>.pem` and `<id>.enrollment.json` from its recorded UDS.
///
/// A board whose registration ID was the derived `az-<mac>v<old version>` gets the
/// derived ID for the new version (that is what the device will present); any
/// other recorded ID is kept. Errors are per board and do not stop the others.
public struct CertificateReissue {
    public let registry: Registry
    public let factory: CertificateFactory

    /// - Parameter factory: from the measurer, for the new firmware image.
    public init(registry: Registry, factory: @escaping CertificateFactory) {
        self.registry = registry
        self.factory = factory
    }

    /// One board's outcome.
    public struct Item: Sendable {
        public var boardID: Int64
        public var result: Result<ProvisionResult, ReissueError>
    }

    public struct ReissueError: Error, Sendable, CustomStringConvertible {
        public var description: String
    }

    /// Re-issues for every board that has a MAC, or only `boardIDs` when given.
    /// `firmwareVersion` is the version of the new image (it changes derived IDs);
    /// nil keeps each board's recorded version.
    public func run(
        firmwareVersion: String?, outputDirectory: String, dps: DPSSettings = DPSSettings(),
        boardIDs: [Int64]? = nil
    ) throws -> [Item] {
        try ProvisionWorkflow.checkOutputDirectory(outputDirectory)
        let boards = try registry.allBoards().filter { board in
            boardIDs.map { board.id.map($0.contains) ?? false } ?? true
        }
        return boards.map { board in
            Item(boardID: board.id!, result: Result { () throws(ReissueError) in
                do { return try reissue(board, firmwareVersion, outputDirectory, dps) } catch let e as ReissueError {
                    throw e
                } catch {
                    throw ReissueError(description: "\(error)")
                }
            })
        }
    }

    private func reissue(
        _ board: BoardRecord, _ newVersion: String?, _ outputDirectory: String, _ dps: DPSSettings
    ) throws -> ProvisionResult {
        let id = board.id!
        guard let mac = board.mac else {
            throw ReissueError(description: "board #\(id) has no MAC recorded (it was interrupted before mac_read); finish it with `devkit provision --resume \(id)`")
        }
        guard let version = newVersion ?? board.firmwareVersion else {
            throw ReissueError(description: "board #\(id) has no firmware version recorded; give --firmware-version")
        }
        var registrationID = board.registrationID ?? RegistrationIDScheme.derivedID(mac: mac, firmwareVersion: version)
        if let old = board.firmwareVersion, registrationID == RegistrationIDScheme.derivedID(mac: mac, firmwareVersion: old) {
            registrationID = RegistrationIDScheme.derivedID(mac: mac, firmwareVersion: version)
        }
        try RegistrationIDScheme.validate(registrationID)
        let certificate = try factory(board.uds, registrationID)
        let pemPath = (outputDirectory as NSString).appendingPathComponent("\(registrationID).pem")
        let enrollment = EnrollmentFile(registrationID: registrationID, certificatePEM: certificate.pem, dps: dps)
        let enrollmentPath = enrollment.path(in: outputDirectory)
        try OutputFile.writeAtomically(
            [(Data(certificate.pem.utf8), pemPath), (enrollment.json(), enrollmentPath)], mode: 0o644)
        // Board-side steps stay as they were: only the host-side outputs are new
        // (a board that never confirmed its UDS is not done by a re-issue). One commit.
        let confirmed = board.udsConfirmedAt != nil
        try registry.markSteps(
            confirmed ? [.certificateWritten, .enrollmentWritten] : [.certificateWritten], boardID: id,
            update: BoardUpdate(
                registrationID: registrationID, firmwareVersion: version, certificateSHA1: certificate.sha1,
                certificateSHA256: certificate.sha256, certificatePath: pemPath,
                enrollmentPath: confirmed ? enrollmentPath : nil))
        return ProvisionResult(
            boardID: id, registrationID: registrationID, mac: mac, firmwareVersion: version,
            certificatePath: pemPath, enrollmentPath: enrollmentPath, certificateSHA1: certificate.sha1,
            certificateSHA256: certificate.sha256, azCommand: enrollment.azCommand(certificatePath: pemPath))
    }
}
