import SwiftASN1

/// DER encodings of the DevKit's certificates and keys (Docs/certificate.md §6–§8), built with
/// swift-asn1 field by field so that every byte matches the firmware's encoder.
enum DevKitDER {
    static let ecdsaWithSHA256: ASN1ObjectIdentifier = [1, 2, 840, 10045, 4, 3, 2]
    static let ecPublicKey: ASN1ObjectIdentifier = [1, 2, 840, 10045, 2, 1]
    static let prime256v1: ASN1ObjectIdentifier = [1, 2, 840, 10045, 3, 1, 7]
    static let commonName: ASN1ObjectIdentifier = [2, 5, 4, 3]
    static let country: ASN1ObjectIdentifier = [2, 5, 4, 6]
    static let organization: ASN1ObjectIdentifier = [2, 5, 4, 10]
    static let extKeyUsage: ASN1ObjectIdentifier = [2, 5, 29, 37]
    static let clientAuth: ASN1ObjectIdentifier = [1, 3, 6, 1, 5, 5, 7, 3, 2]
    static let subjectAltName: ASN1ObjectIdentifier = [2, 5, 29, 17]
    static let riotCompositeID: ASN1ObjectIdentifier = [1, 3, 6, 1, 4, 1, 311, 89, 3, 1]
    static let sha256: ASN1ObjectIdentifier = [2, 16, 840, 1, 101, 3, 4, 2, 1]
    static let basicConstraints: ASN1ObjectIdentifier = [2, 5, 29, 19]

    static let issuerCN = "devkitdice"
    static let aliasSerial: ArraySlice<UInt8> = [0x0A, 0x0B, 0x0C, 0x0D, 0x0E]
    static let deviceSerial: ArraySlice<UInt8> = [0x0E, 0x0D, 0x0C, 0x0B, 0x0A]

    /// The Alias certificate's TBS: subject CN = registration ID, Alias key,
    /// extKeyUsage clientAuth and the RIoT composite-ID subjectAltName.
    static func aliasTBS(registrationID: String, aliasPublic: [UInt8], deviceIDPublic: [UInt8], fwid: [UInt8]) throws -> [UInt8] {
        try tbs(serial: aliasSerial, subjectCN: registrationID, publicKey: aliasPublic) { ext in
            try ext.appendConstructedNode(identifier: .sequence) { ext in
                ext.serializeRawBytes(clientAuthExtension)
                // subjectAltName carrying the RIoT composite device ID
                try ext.appendConstructedNode(identifier: .sequence) { s in
                    try s.serialize(subjectAltName)
                    try s.serialize(true)
                    let san = try encode { san in
                        try san.appendConstructedNode(identifier: .sequence) { names in
                            // otherName-like [0] holding the OID and the SEQUENCE directly.
                            try names.appendConstructedNode(identifier: ASN1Identifier(tagWithNumber: 0, tagClass: .contextSpecific)) { other in
                                try other.serialize(riotCompositeID)
                                try other.appendConstructedNode(identifier: .sequence) { id in
                                    try id.serialize(1)
                                    try subjectPublicKeyInfo(deviceIDPublic, into: &id)
                                    try id.appendConstructedNode(identifier: .sequence) { fw in
                                        try fw.serialize(sha256)
                                        try fw.serialize(ASN1OctetString(contentBytes: fwid[...]))
                                    }
                                }
                            }
                        }
                    }
                    try s.serialize(ASN1OctetString(contentBytes: san[...]))
                }
            }
        }
    }

    /// The self-signed DeviceID certificate's TBS: basicConstraints CA, pathLen 2,
    /// not marked critical.
    static func deviceTBS(deviceIDPublic: [UInt8]) throws -> [UInt8] {
        try tbs(serial: deviceSerial, subjectCN: issuerCN, publicKey: deviceIDPublic) { ext in
            try ext.appendConstructedNode(identifier: .sequence) { ext in
                try ext.appendConstructedNode(identifier: .sequence) { s in
                    try s.serialize(basicConstraints)
                    let value = try encode { v in
                        try v.appendConstructedNode(identifier: .sequence) { bc in
                            try bc.serialize(true)
                            try bc.serialize(2)
                        }
                    }
                    try s.serialize(ASN1OctetString(contentBytes: value[...]))
                }
            }
        }
    }

    /// Certificate ::= SEQUENCE { tbs, algorithm, BIT STRING signature }.
    static func certificate(tbs: [UInt8], signature: (r: [UInt8], s: [UInt8])) throws -> [UInt8] {
        try encode { c in
            try c.appendConstructedNode(identifier: .sequence) { c in
                c.serializeRawBytes(tbs)
                try algorithm(into: &c)
                let sig = try encode { s in
                    try s.appendConstructedNode(identifier: .sequence) { s in
                        try s.serialize(signature.r[...])
                        try s.serialize(signature.s[...])
                    }
                }
                try c.serialize(ASN1BitString(bytes: sig[...]))
            }
        }
    }

    /// The same bytes as ``certificate(tbs:signature:)``, written straight into one
    /// array sized up front: the wrapper around a TBS is a few fixed headers, so the
    /// per-device path needs no DER builder (the tests compare the two encoders).
    static func certificateBytes(tbs: [UInt8], r: [UInt8], s: [UInt8]) -> [UInt8] {
        let rLength = integerContentLength(r), sLength = integerContentLength(s)
        let signatureSequence = 2 + rLength + 2 + sLength  // < 128: one-byte lengths
        let bitString = 1 + 2 + signatureSequence
        let content = tbs.count + signatureAlgorithm.count + 2 + bitString
        var out: [UInt8] = []
        out.reserveCapacity(1 + lengthOfLength(content) + content)
        out.append(0x30)
        appendLength(content, to: &out)
        out.append(contentsOf: tbs)
        out.append(contentsOf: signatureAlgorithm)
        out.append(0x03)
        out.append(UInt8(bitString))
        out.append(0x00)  // no unused bits
        out.append(0x30)
        out.append(UInt8(signatureSequence))
        appendInteger(r, contentLength: rLength, to: &out)
        appendInteger(s, contentLength: sLength, to: &out)
        return out
    }

    /// An unsigned big-endian integer's DER content length: without leading zeros,
    /// one 0x00 in front when the top bit is set, at least one byte.
    private static func integerContentLength(_ magnitude: [UInt8]) -> Int {
        let significant = magnitude.count - (magnitude.firstIndex { $0 != 0 } ?? magnitude.count)
        guard significant > 0 else { return 1 }
        return magnitude[magnitude.count - significant] & 0x80 != 0 ? significant + 1 : significant
    }

    private static func appendInteger(_ magnitude: [UInt8], contentLength: Int, to out: inout [UInt8]) {
        out.append(0x02)
        out.append(UInt8(contentLength))
        let significant = magnitude.count - (magnitude.firstIndex { $0 != 0 } ?? magnitude.count)
        for _ in 0..<(contentLength - significant) { out.append(0x00) }
        out.append(contentsOf: magnitude[(magnitude.count - significant)...])
    }

    private static func lengthOfLength(_ length: Int) -> Int { length < 0x80 ? 1 : length < 0x100 ? 2 : 3 }

    private static func appendLength(_ length: Int, to out: inout [UInt8]) {
        precondition(length < 0x10000)  // a TBS is a few hundred bytes
        if length < 0x80 {
            out.append(UInt8(length))
        } else if length < 0x100 {
            out.append(0x81); out.append(UInt8(length))
        } else {
            out.append(0x82); out.append(UInt8(length >> 8)); out.append(UInt8(length & 0xFF))
        }
    }

    /// The ecdsa-with-SHA256 AlgorithmIdentifier's bytes.
    private static let signatureAlgorithm: [UInt8] = try! encode { try algorithm(into: &$0) }

    /// SubjectPublicKeyInfo for an uncompressed P-256 point.
    static func subjectPublicKeyInfo(_ point: [UInt8]) throws -> [UInt8] {
        try encode { try subjectPublicKeyInfo(point, into: &$0) }
    }

    /// RFC 5915 ECPrivateKey with the curve and the public key.
    static func ecPrivateKey(scalar: [UInt8], publicPoint: [UInt8]) throws -> [UInt8] {
        try encode { k in
            try k.appendConstructedNode(identifier: .sequence) { k in
                try k.serialize(1)
                try k.serialize(ASN1OctetString(contentBytes: scalar[...]))
                try k.serialize(prime256v1, explicitlyTaggedWithTagNumber: 0, tagClass: .contextSpecific)
                try k.serialize(ASN1BitString(bytes: publicPoint[...]), explicitlyTaggedWithTagNumber: 1, tagClass: .contextSpecific)
            }
        }
    }

    // MARK: - Pieces

    private static func tbs(
        serial: ArraySlice<UInt8>, subjectCN: String, publicKey: [UInt8],
        extensions: (inout DER.Serializer) throws -> Void
    ) throws -> [UInt8] {
        try encode { t in
            try t.appendConstructedNode(identifier: .sequence) { t in
                t.serializeRawBytes(serial == aliasSerial ? aliasTBSPrefix : deviceTBSPrefix)
                try name(subjectCN, into: &t)
                try subjectPublicKeyInfo(publicKey, into: &t)
                try t.appendConstructedNode(identifier: ASN1Identifier(tagWithNumber: 3, tagClass: .contextSpecific), extensions)
            }
        }
    }

    /// ecdsa-with-SHA256, with no NULL parameters.
    private static func algorithm(into s: inout DER.Serializer) throws {
        try s.appendConstructedNode(identifier: .sequence) { try $0.serialize(ecdsaWithSHA256) }
    }

    /// CN, C, O, each a UTF8String in its own RDN SET, in that order.
    private static func name(_ cn: String, into s: inout DER.Serializer) throws {
        try s.appendConstructedNode(identifier: .sequence) { n in
            try relativeDistinguishedName(commonName, cn, into: &n)
            n.serializeRawBytes(countryAndOrganization)
        }
    }

    private static func relativeDistinguishedName(_ oid: ASN1ObjectIdentifier, _ value: String, into n: inout DER.Serializer) throws {
        try n.appendConstructedNode(identifier: .set) { rdn in
            try rdn.appendConstructedNode(identifier: .sequence) { atv in
                try atv.serialize(oid)
                try atv.serialize(ASN1UTF8String(contentBytes: ArraySlice(value.utf8)))
            }
        }
    }

    // MARK: - Constant parts, encoded once (most of a certificate never changes)

    /// The RDNs C=US, O=DEVKIT_TEST that follow the CN in every name.
    private static let countryAndOrganization: [UInt8] = try! encode { n in
        try relativeDistinguishedName(country, "US", into: &n)
        try relativeDistinguishedName(organization, "DEVKIT_TEST", into: &n)
    }

    /// Version, serial, signature algorithm, issuer and validity of a TBS.
    private static func tbsPrefix(serial: ArraySlice<UInt8>) throws -> [UInt8] {
        try encode { t in
            try t.serialize(2, explicitlyTaggedWithTagNumber: 0, tagClass: .contextSpecific)
            try t.serialize(serial)
            try algorithm(into: &t)
            try name(issuerCN, into: &t)
            try t.appendConstructedNode(identifier: .sequence) { v in
                try v.serialize(UTCTime(year: 2017, month: 1, day: 1, hours: 0, minutes: 0, seconds: 0))
                try v.serialize(UTCTime(year: 2037, month: 1, day: 1, hours: 0, minutes: 0, seconds: 0))
            }
        }
    }
    private static let aliasTBSPrefix: [UInt8] = try! tbsPrefix(serial: aliasSerial)
    private static let deviceTBSPrefix: [UInt8] = try! tbsPrefix(serial: deviceSerial)

    /// extKeyUsage = clientAuth, marked critical.
    private static let clientAuthExtension: [UInt8] = try! encode { ext in
        try ext.appendConstructedNode(identifier: .sequence) { s in
            try s.serialize(extKeyUsage)
            try s.serialize(true)
            let usage = try encode { try $0.appendConstructedNode(identifier: .sequence) { try $0.serialize(clientAuth) } }
            try s.serialize(ASN1OctetString(contentBytes: usage[...]))
        }
    }

    private static func subjectPublicKeyInfo(_ point: [UInt8], into s: inout DER.Serializer) throws {
        try s.appendConstructedNode(identifier: .sequence) { spki in
            try spki.appendConstructedNode(identifier: .sequence) { alg in
                try alg.serialize(ecPublicKey)
                try alg.serialize(prime256v1)
            }
            try spki.serialize(ASN1BitString(bytes: point[...]))
        }
    }

    private static func encode(_ body: (inout DER.Serializer) throws -> Void) throws -> [UInt8] {
        var s = DER.Serializer()
        try body(&s)
        return s.serializedBytes
    }
}
