import Foundation
import Testing
import VirtualDevKit
@testable import DevKitREPL
@testable import DevKitCLI
#if canImport(Glibc)
import Glibc
#endif

/// The console's device link against the virtual DevKit over a real pty: bytes both
/// ways, the unplug reported as an event, the replug noticed and the port reopened.
@Suite("REPL device link")
struct ReplDeviceLinkTests {
    /// Waits (poll on the link's event descriptor, bounded) until `done` says the
    /// events gathered so far are enough.
    private func gather(_ link: ReplDeviceLink, until done: ([ReplDeviceLink.Event]) -> Bool) throws
        -> [ReplDeviceLink.Event]
    {
        var events: [ReplDeviceLink.Event] = []
        let deadline = ContinuousClock.now + .seconds(10)
        while !done(events) {
            let remaining = ContinuousClock.now.duration(to: deadline)
            guard remaining > .zero else {
                Issue.record("no matching event within 10 s; got \(events)")
                throw ReplTmuxTimeout(screen: "\(events)")
            }
            var fd = pollfd(fd: link.eventFD, events: Int16(POLLIN), revents: 0)
            _ = poll(&fd, 1, Int32(remaining.components.seconds * 1000 + 1))
            events += link.takeEvents()
        }
        return events
    }

    private func text(_ events: [ReplDeviceLink.Event]) -> String {
        events.map { if case .data(let bytes) = $0 { String(decoding: bytes, as: UTF8.self) } else { "" } }.joined()
    }

    @Test(.timeLimit(.minutes(5)))
    func unplugAndReplugAreReportedAndThePortReopened() throws {
        let directory = try ReplTemporaryDirectory()
        let path = directory.path + "/devkit0"
        let board = try VirtualDevKit(configuration: .init(linkPath: path))
        board.start()
        defer { board.stop() }
        #expect(board.waitUntilIdle())

        let link = try ReplDeviceLink(path: path, opener: ReplDeviceLink.serialOpener(baudRate: 115_200))
        link.start()
        defer { link.stop() }
        #expect(link.isConnected)

        try link.write(Array("version\r".utf8), deadline: .now + .seconds(2))
        let reply = try gather(link) { text($0).contains("\r\n# ") && text($0).contains("WIFI version") }
        #expect(text(reply).hasPrefix("version\r\nDevKitSDK version: 1.6.2\r\n"))

        board.unplug()
        let gone = try gather(link) { $0.contains { if case .disconnected = $0 { true } else { false } } }
        #expect(!link.isConnected)
        #expect(throws: ReplLinkError.self) { try link.write([0x0D], deadline: .now + .seconds(1)) }
        _ = gone

        try board.replug()
        _ = try gather(link) { $0.contains(.reconnected) }
        #expect(link.isConnected)
        // The reopened port works: the rebooted board answers at its prompt.
        #expect(board.waitUntilIdle())
        try link.write(Array("version\r".utf8), deadline: .now + .seconds(2))
        let again = try gather(link) { text($0).contains("WIFI version") }
        #expect(text(again).contains("DevKitSDK version: 1.6.2"))
    }
}
