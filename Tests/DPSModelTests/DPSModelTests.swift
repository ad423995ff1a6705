import DevKitModel
import Foundation
import Testing
@testable import DPSModel

/// The reference Alias certificates (Tests/Fixtures/dice-vectors/vectors.json).
enum Fixtures {
    static let root = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/dice-vectors")

    /// (registration ID, Alias certificate PEM) of every vector.
    static let aliasCertificates: [(id: String, pem: String)] = {
        let data = FileManager.default.contents(atPath: root.appendingPathComponent("vectors.json").path)!
        let json = try! JSONSerialization.jsonObject(with: data) as! [String: Any]
        return (json["vectors"] as! [[String: Any]]).map {
            ($0["registration_id"] as! String, $0["alias_certificate"] as! String)
        }
    }()
}

// A policy key for the tests: base64 of "secret-key-for-devkit-tests-1234567890".
let testKeyBase64 = "c2VjcmV0LWtleS1mb3ItZGV2a2l0LXRlc3RzLTEyMzQ1Njc4OTA="

@Suite("DPS connection string")
struct DPSConnectionStringTests {
    @Test func parsesInAnyOrderTrimmed() throws {
        let text = "\n  SharedAccessKey=\(testKeyBase64); HostName=My-DPS.azure-devices-provisioning.net ;"
            + "SharedAccessKeyName=provisioningserviceowner\r\n"
        let cs = try DPSConnectionString(text)
        #expect(cs.hostName == "my-dps.azure-devices-provisioning.net")
        #expect(cs.policyName == "provisioningserviceowner")
        #expect(cs.key.secretBytes == Array("secret-key-for-devkit-tests-1234567890".utf8))
        // Names are matched whatever their case, as the SDKs do.
        let lower = try DPSConnectionString("hostname=h.example;sharedaccesskeyname=p;sharedaccesskey=\(testKeyBase64)")
        #expect(lower.hostName == "h.example" && lower.policyName == "p")
    }

    @Test func namesTheMissingPart() {
        #expect(throws: DPSConnectionStringError.empty) { try DPSConnectionString(" \n") }
        #expect(throws: DPSConnectionStringError.missing("HostName")) {
            try DPSConnectionString("SharedAccessKeyName=p;SharedAccessKey=\(testKeyBase64)")
        }
        #expect(throws: DPSConnectionStringError.missing("SharedAccessKeyName")) {
            try DPSConnectionString("HostName=h;SharedAccessKey=\(testKeyBase64)")
        }
        #expect(throws: DPSConnectionStringError.missing("SharedAccessKey")) {
            try DPSConnectionString("HostName=h;SharedAccessKeyName=p")
        }
        #expect(throws: DPSConnectionStringError.keyNotBase64) {
            try DPSConnectionString("HostName=h;SharedAccessKeyName=p;SharedAccessKey=not base64!")
        }
        #expect(throws: DPSConnectionStringError.deviceConnectionString) {
            try DPSConnectionString("HostName=hub.azure-devices.net;DeviceId=d;SharedAccessKey=\(testKeyBase64)")
        }
        #expect(throws: DPSConnectionStringError.duplicate("HostName")) {
            try DPSConnectionString("HostName=a;HostName=b;SharedAccessKeyName=p;SharedAccessKey=\(testKeyBase64)")
        }
    }

    @Test("the key never shows: description, dump, reflection, errors")
    func redacted() throws {
        let cs = try DPSConnectionString("HostName=h;SharedAccessKeyName=p;SharedAccessKey=\(testKeyBase64)")
        var dumped = ""
        dump(cs, to: &dumped)
        dump(cs.key, to: &dumped)
        let token = cs.token(expiry: 1_700_000_000)
        let texts = [String(describing: cs), String(reflecting: cs), "\(cs.key)", dumped, "\(token)"]
        for text in texts {
            #expect(!text.contains(testKeyBase64.prefix(12)), "\(text)")
            #expect(!text.contains("secret-key"), "\(text)")
            #expect(!text.contains("sig="), "\(text)")
        }
        #expect(String(describing: cs).contains("HostName=h"))
        // A broken part is not quoted: it could be a piece of the key.
        do {
            _ = try DPSConnectionString("HostName=h;\(testKeyBase64.dropLast(1))")
            Issue.record("accepted a part without '='")
        } catch {
            #expect(!"\(error)".contains(testKeyBase64.prefix(12)))
        }
    }

    @Test func secretTextRoundTrips() throws {
        let cs = try DPSConnectionString("HostName=h;SharedAccessKeyName=p;SharedAccessKey=\(testKeyBase64)")
        #expect(try DPSConnectionString(cs.secretText) == cs)
    }
}

@Suite("SAS token")
struct SASTokenTests {
    // Computed independently with Python's standard library (no Swift code involved):
    //   python3 -c 'import hmac,hashlib,base64,urllib.parse
    //   key="c2VjcmV0LWtleS1mb3ItZGV2a2l0LXRlc3RzLTEyMzQ1Njc4OTA="
    //   sr=urllib.parse.quote("my-dps.azure-devices-provisioning.net",safe="")
    //   sig=base64.b64encode(hmac.new(base64.b64decode(key),(sr+"\n1700000000").encode(),hashlib.sha256).digest()).decode()
    //   print("SharedAccessSignature sr=%s&sig=%s&se=1700000000&skn=provisioningserviceowner"%(sr,urllib.parse.quote(sig,safe="")))'
    static let expected = "SharedAccessSignature sr=my-dps.azure-devices-provisioning.net"
        + "&sig=j91bc6Y06beSLWgPeNzMW4aHZV5lh9dyssalbVOfdRk%3D&se=1700000000&skn=provisioningserviceowner"

    @Test("matches a token computed independently from the documented algorithm")
    func independentVector() throws {
        let cs = try DPSConnectionString(
            "HostName=My-DPS.azure-devices-provisioning.net;SharedAccessKeyName=provisioningserviceowner;SharedAccessKey=\(testKeyBase64)")
        let token = cs.token(expiry: 1_700_000_000)
        #expect(token.header == Self.expected)
        #expect(token.expiry == 1_700_000_000)
        #expect(cs.token(validFor: 3600, now: Date(timeIntervalSince1970: 1_000)).expiry == 4_600)
    }

    @Test func urlEncodingKeepsOnlyUnreserved() {
        #expect(SASToken.urlEncode("a-b.c_d~e") == "a-b.c_d~e")
        #expect(SASToken.urlEncode("a+b/c=d e:f") == "a%2Bb%2Fc%3Dd%20e%3Af")
        #expect(SASToken.urlEncode("é") == "%C3%A9")
        #expect(SASToken.urlDecode("a%2Bb%2fc%3D") == "a+b/c=")
        #expect(SASToken.urlDecode("%zz") == nil)
    }

    @Test func parseReadsTheFields() throws {
        let parsed = try SASToken.parse(Self.expected)
        #expect(parsed.resource == "my-dps.azure-devices-provisioning.net")
        #expect(parsed.signature == "j91bc6Y06beSLWgPeNzMW4aHZV5lh9dyssalbVOfdRk=")
        #expect(parsed.expiry == 1_700_000_000)
        #expect(parsed.policyName == "provisioningserviceowner")
        #expect(throws: SASTokenError.self) { try SASToken.parse("Bearer abc") }
        #expect(throws: SASTokenError.self) { try SASToken.parse("SharedAccessSignature sr=a&sig=b") }
    }

    @Test("verify: signature, policy, resource and expiry, as the service checks them")
    func verify() throws {
        let key = DPSSharedAccessKey(base64: testKeyBase64)!
        let other = DPSSharedAccessKey(bytes: Array("another key".utf8))
        let resource = "my-dps.azure-devices-provisioning.net"
        let before = Date(timeIntervalSince1970: 1_699_999_000)
        let after = Date(timeIntervalSince1970: 1_700_000_001)
        let policies = ["provisioningserviceowner": key]
        #expect(try SASToken.verify(Self.expected, resource: resource, policies: policies, now: before) == "provisioningserviceowner")
        #expect(try SASToken.verify(Self.expected, resource: "MY-DPS.azure-devices-provisioning.net", policies: policies, now: before)
            == "provisioningserviceowner")
        #expect(throws: SASTokenError.expired(1_700_000_000)) {
            try SASToken.verify(Self.expected, resource: resource, policies: policies, now: after)
        }
        #expect(throws: SASTokenError.badSignature) {
            try SASToken.verify(Self.expected, resource: resource, policies: ["provisioningserviceowner": other], now: before)
        }
        #expect(throws: SASTokenError.unknownPolicy("provisioningserviceowner")) {
            try SASToken.verify(Self.expected, resource: resource, policies: ["enrollmentwrite": key], now: before)
        }
        #expect(throws: SASTokenError.wrongResource("my-dps.azure-devices-provisioning.net")) {
            try SASToken.verify(Self.expected, resource: "other.example", policies: policies, now: before)
        }
        // A later expiry written into a signed token breaks its signature.
        let stretched = Self.expected.replacingOccurrences(of: "se=1700000000", with: "se=1800000000")
        #expect(throws: SASTokenError.badSignature) {
            try SASToken.verify(stretched, resource: resource, policies: policies, now: after)
        }
        // Tokens this module makes verify with the same key.
        let made = SASToken.make(resource: resource, key: key, policyName: "p", expiry: 2_000_000_000)
        #expect(try SASToken.verify(made.header, resource: resource, policies: ["p": key], now: after) == "p")
    }
}

@Suite("DPS bodies")
struct DPSBodyTests {
    /// An individual enrollment as the service answers it (fields of the 2021-10-01
    /// API's IndividualEnrollment), with fields this model does not name.
    static let sample = #"""
        {"registrationId":"az-a4cf120b9e31v1v3v0","deviceId":"thermostat-1",
         "attestation":{"type":"x509","x509":{"clientCertificates":{"primary":{
           "certificate":"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
           "info":{"subjectName":"O=DEVKIT_TEST, C=US, CN=az-a4cf120b9e31v1v3v0",
             "sha1Thumbprint":"98E438CDEB0C8CA5666F8E951EB8D3E07002A04D",
             "sha256Thumbprint":"A814C02763312783F023BFB18FBC2B42DA1F01C0A2C3AB98040279D9611D67DB",
             "issuerName":"O=DEVKIT_TEST, C=US, CN=devkitdice","notBeforeUtc":"2017-01-01T00:00:00Z",
             "notAfterUtc":"2037-01-01T00:00:00Z","serialNumber":"0A0B0C0D0E","version":3}}},
           "signingCertificates":null,"caReferences":null}},
         "capabilities":{"iotEdge":false},
         "initialTwin":{"tags":{"room":"7"},"properties":{"desired":{"interval":30}}},
         "reprovisionPolicy":{"updateHubAssignment":true,"migrateDeviceData":true},
         "allocationPolicy":"hashed","iotHubs":["hub1.azure-devices.net"],
         "iotHubHostName":"hub1.azure-devices.net","provisioningStatus":"enabled",
         "createdDateTimeUtc":"2024-05-01T10:00:00.1234567Z","lastUpdatedDateTimeUtc":"2024-05-01T10:00:00.1234567Z",
         "etag":"\"3e00a5b0-0000-0800-0000-663211f00000\""}
        """#

    @Test("an enrollment read and written back keeps every field")
    func enrollmentRoundTrip() throws {
        let e = try JSONDecoder().decode(IndividualEnrollment.self, from: Data(Self.sample.utf8))
        #expect(e.registrationId == "az-a4cf120b9e31v1v3v0")
        #expect(e.etag == "\"3e00a5b0-0000-0800-0000-663211f00000\"")
        #expect(e.provisioningStatus == .enabled)
        #expect(e.primaryCertificatePEM?.hasPrefix("-----BEGIN CERTIFICATE-----\n") == true)
        #expect(e.primaryCertificateInfo?.sha1Thumbprint == "98E438CDEB0C8CA5666F8E951EB8D3E07002A04D")
        #expect(e.primaryCertificateInfo?.version == 3)
        #expect(Set(e.extra.keys) == ["capabilities", "initialTwin", "reprovisionPolicy", "allocationPolicy", "iotHubs"])
        let again = try JSONEncoder().encode(e)
        let original = try JSONSerialization.jsonObject(with: Data(Self.sample.utf8)) as! NSDictionary
        let written = try JSONSerialization.jsonObject(with: again) as! NSDictionary
        // Null group fields are dropped (the service omits them too); everything else is kept.
        let expected = original.mutableCopy() as! NSMutableDictionary
        let attestation = (expected["attestation"] as! NSDictionary).mutableCopy() as! NSMutableDictionary
        let x509 = (attestation["x509"] as! NSDictionary).mutableCopy() as! NSMutableDictionary
        x509.removeObjects(forKeys: ["signingCertificates", "caReferences"])
        attestation["x509"] = x509
        expected["attestation"] = attestation
        #expect(written == expected)
        #expect(try JSONDecoder().decode(IndividualEnrollment.self, from: again) == e)
    }

    @Test func newX509EnrollmentBody() throws {
        let e = IndividualEnrollment.x509(registrationId: "az-1", certificatePEM: "PEM\n", iotHubHostName: "hub")
        let json = try JSONSerialization.jsonObject(with: JSONEncoder().encode(e)) as! [String: Any]
        #expect(Set(json.keys) == ["registrationId", "attestation", "iotHubHostName", "provisioningStatus"])
        #expect(json["provisioningStatus"] as? String == "enabled")
        let attestation = json["attestation"] as! [String: Any]
        #expect(attestation["type"] as? String == "x509")
        let primary = ((attestation["x509"] as! [String: Any])["clientCertificates"] as! [String: Any])["primary"] as! [String: Any]
        #expect(primary as NSDictionary == ["certificate": "PEM\n"])
    }

    @Test func bulkOperationLimit() throws {
        let e = IndividualEnrollment.x509(registrationId: "a", certificatePEM: "P")
        let ten = try BulkEnrollmentOperation(mode: .create, enrollments: Array(repeating: e, count: 10))
        let json = try JSONSerialization.jsonObject(with: JSONEncoder().encode(ten)) as! [String: Any]
        #expect(json["mode"] as? String == "create")
        #expect((json["enrollments"] as! [Any]).count == 10)
        #expect(throws: BulkEnrollmentSizeError(count: 11)) {
            try BulkEnrollmentOperation(mode: .create, enrollments: Array(repeating: e, count: 11))
        }
        #expect(throws: BulkEnrollmentSizeError(count: 0)) { try BulkEnrollmentOperation(mode: .delete, enrollments: []) }
        #expect(BulkEnrollmentMode.allCases.map(\.rawValue) == ["create", "update", "updateIfMatchETag", "delete"])
    }

    @Test func bulkResultAndErrors() throws {
        let ok = try JSONDecoder().decode(BulkEnrollmentOperationResult.self, from: Data(#"{"isSuccessful":true}"#.utf8))
        #expect(ok == BulkEnrollmentOperationResult(isSuccessful: true, errors: []))
        let failed = try JSONDecoder().decode(BulkEnrollmentOperationResult.self, from: Data(#"""
            {"isSuccessful":false,"errors":[{"registrationId":"bad-1","errorCode":400004,"errorStatus":"Invalid certificate."}]}
            """#.utf8))
        #expect(failed.errors == [BulkEnrollmentOperationError(registrationId: "bad-1", errorCode: 400004, errorStatus: "Invalid certificate.")])
    }

    @Test func errorBody() throws {
        let body = try JSONDecoder().decode(DPSErrorBody.self, from: Data(#"""
            {"errorCode":401002,"trackingId":"e3f1c2d4-aaaa-bbbb-cccc-0123456789ab","message":"Invalid certificate","info":{"x":1},"timestampUtc":"2024-05-01T10:00:00.1234567Z"}
            """#.utf8))
        #expect(body.errorCode == 401002 && body.message == "Invalid certificate")
        #expect(body.trackingId == "e3f1c2d4-aaaa-bbbb-cccc-0123456789ab")
        #expect(body.info == ["x": .number(1)])
        let stringCode = try JSONDecoder().decode(DPSErrorBody.self, from: Data(#"{"errorCode":"404201","message":"m"}"#.utf8))
        #expect(stringCode.errorCode == 404201)
    }

    @Test func registrationStateAndQuery() throws {
        let state = try JSONDecoder().decode(DeviceRegistrationState.self, from: Data(#"""
            {"registrationId":"az-1","createdDateTimeUtc":"2024-05-01T10:00:00Z","assignedHub":"hub1.azure-devices.net",
             "deviceId":"az-1","status":"assigned","substatus":"initialAssignment","lastUpdatedDateTimeUtc":"2024-05-01T10:00:01Z","etag":"\"e\""}
            """#.utf8))
        #expect(state.status == .assigned && state.assignedHub == "hub1.azure-devices.net" && state.errorCode == nil)
        #expect(String(decoding: try JSONEncoder().encode(QuerySpecification()), as: UTF8.self) == #"{"query":"*"}"#)
    }
}

@Suite("Enrollment certificate")
struct EnrollmentCertificateTests {
    // Thumbprints computed independently of Swift:
    //   python3 -c 'import json,hashlib,base64; v=json.load(open("Tests/Fixtures/dice-vectors/vectors.json"))["vectors"][0]
    //   b=base64.b64decode("".join(l for l in v["alias_certificate"].splitlines() if not l.startswith("-----")))
    //   print(hashlib.sha1(b).hexdigest().upper(), hashlib.sha256(b).hexdigest().upper())'
    @Test("the DevKit's Alias certificate (non-standard SAN) reads: CN and DPS-style thumbprints")
    func aliasCertificate() throws {
        let (id, pem) = Fixtures.aliasCertificates[0]
        let cert = try EnrollmentCertificate(pem: pem)
        #expect(cert.commonName == id)
        #expect(cert.commonName == "az-a4cf120b9e31v1v3v0")
        #expect(cert.sha1Thumbprint == "98E438CDEB0C8CA5666F8E951EB8D3E07002A04D")
        #expect(cert.sha256Thumbprint == "A814C02763312783F023BFB18FBC2B42DA1F01C0A2C3AB98040279D9611D67DB")
        #expect(cert.pem == pem)
        #expect(cert.subjectName == "O=DEVKIT_TEST, C=US, CN=az-a4cf120b9e31v1v3v0")
        #expect(cert.issuerName == "O=DEVKIT_TEST, C=US, CN=devkitdice")
        #expect(cert.version == 3 && cert.serialNumber == "0A0B0C0D0E")
        #expect(cert.info.notBeforeUtc == "2017-01-01T00:00:00Z" && cert.info.notAfterUtc == "2037-01-01T00:00:00Z")
    }

    @Test("every reference vector's CN is its registration ID")
    func everyVector() throws {
        for (id, pem) in Fixtures.aliasCertificates {
            let cert = try EnrollmentCertificate(pem: pem)
            #expect(cert.commonName == id)
            #expect(cert.sha1Thumbprint.count == 40 && cert.sha256Thumbprint.count == 64)
            #expect(cert.sha1Thumbprint == cert.sha1Thumbprint.uppercased())
        }
    }

    @Test("the same certificate with other line breaks is the same; another is not")
    func sameCertificate() throws {
        let pems = Fixtures.aliasCertificates.map(\.pem)
        let a = try EnrollmentCertificate(pem: pems[0])
        let rewrapped = try EnrollmentCertificate(der: a.der)
        #expect(rewrapped.pem != a.pem)
        #expect(a.sameCertificate(as: rewrapped))
        #expect(!a.sameCertificate(as: try EnrollmentCertificate(pem: pems[1])))
    }

    @Test("the base64 reads whatever its whitespace: 64 columns with CRLF, tabs, a Unicode space")
    func whitespaceInTheBase64() throws {
        let a = try EnrollmentCertificate(pem: Fixtures.aliasCertificates[0].pem)
        let base64 = Data(a.der).base64EncodedString()
        var lines: [String] = []
        var rest = Substring(base64)
        while !rest.isEmpty { lines.append(String(rest.prefix(64))); rest = rest.dropFirst(64) }
        for body in [lines.joined(separator: "\r\n"), lines.joined(separator: "\t \n"), lines.joined(separator: "\u{00A0}\n")] {
            let pem = "-----BEGIN CERTIFICATE-----\r\n\(body)\r\n-----END CERTIFICATE-----\r\n"
            #expect(try EnrollmentCertificate(pem: pem).sameCertificate(as: a))
        }
        #expect(throws: EnrollmentCertificateError.notPEM) {
            try EnrollmentCertificate(pem: "-----BEGIN CERTIFICATE-----\n\(base64)é\n-----END CERTIFICATE-----\n")
        }
    }

    @Test func refusesWhatIsNoCertificate() {
        #expect(throws: EnrollmentCertificateError.notPEM) { try EnrollmentCertificate(pem: "hello") }
        #expect(throws: EnrollmentCertificateError.notACertificate("PUBLIC KEY")) {
            try EnrollmentCertificate(pem: "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
        }
        #expect(throws: EnrollmentCertificateError.self) {
            try EnrollmentCertificate(pem: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
        }
    }
}

@Suite("DPS registration ID rules")
struct DPSRegistrationIDRulesTests {
    @Test func rules() throws {
        try DPSRegistrationIDRules.check("az-a4cf120b9e31v1v6v2")
        try DPSRegistrationIDRules.check("Board_7.floor:2")
        try DPSRegistrationIDRules.check(String(repeating: "a", count: 64))
        #expect(throws: DPSRegistrationIDError.tooLong(65, limit: 64, x509: true)) {
            try DPSRegistrationIDRules.check(String(repeating: "a", count: 65))
        }
        try DPSRegistrationIDRules.check(String(repeating: "a", count: 128), x509: false)
        #expect(throws: DPSRegistrationIDError.tooLong(129, limit: 128, x509: false)) {
            try DPSRegistrationIDRules.check(String(repeating: "a", count: 129), x509: false)
        }
        #expect(throws: DPSRegistrationIDError.empty) { try DPSRegistrationIDRules.check("") }
        #expect(throws: DPSRegistrationIDError.specialAtEnd) { try DPSRegistrationIDRules.check("-a") }
        #expect(throws: DPSRegistrationIDError.specialAtEnd) { try DPSRegistrationIDRules.check("a:") }
        #expect(throws: DPSRegistrationIDError.character("/", position: 2)) { try DPSRegistrationIDRules.check("a/b") }
        #expect(throws: DPSRegistrationIDError.character("é", position: 2)) { try DPSRegistrationIDRules.check("aé") }
        #expect(DPSRegistrationIDRules.key("AZ-1") == DPSRegistrationIDRules.key("az-1"))
        #expect(DPSRegistrationIDError.character("\u{1B}", position: 1).description.contains("\\u{1B}"))
    }
}
