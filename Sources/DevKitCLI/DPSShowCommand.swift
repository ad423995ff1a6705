import DevKitBoardCLI
import ArgumentParser
import DPSModel
import DPSService
import DevKitModel
import Foundation

/// `devkit dps show ID`: one enrollment as DPS holds it.
struct DPSShowCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show",
        abstract: "Show one enrollment as DPS holds it.",
        usage: """
            devkit dps show <registration-id> --connection-string-file <file>
                [--endpoint <url>] [--ca-file <file>] [--json]
            """,
        discussion: """
            Prints the enrollment's registration ID, status, device ID, IoT Hub, etag, \
            times and its certificate as DPS reports it (subject, thumbprints, \
            validity). --json prints the enrollment as the service returned it (DPS \
            reports the certificate's details, not its PEM). Exit 66 when DPS has no \
            such enrollment.

            Examples:
              devkit dps show az-a4cf120b9e31v1v6v2 --connection-string-file dps.cs
              devkit dps show az-a4cf120b9e31v1v6v2 --connection-string-file dps.cs \\
                  --json

            \(DPSHelp.exitCodes)
            """)

    @Argument(help: ArgumentHelp("The enrollment's registration ID.", valueName: "registration-id"))
    var registrationID: String

    @OptionGroup var connection: DPSConnectionOptions

    @Flag(help: "The enrollment as one JSON object.")
    var json = false

    @OptionGroup var outputLevel: OutputLevelOptions

    func run() async throws {
        try await reportingErrors {
            let enrollment = try await withDPSClient(connection) { try await $0.get(registrationID) }
            guard let enrollment else { throw DPSNotFound.enrollment(registrationID) }
            if json {
                try printJSON(enrollment)
                return
            }
            print(labelledLines(enrollmentRows(enrollment)))
        }
    }
}

/// The labelled lines of an enrollment (`dps show`).
func enrollmentRows(_ e: IndividualEnrollment) -> [(label: String, value: String)] {
    var rows: [(label: String, value: String)] = [("Registration ID", e.registrationId)]
    rows.append(("Status", e.provisioningStatus?.rawValue ?? "enabled"))
    rows.append(("Attestation", e.attestation.type))
    if let d = e.deviceId { rows.append(("Device ID", d)) }
    if let h = e.iotHubHostName { rows.append(("IoT Hub", h)) }
    if let info = e.primaryCertificateInfo {
        if let s = info.subjectName { rows.append(("Subject", s)) }
        if let s = info.sha1Thumbprint { rows.append(("SHA-1 thumbprint", s)) }
        if let s = info.sha256Thumbprint { rows.append(("SHA-256 thumbprint", s)) }
        if let a = info.notBeforeUtc, let b = info.notAfterUtc { rows.append(("Valid", "\(a) to \(b)")) }
    } else if let pem = e.primaryCertificatePEM, let c = try? EnrollmentCertificate(pem: pem) {
        rows.append(("Subject", c.subjectName))
        rows.append(("SHA-1 thumbprint", c.sha1Thumbprint))
        rows.append(("SHA-256 thumbprint", c.sha256Thumbprint))
    }
    if let etag = e.etag { rows.append(("Etag", etag)) }
    if let t = e.createdDateTimeUtc { rows.append(("Created", t)) }
    if let t = e.lastUpdatedDateTimeUtc { rows.append(("Updated", t)) }
    if !e.extra.isEmpty { rows.append(("Other fields", e.extra.keys.sorted().joined(separator: ", "))) }
    return rows
}

/// DPS has nothing under the ID the user gave.
enum DPSNotFound: Error, CLIReportable {
    case enrollment(String)
    case registration(String)
    var exitStatus: ExitStatus { .noInput }
    var userMessage: String {
        switch self {
        case .enrollment(let id):
            "DPS has no enrollment '\(escaped(id))'; `devkit dps list` shows the ones it has"
        case .registration(let id):
            "'\(escaped(id))' has not registered with DPS (no registration state): the board has not connected yet, "
                + "or its registration was deleted"
        }
    }
}
