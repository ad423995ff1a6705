import DevKitModel
import Testing

@Suite("maskingSecrets: no part of a secret of 8+ characters shows")
struct SecretMaskingTests {
    static let uds = "a0b1c2d3e4f5061728394a5b6c7d8e9fa0b1c2d3e4f5061728394a5b6c7d8e9f"

    @Test func wholeSecretAndItsPartsAreMasked() {
        #expect(maskingSecrets([Self.uds], in: "Invalid UDS: \(Self.uds).") == "Invalid UDS: ***.")
        // Upper case, and a fragment in the middle of other text.
        #expect(maskingSecrets([Self.uds], in: "got \(Self.uds.uppercased().dropFirst(5).prefix(20))!") == "got ***!")
        #expect(maskingSecrets([Self.uds], in: "x \(Self.uds.prefix(8)) y") == "x *** y")
    }

    @Test func shorterRunsAndOtherTextStay() {
        #expect(maskingSecrets([Self.uds], in: "Invalid UDS.") == "Invalid UDS.")
        #expect(maskingSecrets([Self.uds], in: "x \(Self.uds.prefix(7)) y") == "x \(Self.uds.prefix(7)) y")
        #expect(maskingSecrets([], in: "anything at all") == "anything at all")
    }

    /// A secret under 8 characters (a short Wi-Fi password: the board takes 0-63
    /// bytes) has no 8-character part, but the secret itself must never show.
    @Test func aSecretShorterThanEightCharactersIsMaskedWhole() {
        #expect(maskingSecrets(["pw1234"], in: "Invalid password pw1234.") == "Invalid password ***.")
        #expect(maskingSecrets(["pw1234"], in: "PW1234") == "***")
        #expect(maskingSecrets(["pw1234"], in: "pw123 only part") == "pw123 only part")
        #expect(maskingSecrets([""], in: "an open network") == "an open network")
    }

    @Test func everyEightCharacterWindowIsGone() {
        let secret = "HostName=h.azure-devices.net;DeviceId=d;SharedAccessKey=c2VjcmV0a2V5MTIzNA=="
        let masked = maskingSecrets([secret], in: "Invalid value \"\(secret)\" and \(secret.suffix(12))")
        let s = Array(secret)
        for start in 0...(s.count - 8) { #expect(!masked.contains(String(s[start..<(start + 8)]))) }
        #expect(masked.hasPrefix("Invalid value \"***\""))
    }
}
