import DevKitModel
import Testing

private let udsHex = "19E25A259D0C2BE03A02D416C05C48CCD0CC7D1743458AAE1CB488B074993EAE"

@Suite("UDS")
struct UDSTests {
    @Test func parsesEitherCaseAndTrimsWhitespace() throws {
        let uds = try UDS(hex: udsHex)
        #expect(uds == (try UDS(hex: udsHex.lowercased())))
        #expect(uds.bytes.count == 32)
        #expect(uds.bytes.first == 0x19 && uds.bytes.last == 0xAE)
        #expect(uds.hexString == udsHex.lowercased())
        #expect(try UDS(hex: "  \(udsHex)\r\n\t").hexString == udsHex.lowercased())
    }

    @Test func lengthBoundaries() {
        #expect(throws: InputError.udsLength(63)) { try UDS(hex: String(udsHex.dropLast())) }
        #expect(throws: InputError.udsLength(65)) { try UDS(hex: udsHex + "0") }
        #expect(throws: InputError.udsLength(0)) { try UDS(hex: "   ") }
        #expect(throws: InputError.udsLength(2)) { try UDS(bytes: [1]) }
        #expect(throws: InputError.udsLength(66)) { try UDS(bytes: Array(repeating: 1, count: 33)) }
    }

    @Test func nonHexCharacters() {
        #expect(throws: InputError.udsCharacter(position: 64)) { try UDS(hex: String(udsHex.dropLast()) + "g") }
        #expect(throws: InputError.udsCharacter(position: 3)) { try UDS(hex: "19 " + String(udsHex.dropFirst(3))) }
        #expect(throws: InputError.udsCharacter(position: 1)) { try UDS(hex: "\0" + String(udsHex.dropFirst())) }
    }

    @Test func bytesRoundTrip() throws {
        let bytes = (0..<32).map { UInt8($0 * 7) }
        let uds = try UDS(bytes: bytes)
        #expect(try UDS(hex: uds.hexString) == uds)
    }

    @Test("print, dump, interpolation and reflection never show the UDS")
    func redacted() throws {
        let uds = try UDS(hex: udsHex)
        let secret = udsHex.lowercased()
        var dumped = ""
        dump(uds, to: &dumped)
        var dumpedInArray = ""
        dump([uds], to: &dumpedInArray)
        struct Holder { var uds: UDS }
        let shown = [
            String(describing: uds), "\(uds)", String(reflecting: uds), dumped, dumpedInArray,
            String(describing: Holder(uds: uds)), String(reflecting: Holder(uds: uds)), "\([uds])",
            String(describing: Optional(uds)),
        ]
        for text in shown {
            #expect(!text.lowercased().contains(secret.prefix(8)), "\(text)")
            #expect(!text.lowercased().contains("19e25a"), "\(text)")
        }
        #expect("\(uds)" == "UDS(<redacted>)")
        let errors: [InputError] = [.udsLength(3), .udsCharacter(position: 2)]
        for error in errors { #expect(!"\(error)".contains(secret.prefix(6))) }
    }
}

@Suite("MAC address")
struct MACAddressTests {
    @Test(arguments: [
        "a4cf120b9e31", "A4CF120B9E31", "A4:CF:12:0B:9E:31", "a4-cf-12-0b-9e-31", " a4cf120b9e31\n", "\ta4:cf:12:0b:9e:31\r\n",
    ])
    func forms(text: String) throws {
        #expect(try MACAddress(text).hex == "a4cf120b9e31")
        #expect(try MACAddress(text).description == "a4cf120b9e31")
    }

    @Test(arguments: [
        "a4cf120b9e3", "a4cf120b9e311", "a4:cf:12:0b:9e:3g", "a4:cf-12:0b:9e:31", "a4cf.120b.9e31", "",
        "a4:cf:12:0b:9e:31:", "a4_cf_12_0b_9e_31", "a4cf120b9e3g", "a4::cf12:0b:9e:31", "a4cf 120b9e31",
    ])
    func refused(text: String) {
        #expect(throws: InputError.self) { try MACAddress(text) }
    }

    @Test func equalAcrossSpellings() throws {
        #expect(try MACAddress("A4:CF:12:0B:9E:31") == MACAddress("a4-cf-12-0b-9e-31"))
    }
}

@Suite("Firmware version")
struct FirmwareVersionTests {
    @Test func accepted() throws {
        #expect(try FirmwareVersion("1.10.0").text == "1.10.0")
        #expect(try FirmwareVersion("12.345.6789").text == "12.345.6789")
        #expect(try FirmwareVersion(" 1.6.2\r\n").text == "1.6.2")
        #expect(try FirmwareVersion("1.6.2").registrationIDForm == "1v6v2")
    }

    @Test(arguments: ["1.6", "1.6.2.1", "1..2", "v1.6.2", "1.6.x", "", "1.6.2a", ".1.6", "1.6.", "1.٦.2"])
    func refused(text: String) {
        #expect(throws: InputError.firmwareVersionFormat(text)) { try FirmwareVersion(text) }
    }
}

@Suite("Registration ID")
struct RegistrationIDTests {
    @Test func lengthBoundaries() throws {
        #expect(try RegistrationID(String(repeating: "a", count: 1)).value == "a")
        #expect(try RegistrationID(String(repeating: "a", count: 126)).value.count == 126)
        #expect(throws: InputError.registrationIDTooLong(127)) { try RegistrationID(String(repeating: "a", count: 127)) }
        #expect(throws: InputError.registrationIDEmpty) { try RegistrationID("") }
        #expect(try !RegistrationID(String(repeating: "a", count: 64)).exceedsDocumentedDPSLimit)
        #expect(try RegistrationID(String(repeating: "a", count: 65)).exceedsDocumentedDPSLimit)
    }

    @Test func characters() throws {
        #expect(try RegistrationID("az-0123456789-xyz").value == "az-0123456789-xyz")
        #expect(throws: InputError.registrationIDCharacter("A", position: 1)) { try RegistrationID("Abc") }
        #expect(throws: InputError.registrationIDCharacter("_", position: 4)) { try RegistrationID("dev_1") }
        #expect(throws: InputError.registrationIDCharacter("é", position: 2)) { try RegistrationID("aé") }
        #expect(throws: InputError.registrationIDCharacter(" ", position: 1)) { try RegistrationID(" a") }
    }

    @Test func derived() throws {
        let mac = try MACAddress("00:11:22:33:44:55")
        let id = try RegistrationID(mac: mac, firmwareVersion: try FirmwareVersion("1.10.3"))
        #expect(id.value == "az-001122334455v1v10v3")
        #expect(try RegistrationID(mac: try MACAddress("A4:CF:12:0B:9E:31"), firmwareVersion: FirmwareVersion("1.6.2")).value
            == "az-a4cf120b9e31v1v6v2")
    }

    /// `az-` + 12 + `v` = 16 characters before the version's own.
    @Test func derivedLengthBoundaries() throws {
        let mac = try MACAddress("a4cf120b9e31")
        func version(length: Int) throws -> FirmwareVersion {
            try FirmwareVersion("1.2." + String(repeating: "3", count: length - 4))
        }
        let at64 = try RegistrationID(mac: mac, firmwareVersion: version(length: 48))
        #expect(at64.value.count == 64 && !at64.exceedsDocumentedDPSLimit)
        let at65 = try RegistrationID(mac: mac, firmwareVersion: version(length: 49))
        #expect(at65.value.count == 65 && at65.exceedsDocumentedDPSLimit)
        let at126 = try RegistrationID(mac: mac, firmwareVersion: version(length: 110))
        #expect(at126.value.count == 126)
        #expect(throws: InputError.registrationIDTooLong(127)) {
            try RegistrationID(mac: mac, firmwareVersion: version(length: 111))
        }
        #expect(throws: InputError.registrationIDTooLong(220)) {
            try RegistrationID(mac: mac, firmwareVersion: version(length: 204))
        }
    }
}

@Suite("Secrets")
struct SecretTests {
    @Test func connectionStringRules() throws {
        let hub = "HostName=h.azure-devices.net;DeviceId=d;SharedAccessKey=k"
        #expect(try ConnectionString(hub).secretValue == hub)
        #expect(try ConnectionString(String(repeating: "c", count: 511)).secretValue.count == 511)
        #expect(throws: InputError.connectionStringTooLong(512)) { try ConnectionString(String(repeating: "c", count: 512)) }
        #expect(throws: InputError.connectionStringEmpty) { try ConnectionString("") }
        #expect(throws: InputError.controlCharacter(in: "connection string")) { try ConnectionString("a\nb") }
    }

    @Test func wifiPasswordRules() throws {
        #expect(try WiFiPassword("").isEmpty)
        #expect(WiFiPassword.openNetwork.isEmpty)
        #expect(try WiFiPassword(String(repeating: "p", count: 63)).secretValue.count == 63)
        #expect(throws: InputError.wifiPasswordTooLong(64)) { try WiFiPassword(String(repeating: "p", count: 64)) }
        #expect(throws: InputError.controlCharacter(in: "password")) { try WiFiPassword("a\tb") }
        #expect(throws: InputError.controlCharacter(in: "password")) { try WiFiPassword("a\u{7F}") }
    }

    @Test("secrets never show in descriptions, dumps or reflection")
    func redacted() throws {
        let key = "SharedAccessKey=c2VjcmV0c2VjcmV0"
        let cs = try ConnectionString("HostName=h;DeviceId=d;" + key)
        let password = try WiFiPassword("hunter2-pass")
        var dumped = ""
        dump(cs, to: &dumped)
        dump(password, to: &dumped)
        for text in [String(describing: cs), "\(cs)", String(reflecting: cs), dumped,
                     String(describing: password), "\(password)", String(reflecting: password)] {
            #expect(!text.contains("c2VjcmV0"), "\(text)")
            #expect(!text.contains("hunter2"), "\(text)")
        }
        #expect(!"\(InputError.wifiPasswordTooLong(70))".contains("hunter2"))
    }
}

@Suite("Hex")
struct HexTests {
    @Test func digits() {
        for c in Array("0123456789abcdefABCDEF".utf8) { #expect(Hex.isHexDigit(c)) }
        for c in Array("gG/:@`\0 ".utf8) { #expect(!Hex.isHexDigit(c)) }
        #expect(Hex.value(UInt8(ascii: "f")) == 15 && Hex.value(UInt8(ascii: "A")) == 10)
    }

    @Test func encodeDecode() {
        #expect(Hex.encode([0x00, 0xAB, 0x7F]) == "00ab7f")
        #expect(Hex.encode([0x00, 0xAB, 0x7F], uppercase: true) == "00AB7F")
        #expect(Hex.decode("00AB7f") == [0x00, 0xAB, 0x7F])
        #expect(Hex.decode("") == [])
        #expect(Hex.decode("abc") == nil)
        #expect(Hex.decode("zz") == nil)
    }
}

@Suite("Error messages")
struct ErrorMessageTests {
    @Test func controlCharactersAreEscaped() {
        let nul = "\(InputError.macFormat("a4\u{0}cf"))"
        #expect(nul.contains("'a4\\0cf'"))
        #expect(!nul.contains("\u{0}"))
        let esc = "\(InputError.firmwareVersionFormat("1.6\u{1B}[2J"))"
        #expect(esc.contains("1.6\\u{1B}[2J"))
        #expect(!esc.contains("\u{1B}"))
        let id = "\(InputError.registrationIDCharacter("\t", position: 3))"
        #expect(id.contains("'\\t'") && !id.contains("\t"))
        #expect(escaped("a\r\nb\u{7F}\\") == "a\\r\\nb\\u{7F}\\\\")
    }

    /// The whole-message pass at the terminal: layout kept, values already escaped
    /// read the same, every other control character escaped.
    @Test func messagesKeepTheirLayoutButNoControlCharacters() {
        let already = "'\(escaped("a\u{1B}b"))'"
        #expect(escapedControlCharacters("x\n\ty \(already)") == "x\n\ty \(already)")
        let raw = escapedControlCharacters("no board 'a\u{1B}[31m\u{0}\r' here\n")
        #expect(raw == "no board 'a\\u{1B}[31m\\0\\r' here\n")
        #expect(!raw.unicodeScalars.contains { $0.value < 0x20 && $0 != "\n" })
    }

    /// Bidi controls and other invisible format characters would reorder or hide
    /// what a value shows (a registration ID that reads right-to-left, a path with a
    /// zero-width space): escaped by both passes, ordinary non-ASCII text kept.
    @Test func bidiAndFormatCharactersAreEscaped() {
        let bidi: [UInt32] = [0x202A, 0x202B, 0x202C, 0x202D, 0x202E, 0x2066, 0x2067, 0x2068, 0x2069]
        let others: [UInt32] = [0x200B, 0x200E, 0x200F, 0x2028, 0x2029, 0x2060, 0xFEFF, 0x00AD, 0x061C, 0xE0041]
        for value in bidi + others {
            let scalar = Unicode.Scalar(value)!
            let hex = String(value, radix: 16, uppercase: true)
            let text = "id-\(Character(scalar))-x"
            #expect(escaped(text) == "id-\\u{\(hex)}-x", "U+\(hex)")
            #expect(escapedControlCharacters(text) == "id-\\u{\(hex)}-x", "U+\(hex)")
        }
        let attack = "board-\u{202E}txt.exe"
        #expect(!escaped(attack).unicodeScalars.contains { $0.value == 0x202E })
        for kept in ["caf\u{E9} \u{65E5}\u{672C} \u{1F600}", "Stra\u{DF}e", "a\u{301}", "\u{A0}x"] {
            #expect(escaped(kept) == kept)
            #expect(escapedControlCharacters(kept) == kept)
        }
    }

    @Test func refusedMACWithControlCharacterIsEscapedInItsMessage() {
        do {
            _ = try MACAddress("a4cf120b9e3\u{0}")
            Issue.record("accepted")
        } catch {
            #expect("\(error)".contains("a4cf120b9e3\\0"))
            #expect(!"\(error)".contains("\u{0}"))
        }
    }

    @Test func messagesUseDomainWordsNotFlags() {
        let all: [InputError] = [
            .udsLength(1), .udsCharacter(position: 1), .registrationIDEmpty, .registrationIDTooLong(200),
            .registrationIDCharacter("_", position: 1), .macFormat("x"), .firmwareVersionFormat("x"),
            .connectionStringEmpty, .connectionStringTooLong(600), .wifiPasswordTooLong(70), .controlCharacter(in: "password"),
        ]
        for error in all { #expect(!"\(error)".contains("--"), "\(error)") }
    }
}

/// The console module's value checks, moved here with the types.
@Suite("Values as the console reads them")
struct ConsoleValueTests {
    @Test func valuesParse() throws {
        #expect(try MACAddress("A4:CF:12:0B:9E:31").hex == "a4cf120b9e31")
        #expect(try MACAddress("a4-cf-12-0b-9e-31").hex == "a4cf120b9e31")
        #expect(try MACAddress("a4cf120b9e31").hex == "a4cf120b9e31")
        #expect((try? MACAddress("a4cf120b9e3")) == nil)
        #expect((try? MACAddress("a4:cf-12:0b:9e:31")) == nil)
        #expect((try? MACAddress("a4cf120b9e3g")) == nil)
        #expect(try FirmwareVersion("1.10.0").text == "1.10.0")
        #expect((try? FirmwareVersion("1.6")) == nil)
        #expect((try? FirmwareVersion("1..2")) == nil)
        #expect((try? FirmwareVersion("1.6.2a")) == nil)
        #expect(try RegistrationID(mac: MACAddress("a4cf120b9e31"), firmwareVersion: FirmwareVersion("1.6.2")).value
            == "az-a4cf120b9e31v1v6v2")
    }
}
