@testable import DevKitBoardCLI
import Foundation
import Testing

@testable import DevKitCLI

/// The batch's hand-written pieces against what they replaced: the JSON line against
/// JSONEncoder, the line reader against JSONDecoder, the duplicate check against a
/// dictionary.
@Suite struct CertBatchInternalsTests {
    /// A partly failed batch says how many were certified, in words that fit each count.
    @Test func theSummaryCountsWhatWasCertified() {
        #expect(CertError.batchIncomplete(failed: 1, total: 1).userMessage.hasSuffix("; none was certified"))
        #expect(CertError.batchIncomplete(failed: 1, total: 2).userMessage.hasSuffix("; the other one was certified"))
        #expect(CertError.batchIncomplete(failed: 3, total: 5).userMessage
            == "3 of 5 devices failed (see the messages above); the other 2 were certified")
    }

    static let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"

    static let results: [CertResult] = [
        CertResult(registrationID: "dev-1", sha1Thumbprint: "AB", sha256Thumbprint: "CD"),
        CertResult(
            registrationID: "dev-2", certificate: "out/dev-2.pem", deviceCertificate: "out/dev-2.device.pem",
            deviceIDPublicKey: "out/dev-2.device-id.pub.pem", aliasPrivateKey: "out/dev-2.alias.key.pem",
            sha1Thumbprint: "01", sha256Thumbprint: "02", warnings: ["a \"quoted\" warning", "back\\slash"]),
        CertResult(
            registrationID: "dev-3", sha1Thumbprint: "01", sha256Thumbprint: "02", certificatePEM: pem, deviceCertificatePEM: pem),
        CertResult(registrationID: "dev-4", certificate: "dîr/ünïcode ✓/dev-4.pem", sha1Thumbprint: "1", sha256Thumbprint: "2"),
        // Escapes first, last, next to each other, and strings with nothing else.
        CertResult(
            registrationID: "\"", certificate: "\\\\", sha1Thumbprint: "", sha256Thumbprint: "\n\n",
            warnings: ["", "end\\", "\"start", "a\n\"\\b"]),
        // Control characters: the writer hands these to JSONEncoder.
        CertResult(registrationID: "dev-5", certificate: "tab\there\r\u{1}.pem", sha1Thumbprint: "1", sha256Thumbprint: "2"),
    ]

    @Test("a result's JSON line is exactly JSONOutput's", arguments: 0..<results.count)
    func jsonLine(index: Int) throws {
        let result = Self.results[index]
        #expect(result.jsonLine() == (try JSONOutput.text(result)))
        // What a batch writes: the same line and its newline.
        #expect(result.jsonLineBytes() == Array((try JSONOutput.text(result) + "\n").utf8))
    }

    @Test("the plain line reader reads what JSONDecoder reads, and leaves it every other line", arguments: [
        #"{"uds": "ab", "registration_id": "dev-1"}"#,
        #"{"uds":"ab","mac":"a4:cf:12:0b:9e:31","firmware_version":"1.6.2"}"#,
        #"  { "registration_id" : "x" , "uds" : "ab" }  "#,
        #"{"uds": "ab", "registration_id": "dev-1", "note": "kept out"}"#,
        #"{"uds": "a\u0062", "registration_id": "dev-1"}"#,
        #"{"uds": "ab", "registration_id": null}"#,
        #"{"uds": "ab", "registration_id": 5}"#,
        #"{"uds": "ab", "registration_id": "dev-1", "extra": {"n": [1, "}"]}}"#,
        #"{"uds": "ab", "uds": "cd", "registration_id": "x"}"#,
        #"{"uds": "ab", "registration_id": "x",}"#,
        #"{"uds": "ab" "registration_id": "x"}"#,
        #"{"uds": "ab", "registration_id": "x"} trailing"#,
        #"{"registration_id": "x"}"#,
        #"{}"#, #"[]"#, "", "not json", #"{"uds": "ab"#, #"{"uds": "é", "registration_id": "ü"}"#,
    ])
    func plainLines(line: String) {
        let bytes = ArraySlice(Array(line.utf8))
        let decoded = try? JSONDecoder().decode(CertBatch.Entry.self, from: Data(bytes))
        if let plain = CertBatch.Entry(plainObject: bytes) {
            #expect(plain == decoded, "\(line)")
        }
    }

    @Test("the plain reader takes the usual line (it is the fast path)")
    func usualLineIsPlain() {
        let line = ArraySlice(Array(#"{"uds": "0011", "registration_id": "bench-000001"}"#.utf8))
        #expect(CertBatch.Entry(plainObject: line) == CertBatch.Entry(uds: "0011", registrationID: "bench-000001", mac: nil, firmwareVersion: nil))
    }

    @Test("the duplicate check finds exactly the repeated IDs, with their first lines, across table growth")
    func seenIDs() {
        var seen = SeenRegistrationIDs()
        var reference: [String: Int] = [:]
        // 50,000 IDs (the table grows many times), one in seven repeating an earlier one;
        // lengths from 1 to 128 bytes.
        for line in 1...50_000 {
            let id = line % 7 == 0 ? "id-\(line / 3)" : String(repeating: "x", count: line % 120) + "-\(line)"
            let found = seen.firstLine(of: id, recording: line)
            #expect(found == reference[id], "\(id)")
            if reference[id] == nil { reference[id] = line }
        }
        #expect(seen.count == reference.count)
        #expect(seen.firstLine(of: String(repeating: "z", count: 128), recording: 1) == nil)
    }
}
