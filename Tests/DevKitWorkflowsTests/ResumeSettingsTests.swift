import DevKitModel
import DevKitRegistry
import DevKitTestSupport
import DevKitWorkflows
import Foundation
import Testing
import VirtualDevKit

/// What `--resume` needs is recorded from the firmware as it was measured, and a
/// failure to record it is said, not swallowed.
@Suite(.timeLimit(.minutes(5))) struct ResumeSettingsTests {
    /// Provisions a virtual board (MAC given) from `<fixture>/fw.elf` holding "image
    /// one", measured by `measure(elf path)`; returns the row's recorded settings.
    func provision(
        measure: (String) -> FirmwareMeasurer, events: ((ProvisionEvent) -> Void)? = nil
    ) throws -> (settings: String?, elf: String) {
        let f = try ProvisionFixture()
        defer { f.cleanup() }
        let elf = f.dir + "/fw.elf"
        try Data("image one".utf8).write(to: URL(fileURLWithPath: elf))
        let kit = try startedKit()
        defer { kit.stop() }
        let workflow = ProvisionWorkflow(registry: f.registry, measure: measure(elf)) { events?($0) }
        let result = try withKitSession(kit) { try workflow.run(f.request(mac: "a4cf120b9e31"), session: $0) }
        return (try f.registry.board(id: result.boardID)?.provisionSettings, elf)
    }

    /// A firmware file rewritten while it is measured (a build finishing): its
    /// SHA-256, read again afterwards, would be of other bytes than the certificate
    /// came from. Nothing is recorded for it, and the run says so.
    @Test func aFirmwareFileChangedWhileMeasuredIsNotRecordedAndThatIsSaid() throws {
        var events: [ProvisionEvent] = []
        let (settings, _) = try provision(measure: { elf in
            let inner = recordingMeasurer()
            return { source in
                let factory = try inner(source)
                // The build writes a new image just after devkit read the old one.
                try Data("image two, longer".utf8).write(to: URL(fileURLWithPath: elf))
                return factory
            }
        }, events: { events.append($0) })
        #expect(settings == nil, "\(settings ?? "")")
        #expect(events.contains { $0.message.contains("changed while devkit measured it") && $0.message.contains("--resume") },
                "\(events.map(\.message))")
    }

    /// Unchanged, the recorded SHA-256 is the file's.
    @Test func anUnchangedFirmwareIsRecordedWithItsSHA256() throws {
        let (settings, elf) = try provision(measure: { _ in recordingMeasurer() })
        #expect(settings?.contains("\"\(elf)\":\"b873cce066eb02edb88d8bbb06a2b53fe97b14d93b7af43f88f5c57072a61904\"") == true,
                "SHA-256 of 'image one': \(settings ?? "")")
    }
}
