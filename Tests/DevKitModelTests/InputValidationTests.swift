import DevKitModel
import Testing

@Suite("Input validation")
struct InputValidationTests {
    @Test func registrationIDLimits() throws {
        #expect(try RegistrationID(String(repeating: "a", count: 126)).value.count == 126)
        #expect(throws: InputError.registrationIDTooLong(127)) { try RegistrationID(String(repeating: "a", count: 127)) }
        #expect(throws: InputError.registrationIDEmpty) { try RegistrationID("") }
        #expect(throws: InputError.registrationIDCharacter("A", position: 1)) { try RegistrationID("Abc") }
        #expect(throws: InputError.registrationIDCharacter("_", position: 4)) { try RegistrationID("dev_1") }
        #expect(try RegistrationID(String(repeating: "a", count: 65)).exceedsDocumentedDPSLimit)
        #expect(try !RegistrationID(String(repeating: "a", count: 64)).exceedsDocumentedDPSLimit)
    }

    @Test func udsRules() throws {
        let hex = "19E25A259D0C2BE03A02D416C05C48CCD0CC7D1743458AAE1CB488B074993EAE"
        #expect(try UDS(hex: hex) == UDS(hex: hex.lowercased()))
        #expect(try UDS(hex: "  \(hex)\r\n").bytes.first == 0x19)
        #expect(throws: InputError.udsLength(63)) { try UDS(hex: String(hex.dropLast())) }
        #expect(throws: InputError.udsLength(65)) { try UDS(hex: hex + "0") }
        #expect(throws: InputError.udsCharacter(position: 64)) { try UDS(hex: String(hex.dropLast()) + "g") }
        #expect(throws: InputError.udsCharacter(position: 3)) { try UDS(hex: "19 " + String(hex.dropFirst(3))) }
    }

    @Test("a UDS never shows in descriptions or errors")
    func udsRedacted() throws {
        let hex = String(repeating: "ab", count: 32)
        #expect(!"\(try UDS(hex: hex))".contains("abab"))
        let errors: [InputError] = [.udsLength(3), .udsCharacter(position: 2)]
        for error in errors { #expect(!"\(error)".contains("abab")) }
    }

    @Test(arguments: ["a4cf120b9e31", "A4:CF:12:0B:9E:31", "a4-cf-12-0b-9e-31", " a4cf120b9e31\n"])
    func macForms(text: String) throws {
        #expect(try MACAddress(text).hex == "a4cf120b9e31")
    }

    @Test(arguments: ["a4cf120b9e3", "a4:cf:12:0b:9e:3g", "a4:cf-12:0b:9e:31", "a4cf.120b.9e31", ""])
    func badMACs(text: String) {
        #expect(throws: InputError.self) { try MACAddress(text) }
    }

    @Test func firmwareVersions() throws {
        #expect(try FirmwareVersion("1.10.0").text == "1.10.0")
        #expect(try FirmwareVersion("12.345.6789").text == "12.345.6789")
        for bad in ["1.6", "1.6.2.1", "1..2", "v1.6.2", "1.6.x", ""] {
            #expect(throws: InputError.firmwareVersionFormat(bad)) { try FirmwareVersion(bad) }
        }
        let id = try RegistrationID(mac: try MACAddress("00:11:22:33:44:55"), firmwareVersion: try FirmwareVersion("1.10.3"))
        #expect(id.value == "az-001122334455v1v10v3")
    }
}
