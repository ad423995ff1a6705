import Crypto
import DevKitModel
import Foundation

/// A firmware image measured once, ready to certify any number of devices.
///
/// ```swift
/// let image = try RIoTImage(bin: binBytes, map: mapBytes)
/// let firmware = MeasuredFirmware(image)
/// let device = try firmware.credentials(uds: UDS(hex: secret), registrationID: RegistrationID("my-device"))
/// try device.aliasCertificatePEM.write(to: ...)
/// ```
public struct MeasuredFirmware: Sendable {
    /// `Hd(RIoT Core)`: the core's measurement (Docs/certificate.md §3–§4).
    public let coreMeasurement: [UInt8]
    /// `SHA-256(RIoT FW)`: the firmware ID carried in the Alias certificate.
    public let fwid: [UInt8]
    /// The Alias TBS's fixed bytes, per CN length (AliasTemplate.swift).
    private let aliasTemplates: AliasTBSTemplates

    public init(_ image: RIoTImage) {
        coreMeasurement = MeasurementHash.hash(image.core)
        fwid = Array(SHA256.hash(data: image.firmware))
        aliasTemplates = AliasTBSTemplates(fwid: fwid)
    }

    /// Derives both key pairs and signs the Alias certificate for one device (Docs/certificate.md §4–§6).
    public func credentials(uds: UDS, registrationID: RegistrationID) throws(GenerationError) -> DeviceCredentials {
        try credentials([(uds, registrationID)])[0].get()
    }

    /// The same for several devices, in their order: the public points of all their
    /// keys (two per device) are computed together, with one field inversion for all
    /// (`BasePoint.publicPoints`), which is about a third of a key's curve time. A batch
    /// of a few dozen devices gets most of the saving.
    public func credentials(
        _ devices: [(uds: UDS, registrationID: RegistrationID)]
    ) -> [Result<DeviceCredentials, GenerationError>] {
        // Two scalars per device: the DeviceID key's, then the Alias key's.
        var scalars: [[UInt8]] = []
        scalars.reserveCapacity(devices.count * 2)
        for device in devices {
            let cdi = MeasurementHash.hash(MeasurementHash.hash(device.uds.bytes), coreMeasurement)
            var c1Hash = SHA256()
            cdi.withUnsafeBytes { c1Hash.update(bufferPointer: $0) }
            let c1 = c1Hash.finalize()
            scalars.append(DerivedKey.scalar(source: c1, label: .identity))
            var c2Hash = SHA256()
            c1.withUnsafeBytes { c2Hash.update(bufferPointer: $0) }
            fwid.withUnsafeBytes { c2Hash.update(bufferPointer: $0) }
            scalars.append(DerivedKey.scalar(source: c2Hash.finalize(), label: .alias))
        }
        let points = BasePoint.publicPoints(of: scalars)
        return devices.indices.map { i in
            Result { () throws(GenerationError) in
                guard let deviceIDPoint = points[2 * i] else { throw .scalarOutOfRange(key: DerivedKey.Label.identity.name) }
                guard let aliasPoint = points[2 * i + 1] else { throw .scalarOutOfRange(key: DerivedKey.Label.alias.name) }
                return try aliasCertificate(
                    registrationID: devices[i].registrationID,
                    deviceID: DerivedKey(privateScalar: scalars[2 * i], publicPoint: deviceIDPoint),
                    alias: DerivedKey(privateScalar: scalars[2 * i + 1], publicPoint: aliasPoint))
            }
        }
    }

    /// Signs the Alias certificate for a device's two key pairs.
    private func aliasCertificate(
        registrationID: RegistrationID, deviceID: DerivedKey, alias: DerivedKey
    ) throws(GenerationError) -> DeviceCredentials {
        do {
            let cn = registrationID.value.utf8
            let tbs = try aliasTemplates.template(cnLength: cn.count).map {
                $0.tbs(cn: cn, aliasPublic: alias.publicPoint, deviceIDPublic: deviceID.publicPoint)
            } ?? DevKitDER.aliasTBS(
                registrationID: registrationID.value, aliasPublic: alias.publicPoint,
                deviceIDPublic: deviceID.publicPoint, fwid: fwid)
            let signature = FixedNonceSigner.shared.sign(tbs, privateScalar: deviceID.privateScalar)
            let der = DevKitDER.certificateBytes(tbs: tbs, r: signature.r, s: signature.s)
            return DeviceCredentials(registrationID: registrationID, deviceID: deviceID, alias: alias, aliasCertificateDER: der)
        } catch {
            throw .encoding("\(error)")
        }
    }
}

/// Everything the device derives at boot that a host may want to keep.
public struct DeviceCredentials: Sendable {
    public let registrationID: RegistrationID
    /// The DeviceID key pair (its private half signs both certificates).
    public let deviceID: DerivedKey
    /// The Alias key pair (certified by the Alias certificate).
    public let alias: DerivedKey
    /// The Alias certificate, DER: what the device presents to DPS.
    public let aliasCertificateDER: [UInt8]

    /// The Alias certificate as the reference tool wrote `<registration id>.pem`.
    public var aliasCertificatePEM: String { PEM.oneLine("CERTIFICATE", aliasCertificateDER) }

    /// The self-signed DeviceID certificate, DER (Docs/certificate.md §7); computed on demand.
    public func deviceCertificateDER() throws(GenerationError) -> [UInt8] {
        do {
            let tbs = try DevKitDER.deviceTBS(deviceIDPublic: deviceID.publicPoint)
            let signature = FixedNonceSigner.shared.sign(tbs, privateScalar: deviceID.privateScalar)
            return try DevKitDER.certificate(tbs: tbs, signature: signature)
        } catch let error as GenerationError {
            throw error
        } catch {
            throw .encoding("\(error)")
        }
    }

    public func deviceCertificatePEM() throws(GenerationError) -> String {
        PEM.oneLine("CERTIFICATE", try deviceCertificateDER())
    }

    /// The DeviceID public key as `-----BEGIN PUBLIC KEY-----` (SubjectPublicKeyInfo).
    public func deviceIDPublicKeyPEM() throws(GenerationError) -> String {
        do { return PEM.oneLine("PUBLIC KEY", try DevKitDER.subjectPublicKeyInfo(deviceID.publicPoint)) } catch {
            throw .encoding("\(error)")
        }
    }

    /// The Alias key pair as `-----BEGIN EC PRIVATE KEY-----`. Secret: store with care.
    public func aliasPrivateKeyPEM() throws(GenerationError) -> String {
        do {
            return PEM.oneLine(
                "EC PRIVATE KEY", try DevKitDER.ecPrivateKey(scalar: alias.privateScalar, publicPoint: alias.publicPoint))
        } catch { throw .encoding("\(error)") }
    }

    /// SHA-1 of the certificate DER, upper-case hex: the thumbprint DPS shows.
    public var sha1Thumbprint: String {
        var hash = Insecure.SHA1()
        aliasCertificateDER.withUnsafeBytes { hash.update(bufferPointer: $0) }
        return hash.finalize().withUnsafeBytes { Hex.encode($0, uppercase: true) }
    }
    /// SHA-256 of the certificate DER, upper-case hex.
    public var sha256Thumbprint: String {
        var hash = SHA256()
        aliasCertificateDER.withUnsafeBytes { hash.update(bufferPointer: $0) }
        return hash.finalize().withUnsafeBytes { Hex.encode($0, uppercase: true) }
    }
}

/// PEM as the reference tool wrote it: the Base64 on one line, no wrapping (Docs/certificate.md §8).
public enum PEM {
    public static func oneLine(_ label: String, _ der: [UInt8]) -> String {
        // Written straight into the string's storage (one allocation): a batch makes one
        // per device, and Foundation's Data/base64 round trip cost several.
        var label = label
        return label.withUTF8 { label in
            der.withUnsafeBytes { der in
                let base64Count = (der.count + 2) / 3 * 4
                let count = 11 + label.count + 6 + base64Count + 1 + 9 + label.count + 6
                return String(unsafeUninitializedCapacity: count) { out in
                    var i = 0
                    func put(_ text: StaticString) {
                        text.withUTF8Buffer { for byte in $0 { out[i] = byte; i += 1 } }
                    }
                    func put(_ bytes: UnsafeBufferPointer<UInt8>) { for byte in bytes { out[i] = byte; i += 1 } }
                    put("-----BEGIN "); put(label); put("-----\n")
                    i += Base64.encode(der, into: UnsafeMutableBufferPointer(rebasing: out[i...]))
                    put("\n-----END "); put(label); put("-----\n")
                    return i
                }
            }
        }
    }
}

/// Standard Base64 with padding (RFC 4648 §4), what `base64EncodedString()` gives.
enum Base64 {
    private static let alphabet: StaticString = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

    /// Writes the encoding of `bytes` at the start of `out` (room for it required);
    /// returns the number of characters written.
    static func encode(_ bytes: UnsafeRawBufferPointer, into out: UnsafeMutableBufferPointer<UInt8>) -> Int {
        let count = (bytes.count + 2) / 3 * 4
        precondition(out.count >= count)
        return alphabet.withUTF8Buffer { digits in
            var o = 0, i = 0
            while i + 3 <= bytes.count {
                let v = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2])
                out[o] = digits[Int(v >> 18)]
                out[o + 1] = digits[Int(v >> 12 & 0x3F)]
                out[o + 2] = digits[Int(v >> 6 & 0x3F)]
                out[o + 3] = digits[Int(v & 0x3F)]
                i += 3; o += 4
            }
            let rest = bytes.count - i
            if rest > 0 {
                let v = UInt32(bytes[i]) << 16 | (rest == 2 ? UInt32(bytes[i + 1]) << 8 : 0)
                out[o] = digits[Int(v >> 18)]
                out[o + 1] = digits[Int(v >> 12 & 0x3F)]
                out[o + 2] = rest == 2 ? digits[Int(v >> 6 & 0x3F)] : 0x3D  // =
                out[o + 3] = 0x3D
                o += 4
            }
            return o
        }
    }
}

/// The warning every tool should give about these certificates (Docs/certificate.md §5).
public let fixedNonceWarning = """
    the DevKit firmware signs with a fixed ECDSA nonce, so anyone holding this \
    certificate can compute the device's DeviceID private key; treat it as a \
    test-grade identity (this is the firmware's design, the certificate must match it)
    """
