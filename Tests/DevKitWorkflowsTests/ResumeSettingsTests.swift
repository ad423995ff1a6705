import DevKitModel
import DevKitRegistry
import Crypto
import DevKitSystem
import DevKitTestSupport
@testable import DevKitWorkflows
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

/// The firmware's SHA-256 for the settings is made once per file stamp: a station
/// provisioning board after board does not read and hash the image again each time,
/// and a file that changed (another stamp) is hashed again.
@Suite struct FirmwareDigestCacheTests {
    @Test func oneDigestPerStamp() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("devkit-digest-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/fw.elf"
        func write(_ text: String) throws { try Data(text.utf8).write(to: URL(fileURLWithPath: path)) }
        func sha(_ text: String) -> String { Hex.encode(SHA256.hash(data: Data(text.utf8))) }
        // The files here are seconds old at most: settled at once for the test.
        func digest(_ stamp: FileStamp?) throws -> String { try ProvisionSettings.sha256(ofFile: path, stamp: stamp, settledFor: 0) }

        try write("image one")
        let first = try #require(FileStamp(path: path))
        #expect(try digest(first) == sha("image one"))
        // Asked again for that stamp, the digest is remembered, not read: it comes
        // back even with the file gone. Without a stamp the file is always read.
        try FileManager.default.moveItem(atPath: path, toPath: path + ".away")
        #expect(try digest(first) == sha("image one"))
        #expect(throws: InputFileError.self) { try digest(nil) }
        try FileManager.default.moveItem(atPath: path + ".away", toPath: path)
        let back = try #require(FileStamp(path: path))  // a rename sets the status-change time too
        // Rewritten in place to the same size and given back its modification time
        // (as `cp -p` or an unpacked archive do): the stamp cannot be given back (the
        // status-change time moves on), so the file is hashed again.
        usleep(20_000)
        try write("image two")
        var times = [timespec(tv_sec: back.modifiedSeconds, tv_nsec: back.modifiedNanoseconds),
                     timespec(tv_sec: back.modifiedSeconds, tv_nsec: back.modifiedNanoseconds)]
        #expect(utimensat(AT_FDCWD, path, &times, 0) == 0)
        let second = try #require(FileStamp(path: path))
        #expect(second.inode == back.inode && second.size == back.size && second.modifiedSeconds == back.modifiedSeconds
            && second.modifiedNanoseconds == back.modifiedNanoseconds)
        #expect(second != back)
        #expect(try digest(second) == sha("image two"))
        // Another stamp (a rebuilt image): hashed again.
        try write("image three, longer")
        let third = try #require(FileStamp(path: path))
        #expect(third != second)
        #expect(try digest(third) == sha("image three, longer"))
        // A digest made when the file no longer has the stamp given (it changed after
        // the stamp was taken) is not remembered under that stamp: the caller refuses
        // it, and the next call with that stamp reads the file again.
        let other = dir + "/other.elf"
        try Data("image five".utf8).write(to: URL(fileURLWithPath: other))
        let five = try #require(FileStamp(path: other))
        try Data("image six, longer".utf8).write(to: URL(fileURLWithPath: other))
        #expect(try ProvisionSettings.sha256(ofFile: other, stamp: five, settledFor: 0) == sha("image six, longer"))
        try Data("image seven, longer still".utf8).write(to: URL(fileURLWithPath: other))
        #expect(try ProvisionSettings.sha256(ofFile: other, stamp: five, settledFor: 0) == sha("image seven, longer still"))
    }

    /// A file changed in the last seconds is not remembered: a same-size rewrite in
    /// the timestamps' clock tick could keep its stamp. It is read every time.
    @Test func aFreshFileIsReadEveryTime() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("devkit-digest-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/fw.elf"
        try Data("image one".utf8).write(to: URL(fileURLWithPath: path))
        let stamp = try #require(FileStamp(path: path))
        #expect(!stamp.settled(for: 2) && stamp.settled(for: 0))
        _ = try ProvisionSettings.sha256(ofFile: path, stamp: stamp)
        try FileManager.default.removeItem(atPath: path)
        #expect(throws: InputFileError.self) { try ProvisionSettings.sha256(ofFile: path, stamp: stamp) }
    }
}
