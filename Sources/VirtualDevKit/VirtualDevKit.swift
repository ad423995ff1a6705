import DevKitModel
import CDevKitLinux
import DevKitSystem
import Foundation
import Synchronization
import SystemPackage
#if canImport(Glibc)
import Glibc
#endif

/// An emulated MXChip AZ3166 DevKit on a pseudo-terminal, byte for byte as its
/// firmware's console (the texts are in `Firmware.swift`), for trying devkit without
/// a board and for tests.
///
/// ```swift
/// let kit = try VirtualDevKit(configuration: .init(stateFile: "/tmp/kit.json"))
/// kit.start()
/// let port = try SerialPort(path: kit.devicePath)   // talk to it like a real board
/// ...
/// kit.stop()
/// ```
///
/// The board runs on its own thread. Like the real one it has a 256-byte UART receive
/// ring and no flow control: bytes that arrive while a command runs and do not fit
/// in the ring are lost (counted in ``droppedByteCount``). With
/// ``VirtualDevKitConfiguration/pacingBaudRate`` set, each byte in either direction
/// takes 10/baud seconds, as 8N1 on the wire, and what the board prints reaches the
/// host at the end of the 1 ms USB frame in which it left the line (``usbFrame``).
///
/// As with the real board, what it prints while no host has the port open is lost
/// (not replayed to the next host): a host sends `\r` and waits for the prompt, or
/// opens the port first and then calls ``reset(into:)`` to see the boot output.
///
/// The class is split by concern: the public controls (`VirtualDevKit+Controls`),
/// the board thread and its waits (`+BoardThread`), the output to the host and the
/// secure element (`+BoardHardware`), and plugging the pty in and out (`+Plugging`).
/// The stored state below is shared by those extensions, hence module-internal.
public final class VirtualDevKit: @unchecked Sendable {
    public typealias Configuration = VirtualDevKitConfiguration
    public typealias Mode = VirtualDevKitConfiguration.Mode

    public let configuration: Configuration
    /// What runs in user mode after the boot log (nil: the boot log only).
    let sketch: (any VirtualDevKitSketch)?

    /// The UART receive ring of the board's MCU.
    static let ringCapacity = 256
    /// A USB full-speed frame. The ST-LINK's USB bridge hands the host what its
    /// UART received in bulk packets, not one transfer per byte; with pacing, what
    /// the board printed reaches the host at the end of the frame in which it left
    /// the line. (Byte by byte, 16 boards echoing at once spent most of two cores
    /// on wake-ups that real hardware never causes.)
    static let usbFrame = Duration.milliseconds(1)

    struct Shared {
        var requests: [(Request, DispatchSemaphore?)] = []
        var devicePath = ""
        var state: VirtualDevKitState
        var pluggedIn = false
        var running = false
        var received = 0
        /// Lines the `notADevKit` shell received (what a host sent to a board it must leave alone).
        var shellLines: [String] = []
        /// `received` when the board was last plugged in: the unplug fault counts
        /// from there, so a replugged board takes N bytes again.
        var receivedAtPlug = 0
        var dropped = 0
        var mode: Mode
        var lastError: VirtualDevKitError?
        /// The board thread is blocked waiting for the host with nothing to do.
        var idle = false
        /// USB frame latency added to the last byte of each reply (see `flushBridge`).
        var replyFrameDelay: Duration = .zero
        var replies = 0
    }

    enum Request {
        case stop
        case unplug
        case replug
        case reset(Mode)
    }

    let shared: Mutex<Shared>
    /// Wakes the board thread when a request is queued.
    let control: FileDescriptor
    let finished = DispatchSemaphore(value: 0)
    let idleChanged = NSCondition()

    // Owned by the board thread (or by the caller before start()/after stop()).
    var pty: PseudoTerminal?
    var slaveHold: FileDescriptor?
    /// inotify on the slave node: tells when hosts open and close it.
    var hostWatch: FileDescriptor?
    /// Open host file descriptions on the slave (the board's own hold excluded): exact
    /// after a count, a lower bound after opens (see `watchHosts`).
    var hostsOpen = 0
    /// A host closed the port and none opened it since: no host may be left, and
    /// only a /proc scan can tell (see `settleHosts`).
    var hostsMaybeGone = false
    /// The host may have written since the last read of the master found nothing.
    var hostInputPending = true
    /// The inotify watch may have events: set by the waits that saw it readable
    /// (paced output checks for hosts only then, not with a read per chunk).
    var hostWatchPending = true
    var ring: [UInt8] = []
    /// When each byte in the ring had fully arrived (the board's time for it).
    var ringArrival: [ContinuousClock.Instant] = []
    var ringHead = 0
    var wire: [UInt8] = []
    var wireStart = ContinuousClock.now
    var txFreeAt = ContinuousClock.now
    var commandRunning = false
    /// Where the board's own time stands after a `pause`: the deadline it waited
    /// for, not the moment the OS woke the thread (later, by the timer's latency).
    /// nil after a wait for the host, which has no deadline.
    var resumedAt: ContinuousClock.Instant?
    let byteTime: Duration
    /// Paced output that has left the UART but not yet crossed USB, each byte with
    /// the end of the frame it left the line in, when the host gets it (see `flushBridge`).
    var bridgeBytes: [UInt8] = []
    var bridgeDelivery: [ContinuousClock.Instant] = []
    /// When the last byte a host will see left the line, until the firmware next
    /// waits for the host (then it ends a reply; see `waitForInput`).
    var replyEnd: ContinuousClock.Instant?
    /// The start of USB frame 0; frames follow every ``usbFrame``.
    let frameEpoch = ContinuousClock.now

    /// Creates the board and its pty (so ``devicePath`` is valid at once); it
    /// starts talking after ``start()``.
    /// `sketch` runs at every boot into user mode (e.g. VirtualDevKitDPS's DPS sample).
    public init(configuration: Configuration, sketch: (any VirtualDevKitSketch)? = nil) throws(VirtualDevKitError) {
        self.sketch = sketch
        let mac = configuration.macAddress
        // The board's own spelling only (what it prints): 12 lower-case digits.
        guard (try? MACAddress(mac))?.hex == mac else {
            throw .invalidConfiguration(
                "Invalid MAC address \"\(mac)\": give 12 lower-case hex digits, e.g. a4cf120b9e31.")
        }
        guard (try? FirmwareVersion(configuration.firmwareVersion))?.text == configuration.firmwareVersion else {
            throw .invalidConfiguration(
                "Invalid firmware version \"\(configuration.firmwareVersion)\": give major.minor.patch, e.g. 1.6.2.")
        }
        if let baud = configuration.pacingBaudRate, baud <= 0 {
            throw .invalidConfiguration("Invalid baud rate \(baud): give a positive rate such as 115200.")
        }
        if let n = configuration.faults.unplugAfterReceivedBytes, n < 1 {
            throw .invalidConfiguration("The unplug-after byte count must be at least 1.")
        }
        self.configuration = configuration
        let state =
            if let path = configuration.stateFile { try VirtualDevKitState.load(from: path) } else { VirtualDevKitState() }
        // Written once now: a state file that cannot be written fails here, at start,
        // rather than later as what would look like the board's EEPROM failing.
        if let path = configuration.stateFile { try state.save(to: path) }
        shared = Mutex(Shared(state: state, mode: configuration.mode))
        if let baud = configuration.pacingBaudRate {
            byteTime = .nanoseconds(Int64((10 * 1_000_000_000 / Double(baud)).rounded()))
        } else {
            byteTime = .zero
        }
        do {
            control = try FileDescriptor.eventFD()
        } catch {
            throw .pseudoTerminal(errno: error)
        }
        ring.reserveCapacity(Self.ringCapacity)
        try plug()
    }

    deinit {
        stop()
        try? control.close()
    }
}
