import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A user-mode sketch the virtual board runs after its boot log, e.g. the DPS
/// sample (module VirtualDevKitDPS). A protocol so that the board does not depend
/// on what a sketch needs (an HTTP/TLS client): the CLI or a test plugs one in.
public protocol VirtualDevKitSketch: Sendable {
    /// Runs once per boot into user mode; the board cancels the task when it is
    /// reset, unplugged or stopped. What it prints goes through `board`.
    func run(on board: SketchBoard) async
}

/// What a sketch sees of the board: its identity, what the secure element holds,
/// the fault switches, and the serial port to print on (in the firmware's log style).
public struct SketchBoard: Sendable {
    public let macAddress: String
    public let firmwareVersion: String
    /// The secure element's contents at boot.
    public let state: VirtualDevKitState
    public let faults: VirtualDevKitConfiguration.Faults
    public let logStyle: VirtualDevKitConfiguration.LogStyle
    let outbox: SketchOutbox

    /// Plain `printf` text, sent as it is (give the `\r\n`s).
    public func print(_ text: String) { outbox.append(text) }

    /// A `LogInfo` line in the board's log style.
    public func info(_ message: String) { outbox.append(String(decoding: FirmwareText.logInfo(message, style: logStyle), as: UTF8.self)) }

    /// A `LogError` line in the board's log style, with the source place the SDK prints.
    public func error(_ message: String, file: String, function: String, line: Int) {
        outbox.append(String(decoding: FirmwareText.logError(message, file: file, function: function, line: line, style: logStyle), as: UTF8.self))
    }
}

/// Where sketch tasks run: a serial Dispatch queue of their own rather than the
/// concurrency pool. The board runs beside hosts that block pool threads (tests,
/// the CLI's waits); like the board thread, the sketch must progress regardless,
/// and a serial queue gets a thread of its own when the pool's are all blocked.
/// (No library executor fits: NIO's event loops are not task executors in this version.)
final class SketchExecutor: TaskExecutor {
    static let shared = SketchExecutor()
    private let queue = DispatchQueue(label: "devkit.virtual-devkit.sketch")

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        let executor = asUnownedTaskExecutor()
        queue.async { job.runSynchronously(on: executor) }
    }
}

/// Text a sketch task prints, taken by the board thread (which owns the UART).
final class SketchOutbox: Sendable {
    private let pending = Mutex<(text: String, finished: Bool)>(("", false))

    func append(_ text: String) { pending.withLock { $0.text += text } }
    func finish() { pending.withLock { $0.finished = true } }

    /// What was printed since the last call, and whether the sketch has returned.
    func drain() -> (text: String, finished: Bool) {
        pending.withLock { p in
            defer { p.text = "" }
            return p
        }
    }
}
