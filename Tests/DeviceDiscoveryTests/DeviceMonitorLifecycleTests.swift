import Foundation
import Testing

@testable import DeviceDiscovery

#if canImport(Glibc)
import Glibc
#endif

/// Whether this machine lets a process open a kernel uevent netlink socket (some
/// sandboxes do not); the lifecycle tests need one, the umockdev tests do not.
let ueventNetlinkAvailable: Bool = {
    let fd = socket(AF_NETLINK, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 15 /* NETLINK_KOBJECT_UEVENT */)
    guard fd >= 0 else { return false }
    close(fd)
    return true
}()

/// Start and stop on the machine's real udev monitor socket: the thread blocked in
/// poll must wake for stop and the stream must end, every time, without events.
@Suite("DeviceMonitor lifecycle on the real netlink socket", .timeLimit(.minutes(5)))
struct DeviceMonitorLifecycleTests {
    @Test("stop() ends the event stream", .enabled(if: ueventNetlinkAvailable, "no netlink socket allowed here"))
    func stopEndsStream() async throws {
        let monitor = try DeviceMonitor()
        let consumer = Task {
            var count = 0
            for try await _ in monitor.events { count += 1 }
            return count
        }
        monitor.stop()
        _ = try await consumer.value  // returns only because the stream finished
        monitor.stop()  // idempotent
    }

    @Test("Cancelling the consuming task ends the iteration; stop() then returns",
          .enabled(if: ueventNetlinkAvailable, "no netlink socket allowed here"))
    func cancellation() async throws {
        let monitor = try DeviceMonitor()
        let consumer = Task {
            for try await _ in monitor.events {}
        }
        consumer.cancel()
        _ = await consumer.result
        monitor.stop()  // joins the thread, which the termination handler woke
    }

    @Test("Many monitors start and stop without leaking descriptors",
          .enabled(if: ueventNetlinkAvailable, "no netlink socket allowed here"))
    func noDescriptorLeak() throws {
        func openDescriptors() -> Int {
            (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? -1
        }
        // One warm-up: libraries may open descriptors once for good.
        try DeviceMonitor().stop()
        let before = openDescriptors()
        for _ in 0..<100 {
            let monitor = try DeviceMonitor()
            monitor.stop()
        }
        // Other tests run in parallel and open descriptors too (the PostgreSQL
        // tests' connections, child processes' pipes): allow slack, but 100 leaked
        // monitors (3 descriptors each) would exceed it.
        #expect(openDescriptors() - before < 120)
    }
}
