import DevKitModel
@testable import DiceRIoT
import Testing

@Suite("Reference vectors")
struct VectorTests {
    @Test("every vector's four outputs, byte-exact, from .bin + .map", arguments: Fixtures.vectors.map(\.id))
    func fromBinAndMap(id: String) throws {
        let v = Fixtures.vectors.first { $0.id == id }!
        let image = try RIoTImage(bin: Fixtures.bytes(v.bin), map: Fixtures.bytes(v.map))
        try check(v, image: image)
    }

    @Test("every vector's four outputs, byte-exact, from the .elf alone", arguments: Fixtures.vectors.map(\.id))
    func fromELF(id: String) throws {
        let v = Fixtures.vectors.first { $0.id == id }!
        let image = try RIoTImage(elf: Fixtures.bytes(v.elf))
        try check(v, image: image)
    }

    @Test("the .elf and the .bin + .map give the same ranges", arguments: Fixtures.vectors.map(\.id))
    func sameRanges(id: String) throws {
        let v = Fixtures.vectors.first { $0.id == id }!
        #expect(try RIoTImage(elf: Fixtures.bytes(v.elf)) == RIoTImage(bin: Fixtures.bytes(v.bin), map: Fixtures.bytes(v.map)))
    }

    @Test("a derived registration ID matches the vector's", arguments: Fixtures.vectors.filter { $0.mac != nil }.map(\.id))
    func derivedID(id: String) throws {
        let v = Fixtures.vectors.first { $0.id == id }!
        let derived = try RegistrationID(mac: try MACAddress(v.mac!), firmwareVersion: try FirmwareVersion(v.firmwareVersion!))
        #expect(derived.value == v.registrationID)
    }

    /// Several devices at once (their keys' points share one field inversion) give
    /// each vector's outputs in its place, whatever sits around it.
    @Test("every vector in one batch of devices, in order, byte-exact")
    func vectorsInOneBatch() throws {
        for v in Fixtures.vectors {
            let firmware = MeasuredFirmware(try RIoTImage(bin: Fixtures.bytes(v.bin), map: Fixtures.bytes(v.map)))
            // The vector between other devices, twice, in a batch longer than one group.
            var devices = (0..<40).map { i in
                (uds: try! UDS(bytes: (0..<32).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ i) }), registrationID: try! RegistrationID("other-\(i)"))
            }
            let target = (uds: try UDS(hex: v.uds), registrationID: try RegistrationID(v.registrationID))
            devices[0] = target
            devices[23] = target
            let results = firmware.credentials(devices)
            #expect(results.count == devices.count)
            for i in [0, 23] {
                let device = try results[i].get()
                #expect(device.aliasCertificatePEM == v.aliasCertificate, "\(v.id) at \(i)")
                #expect(try device.deviceIDPublicKeyPEM() == v.deviceIDPublicKey, "\(v.id) at \(i)")
            }
            for i in [1, 22, 39] {
                let alone = try firmware.credentials(uds: devices[i].uds, registrationID: devices[i].registrationID)
                #expect(try results[i].get().aliasCertificateDER == alone.aliasCertificateDER, "\(v.id): device \(i)")
            }
        }
    }

    private func check(_ v: Vector, image: RIoTImage) throws {
        let firmware = MeasuredFirmware(image)
        let device = try firmware.credentials(uds: UDS(hex: v.uds), registrationID: RegistrationID(v.registrationID))
        #expect(device.aliasCertificatePEM == v.aliasCertificate)
        #expect(try device.deviceCertificatePEM() == v.deviceCertificate)
        #expect(try device.deviceIDPublicKeyPEM() == v.deviceIDPublicKey)
        #expect(try device.aliasPrivateKeyPEM() == v.aliasPrivateKey)
    }
}

@Suite("Measurement hash Hd")
struct MeasurementHashTests {
    @Test func checkValues() {
        #expect(Hex.encode(MeasurementHash.hash([UInt8]())) == "08c5a54e766e56a6f8430524d46fb0fee37b775701c44995daaf36640e33d265")
        #expect(Hex.encode(MeasurementHash.hash(Array("abc".utf8))) == "bb392cd2622eecbce49cd242285d0009ef70eae1a3e43e5ec8eae7c779b9f600")
    }

    @Test("padding boundaries give distinct digests and never crash", arguments: [54, 55, 56, 57, 63, 64, 65, 119, 120, 128])
    func paddingBoundaries(length: Int) {
        let a = MeasurementHash.hash([UInt8](repeating: 0x61, count: length))
        let b = MeasurementHash.hash([UInt8](repeating: 0x61, count: length + 1))
        #expect(a.count == 32)
        #expect(a != b)
    }

    @Test("BoringSSL's compression of swapped words equals the compression written in Swift, over 0 to 40 blocks and the chunk edges")
    func boringSSLAgainstSwift() {
        // On Linux builds the compared path is BoringSSL's, not Swift against itself.
        #expect(MeasurementHash.compressesWithBoringSSL)
        #expect(MeasurementHash.swapBlocks * 64 <= 1024, "the swap buffer leaves the stack above 1,024 bytes")
        #expect(Hex.encode(MeasurementHash.hashInSwift(Array("abc".utf8))) == "bb392cd2622eecbce49cd242285d0009ef70eae1a3e43e5ec8eae7c779b9f600")
        // Past 16 whole blocks (one stack buffer's worth) and across it, at every
        // padding position of the last block.
        let message = (0..<(40 * 64 + 70)).map { UInt8(truncatingIfNeeded: $0 &* 131 &+ $0 >> 8) }
        for length in Array(0..<130) + [1023, 1024, 1025, 1087, 1088, 1089, 2047, 2048, 2049, 40 * 64, 40 * 64 + 70] {
            let part = Array(message[..<length])
            #expect(MeasurementHash.hash(part) == MeasurementHash.hashInSwift(part), "length \(length)")
        }
    }

    @Test("Hd differs from standard SHA-256")
    func notStandard() {
        // SHA-256("abc") starts ba7816bf.
        #expect(!Hex.encode(MeasurementHash.hash(Array("abc".utf8))).hasPrefix("ba7816bf"))
    }
}
