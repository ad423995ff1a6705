import DevKitBoard
import DevKitConsole
import DevKitTestSupport
import DevKitWorkflows
import Foundation
import Testing
import VirtualDevKit

/// Issue 12 item 11: the ST-LINK USB ID 0483:374b is shared by every ST Nucleo and
/// Discovery board. A board that answers `\r` with the same prompt bytes but is not a
/// DevKit gets no `set_` command: it is reported as not a DevKit and left alone.
@Suite(.timeLimit(.minutes(5))) struct IdentityCheckTests {
    @Test func provisionSendsNoSettingToABoardThatIsNotADevKit() throws {
        let f = try ProvisionFixture()
        defer { f.cleanup() }
        let kit = try startedKit(.init(faults: .init(notADevKit: true)))
        defer { kit.stop() }
        let workflow = ProvisionWorkflow(registry: f.registry, measure: recordingMeasurer()) { _ in }
        #expect {
            try withKitSession(kit) { try workflow.run(f.request(wifi: true), session: $0) }
        } throws: { error in
            guard case ConsoleError.notADevKit? = error as? ConsoleError else { return false }
            return true
        }
        #expect(kit.shellLines == ["version"], "only read-only lines reach it: \(kit.shellLines)")
        #expect(!kit.shellLines.contains { $0.hasPrefix("set_") })
        #expect(try f.registry.allBoards().isEmpty, "no UDS is recorded for a board that was left alone")
    }

    @Test func setUDSSendsNothingToABoardThatIsNotADevKit() throws {
        let f = try ProvisionFixture()
        defer { f.cleanup() }
        let kit = try startedKit(.init(faults: .init(notADevKit: true)))
        defer { kit.stop() }
        #expect(throws: ConsoleError.self) {
            try withKitSession(kit) { try DevKitWorkflow(session: $0).setUDS(f.uds) }
        }
        #expect(!kit.shellLines.contains { $0.hasPrefix("set_") }, "\(kit.shellLines)")
    }

    /// `set-uds --generate-uds --save F` against a board that is not a DevKit sent
    /// nothing but left the new UDS in F: a secret that no board holds, under a name
    /// the user will take for the board's. The board is identified before F is written.
    @Test func aGeneratedUDSIsNotSavedForABoardThatIsNotADevKit() throws {
        let f = try ProvisionFixture()
        defer { f.cleanup() }
        let kit = try startedKit(.init(faults: .init(notADevKit: true)))
        defer { kit.stop() }
        let saved = f.dir + "/new.uds"
        #expect(throws: ConsoleError.self) {
            try withKitSession(kit) { try DevKitWorkflow(session: $0).setGeneratedUDS(savingTo: saved) }
        }
        #expect(!kit.shellLines.contains { $0.hasPrefix("set_") }, "\(kit.shellLines)")
        #expect(access(saved, F_OK) != 0, "no UDS file for a board that got none")
    }

    @Test func aDevKitIsIdentified() throws {
        let kit = try startedKit()
        defer { kit.stop() }
        try withKitSession(kit) { session in
            try session.synchronize()
            let versions = try session.identify()
            #expect(session.state == .atPrompt)
            #expect(session.identifiedVersions == versions)
            #expect(versions.firmwareVersion.text == VirtualDevKit.Configuration().firmwareVersion)
        }
    }
}
