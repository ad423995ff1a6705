// The DICE/RIoT reference vectors (Tests/Fixtures/dice-vectors/vectors.json),
// loaded in one place for the test targets that need them whole.
import Foundation

/// One case of the reference vectors: the inputs (UDS, firmware, MAC, version)
/// and what the DevKit's reference tool made of them (Alias certificate and key,
/// DeviceID certificate). The keys are described in the fixtures' README.
public struct DiceVector: Decodable, Sendable {
    public let id: String
    public let uds: String
    public let registrationID: String
    /// Present when the registration ID is derived from them.
    public let mac: String?
    public let firmwareVersion: String?
    /// Paths relative to ``DiceVector/fixtures``.
    public let bin: String
    public let map: String
    public let elf: String
    /// The enrollment certificate, PEM, byte-exact as the reference tool wrote it.
    public let aliasCertificate: String
    /// The Alias key pair (PEM `EC PRIVATE KEY`): what a board presents in TLS.
    public let aliasPrivateKey: String
    public let deviceCertificate: String
    public let deviceIDPublicKey: String

    enum CodingKeys: String, CodingKey {
        case id, uds, mac, bin, map, elf
        case registrationID = "registration_id"
        case firmwareVersion = "firmware_version"
        case aliasCertificate = "alias_certificate"
        case aliasPrivateKey = "alias_private_key"
        case deviceCertificate = "device_certificate"
        case deviceIDPublicKey = "device_id_public_key"
    }

    /// Tests/Fixtures/dice-vectors.
    public static let fixtures = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/dice-vectors")

    /// Every vector, in the file's order.
    public static let all: [DiceVector] = {
        struct File: Decodable { let vectors: [DiceVector] }
        let url = fixtures.appendingPathComponent("vectors.json")
        // A fixture that does not load is a broken checkout: stop with the reason.
        do {
            return try JSONDecoder().decode(File.self, from: Data(contentsOf: url)).vectors
        } catch {
            fatalError("cannot load \(url.path): \(error)")
        }
    }()

    /// Those DPS takes: IDs within the 64-character limit of an X.509 enrollment.
    public static var enrollable: [DiceVector] { all.filter { $0.registrationID.utf8.count <= 64 } }

    /// The vector named `id`.
    public static func named(_ id: String) -> DiceVector? { all.first { $0.id == id } }
}
