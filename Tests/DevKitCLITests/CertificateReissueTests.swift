import DevKitRegistry
import DevKitWorkflows
import Foundation
import Testing

@Suite struct CertificateReissueTests {
    @Test func reissuesEveryBoardWithAMACAndReportsTheOthers() throws {
        let f = try ProvisionFixture()
        defer { f.cleanup() }
        func board(_ mac: String?, id registrationID: String?, version: String = "1.6.2") throws -> Int64 {
            let id = try f.registry.recordNewBoard(uds: f.uds).id!
            for step in ProvisioningStep.allCases.dropFirst() {
                if step == .macRead && mac == nil { break }
                let update: BoardUpdate = switch step {
                case .versionRead: BoardUpdate(firmwareVersion: version)
                case .macRead: BoardUpdate(mac: mac, registrationID: registrationID)
                default: BoardUpdate()
                }
                try f.registry.markStep(step, boardID: id, update: update)
            }
            return id
        }
        let derived = try board("a4cf120b9e31", id: "az-a4cf120b9e31v1v6v2")
        let custom = try board("0123456789ab", id: "bench-7")
        let cut = try board(nil, id: nil)
        let out = f.dir + "/new"
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: false)
        let factory = try recordingMeasurer()(.elf("/new.elf"))
        let items = try CertificateReissue(registry: f.registry, factory: factory)
            .run(firmwareVersion: "1.6.3", outputDirectory: out)
        #expect(items.count == 3)

        let byID = Dictionary(uniqueKeysWithValues: items.map { ($0.boardID, $0.result) })
        let first = try #require(try byID[derived]?.get())
        #expect(first.registrationID == "az-a4cf120b9e31v1v6v3")
        #expect(FileManager.default.contents(atPath: out + "/az-a4cf120b9e31v1v6v3.pem")
                == Data(try factory(f.uds, "az-a4cf120b9e31v1v6v3").pem.utf8))
        let second = try #require(try byID[custom]?.get())
        #expect(second.registrationID == "bench-7")
        if case .failure(let e) = byID[cut] {
            #expect(e.description.contains("--resume \(cut)"))
        } else {
            Issue.record("a board without MAC was reissued")
        }
        let row = try #require(try f.registry.board(id: derived))
        #expect(row.firmwareVersion == "1.6.3")
        #expect(row.registrationID == "az-a4cf120b9e31v1v6v3")
        #expect(row.certificatePath == out + "/az-a4cf120b9e31v1v6v3.pem")
        #expect(row.state == .done)
    }
}
