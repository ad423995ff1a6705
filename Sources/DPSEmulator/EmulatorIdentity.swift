import Crypto
import DevKitSystem
import Foundation
import SwiftASN1
import X509
#if canImport(Glibc)
import Glibc
#endif

/// The emulator's TLS identity: a CA of its own (P-256, self-signed) and a server
/// certificate for `localhost` and 127.0.0.1 signed by it.
///
/// Clients trust `ca.pem` alone (`--ca-file`), so a real handshake that checks the
/// host name runs on loopback without touching the system's trust store. Created on
/// the first start in the state directory and reused after; the server certificate
/// is issued again from the kept CA key when it is missing or within a day of expiry.
public struct EmulatorIdentity: Sendable {
    /// The CA certificate, PEM (public: what clients trust).
    public let caCertificatePEM: String
    /// The server certificate, PEM.
    public let serverCertificatePEM: String
    /// The server's private key, PEM (PKCS#8). Never printed.
    let serverKeyPEM: String

    /// What the CA is called in its subject (and so in every chain it signs).
    static let caCommonName = "devkit emulate-dps local CA"

    /// Loads the identity from `directory`, creating what is missing: the CA (and its
    /// key) once, the server certificate whenever it is absent or about to expire.
    static func loadOrCreate(in directory: EmulatorStateDirectory, now: Date = Date()) throws(EmulatorSetupError) -> EmulatorIdentity {
        let (caCertificate, caKey) = try loadOrCreateCA(directory, now: now)
        if let existing = try? loadServer(directory, issuer: caCertificate, now: now) {
            return EmulatorIdentity(
                caCertificatePEM: try pem(caCertificate, directory.caCertificate),
                serverCertificatePEM: existing.certificate, serverKeyPEM: existing.key)
        }
        let serverKey = P256.Signing.PrivateKey()
        let certificate: Certificate
        do {
            certificate = try Certificate(
                version: .v3,
                serialNumber: Certificate.SerialNumber(),
                publicKey: Certificate.PrivateKey(serverKey).publicKey,
                notValidBefore: now.addingTimeInterval(-3600),  // a little clock skew
                notValidAfter: now.addingTimeInterval(397 * 86_400),
                issuer: caCertificate.subject,
                subject: DistinguishedName { CommonName("localhost") },
                signatureAlgorithm: .ecdsaWithSHA256,
                extensions: Certificate.Extensions {
                    Critical(BasicConstraints.notCertificateAuthority)
                    Critical(KeyUsage(digitalSignature: true))
                    try ExtendedKeyUsage([.serverAuth])
                    SubjectAlternativeNames([.dnsName("localhost"), .ipAddress(ASN1OctetString(contentBytes: [127, 0, 0, 1]))])
                },
                issuerPrivateKey: Certificate.PrivateKey(caKey))
        } catch {
            throw .certificate("cannot issue the server certificate: \(error)")
        }
        let certificatePEM = try pem(certificate, directory.serverCertificate)
        let keyPEM = serverKey.pemRepresentation
        // The key first: a certificate without its key would be reused next time.
        try write(keyPEM, to: directory.serverKey, mode: 0o600)
        try write(certificatePEM, to: directory.serverCertificate, mode: 0o644)
        return EmulatorIdentity(
            caCertificatePEM: try pem(caCertificate, directory.caCertificate),
            serverCertificatePEM: certificatePEM, serverKeyPEM: keyPEM)
    }

    private static func loadOrCreateCA(
        _ directory: EmulatorStateDirectory, now: Date
    ) throws(EmulatorSetupError) -> (Certificate, P256.Signing.PrivateKey) {
        let fileManager = FileManager.default
        if fileManager.fileExists(atPath: directory.caCertificate) || fileManager.fileExists(atPath: directory.caKey) {
            // A half-made CA (one file of two) is an error, not something to replace
            // silently: clients may already trust the old ca.pem.
            do {
                let certificate = try Certificate(pemEncoded: try readText(directory.caCertificate))
                let key = try P256.Signing.PrivateKey(pemRepresentation: try readText(directory.caKey))
                guard certificate.publicKey == Certificate.PublicKey(key.publicKey) else {
                    throw EmulatorSetupError.certificate("\(directory.caKey) is not the key of \(directory.caCertificate)")
                }
                return (certificate, key)
            } catch let error as EmulatorSetupError {
                throw error
            } catch {
                throw .certificate(
                    "cannot read the CA in \(directory.path) (\(error)); remove ca.pem and ca-key.pem there to make a new one")
            }
        }
        let key = P256.Signing.PrivateKey()
        let name: DistinguishedName
        let certificate: Certificate
        do {
            name = try DistinguishedName { CommonName(caCommonName) }
            certificate = try Certificate(
                version: .v3,
                serialNumber: Certificate.SerialNumber(),
                publicKey: Certificate.PrivateKey(key).publicKey,
                notValidBefore: now.addingTimeInterval(-3600),
                notValidAfter: now.addingTimeInterval(10 * 365 * 86_400),
                issuer: name,
                subject: name,
                signatureAlgorithm: .ecdsaWithSHA256,
                extensions: Certificate.Extensions {
                    Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                    Critical(KeyUsage(keyCertSign: true))
                    SubjectKeyIdentifier(hash: Certificate.PrivateKey(key).publicKey)
                },
                issuerPrivateKey: Certificate.PrivateKey(key))
        } catch {
            throw .certificate("cannot create the CA: \(error)")
        }
        try write(key.pemRepresentation, to: directory.caKey, mode: 0o600)
        try write(try pem(certificate, directory.caCertificate), to: directory.caCertificate, mode: 0o644)
        return (certificate, key)
    }

    /// The kept server certificate and key, if both are there, match, were issued by
    /// this CA and stay valid for at least another day.
    private static func loadServer(
        _ directory: EmulatorStateDirectory, issuer: Certificate, now: Date
    ) throws -> (certificate: String, key: String) {
        let certificatePEM = try readText(directory.serverCertificate)
        let keyPEM = try readText(directory.serverKey)
        let certificate = try Certificate(pemEncoded: certificatePEM)
        let key = try P256.Signing.PrivateKey(pemRepresentation: keyPEM)
        guard certificate.publicKey == Certificate.PublicKey(key.publicKey),
              certificate.issuer == issuer.subject,
              issuer.publicKey.isValidSignature(certificate.signature, for: certificate),
              certificate.notValidAfter > now.addingTimeInterval(86_400)
        else { throw EmulatorSetupError.certificate("stale server certificate") }
        return (certificatePEM, keyPEM)
    }

    private static func pem(_ certificate: Certificate, _ path: String) throws(EmulatorSetupError) -> String {
        do {
            return try certificate.serializeAsPEM().pemString + "\n"
        } catch {
            throw .certificate("cannot encode \(path): \(error)")
        }
    }

    private static func readText(_ path: String) throws -> String {
        String(decoding: try InputFile.read(path, limit: .certificateFile, standardInputDash: false), as: UTF8.self)
    }

    static func write(_ text: String, to path: String, mode: mode_t) throws(EmulatorSetupError) {
        do {
            try DurableFile.write(Array(text.utf8), to: path, mode: mode)
        } catch {
            throw .file(error)
        }
    }
}

extension InputLimit {
    /// A PEM certificate or key the emulator keeps (a few hundred bytes each).
    static let certificateFile = InputLimit(bytes: 64 << 10, kind: "a PEM certificate or key")
}

/// Why the emulator could not start: its state directory, identity or port.
public enum EmulatorSetupError: Error, Sendable, CustomStringConvertible {
    /// A file in the state directory could not be written.
    case file(DurableFileError)
    /// The state directory could not be created or is not private to this user.
    case directory(path: String, errno: Int32, reason: String)
    /// The CA or server certificate could not be made or read.
    case certificate(String)
    /// The kept state (enrollments) could not be read.
    case state(path: String, reason: String)
    /// The port could not be bound.
    case bind(port: Int, reason: String)
    /// Another emulator (another process) is using the state directory.
    case inUse(path: String)

    public var description: String {
        switch self {
        case .file(let error): "\(error)"
        case .directory(let path, _, let reason): "state directory \(path): \(reason)"
        case .certificate(let reason): reason
        case .state(let path, let reason): "cannot read the emulator's state \(path): \(reason)"
        case .bind(let port, let reason): "cannot listen on 127.0.0.1:\(port): \(reason)"
        case .inUse(let path): "another devkit emulate-dps is using the state directory \(path)"
        }
    }
}
