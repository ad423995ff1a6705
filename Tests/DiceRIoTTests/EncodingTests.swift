import Crypto
import DevKitModel
import Foundation
@testable import DiceRIoT
import Testing

/// The per-device encoders written by hand for speed, against the library code
/// they replaced (Foundation's Base64, swift-crypto's HMAC, the generic hex encoder).
@Suite("Certificate encoders")
struct EncodingTests {
    /// Deterministic bytes: SHA-256 of a counter, repeated to `count`.
    static func bytes(_ count: Int, seed: Int) -> [UInt8] {
        var out: [UInt8] = []
        var i = 0
        while out.count < count {
            out += SHA256.hash(data: Array("\(seed)-\(i)".utf8))
            i += 1
        }
        return Array(out.prefix(count))
    }

    @Test("Base64 as Foundation's base64EncodedString, every length to 130 (all three paddings)")
    func base64() {
        for count in 0...130 {
            let data = Self.bytes(count, seed: count)
            var out = [UInt8](repeating: 0, count: (count + 2) / 3 * 4)
            let written = data.withUnsafeBytes { bytes in out.withUnsafeMutableBufferPointer { Base64.encode(bytes, into: $0) } }
            #expect(written == out.count)
            #expect(String(decoding: out, as: UTF8.self) == Data(data).base64EncodedString(), "length \(count)")
        }
        // Every byte value, so every alphabet position.
        let all = (0...255).map { UInt8($0) }
        #expect(PEM.oneLine("X", all) == "-----BEGIN X-----\n\(Data(all).base64EncodedString())\n-----END X-----\n")
    }

    @Test("PEM: one line of Base64 between the labels, as the reference tool wrote it")
    func pem() {
        #expect(PEM.oneLine("CERTIFICATE", []) == "-----BEGIN CERTIFICATE-----\n\n-----END CERTIFICATE-----\n")
        #expect(PEM.oneLine("EC PRIVATE KEY", [0xFF, 0x00]) == "-----BEGIN EC PRIVATE KEY-----\n/wA=\n-----END EC PRIVATE KEY-----\n")
    }

    @Test("HMAC-SHA-256 as swift-crypto's HMAC<SHA256>, keys of 0 to 64 bytes")
    func hmac() {
        for keyLength in [0, 1, 31, 32, 33, 63, 64] {
            let key = Self.bytes(keyLength, seed: 1000 + keyLength)
            for message in [[], DerivedKey.Label.identity.message, DerivedKey.Label.alias.message, Self.bytes(200, seed: 7)] {
                var mine = [UInt8](repeating: 0, count: 32)
                key.withUnsafeBytes { k in
                    mine.withUnsafeMutableBytes { HMACSHA256.authenticationCode(key: k, message: message, into: $0) }
                }
                let theirs = Array(HMAC<SHA256>.authenticationCode(for: message, using: SymmetricKey(data: key)))
                #expect(mine == theirs, "key \(keyLength) bytes, message \(message.count) bytes")
            }
        }
    }

    @Test("the labels' messages: 01 00 00 00 || label || 00 || 00 01 00 00")
    func labels() {
        #expect(DerivedKey.Label.alias.message == [1, 0, 0, 0] + Array("Alias".utf8) + [0, 0, 1, 0, 0])
        #expect(DerivedKey.Label.identity.message == [1, 0, 0, 0] + Array("Identity".utf8) + [0, 0, 1, 0, 0])
    }

    @Test("hex from a buffer as the generic encoder, both cases")
    func hex() {
        let data = (0...255).map { UInt8($0) }
        for uppercase in [false, true] {
            #expect(data.withUnsafeBytes { Hex.encode($0, uppercase: uppercase) } == Hex.encode(data.lazy.map { $0 }, uppercase: uppercase))
        }
        #expect([UInt8]().withUnsafeBytes { Hex.encode($0) } == "")
    }

    @Test("the thumbprints: SHA-1 and SHA-256 of the DER, upper-case hex")
    func thumbprints() throws {
        let firmware = MeasuredFirmware(RIoTImage(core: Array(repeating: 0x5A, count: 64), firmware: Array(repeating: 0xA5, count: 4096)))
        let device = try firmware.credentials(uds: UDS(hex: String(repeating: "ab", count: 32)), registrationID: RegistrationID("t-1"))
        #expect(device.sha1Thumbprint == Insecure.SHA1.hash(data: device.aliasCertificateDER).map { String(format: "%02X", $0) }.joined())
        #expect(device.sha256Thumbprint == SHA256.hash(data: device.aliasCertificateDER).map { String(format: "%02X", $0) }.joined())
    }
}
