import Foundation
import Synchronization
import Testing

@testable import DevKitRegistry

#if canImport(Glibc)
import Glibc
#endif

/// Board claims between processes on one SQLite file (ClaimFiles.swift). Two
/// handles of one file stand for two processes: each has its own claim table and
/// its own lock files' descriptors, and flock tells descriptors apart, not processes.
@Suite struct SQLiteClaimTests {
    func opened(_ tmp: TempDir) throws -> (Registry, Registry) {
        try writeKeyFile(tmp.file("k"), RegistryKey.generate().key.withUnsafeBytes { Array($0) })
        let path = tmp.file("r.sqlite")
        return (try Registry(path: path, key: .file(tmp.file("k"))), try Registry(path: path, key: .file(tmp.file("k"))))
    }

    func entries(_ directory: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).sorted()
    }

    @Test("a board one process claimed is refused to another, naming its station and PID, until released")
    func aBoardIsClaimedByOneProcessAtATime() throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let (first, second) = try opened(tmp)
        let holder = "line-1 (devkit process \(getpid()))"
        try first.claim(boards: ["usb:0672ff", "mac:a4cf120b9e31"], station: "line-1")
        #expect(throws: RegistryError.boardBusy(board: "with MAC a4cf120b9e31", station: holder)) {
            try second.claim(boards: ["mac:a4cf120b9e31"], station: "line-2")
        }
        // Refused on its second key: the first one is not kept either.
        #expect(throws: RegistryError.boardBusy(board: "with USB serial 0672ff", station: holder)) {
            try second.claim(boards: ["usb:other", "usb:0672ff"], station: "line-2")
        }
        try first.claim(boards: ["usb:other"], station: "line-1")
        first.release(boards: ["usb:other"])
        // Nested within the first process: held until its last release.
        try first.claim(boards: ["usb:0672ff"], station: "line-1")
        first.release(boards: ["usb:0672ff"])
        #expect(throws: RegistryError.self) { try second.claim(boards: ["usb:0672ff"], station: "line-2") }
        first.release(boards: ["usb:0672ff"])
        try second.claim(boards: ["usb:0672ff"], station: "line-2")
        #expect(throws: RegistryError.boardBusy(board: "with USB serial 0672ff", station: "line-2 (devkit process \(getpid()))")) {
            try first.claim(boards: ["usb:0672ff"], station: "line-1")
        }
        // Only what is held now is in the directory.
        let directory = tmp.file("r.sqlite-claims")
        #expect(entries(directory) == ["mac-a4cf120b9e31", "usb-0672ff"])
        second.release(boards: ["usb:0672ff"])
        first.release(boards: ["mac:a4cf120b9e31"])
        #expect(entries(directory) == [])
    }

    @Test("a claim's file is named inside the claims directory whatever the USB serial holds")
    func oddKeysStayInTheDirectory() throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let (first, second) = try opened(tmp)
        let key = "usb:../a b/Ü"
        try first.claim(boards: [key], station: "line-1")
        #expect(entries(tmp.file("r.sqlite-claims")) == ["usb-..%2Fa%20b%2F%C3%9C"])
        #expect(throws: RegistryError.self) { try second.claim(boards: [key], station: "line-2") }
        first.release(boards: [key])
        try second.claim(boards: [key], station: "line-2")
        second.release(boards: [key])
        // Too long for a file name once escaped: named by its hash, still one claim.
        let long = "usb:" + String(repeating: "/", count: 126)
        try first.claim(boards: [long], station: "line-1")
        let names = entries(tmp.file("r.sqlite-claims"))
        #expect(names.count == 1 && names[0].hasPrefix("sha256-") && names[0].utf8.count == 71, "\(names)")
        #expect(throws: RegistryError.self) { try second.claim(boards: [long], station: "line-2") }
        first.release(boards: [long])
    }

    @Test("a release removes only its own file; a dropped handle lets its claims go")
    func aReleaseLeavesAnotherProcesssFile() throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let (first, second) = try opened(tmp)
        try first.claim(boards: ["usb:x"], station: "line-1")
        // Someone empties the directory by hand while the first holds the claim: the
        // second takes the board under a new file, which the first's release keeps.
        try FileManager.default.removeItem(atPath: tmp.file("r.sqlite-claims/usb-x"))
        try second.claim(boards: ["usb:x"], station: "line-2")
        first.release(boards: ["usb:x"])
        var third: Registry? = try Registry(path: tmp.file("r.sqlite"), key: .file(tmp.file("k")))
        #expect(throws: RegistryError.boardBusy(board: "with USB serial x", station: "line-2 (devkit process \(getpid()))")) {
            try third!.claim(boards: ["usb:x"], station: "line-3")
        }
        second.release(boards: ["usb:x"])
        try third!.claim(boards: ["usb:x"], station: "line-3")
        third = nil
        try first.claim(boards: ["usb:x"], station: "line-1")
        first.release(boards: ["usb:x"])
        #expect(entries(tmp.file("r.sqlite-claims")) == [])
    }

    @Test("a claims directory that cannot be used is an error that names it, not a board held")
    func anUnusableClaimsDirectoryIsNamed() throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let (first, _) = try opened(tmp)
        #expect(FileManager.default.createFile(atPath: tmp.file("r.sqlite-claims"), contents: Data()))
        #expect(throws: RegistryError.claimFailed(
            path: tmp.file("r.sqlite-claims/usb-x"), reason: String(cString: strerror(ENOTDIR)), errno: ENOTDIR)
        ) {
            try first.claim(boards: ["usb:x"], station: "line-1")
        }
        // Nothing kept: the same run may claim once the directory is usable.
        try FileManager.default.removeItem(atPath: tmp.file("r.sqlite-claims"))
        try first.claim(boards: ["usb:x"], station: "line-1")
        first.release(boards: ["usb:x"])
    }

    @Test("root claiming on a user's registry leaves the claims directory and files to that user",
          .enabled(if: geteuid() == 0, "needs root"))
    func rootGivesTheClaimsToTheRegistrysOwner() throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let (first, _) = try opened(tmp)
        let nobody: uid_t = 65534
        #expect(chown(tmp.file("r.sqlite"), nobody, gid_t(nobody)) == 0)
        let root = try Registry(path: tmp.file("r.sqlite"), key: .file(tmp.file("k")))
        _ = first
        try root.claim(boards: ["usb:x"], station: "line-1")
        var directory = stat(), file = stat()
        #expect(stat(tmp.file("r.sqlite-claims"), &directory) == 0 && directory.st_uid == nobody)
        #expect(stat(tmp.file("r.sqlite-claims/usb-x"), &file) == 0 && file.st_uid == nobody)
        root.release(boards: ["usb:x"])
    }

    @Test("a process killed while holding a claim holds it no more; a read-only handle takes no file")
    func aKilledHoldersClaimIsFree() throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let (first, _) = try opened(tmp)
        let path = tmp.file("r.sqlite-claims/mac-a4cf120b0001")
        try FileManager.default.createDirectory(atPath: tmp.file("r.sqlite-claims"), withIntermediateDirectories: true)
        // Another process holds the file (util-linux's flock(1) on a descriptor that
        // `sleep`, exec'd in the shell's place, keeps), says so, and is killed with -9.
        let holder = Process()
        let said = Pipe()
        holder.executableURL = URL(fileURLWithPath: "/bin/sh")
        holder.arguments = ["-c", "exec 9>\"$0\" && flock --exclusive 9 && echo locked && exec sleep 60", path]
        holder.standardOutput = said
        try holder.run()
        defer { if holder.isRunning { kill(holder.processIdentifier, SIGKILL) } }
        #expect(String(decoding: said.fileHandleForReading.readData(ofLength: 7), as: UTF8.self) == "locked\n")
        // A file that names no one (not written by devkit): refused all the same.
        #expect(throws: RegistryError.boardBusy(
            board: "with MAC a4cf120b0001", station: "unknown (another process on this registry file)")
        ) {
            try first.claim(boards: ["mac:a4cf120b0001"], station: "line-1")
        }
        let readOnly = try Registry(path: tmp.file("r.sqlite"), key: .file(tmp.file("k")), readOnly: true)
        try readOnly.claim(boards: ["mac:a4cf120b0001"], station: "line-2")
        readOnly.release(boards: ["mac:a4cf120b0001"])
        kill(holder.processIdentifier, SIGKILL)
        holder.waitUntilExit()
        try first.claim(boards: ["mac:a4cf120b0001"], station: "line-1")
        first.release(boards: ["mac:a4cf120b0001"])
    }
}

/// A run is its thread, told by a number no later thread gets: the C library hands
/// a finished thread's `pthread_t` to the next one it starts, which must not find
/// itself holding claims a run left behind.
@Suite struct RunIdentityTests {
    /// Runs `body` on a new joined thread; returns its `pthread_t`.
    static func onThread(_ body: @escaping @Sendable () -> Void) -> pthread_t {
        final class Box: @unchecked Sendable { let body: @Sendable () -> Void; init(_ b: @escaping @Sendable () -> Void) { body = b } }
        var thread = pthread_t()
        let box = Unmanaged.passRetained(Box(body)).toOpaque()
        precondition(pthread_create(&thread, nil, { raw in
            let box = Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue()
            box.body()
            return nil
        }, box) == 0)
        pthread_join(thread, nil)
        return thread
    }

    @Test("a claim left by a thread that ended is not handed to a new thread with the same pthread_t")
    func aReusedThreadHandleIsAnotherRun() throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        try writeKeyFile(tmp.file("k"), RegistryKey.generate().key.withUnsafeBytes { Array($0) })
        let registry = try Registry(path: tmp.file("r.sqlite"), key: .file(tmp.file("k")))
        // glibc reuses a joined thread's handle (its cached stack) for the next thread
        // it starts, unless another thread of the test process starts or ends in
        // between: each try pairs a thread that claims and ends with the next one.
        var reused = false
        for attempt in 0..<20 where !reused {
            let key = "usb:left-\(attempt)"
            let left = Self.onThread { try! registry.claim(boards: [key], station: "line-1") }
            let outcome = Mutex<RegistryError?>(nil)
            let thread = Self.onThread {
                do throws(RegistryError) {
                    try registry.claim(boards: [key], station: "line-1")
                    registry.release(boards: [key])
                } catch {
                    outcome.withLock { $0 = error }
                }
            }
            reused = pthread_equal(thread, left) != 0
            #expect(outcome.withLock { $0 } == .boardBusy(
                board: "with USB serial left-\(attempt)", station: "line-1 (another run of this station)"))
        }
        #expect(reused, "the C library gave no new thread the ended thread's handle: the case was not exercised")
    }
}
