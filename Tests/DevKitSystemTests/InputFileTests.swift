import DevKitSystem
import Dispatch
import Foundation
import SystemPackage
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite struct InputFileTests {
    /// Issue 12 review: `devkit cert --map fifo` with nothing writing to the FIFO
    /// blocked forever in open(2). A named FIFO is refused at once with what it is.
    @Test func aNamedFIFOIsRefusedWithoutWaitingForAWriter() throws {
        var template = Array((NSTemporaryDirectory() + "devkit-input-XXXXXX").utf8CString)
        let dir = String(cString: mkdtemp(&template)!)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let fifo = dir + "/map"
        #expect(mkfifo(fifo, 0o600) == 0)
        let outcome = OutcomeBox()
        let done = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            do throws(InputFileError) { _ = try InputFile.read(fifo, limit: .linkerMap); outcome.set("read") } catch {
                outcome.set(error.reason)
            }
            done.signal()
        }
        if done.wait(timeout: .now() + 5) == .timedOut {
            Issue.record("reading a FIFO without a writer blocked")
            // Let the blocked reader go: a writer that closes at once.
            let w = open(fifo, O_WRONLY)
            if w >= 0 { close(w) }
            done.wait()
            return
        }
        let reason = try #require(outcome.get())
        #expect(reason.contains("FIFO") && reason.contains("regular file"), "\(reason)")
    }

    /// A pipe without a name (`--uds-file <(pass show uds)`, /dev/fd/N) still reads
    /// whole, as standard input does.
    @Test func anAnonymousPipeIsStillRead() throws {
        let (r, w) = try FileDescriptor.closeOnExecPipe()
        defer { try? r.close() }
        try w.writeAll(text: "0123456789abcdef\n")
        try w.close()
        let bytes = try InputFile.read("/dev/fd/\(r.rawValue)", limit: .secret)
        #expect(String(decoding: bytes, as: UTF8.self) == "0123456789abcdef\n")
    }
}

private final class OutcomeBox: @unchecked Sendable {
    private let lock = NSLock()
    private var value: String?
    func set(_ v: String) { lock.withLock { value = v } }
    func get() -> String? { lock.withLock { value } }
}
