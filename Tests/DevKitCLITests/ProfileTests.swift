@testable import DevKitBoardCLI
import DevKitModel
import DevKitWorkflows
import Foundation
import Testing

@testable import DevKitCLI

@Suite struct ProfileTests {
    let file = "/etc/devkit/bench.toml"

    func parse(_ text: String) throws(ProfileError) -> ProvisioningProfile {
        try ProfileLoader.parse(text, file: file)
    }

    func error(_ text: String) -> ProfileError? {
        do { _ = try parse(text); return nil } catch { return error }
    }

    @Test func fullProfileResolvesPathsAgainstItsDirectory() throws {
        let profile = try parse("""
            output_dir = "out"
            registration_id = "bench-{mac}"
            [firmware]
            bin = "fw/DevKitDPS.ino.bin"
            map = "/abs/DevKitDPS.ino.map"
            [uds]
            policy = "from-file"
            directory = "../secrets/uds"
            [wifi]
            ssid = "bench lab"
            password_file = "wifi.secret"
            [dps]
            name = "my-dps"
            resource_group = "rg"
            id_scope = "0ne000A1B2C"
            iot_hub = "hub.azure-devices.net"
            provisioning_status = "disabled"
            """)
        #expect(profile.firmware == .binAndMap(bin: "/etc/devkit/fw/DevKitDPS.ino.bin", map: "/abs/DevKitDPS.ino.map"))
        #expect(profile.uds == .fromDirectory("/etc/secrets/uds"))
        #expect(profile.wifi == WiFiSettings(ssid: "bench lab", passwordFile: "/etc/devkit/wifi.secret"))
        #expect(profile.outputDirectory == "/etc/devkit/out")
        #expect(profile.registrationID == .template("bench-{mac}"))
        #expect(profile.dps == DPSSettings(name: "my-dps", resourceGroup: "rg", idScope: "0ne000A1B2C",
                                           iotHubHostName: "hub.azure-devices.net", provisioningEnabled: false))
    }

    /// `[dps]` with a connection string file: boards are enrolled; paths resolve
    /// against the profile's directory, the endpoint is kept as written.
    @Test func dpsEnrollmentSettings() throws {
        let profile = try parse("""
            [firmware]
            elf = "a.elf"
            [uds]
            policy = "generate"
            [dps]
            connection_string_file = "secrets/dps.cs"
            endpoint = "https://127.0.0.1:8443"
            ca_file = "/etc/ssl/dps-ca.pem"
            iot_hub = "hub.azure-devices.net"
            """)
        #expect(profile.dps == DPSSettings(
            iotHubHostName: "hub.azure-devices.net", connectionStringFile: "/etc/devkit/secrets/dps.cs",
            endpoint: "https://127.0.0.1:8443", caFile: "/etc/ssl/dps-ca.pem"))
        #expect(profile.dps.enrolls)
        #expect(try !parse("[firmware]\nelf = \"a\"\n[uds]\npolicy = \"generate\"\n[dps]\nname = \"x\"").dps.enrolls)
    }

    @Test func minimalProfileHasDefaults() throws {
        let profile = try parse("[firmware]\nelf = \"a.elf\"\n[uds]\npolicy = \"generate\"\n")
        #expect(profile.firmware == .elf("/etc/devkit/a.elf"))
        #expect(profile.uds == .generate)
        #expect(profile.wifi == nil)
        #expect(profile.outputDirectory == "/etc/devkit")
        #expect(profile.registrationID == .derived)
        #expect(profile.dps == DPSSettings())
    }

    @Test func theExampleInTheHelpParses() throws {
        _ = try parse(ProfileLoader.example)
    }

    static let cases: [(String, String, String)] = [
        ("[uds]\npolicy = \"generate\"", "firmware", "missing"),
        ("[firmware]\nbin = \"a\"\n[uds]\npolicy = \"generate\"", "firmware.map", "linker map"),
        ("[firmware]\nmap = \"a\"\n[uds]\npolicy = \"generate\"", "firmware.bin", "missing"),
        ("[firmware]\nbin = \"a\"\nmap = \"b\"\nelf = \"c\"\n[uds]\npolicy = \"generate\"", "firmware", "not both"),
        ("[firmware]\nelf = 3\n[uds]\npolicy = \"generate\"", "firmware.elf", "must be a string"),
        ("[firmware]\nelf = \"a\"\nbinn = \"x\"\n[uds]\npolicy = \"generate\"", "firmware.binn", "allowed here: bin, map, elf"),
        ("[firmware]\nelf = \"a\"", "uds", "missing"),
        ("[firmware]\nelf = \"a\"\n[uds]\npolicy = \"random\"", "uds.policy", "allowed: \"generate\", \"from-file\""),
        ("[firmware]\nelf = \"a\"\n[uds]\npolicy = \"from-file\"", "uds.directory", "missing"),
        ("[firmware]\nelf = \"a\"\n[uds]\npolicy = \"generate\"\n[wifi]\nssid = \"x\"\npassword = \"hunter2\"", "wifi.password", "never go in the profile"),
        ("[firmware]\nelf = \"a\"\n[uds]\npolicy = \"generate\"\n[wifi]\nssid = \"\(String(repeating: "s", count: 32))\"\npassword_file = \"p\"", "wifi.ssid", "at most 31"),
        ("[firmware]\nelf = \"a\"\n[uds]\npolicy = \"generate\"\n[wifi]\nssid = \"x\"", "wifi.password_file", "missing"),
        ("registration_id = \"Bench_{mac}\"\n[firmware]\nelf = \"a\"\n[uds]\npolicy = \"generate\"", "registration_id", "'B' is not allowed"),
        ("registration_id = \"bench-{ip}\"\n[firmware]\nelf = \"a\"\n[uds]\npolicy = \"generate\"", "registration_id", "unknown placeholder {ip}"),
        ("registration_id = \"bench\"\n[firmware]\nelf = \"a\"\n[uds]\npolicy = \"generate\"", "registration_id", "same ID"),
        ("[firmware]\nelf = \"a\"\n[uds]\npolicy = \"generate\"\n[dps]\nprovisioning_status = \"on\"", "dps.provisioning_status", "allowed: \"enabled\", \"disabled\""),
        ("[firmware]\nelf = \"a\"\n[uds]\npolicy = \"generate\"\n[dps]\nconnection_string = \"HostName=x\"", "dps.connection_string", "never go in the profile"),
        ("[firmware]\nelf = \"a\"\n[uds]\npolicy = \"generate\"\n[dps]\nconnection_string_file = \"-\"", "dps.connection_string_file", "give a file"),
        ("[firmware]\nelf = \"a\"\n[uds]\npolicy = \"generate\"\n[dps]\nendpoint = \"https://127.0.0.1:1\"", "dps.endpoint", "give connection_string_file too"),
        ("[firmware]\nelf = \"a\"\n[uds]\npolicy = \"generate\"\n[dps]\nca_file = \"ca.pem\"", "dps.ca_file", "give connection_string_file too"),
        ("output = \"x\"\n[firmware]\nelf = \"a\"\n[uds]\npolicy = \"generate\"", "output", "unknown key"),
        ("firmware = \"a.elf\"\n[uds]\npolicy = \"generate\"", "firmware", "must be a table"),
        ("[firmware]\nelf = \"a\"\n[uds]\npolicy = \"generate\"\n[verify]\nenabled = \"yes\"", "verify.enabled", "true or false"),
        ("[firmware]\nelf = \"a\"\n[uds]\npolicy = \"generate\"\n[verify]\ntimeout = 0", "verify.timeout", "at least 1"),
        ("[firmware]\nelf = \"a\"\n[uds]\npolicy = \"generate\"\n[verify]\ntimeout = \"2m\"", "verify.timeout", "whole number"),
        ("[firmware]\nelf = \"a\"\n[uds]\npolicy = \"generate\"\n[verify]\nwait = 3", "verify.wait", "allowed here: enabled, timeout"),
    ]

    @Test func verifyTable() throws {
        let base = "[firmware]\nelf = \"a.elf\"\n[uds]\npolicy = \"generate\"\n"
        #expect(try parse(base).verify == nil)
        #expect(try parse(base + "[verify]\nenabled = true\n").verify == VerifySettings(timeoutSeconds: 180))
        #expect(try parse(base + "[verify]\nenabled = true\ntimeout = 120\n").verify == VerifySettings(timeoutSeconds: 120))
        #expect(try parse(base + "[verify]\ntimeout = 30\n").verify == VerifySettings(timeoutSeconds: 30))
        #expect(try parse(base + "[verify]\nenabled = false\ntimeout = 30\n").verify == nil)
    }

    @Test(arguments: cases)
    func preciseErrors(_ c: (text: String, key: String, fragment: String)) throws {
        let e = try #require(error(c.text))
        guard case .invalid(let f, let key, let message) = e else {
            Issue.record("expected .invalid, got \(e)"); return
        }
        #expect(f == file)
        #expect(key == c.key)
        #expect(message.contains(c.fragment), "\(message)")
        #expect(e.exitStatus == .dataError)
        #expect(e.userMessage.hasPrefix("profile \(file): \(c.key): "))
    }

    @Test func syntaxErrorNamesLine() throws {
        let e = try #require(error("[firmware]\nelf = \"a\"\nbad line here\n"))
        guard case .syntax(_, let line, _, _) = e else { Issue.record("\(e)"); return }
        #expect(line == 3)
        #expect(e.userMessage.contains("\(file):3:"))
    }

    /// TOMLKit's parser aborts the process (exit 134) on these; they must be a syntax
    /// error naming the line and column (exit 65), before TOMLKit sees them.
    @Test("a place TOMLKit would abort on is a syntax error", arguments: [
        ("[[[firmware]]]\n", 1, 3, "saw '['"),
        ("[firmware]\nelf = \"a.elf\"\n[.dps]\n", 3, 2, "saw '.'"),
        ("[[ =]]\n", 1, 4, "saw '='"),
        ("[\u{E9}]\n", 1, 2, "saw '\u{E9}'"),
        ("a = 1\n  [\n", 2, 4, "saw '\\n'"),
        ("\u{FEFF}[#]\n", 1, 2, "saw '#'"),
        ("a = \"\"\"\n]\n\"\"\"\n[[\t.x]]\n", 4, 4, "saw '.'"),
        // A multi-line string's closing run may hold one or two quotes of its own.
        ("a = [\"\"\"x\"\"\"\", 1]\n[.b]\n", 2, 2, "saw '.'"),
        ("wifi = { ssid = \"\"\"my \"lab\"\"\"\" }\n[.dps]\n", 2, 2, "saw '.'"),
        // A line-ending backslash in a multi-line basic string still ends a line.
        ("[firmware]\nelf = \"\"\"a.elf\\\n\"\"\"\n[.dps]\n", 4, 2, "saw '.'"),
        // An array's next value.
        ("a = [}]\n", 1, 6, "saw '}'"),
        ("a = [1, }]\n", 1, 9, "saw '}'"),
        ("a = [ # c\n  }]\n", 2, 3, "saw '}'"),
        ("a = { b = [\n\u{2028}] }\n", 2, 1, "saw '\\u{2028}'"),
        ("a = [1,\u{85}]\n", 1, 8, "saw '\\u{85}'"),
        // A date, a space, one digit and the value's end; a date-time's time not
        // starting with a digit.
        ("d = 1979-05-27 0\n", 1, 16, "saw '0' alone"),
        ("d = [1979-05-27 7]\n", 1, 17, "saw '7' alone"),
        ("d = {t = 1979-05-27 1, u = 2}\n", 1, 21, "saw '1' alone"),
        ("d = 1979-05-27 0 # c\n", 1, 16, "saw '0' alone"),
        ("d = 1979-05-27 0\u{2028}\n", 1, 16, "saw '0' alone"),
        ("d = 2024-05-27T:10:00\n", 1, 16, "saw ':'"),
        ("d = [2024-05-27t_1:00Z]\n", 1, 17, "saw '_'"),
        ("d = 2024-05-27T+1:00\n", 1, 16, "saw '+'"),
        ("d = [\n  1,\n  2024-02-29T.5:00,\n]\n", 3, 14, "saw '.'"),
        ("d = 2024-05-27T:5\n", 1, 16, "saw ':'"),
        // TOMLKit would stop reading at it, silently.
        ("a = 1\n\0\n[.b]\n", 2, 1, "NUL"),
        ("a = [\n  1,\n  2, # \0\n]\n", 3, 8, "NUL"),
        ("\u{FEFF}a = 1\0\n", 1, 6, "NUL"),
    ])
    func abortingPlaceIsASyntaxError(text: String, line: Int, column: Int, found: String) throws {
        let e = try #require(error(text))
        guard case .syntax(_, let l, let c, let message) = e else { Issue.record("\(e)"); return }
        #expect(l == line && c == column, "\(e)")
        #expect(message.contains(found), "\(message)")
        #expect(e.exitStatus == .dataError)
    }

    /// An error TOMLKit reports before that place, in the same statement or earlier,
    /// is still the one reported.
    @Test("an earlier error comes first", arguments: [
        ("[firmware]\nelf =\n[.dps]\n", 2, 6),
        ("ports = [1 2, }]\n", 1, 12),
        ("a = [1,, }]\n", 1, 8),
        ("a = \"\n[.b]\n", 1, 6),
        // The date itself is wrong: toml++ says so before it reaches the time.
        ("d = 1979-0_5-27 0\n", 1, 11),
        ("d = 2023-02-29T:10:00\n", 1, 15),
        ("d = [2024-13-01t:x]\n", 1, 13),
        // A date padded with `_`s past what toml++ steps back over (it aborted on these).
        ("d = 1" + String(repeating: "_", count: 117) + "979-05-27 \n", 1, 6),
        ("d = 1" + String(repeating: "_", count: 117) + "979-05-27 0\n", 1, 6),
        ("d = 1" + String(repeating: "_", count: 116) + "979-05-27 0", 1, 6),
        ("d = [1" + String(repeating: "_", count: 115) + "979-05-27 0x]\n", 1, 7),
    ])
    func anEarlierErrorComesFirst(text: String, line: Int, column: Int) throws {
        let e = try #require(error(text))
        guard case .syntax(_, let l, let c, let message) = e else { Issue.record("\(e)"); return }
        #expect(l == line && c == column, "\(e)")
        #expect(!message.contains("expected a key") && !message.contains("expected a value or ']'"), "\(message)")
    }

    /// Brackets in values, strings and comments are not headers; toml++'s own errors
    /// stay its own.
    @Test("what TOMLKit reads without aborting is left to it", arguments: [
        "a = [\n  [.5],\n  [+1],\n  {x = [\n[\u{E9}]]},\n]\n",
        "a = \"\"\"\n[[.x]]\n\"\"\"\n",
        "a = '''\n[.x]\n'''\n",
        "a = \"[.\" # [[.\n[ b ]\n",
        "[\"a.b\"]\nc = \"]\"\n['\u{E9}']\n",
        "[[a]]\n[[ a ]]\n",
        "[ [a]]\n",
        "[[]]\n",
        "a = [\"\"\"x\"\"\"\", [\n  1],\n  [+1],\n]\n",
        "a = ['''x'''', [\n  1],\n  [+1],\n]\n",
        "[\u{A0}x]\n",
        "\r[.a]\n",
        "a = [\n  1,\r\n  2,\r\n]\r\n[b]\r\n",
        "a = {b = [1, 2], c = \"}\"}\n",
        "a = [,]\n",
        "d = 1979-05-27 07:32:00\n",
        "d = [1979-05-27, 1979-05-27T07:32:00Z, 07:32:00]\n",
        "d = 1979-05-27 0",
        "d = 1979-05-27 0x\n",
        "d = 1979-05-27\t0\n",
        "d = 2024-05-27Tx\n",
        // An invalid date is toml++'s own error before the time: it does not abort.
        "d = 2023-02-29T:9\n",
        "d = [2024-13-01t:x]\n",
        "d = \"1979-05-27 0\"\n# d = 2024-05-27T:10:00\n",
        // A date with a few `_`s and a space: toml++ reads on and steps back without
        // aborting, and reports the date its own way.
        "d = 1_979-05-27 07:32:00\n",
        "d = [1979-05-27_ 07:32:00]\n",
        "d = [2023-13_-29 1:]\n",
        "d = 1979-05-27_ 0x\n",
    ])
    func leftToTOMLKit(text: String) {
        #expect(TOMLAbortCheck.firstAbort(in: text) == nil, "\(text)")
        _ = error(text)  // and TOMLKit parses it without aborting
    }

    /// Every text of up to four characters over brackets, braces, keys, quotes, line
    /// ends and the rest goes through the whole parse: an abort the check misses ends
    /// the test process.
    @Test func shortTextsNeverAbort() {
        let alphabet = ["[", "]", "{", "}", ".", ",", " ", "a", "\"", "'", "\n", "\r", "=", "#", "\\", "\u{E9}", "\u{2028}", "1"]
        var texts = [""]
        for _ in 0..<4 { texts = texts.flatMap { text in alphabet.map { text + $0 } } + texts.filter { $0.isEmpty } }
        var refused = 0
        for text in Set(texts) where error(text) != nil { refused += 1 }
        #expect(refused > texts.count / 2)
    }

    /// Dates and date-times, each followed by every three characters over digits,
    /// separators, letters toml++ notes and value ends, as a key's value, in an
    /// array and in an inline table: an abort the check misses ends the test process.
    @Test func dateTextsNeverAbort() {
        let alphabet = ["0", "1", " ", "T", ":", "_", "\n", ",", "]", "}", "#", "x", "Z", "+", "."]
        var tails = [""]
        for _ in 0..<3 { tails = tails.flatMap { tail in alphabet.map { tail + $0 } } }
        var refused = 0
        var count = 0
        for value in ["1979-05-27", "1979-05-27 0", "2024-05-27T"] {
            for prefix in ["d = ", "d = [", "d = {t = "] {
                for tail in tails {
                    count += 1
                    if error(prefix + value + tail) != nil { refused += 1 }
                }
            }
        }
        #expect(refused > count / 2)
    }

    /// Dates padded with `_`s up to and past toml++'s 127 characters, followed by
    /// a space and the endings that make it read on: none aborts.
    @Test func paddedDatesNeverAbort() {
        for count in 100...130 {
            for ending in [" ", " \n", " 0", " 0\n", " 0x", " 0x\n", " 07:32:00\n", " # c\n"] {
                let date = "1" + String(repeating: "_", count: count) + "979-05-27" + ending
                for text in ["d = " + date, "d = [" + date + "]\n"] { #expect(error(text) != nil, "\(text)") }
            }
        }
    }

    @Test func missingFileIsNoInput() throws {
        do {
            _ = try ProfileLoader.load(path: "/nonexistent/devkit.toml")
            Issue.record("loaded a missing file")
        } catch {
            #expect(error.exitStatus == .noInput)
            #expect(error.userMessage.contains("/nonexistent/devkit.toml"))
        }
    }

    /// A directory, or an empty device like /dev/null: the message says what it is.
    @Test func unreadableProfilesSayWhy() throws {
        do {
            _ = try ProfileLoader.load(path: NSTemporaryDirectory())
            Issue.record("loaded a directory")
        } catch {
            #expect(error.exitStatus == .noInput)
            #expect(error.userMessage.contains("it is a directory"), "\(error.userMessage)")
        }
        do {
            _ = try ProfileLoader.load(path: "/dev/null")
            Issue.record("loaded an empty profile")
        } catch {
            #expect(error.userMessage.contains("firmware: missing"), "\(error.userMessage)")
        }
    }

    @Test func registrationIDSchemes() throws {
        #expect(try RegistrationIDScheme.derived.registrationID(
            mac: MACAddress("A4CF120B9E31"), usbSerial: nil, firmwareVersion: FirmwareVersion("1.6.2")).value
                == "az-a4cf120b9e31v1v6v2")
        let t = try RegistrationIDScheme(parsing: "bench-{serial}-{mac}-v{version}")
        #expect(try t.registrationID(mac: MACAddress("a4cf120b9e31"), usbSerial: "066EFF", firmwareVersion: FirmwareVersion("2.0.10")).value
                == "bench-066eff-a4cf120b9e31-v2v0v10")
        #expect(throws: RegistrationIDError.missing("serial", scheme: "{serial}")) {
            try RegistrationIDScheme(parsing: "{serial}").registrationID(mac: MACAddress("a4cf120b9e31"), usbSerial: nil, firmwareVersion: nil)
        }
        #expect(throws: RegistrationIDError.self) {
            try RegistrationIDScheme(parsing: "{serial}").registrationID(
                mac: nil, usbSerial: String(repeating: "a", count: 127), firmwareVersion: nil)
        }
        // A template must name the board: {version} alone (or no placeholder) gives every
        // board of a bench the same ID, and their files would overwrite each other.
        for shared in ["bench-{version}", "bench"] {
            #expect(throws: RegistrationIDError.self) { try RegistrationIDScheme(parsing: shared) }
        }
        #expect(try RegistrationIDScheme(parsing: "bench-{version}-{serial}") == .template("bench-{version}-{serial}"))
    }
}
