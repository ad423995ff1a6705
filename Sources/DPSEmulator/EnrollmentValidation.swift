import DevKitModel
import DPSModel

/// An enrollment that passed the checks DPS makes, ready for the store: the key
/// it is filed under and the value with the certificate's `info` filled in.
struct ValidatedEnrollment: Sendable {
    let key: String
    let value: IndividualEnrollment
}

/// The checks DPS makes on an individual enrollment before it writes one: the
/// registration ID's rules (64 characters for X.509), X.509 attestation with a
/// certificate that reads, and its subject CN equal to the registration ID.
///
/// The certificate is read with DPSModel's `EnrollmentCertificate`, which parses
/// only what it reports: the DevKit's Alias certificate has a Subject Alternative
/// Name no strict X.509 validator accepts (shared docs, dps-service-api.md §4), and
/// DPS takes it, so no chain or extension validation runs here.
func validate(_ enrollment: IndividualEnrollment, pathID: String?) throws(ServiceFailure) -> ValidatedEnrollment {
    let id = enrollment.registrationId
    if let pathID, DPSRegistrationIDRules.key(pathID) != DPSRegistrationIDRules.key(id) {
        throw .badRegistrationID("The body's registrationId '\(id)' is not the path's '\(pathID)'.")
    }
    guard enrollment.attestation.type.lowercased() == "x509" else {
        // DPS takes TPM and symmetric-key enrollments too; devkit writes X.509 ones only.
        throw .badCertificate("Attestation type '\(enrollment.attestation.type)' is not supported by the emulator (x509 only).")
    }
    do {
        try DPSRegistrationIDRules.check(id, x509: true)
    } catch {
        throw .badRegistrationID("Invalid registration ID: \(error).")
    }
    guard let pem = enrollment.primaryCertificatePEM, !pem.isEmpty else {
        throw .badCertificate("An X.509 individual enrollment needs attestation.x509.clientCertificates.primary.certificate (PEM).")
    }
    let certificate: EnrollmentCertificate
    do {
        certificate = try EnrollmentCertificate(pem: pem)
    } catch {
        throw .badCertificate("Invalid certificate: \(error).")
    }
    guard let commonName = certificate.commonName else {
        throw .commonNameMismatch("The certificate's subject has no common name (CN); it must be the registration ID '\(id)'.")
    }
    guard DPSRegistrationIDRules.key(commonName) == DPSRegistrationIDRules.key(id) else {
        throw .commonNameMismatch("The certificate's subject CN '\(commonName)' is not the registration ID '\(id)'.")
    }
    var value = enrollment
    value.attestation.x509?.clientCertificates?.primary?.info = certificate.info
    return ValidatedEnrollment(key: DPSRegistrationIDRules.key(id), value: value)
}

extension IndividualEnrollment {
    /// The enrollment as DPS answers with it: the certificate's `info`, not its PEM.
    var answered: IndividualEnrollment {
        var copy = self
        copy.attestation.x509?.clientCertificates?.primary?.certificate = nil
        copy.attestation.x509?.clientCertificates?.secondary?.certificate = nil
        return copy
    }
}
