import Foundation

/// The reference vectors in Tests/Fixtures/dice-vectors (Docs/certificate.md, "9. Test vectors").
struct Vector: Sendable {
    let id: String
    let uds: String
    let registrationID: String
    let mac: String?
    let firmwareVersion: String?
    let bin: String
    let map: String
    let elf: String
    let aliasCertificate: String
    let deviceCertificate: String
    let deviceIDPublicKey: String
    let aliasPrivateKey: String

}


enum Fixtures {
    static let root = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/dice-vectors")

    static func path(_ relative: String) -> String { root.appendingPathComponent(relative).path }

    static func bytes(_ relative: String) -> [UInt8] {
        Array(FileManager.default.contents(atPath: path(relative))!)
    }

    static let vectors: [Vector] = {
        let data = FileManager.default.contents(atPath: path("vectors.json"))!
        let json = try! JSONSerialization.jsonObject(with: data) as! [String: Any]
        return (json["vectors"] as! [[String: Any]]).map { v in
            Vector(
                id: v["id"] as! String, uds: v["uds"] as! String,
                registrationID: v["registration_id"] as! String,
                mac: v["mac"] as? String, firmwareVersion: v["firmware_version"] as? String,
                bin: v["bin"] as! String, map: v["map"] as! String, elf: v["elf"] as! String,
                aliasCertificate: v["alias_certificate"] as! String,
                deviceCertificate: v["device_certificate"] as! String,
                deviceIDPublicKey: v["device_id_public_key"] as! String,
                aliasPrivateKey: v["alias_private_key"] as! String)
        }
    }()
}
