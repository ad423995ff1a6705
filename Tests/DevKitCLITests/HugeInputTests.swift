import DevKitRegistry
import DevKitTestSupport
import Foundation
import Testing
import VirtualDevKit
#if canImport(Glibc)
import Glibc
#endif

/// Issue 12, item 1: a huge input file (a disk image, a wrong path) is refused with
/// exit 66 and "larger than <limit>", at once, never an allocation failure that
/// aborts the process. Sparse files make a 1 TiB input cost nothing.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct HugeInputTests {
    static let firmware = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/dice-vectors/firmware").path
    static let uds = "19e25a259d0c2be03a02d416c05c48ccd0cc7d1743458aae1cb488b074993eae"

    /// A directory with a 1 TiB and a 100 GiB sparse file (ftruncate: no blocks used) and a UDS file.
    struct Workspace {
        let dir = registryTestDirectory()
        init() throws {
            for (name, size) in [("big", off_t(1) << 40), ("big100", off_t(100) << 30)] {
                let fd = open(dir + "/" + name, O_CREAT | O_WRONLY | O_CLOEXEC, 0o644)
                try #require(fd >= 0)
                defer { close(fd) }
                try #require(ftruncate(fd, size) == 0)
            }
            try (HugeInputTests.uds + "\n").write(toFile: dir + "/u.hex", atomically: false, encoding: .utf8)
        }
        var big: String { dir + "/big" }
        func remove() { try? FileManager.default.removeItem(atPath: dir) }
    }

    /// Runs devkit and checks the refusal: exit 66 (no signal), the limit named, quickly.
    func expectRefused(_ arguments: [String], limit: String, _ ws: Workspace,
                       sourceLocation: SourceLocation = #_sourceLocation) throws {
        let started = Date()
        let r = try TestProcess.run([TestProcess.devkitBinary] + arguments, timeout: 120)
        let seconds = Date().timeIntervalSince(started)
        #expect(r.signal == nil, "killed by signal \(r.signal ?? 0): \(r.stderr.suffix(300))", sourceLocation: sourceLocation)
        #expect(r.status == 66, "exit \(r.status): \(r.stderr.suffix(300))", sourceLocation: sourceLocation)
        #expect(r.stderr.contains("larger than \(limit)"), "\(r.stderr.suffix(300))", sourceLocation: sourceLocation)
        // fstat first: nothing of the file is read, so the refusal is instant.
        #expect(seconds < 5, "took \(seconds) s", sourceLocation: sourceLocation)
    }

    @Test("cert: --elf, --bin, --map, --uds-file and --batch of 1 TiB and 100 GiB")
    func cert() throws {
        let ws = try Workspace()
        defer { ws.remove() }
        let f = Self.firmware, out = ["--output-dir", ws.dir + "/out"]
        let id = ["--registration-id", "x", "--uds-file", ws.dir + "/u.hex"] + out
        for big in [ws.big, ws.dir + "/big100"] {
            try expectRefused(["cert", "--elf", big] + id, limit: "128 MiB", ws)
            try expectRefused(["cert", "--bin", big, "--map", f + "/Tiny.ino.map"] + id, limit: "2 MiB", ws)
            try expectRefused(["cert", "--bin", f + "/Tiny.ino.bin", "--map", big] + id, limit: "32 MiB", ws)
            try expectRefused(["cert", "--elf", f + "/Tiny.ino.elf", "--registration-id", "x", "--uds-file", big] + out,
                              limit: "4 KiB", ws)
            // Read a line at a time: the first "line" of zeros is refused.
            try expectRefused(["cert", "--elf", f + "/Tiny.ino.elf", "--batch", big] + out, limit: "64 KiB", ws)
        }
    }

    @Test("registry reissue: --elf, --bin, --map")
    func reissue() throws {
        let ws = try Workspace()
        defer { ws.remove() }
        _ = try Registry(path: ws.dir + "/r.sqlite")  // reissue reads the firmware once a registry exists
        let f = Self.firmware, common = ["--registry", ws.dir + "/r.sqlite", "--output-dir", ws.dir + "/out"]
        try expectRefused(["registry", "reissue", "--elf", ws.big] + common, limit: "128 MiB", ws)
        try expectRefused(["registry", "reissue", "--bin", ws.big, "--map", f + "/Tiny.ino.map"] + common, limit: "2 MiB", ws)
        try expectRefused(["registry", "reissue", "--bin", f + "/Tiny.ino.bin", "--map", ws.big] + common, limit: "32 MiB", ws)
    }

    @Test("provision: firmware, --uds-file and --wifi-password-file; set-wifi, set-uds, set-connection-string")
    func boardCommands() throws {
        let ws = try Workspace()
        defer { ws.remove() }
        let kit = try startedKit()
        defer { kit.stop() }
        let f = Self.firmware, port = ["--port", kit.devicePath]
        let provision = ["provision"] + port + ["--registry", ws.dir + "/r.sqlite", "--output-dir", ws.dir + "/out"]
        let elf = ["--elf", f + "/Tiny.ino.elf"], udsFile = ["--uds-file", ws.dir + "/u.hex"]
        try expectRefused(provision + ["--elf", ws.big] + udsFile, limit: "128 MiB", ws)
        try expectRefused(provision + ["--bin", ws.big, "--map", f + "/Tiny.ino.map"] + udsFile, limit: "2 MiB", ws)
        try expectRefused(provision + ["--bin", f + "/Tiny.ino.bin", "--map", ws.big] + udsFile, limit: "32 MiB", ws)
        try expectRefused(provision + elf + ["--uds-file", ws.big], limit: "4 KiB", ws)
        try expectRefused(provision + elf + udsFile + ["--wifi-ssid", "lab", "--wifi-password-file", ws.big], limit: "4 KiB", ws)
        try expectRefused(["set-wifi"] + port + ["--ssid", "lab", "--password-file", ws.big], limit: "4 KiB", ws)
        try expectRefused(["set-uds"] + port + ["--uds-file", ws.big], limit: "4 KiB", ws)
        try expectRefused(["set-connection-string"] + port + ["--file", ws.big], limit: "4 KiB", ws)
    }

    @Test("a profile (autoconfigure, watch)")
    func profile() throws {
        let ws = try Workspace()
        defer { ws.remove() }
        try expectRefused(["autoconfigure", "--profile", ws.big, "--port", "/dev/null"], limit: "1 MiB", ws)
        try expectRefused(["watch", "--profile", ws.big], limit: "1 MiB", ws)
    }
}

