import Crypto
import DevKitModel
import Foundation
import SwiftASN1
import X509

/// An enrollment's X.509 certificate, read once from its PEM text: the DER, the
/// subject CN (the registration ID DPS matches), and the thumbprints as DPS reports
/// them (upper-case hex of SHA-1 / SHA-256 over the DER, no separators).
///
/// The DevKit's Alias certificate carries a Subject Alternative Name that is not
/// RFC 5280 (an `otherName` without its `[0] EXPLICIT` wrapper; see
/// dps-service-api.md §4). swift-certificates keeps extensions as raw bytes until
/// one is asked for, and nothing here asks: such a certificate reads fine.
public struct EnrollmentCertificate: Sendable, Equatable {
    /// The text as it was given (sent to DPS as it is, as the Azure CLI does).
    public let pem: String
    public let der: [UInt8]
    /// The subject's common name; nil when the subject has none.
    public let commonName: String?
    /// The subject as .NET (and so DPS) writes it: the last RDN first, `, ` between.
    public let subjectName: String
    public let issuerName: String
    /// Upper-case hex, no separators, as DPS's `sha1Thumbprint`.
    public let sha1Thumbprint: String
    /// Upper-case hex, no separators, as DPS's `sha256Thumbprint`.
    public let sha256Thumbprint: String
    public let notBefore: Date
    public let notAfter: Date
    /// Upper-case hex of the serial number's bytes.
    public let serialNumber: String
    /// 3 for an X.509 v3 certificate.
    public let version: Int

    /// Reads the first certificate of `pem` (one `-----BEGIN CERTIFICATE-----` block).
    ///
    /// The base64 may be wrapped at any width or not at all: the DevKit firmware and
    /// devkit write it on one line, which SwiftASN1's strict `PEMDocument` (64-column
    /// lines, as RFC 7468 writes them) refuses; OpenSSL and DPS read both.
    public init(pem: String) throws(EnrollmentCertificateError) {
        guard let begin = pem.range(of: "-----BEGIN "), let labelEnd = pem.range(of: "-----", range: begin.upperBound..<pem.endIndex)
        else { throw .notPEM }
        let label = String(pem[begin.upperBound..<labelEnd.lowerBound])
        guard let end = pem.range(of: "-----END \(label)-----", range: labelEnd.upperBound..<pem.endIndex) else { throw .notPEM }
        guard label == "CERTIFICATE" else { throw .notACertificate(label) }
        // Bytes, not Characters: Character.isWhitespace over a certificate's base64
        // was a quarter of emulate-dps's time in a bulk of 10 (Scripts/bench-enroll.sh).
        // Unicode spaces (rare) still go through the Character filter.
        let range = pem[labelEnd.upperBound..<end.lowerBound]
        var bytes = range.utf8.filter { $0 != 0x20 && !(0x09...0x0D).contains($0) }
        if bytes.contains(where: { $0 >= 0x80 }) { bytes = Array(String(range.filter { !$0.isWhitespace }).utf8) }
        guard let der = Data(base64Encoded: Data(bytes)), !der.isEmpty else { throw .notPEM }
        try self.init(der: Array(der), pem: pem)
    }

    /// Reads a DER certificate; `pem` is the text to send (made from the DER when nil).
    public init(der: [UInt8], pem: String? = nil) throws(EnrollmentCertificateError) {
        let certificate: Certificate
        do { certificate = try Certificate(derEncoded: der) } catch { throw .unreadable("\(error)") }
        self.der = der
        self.pem = pem ?? PEMDocument(type: "CERTIFICATE", derBytes: der).pemString + "\n"
        commonName = certificate.subject.lazy.flatMap { $0 }
            .first { $0.type == .RDNAttributeType.commonName }
            .flatMap { String($0.value) }
        subjectName = Self.dotNetName(certificate.subject)
        issuerName = Self.dotNetName(certificate.issuer)
        sha1Thumbprint = Hex.encode(Insecure.SHA1.hash(data: der), uppercase: true)
        sha256Thumbprint = Hex.encode(SHA256.hash(data: der), uppercase: true)
        notBefore = certificate.notValidBefore
        notAfter = certificate.notValidAfter
        serialNumber = Hex.encode(certificate.serialNumber.bytes, uppercase: true)
        version = certificate.version == .v3 ? 3 : 1  // swift-certificates knows v1 and v3 only
    }

    /// Whether `other` is the same certificate (the same DER, whatever the PEM's line breaks).
    public func sameCertificate(as other: EnrollmentCertificate) -> Bool { der == other.der }

    /// The `info` DPS adds to an enrolled certificate in its answers (times in
    /// ISO 8601, UTC), for the local DPS.
    public var info: X509CertificateInfo {
        // The format style, not an ISO8601DateFormatter made per call (ICU set-up:
        // a fifth of emulate-dps's time in a bulk of 10). The same text: 2017-01-01T00:00:00Z.
        let iso = Date.ISO8601FormatStyle()
        return X509CertificateInfo(
            subjectName: subjectName, sha1Thumbprint: sha1Thumbprint, sha256Thumbprint: sha256Thumbprint,
            issuerName: issuerName, notBeforeUtc: notBefore.formatted(iso), notAfterUtc: notAfter.formatted(iso),
            serialNumber: serialNumber, version: version)
    }

    private static func dotNetName(_ name: DistinguishedName) -> String {
        name.reversed().map { rdn in rdn.map(String.init(describing:)).joined(separator: " + ") }.joined(separator: ", ")
    }
}

/// Why a certificate could not be read.
public enum EnrollmentCertificateError: Error, Equatable, Sendable, CustomStringConvertible {
    case notPEM
    case notACertificate(String)
    case unreadable(String)

    public var description: String {
        switch self {
        case .notPEM: return "it is not a PEM certificate (-----BEGIN CERTIFICATE----- ... -----END CERTIFICATE-----)"
        case .notACertificate(let kind): return "it holds a PEM \(escaped(kind)), not a CERTIFICATE"
        case .unreadable(let why): return "its certificate cannot be read as X.509: \(escaped(why))"
        }
    }
}
