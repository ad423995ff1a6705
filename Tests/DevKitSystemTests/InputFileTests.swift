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
        if done.wait(timeout: .now() + 60) == .timedOut {
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

    /// `cert --batch` of a million lines reads one line at a time: lines that straddle
    /// the 64 KiB reads, a CR kept for the caller, a last line without a newline.
    @Test func linesAcrossReadsComeBackWhole() throws {
        var template = Array((NSTemporaryDirectory() + "devkit-lines-XXXXXX").utf8CString)
        let dir = String(cString: mkdtemp(&template)!)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var expected: [String] = []
        for i in 0..<20_000 { expected.append(String(repeating: "x", count: i % 97) + "\(i)" + (i % 5 == 0 ? "\r" : "")) }
        expected.append("")
        expected.append("last")
        try expected.joined(separator: "\n").write(toFile: dir + "/in", atomically: false, encoding: .utf8)
        let lines = try InputLines(dir + "/in", lineLimit: .certBatchLine)
        var read: [String] = []
        while let line = try lines.next() { read.append(String(decoding: line, as: UTF8.self)) }
        #expect(read == expected)
        #expect(try lines.next() == nil)
    }

    /// A "line" longer than the limit (a binary or sparse file) is refused, not held.
    @Test func aLineOverTheLimitIsRefused() throws {
        var template = Array((NSTemporaryDirectory() + "devkit-lines-XXXXXX").utf8CString)
        let dir = String(cString: mkdtemp(&template)!)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try ("short\n" + String(repeating: "y", count: 200_000) + "\nafter\n").write(toFile: dir + "/in", atomically: false, encoding: .utf8)
        let lines = try InputLines(dir + "/in", lineLimit: .certBatchLine)
        #expect(try lines.next().map { Array($0) } == Array("short".utf8))
        #expect(throws: InputFileError.tooLarge(limit: .certBatchLine)) { _ = try lines.next() }
    }

    /// The limit is exact wherever the line ends: a line of 64 KiB is read, one byte
    /// more is refused, with its newline in the same read (that one used to pass: the
    /// length was checked only between reads) or as the file's last line.
    @Test(arguments: ["\n", ""]) func theLimitIsExact(ending: String) throws {
        var template = Array((NSTemporaryDirectory() + "devkit-lines-XXXXXX").utf8CString)
        let dir = String(cString: mkdtemp(&template)!)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let limit = InputLimit.certBatchLine.bytes
        try ("short\n" + String(repeating: "y", count: limit) + "\n" + String(repeating: "z", count: limit + 1) + ending)
            .write(toFile: dir + "/in", atomically: false, encoding: .utf8)
        let lines = try InputLines(dir + "/in", lineLimit: .certBatchLine)
        #expect(try lines.next().map { Array($0) } == Array("short".utf8))
        #expect(try lines.next()?.count == limit)
        #expect(throws: InputFileError.tooLarge(limit: .certBatchLine)) { _ = try lines.next() }
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
