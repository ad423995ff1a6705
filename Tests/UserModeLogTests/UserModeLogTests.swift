import DevKitModel
import Foundation
import Testing
@testable import UserModeLog

/// Recorded user-mode transcripts (Tests/Fixtures/user-mode), one per outcome.
enum Transcripts {
    static let root = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/user-mode")

    static func bytes(_ name: String) -> [UInt8] {
        Array(FileManager.default.contents(atPath: root.appendingPathComponent(name + ".log").path)!)
    }

    /// The outcome each transcript must give.
    static let expected: [(String, RegistrationOutcome)] = [
        ("assigned", .assigned(hub: "devkit-hub.azure-devices.net")),
        ("hub_connected", .hubConnected(hub: "devkit-hub.azure-devices.net")),
        ("unauthorized", .unauthorized),
        ("unauthorized-mixed-prefixes", .unauthorized),
        ("disabled", .disabled),
        ("no_uds", .noUDS),
        ("uds_invalid", .udsInvalid),
        ("no_wifi", .noWiFi),
        ("tls_failed", .tlsFailed),
        ("unreachable", .unreachable),
        ("timeout", .timeout),
    ]
}

/// The three ways a line may start: no prefix, the SDK's console logger, the
/// IoT Hub client's logger (info and error forms alternate).
enum PrefixStyle: CaseIterable {
    case none, sdk, hub

    func apply(to transcript: [UInt8]) -> [UInt8] {
        guard self != .none else { return transcript }
        var splitter = LineSplitter()
        let lines = splitter.feed(transcript)
        var out: [UInt8] = []
        for (i, line) in lines.enumerated() {
            let prefix: String
            switch self {
            case .none: prefix = ""
            case .sdk: prefix = i % 2 == 0 ? "Info: " : "Error: Time:Fri Dec  4 04:00:00 2026 File:dps.c Func:f Line:\(i) "
            case .hub: prefix = i % 2 == 0 ? "2026-12-04 04:00:0\(i % 10) INFO:  " : "2026-12-04 04:00:00 ERROR: dps.c (ln \(i)): "
            }
            out += Array((prefix + line + "\r\n").utf8)
        }
        return out
    }
}

func classify(_ chunks: [ArraySlice<UInt8>]) -> (RegistrationOutcome, RegistrationClassifier, [LogLine]) {
    var reader = UserModeLogReader()
    var lines: [LogLine] = []
    for c in chunks { lines += reader.feed(c) }
    if let last = reader.finish() { lines.append(last) }
    return (reader.classifier.outcomeAtTimeout, reader.classifier, lines)
}

@Suite("User-mode log")
struct UserModeLogTests {
    @Test("every transcript gives its outcome, in every prefix style", arguments: Transcripts.expected)
    func outcomes(name: String, outcome: RegistrationOutcome) {
        for style in PrefixStyle.allCases {
            let bytes = style.apply(to: Transcripts.bytes(name))
            let (got, classifier, _) = classify([bytes[...]])
            #expect(got == outcome, "\(name) \(style)")
            if outcome != .timeout { #expect(!classifier.evidence.isEmpty, "\(name) \(style)") }
            #expect(classifier.identity.mac == (try! MACAddress("a4cf120b9e31")), "\(name) \(style)")
        }
    }

    @Test("a byte at a time, and split in two at every byte, gives the same lines and outcome",
          arguments: Transcripts.expected)
    func chunking(name: String, outcome: RegistrationOutcome) {
        for style in PrefixStyle.allCases {
            let bytes = style.apply(to: Transcripts.bytes(name))
            let (_, _, whole) = classify([bytes[...]])
            let (oneByte, _, lines) = classify(bytes.indices.map { bytes[$0...$0] })
            #expect(oneByte == outcome)
            #expect(lines == whole)
            // Two pieces at every boundary: the splitter alone (the lines decide the rest).
            var wholeSplitter = LineSplitter()
            let expected = wholeSplitter.feed(bytes)
            for cut in 0...bytes.count {
                var s = LineSplitter()
                let got = s.feed(bytes[..<cut]) + s.feed(bytes[cut...])
                if got != expected { Issue.record("\(name) \(style) cut at \(cut)"); break }
            }
        }
    }

    @Test("identity: MAC, firmware and DPS versions, and the registration ID from the PUT trace")
    func identity() {
        let (_, c, _) = classify([Transcripts.bytes("unauthorized")[...]])
        #expect(c.identity.firmwareVersion == "1.6.2")
        #expect(c.identity.dpsVersion == "1.0.0")
        #expect(c.identity.registrationID == "a4cf120b9e31-1.6.2")
        #expect(c.httpStatus == 401)
        #expect(c.errorCode == 401002)
        #expect(c.evidence.contains { $0.contains("Invalid certificate") })
        #expect(c.lastStatus == "ERROR")
    }

    @Test("prefixes are stripped, and a line without one is kept whole")
    func prefixes() {
        #expect(LogLine.strippingPrefix("Info: registration failed!") == "registration failed!")
        #expect(LogLine.strippingPrefix("Error: Time:Fri Dec  4 04:00:00 2026 File:a.c Func:f Line:12 HTTP Status: 401")
            == "HTTP Status: 401")
        #expect(LogLine.strippingPrefix("2026-12-04 04:00:00 INFO:  >>>No Wi-Fi.") == ">>>No Wi-Fi.")
        #expect(LogLine.strippingPrefix("2026-12-04 04:00:00 ERROR: x.c (ln 7): DiceInit failed!") == "DiceInit failed!")
        #expect(LogLine.strippingPrefix("Informational: x") == "Informational: x")
        #expect(LogLine("sensor: 21.5").event == nil)
    }

    @Test("a success after a failure wins; a failure after success does not")
    func order() {
        var c = RegistrationClassifier()
        c.take(LogLine("Timed out connecting to provisioning service"))
        c.take(LogLine("registration failed!"))
        #expect(c.outcome == .unreachable)
        c.take(LogLine("Registration Information received from service: h.azure-devices.net!"))
        #expect(c.outcome == .assigned(hub: "h.azure-devices.net"))
        c.take(LogLine("registration failed!"))
        c.take(LogLine(">>>Connection status: connected"))
        #expect(c.outcome == .hubConnected(hub: "h.azure-devices.net"))
    }

    @Test("secrets a sketch prints are masked: keys, 64-hex UDS, Wi-Fi passwords")
    func masking() {
        let key = "HostName=h;DeviceId=d;SharedAccessKey=c2VjcmV0a2V5c2VjcmV0a2V5"
        #expect(LogMasking.mask(key) == "HostName=h;DeviceId=d;SharedAccessKey=***")
        let uds = String(repeating: "0123456789abcdef", count: 4)
        #expect(LogMasking.mask("UDS \(uds) loaded") == "UDS *** loaded")
        #expect(LogMasking.mask("Wi-Fi ssid=Lab password: hunter2") == "Wi-Fi ssid=Lab password: ***")
        #expect(LogMasking.mask("DevKit MAC Address: a4cf120b9e31") == "DevKit MAC Address: a4cf120b9e31")
        // Evidence is masked too.
        let (_, c, _) = classify([Transcripts.bytes("hub_connected")[...]])
        #expect(!c.evidence.joined().contains("c2VjcmV0"))
    }

    @Test("a partial line is shown only up to where a secret could start")
    func safePrefix() {
        func safe(_ s: String) -> String { String(s.prefix(LogMasking.safePrefixLength(of: Array(s.utf8)))) }
        #expect(safe("Registration status: CONN") == "Registration status: CONN")
        #expect(safe("UDS 0123abcd") == "UDS ")
        #expect(safe("x;SharedAccessKey=abc") == "x;")
        #expect(safe("x;SharedAcc") == "x;")
        #expect(safe("x;SharedAccessKey=abc;y") == "x;SharedAccessKey=abc;y")
    }
}
