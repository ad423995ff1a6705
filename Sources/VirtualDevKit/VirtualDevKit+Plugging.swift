import DevKitModel
import CDevKitLinux
import DevKitSystem
import Foundation
import Synchronization
import SystemPackage
#if canImport(Glibc)
import Glibc
#endif

extension VirtualDevKit {
    // MARK: Plugging

    func plug() throws(VirtualDevKitError) {
        let pty: PseudoTerminal
        let slave: FileDescriptor
        do {
            pty = try PseudoTerminal()
            slave = try pty.openSlave()
        } catch {
            throw .pseudoTerminal(errno: error)
        }
        // Hold the slave open so the line never hangs up between hosts, and make it
        // raw, so even a host that leaves the settings alone sees the board's bytes.
        var t = termios()
        if tcgetattr(slave.rawValue, &t) == 0 {
            cfmakeraw(&t)
            t.c_cflag |= tcflag_t(CLOCAL | CREAD)
            cfsetspeed(&t, speed_t(B115200))
            _ = tcsetattr(slave.rawValue, TCSANOW, &t)
        }
        // Watch for hosts before the link appears: a host that opens the port as soon
        // as the link shows up (as `devkit console` does on replug) must be counted.
        var newWatch: FileDescriptor?
        let watch = inotify_init1(Int32(IN_CLOEXEC | IN_NONBLOCK))
        if watch >= 0,
            inotify_add_watch(watch, pty.slavePath, UInt32(IN_OPEN | IN_CLOSE_WRITE | IN_CLOSE_NOWRITE)) >= 0
        {
            newWatch = FileDescriptor(rawValue: watch)
        } else if watch >= 0 {
            Glibc.close(watch)  // without a watch the board always prints (see emit)
        }
        if let link = configuration.linkPath {
            // Another emulator's link to a live pty (a pts node exists only while its
            // master is open) is not taken over: that emulator would lose its link.
            var buffer = [CChar](repeating: 0, count: 256)
            let n = readlink(link, &buffer, buffer.count - 1)
            if n > 0 {
                let target = String(decoding: buffer[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
                if target.hasPrefix("/dev/pts/"), target != pty.slavePath, access(target, F_OK) == 0 {
                    try? newWatch?.close()
                    try? slave.close()
                    try? pty.master.close()
                    throw .linkInUse(path: link, target: target)
                }
            }
            let temporary = link + ".tmp-\(getpid())"
            unlink(temporary)
            if symlink(pty.slavePath, temporary) != 0 || rename(temporary, link) != 0 {
                let err = Errno(rawValue: errno)
                unlink(temporary)
                try? newWatch?.close()
                try? slave.close()
                try? pty.master.close()
                throw .link(path: link, errno: err)
            }
        }
        self.pty = pty
        self.slaveHold = slave
        hostsOpen = 0
        hostsMaybeGone = false
        hostInputPending = true
        hostWatch = newWatch
        txFreeAt = .now
        wireStart = .now
        shared.withLock {
            $0.devicePath = pty.slavePath
            $0.pluggedIn = true
            $0.receivedAtPlug = $0.received
        }
    }

    func unplugNow() {
        guard let pty else { return }
        // Flag first: a host that sees the hang-up must also see isPluggedIn == false.
        shared.withLock { $0.pluggedIn = false }
        removeLinkIfOurs(pointingAt: pty.slavePath)
        try? slaveHold?.close()
        try? pty.master.close()
        try? hostWatch?.close()
        self.pty = nil
        slaveHold = nil
        hostWatch = nil
        wire.removeAll()
        ring.removeAll(keepingCapacity: true)
        ringArrival.removeAll(keepingCapacity: true)
        ringHead = 0
        bridgeBytes.removeAll()
        bridgeDelivery.removeAll()
        replyEnd = nil
    }

    func removeLinkIfOurs(pointingAt target: String) {
        guard let link = configuration.linkPath else { return }
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink(link, &buffer, buffer.count - 1)
        guard n > 0 else { return }
        let current = String(decoding: buffer[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        if current == target { unlink(link) }
    }
}
