@testable import DevKitWorkflows
import Foundation
import Testing

@Suite struct EnrollmentFileTests {
    let pem = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n"

    @Test func bodyIsADPSIndividualEnrollmentWithX509() throws {
        let file = EnrollmentFile(registrationID: "az-a4cf120b9e31v1v6v2", certificatePEM: pem)
        let object = try #require(try JSONSerialization.jsonObject(with: file.json()) as? [String: Any])
        #expect(Set(object.keys) == ["registrationId", "attestation", "provisioningStatus"])
        #expect(object["registrationId"] as? String == "az-a4cf120b9e31v1v6v2")
        #expect(object["provisioningStatus"] as? String == "enabled")
        let attestation = try #require(object["attestation"] as? [String: Any])
        #expect(attestation["type"] as? String == "x509")
        let primary = (((attestation["x509"] as? [String: Any])?["clientCertificates"] as? [String: Any])?["primary"]) as? [String: Any]
        #expect(primary?["certificate"] as? String == pem)
        #expect(file.json().last == 0x0A)
    }

    @Test func hubAndDisabledStatus() throws {
        let dps = DPSSettings(name: "d", resourceGroup: "r", iotHubHostName: "h.azure-devices.net", provisioningEnabled: false)
        let file = EnrollmentFile(registrationID: "x", certificatePEM: pem, dps: dps)
        let object = try #require(try JSONSerialization.jsonObject(with: file.json()) as? [String: Any])
        #expect(object["iotHubHostName"] as? String == "h.azure-devices.net")
        #expect(object["provisioningStatus"] as? String == "disabled")
        #expect(file.azCommand(certificatePath: "out/x.pem")
                == "az iot dps enrollment create --enrollment-id x --attestation-type x509 --certificate-path out/x.pem --dps-name d --resource-group r --iot-hubs h.azure-devices.net --provisioning-status disabled")
    }

    /// The hand-written JSON is byte for byte what JSONSerialization writes, for
    /// strings with every kind of character that needs escaping (or must not be).
    @Test(arguments: [
        ("az-a4cf120b9e31v1v6v2", "-----BEGIN CERTIFICATE-----\nMIIB+/fake==\n-----END CERTIFICATE-----\n", nil),
        ("q\"uo\\te/slash", "tab\tcr\rff\u{0C}bs\u{08}nul\u{00}us\u{1F}del\u{7F}", "h\u{2028}é😀.azure-devices.net"),
        ("", "", ""),
    ] as [(String, String, String?)])
    func jsonIsWhatJSONSerializationWrites(_ id: String, _ pem: String, _ hub: String?) throws {
        for enabled in [true, false] {
            let dps = DPSSettings(iotHubHostName: hub, provisioningEnabled: enabled)
            let file = EnrollmentFile(registrationID: id, certificatePEM: pem, dps: dps)
            var body: [String: Any] = [
                "registrationId": id,
                "attestation": ["type": "x509", "x509": ["clientCertificates": ["primary": ["certificate": pem]]]],
                "provisioningStatus": enabled ? "enabled" : "disabled",
            ]
            if let hub { body["iotHubHostName"] = hub }
            var expected = try JSONSerialization.data(
                withJSONObject: body, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
            expected.append(0x0A)
            #expect(file.json() == expected, "\(String(decoding: file.json(), as: UTF8.self))")
        }
    }

    @Test func azCommandQuotesAndShowsPlaceholders() {
        let file = EnrollmentFile(registrationID: "bench-1", certificatePEM: pem)
        #expect(file.azCommand(certificatePath: "/tmp/my certs/bench-1.pem")
                == "az iot dps enrollment create --enrollment-id bench-1 --attestation-type x509 --certificate-path '/tmp/my certs/bench-1.pem' --dps-name \"$DPS_NAME\" --resource-group \"$RESOURCE_GROUP\"")
    }

    @Test func writesAtomicallyIntoTheDirectory() throws {
        var template = Array((NSTemporaryDirectory() + "devkit-enroll-XXXXXX").utf8CString)
        let dir = String(cString: mkdtemp(&template)!)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let file = EnrollmentFile(registrationID: "bench-1", certificatePEM: pem)
        let path = try file.write(toDirectory: dir)
        #expect(path == dir + "/bench-1.enrollment.json")
        #expect(FileManager.default.contents(atPath: path) == file.json())
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["bench-1.enrollment.json"])
        #expect(throws: OutputFileError.self) { try file.write(toDirectory: dir + "/missing") }
    }

    /// Several files: all or none. When one cannot be written, no final path is
    /// created or changed and no temp file is left behind.
    @Test func writesSeveralFilesAllOrNone() throws {
        var template = Array((NSTemporaryDirectory() + "devkit-enroll-XXXXXX").utf8CString)
        let dir = String(cString: mkdtemp(&template)!)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try OutputFile.writeAtomically([(Data("a\n".utf8), dir + "/a.pem"), (Data("b\n".utf8), dir + "/b.json")], mode: 0o644)
        #expect(FileManager.default.contents(atPath: dir + "/a.pem") == Data("a\n".utf8))
        #expect(FileManager.default.contents(atPath: dir + "/b.json") == Data("b\n".utf8))

        #expect(throws: OutputFileError.self) {
            try OutputFile.writeAtomically(
                [(Data("new\n".utf8), dir + "/a.pem"), (Data("c\n".utf8), dir + "/missing/c.json")], mode: 0o644)
        }
        #expect(FileManager.default.contents(atPath: dir + "/a.pem") == Data("a\n".utf8))
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).sorted() == ["a.pem", "b.json"])
    }
}
