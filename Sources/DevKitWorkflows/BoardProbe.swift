import DevKitConsole
import Foundation
import SerialPort
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// What answered at a port when it was probed (`devkit list --probe`).
public enum ProbeOutcome: Sendable, Hashable {
    /// A DevKit: in configuration mode its `version` named a DevKitSDK version
    /// (`versions`); in user or AP mode, what it printed said so (`versions` nil).
    /// Configuration mode with nil versions: its configuration banner came, no prompt.
    case devKit(BoardMode, versions: VersionInfo?)
    /// A prompt answered, but `version` named no DevKitSDK version: another ST board
    /// behind the same ST-LINK USB ID. `reason` as ``ConsoleError/notADevKit(reason:)`` gives it.
    case notADevKit(reason: String)
    /// No prompt and nothing a DevKit prints within the time allowed: `receivedBytes`
    /// came back (0: silence). A quiet sketch in user mode looks the same.
    case noAnswer(receivedBytes: Int)
    /// Another process holds the port (`pid` when it could be found).
    case busy(pid: Int32?)
    /// This user may not open the port; `group` owns serial ports here.
    case permissionDenied(group: String)
    /// Anything else (the port vanished, disconnected, a reply cut short): `summary`
    /// in a few words, `message` the error's full text.
    case failed(summary: String, message: String)
}

/// One port's probe: where, what answered, how long it took.
public struct ProbeResult: Sendable, Hashable {
    public var path: String
    public var outcome: ProbeOutcome
    public var elapsed: Duration

    public init(path: String, outcome: ProbeOutcome, elapsed: Duration) {
        self.path = path
        self.outcome = outcome
        self.elapsed = elapsed
    }
}

/// Confirms what is behind serial ports the way `provision` does before its first
/// `set_` command (``ConsoleSession/synchronize()`` then ``ConsoleSession/identify()``),
/// and nothing more: only `\r` and `version` are ever sent (read-only).
///
/// Every port gets its own thread (the console I/O blocks), so probing many ports
/// takes about as long as the slowest. A port has `timeout` to answer `\r` (a
/// silent one is given up after that), then half as long again for `version`:
/// about 1.5 × `timeout` at most.
///
/// ```swift
/// let probe = BoardProbe(timeout: .seconds(3))
/// for result in probe.probeAll(["/dev/ttyACM0", "/dev/ttyACM1"]) {
///     print(result.path, result.outcome)
/// }
/// ```
public final class BoardProbe: Sendable {
    public let timeout: Duration
    public let baudRate: Int
    /// Wraps each port's transport (e.g. to show the exchange); called on the
    /// probe's thread with the port's path.
    private let wrap: @Sendable (String, any ConsoleTransport) -> any ConsoleTransport
    /// The ports open now (to cancel them), and whether ``cancel()`` was called.
    private let open = PortCancellation()

    public init(
        timeout: Duration, baudRate: Int = SerialPort.defaultBaudRate,
        transport wrap: @escaping @Sendable (String, any ConsoleTransport) -> any ConsoleTransport = { $1 }
    ) {
        precondition(timeout > .zero)
        self.timeout = timeout
        self.baudRate = baudRate
        self.wrap = wrap
    }

    /// Probes every path at once, one thread each; returns when all are done, in
    /// the order given.
    public func probeAll(_ paths: [String]) -> [ProbeResult] {
        let results = Mutex<[Int: ProbeResult]>([:])
        let group = DispatchGroup()
        for (index, path) in paths.enumerated() {
            group.enter()
            let thread = Thread { [self] in
                let result = probe(path)
                results.withLock { $0[index] = result }
                group.leave()
            }
            thread.name = "devkit-probe \(path)"
            thread.start()
        }
        group.wait()
        return results.withLock { all in paths.indices.map { all[$0]! } }
    }

    /// Probes one port (blocking, about 1.5 × ``timeout`` at most).
    public func probe(_ path: String) -> ProbeResult {
        let clock = ContinuousClock()
        let start = clock.now
        let outcome = identify(path)
        return ProbeResult(path: path, outcome: outcome, elapsed: clock.now - start)
    }

    /// Ends every probe in progress at once (their waits throw `cancelled`); a probe
    /// that opens its port after this closes it again without sending. Any thread.
    public func cancel() {
        open.cancel()
    }

    private func identify(_ path: String) -> ProbeOutcome {
        let port: SerialPort
        do {
            port = try SerialPort(path: path, baudRate: baudRate)
        } catch {
            return Self.outcome(of: error)
        }
        let attached = open.attach(port)
        defer {
            // Out of the set before closing: cancel() must not touch a closed port.
            open.detach(port)
            port.close()
        }
        if !attached { return Self.outcome(of: SerialPortError.cancelled) }

        let session = ConsoleSession(transport: wrap(path, port), timeouts: Self.timeouts(for: timeout))
        do {
            try session.synchronize()
            let versions = try session.identify()
            return .devKit(.configuration, versions: versions)
        } catch ConsoleError.wrongMode(let mode) {
            return .devKit(mode, versions: nil)
        } catch ConsoleError.noAnswer(let received) {
            return .noAnswer(receivedBytes: received)
        } catch ConsoleError.notADevKit(let reason) {
            return .notADevKit(reason: reason)
        } catch {
            return Self.outcome(of: error)
        }
    }

    /// The prompt search: three tries of a third of `timeout` each (one `\r` may be
    /// lost while a board boots, as with `synchronize()`'s defaults). `version`:
    /// a quarter for its echo and a quarter for its reply (a DevKit needs ~15 ms).
    static func timeouts(for timeout: Duration) -> ConsoleSession.Timeouts {
        var timeouts = ConsoleSession.Timeouts()
        timeouts.promptAttempts = 3
        timeouts.promptAttempt = timeout / 3
        timeouts.send = timeout / 4
        timeouts.echo = timeout / 4
        timeouts.response = timeout / 4
        return timeouts
    }

    static func outcome(of error: any Error) -> ProbeOutcome {
        switch error {
        case SerialPortError.inUse(_, let pid):
            return .busy(pid: pid)
        case SerialPortError.permissionDenied:
            return .permissionDenied(group: SerialPortError.serialGroup { getgrnam($0) != nil })
        case let error as SerialPortError:
            let summary: String
            switch error {
            case .notFound: summary = "gone"
            case .disconnected: summary = "disconnected"
            case .notATerminal: summary = "not a serial port"
            case .cancelled: summary = "cancelled"
            case .system(let call, _, _): summary = "\(call) failed"
            default: summary = "port error"
            }
            return .failed(summary: summary, message: error.description)
        case ConsoleError.timeout:
            // After a prompt: `version` got no (complete) reply in time.
            return .failed(summary: "no reply to version", message: "\(error)")
        case let error as ConsoleError:
            return .failed(summary: "unexpected reply", message: error.description)
        default:
            return .failed(summary: "error", message: "\(error)")
        }
    }
}
