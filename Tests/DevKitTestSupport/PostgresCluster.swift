import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A throwaway PostgreSQL cluster for the tests: Debian's server binaries
/// (`/usr/lib/postgresql/N/bin`), a data directory and its Unix socket in a
/// temporary directory, no TCP; started on first use by a test process, stopped
/// when it exits. As root (CI), the server runs as the `postgres` user, which
/// initdb requires.
public final class PostgresCluster: Sendable {
    public let directory: String
    let bin: String
    /// Loopback TCP with TLS, for a dedicated cluster that tests `sslmode`.
    public let tls: TLSListener?

    /// Where a TLS cluster listens and the files its TLS uses (readable by the
    /// server's user; the key mode 0600, owned by it).
    public struct TLSListener: Sendable {
        public let port: Int
        public let certificateFile: String
        public let keyFile: String
        public init(port: Int, certificateFile: String, keyFile: String) {
            self.port = port
            self.certificateFile = certificateFile
            self.keyFile = keyFile
        }
    }
    /// `host=` of a URL: the socket's directory.
    public var socketDirectory: String { directory }

    /// The binaries' directory, the newest version installed; nil without the package.
    public static let binaries: String? = {
        let base = "/usr/lib/postgresql"
        let versions = ((try? FileManager.default.contentsOfDirectory(atPath: base)) ?? [])
            .compactMap(Int.init).sorted()
        for version in versions.reversed() where FileManager.default.isExecutableFile(atPath: "\(base)/\(version)/bin/initdb") {
            return "\(base)/\(version)/bin"
        }
        return nil
    }()

    /// In CI the tests must run: a missing server is a failure, not a skip.
    public static let required = ProcessInfo.processInfo.environment["CI"].map { !$0.isEmpty && $0 != "false" } ?? false

    /// Whether PostgreSQL tests run here (see ``required``).
    public static let available = binaries != nil || required

    nonisolated(unsafe) private static var started: PostgresCluster?
    private static let startLock = NSLock()

    /// The cluster of this test process, started on first use.
    public static func shared() throws -> PostgresCluster {
        startLock.lock()
        defer { startLock.unlock() }
        if let cluster = started { return cluster }
        guard let bin = binaries else {
            throw ClusterError("PostgreSQL's server binaries are not installed (/usr/lib/postgresql/*/bin/initdb); "
                + "Scripts/install-deps.sh installs the postgresql package")
        }
        let cluster = try PostgresCluster(bin: bin)
        started = cluster
        atexit { PostgresCluster.started?.stop() }
        return cluster
    }

    /// A cluster of the calling test's own, for a test that stops and starts the
    /// server (the shared one serves tests running meanwhile); ``stop()`` removes it.
    /// With `tls`, it also listens on 127.0.0.1 at `tls.port`, with TLS on.
    public static func dedicated(tls: TLSListener? = nil) throws -> PostgresCluster {
        guard let bin = binaries else {
            throw ClusterError("PostgreSQL's server binaries are not installed (/usr/lib/postgresql/*/bin/initdb)")
        }
        return try PostgresCluster(bin: bin, tls: tls)
    }

    private init(bin: String, tls: TLSListener? = nil) throws {
        self.bin = bin
        self.tls = tls
        var template = Array("/tmp/devkit-pg-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw ClusterError("mkdtemp failed") }
        directory = String(cString: made)
        if getuid() == 0 {
            // initdb refuses root: the server runs as postgres, in a directory it owns.
            guard let user = getpwnam("postgres") else { throw ClusterError("no postgres user to run the server as") }
            _ = chown(directory, user.pointee.pw_uid, user.pointee.pw_gid)
        }
        try run(["\(bin)/initdb", "-D", "\(directory)/data", "-U", "devkit", "--auth=trust", "-E", "UTF8", "--no-sync"])
        if let tls {
            // In the configuration file rather than on the command line, so that a
            // test can turn TLS off (ALTER SYSTEM, then a reload).
            let settings = "ssl = on\nssl_cert_file = '\(tls.certificateFile)'\nssl_key_file = '\(tls.keyFile)'\n"
            guard let file = fopen("\(directory)/data/postgresql.conf", "a") else { throw ClusterError("postgresql.conf") }
            fputs(settings, file)
            fclose(file)
        }
        try startServer()
    }

    /// Starts the server (again).
    public func startServer() throws { try run(startArguments) }

    /// Stops the server the way an administrator restarting it does (`-m fast`:
    /// sessions ended, their transactions rolled back).
    public func stopServer() throws { try run(stopArguments) }

    /// A shell command that stops the server as ``stopServer()`` does and starts it
    /// again, for a test harness that runs commands itself.
    public var restartCommand: String { shellCommand(stopArguments) + " && " + shellCommand(startArguments) }

    private var startArguments: [String] {
        ["\(bin)/pg_ctl", "-D", "\(directory)/data", "-l", "\(directory)/server.log", "-w", "-t", "120",
         "-o", "-k \(directory) " + listening + " -c fsync=off", "start"]
    }

    private var listening: String {
        guard let tls else { return "-c listen_addresses=''" }
        return "-c listen_addresses=127.0.0.1 -p \(tls.port)"
    }

    private var stopArguments: [String] {
        ["\(bin)/pg_ctl", "-D", "\(directory)/data", "-m", "fast", "-w", "-t", "120", "stop"]
    }

    /// `argv` as one shell command, run as postgres when root (initdb's owner).
    private func shellCommand(_ argv: [String], asServer: Bool = true) -> String {
        let quoted = argv.map { "'" + $0.replacingOccurrences(of: "'", with: "'\\''") + "'" }.joined(separator: " ")
        return (asServer && getuid() == 0 ? "/usr/sbin/runuser -u postgres -- " : "") + quoted
    }

    /// Called at exit, where Foundation's Process can no longer wait for a child
    /// (its run loop is gone): a shell (``TestProcess/shell(_:)``).
    public func stop() {
        let prefix = getuid() == 0 ? "/usr/sbin/runuser -u postgres -- " : ""
        TestProcess.shell(prefix + "'\(bin)/pg_ctl' -D '\(directory)/data' -m immediate -w stop >/dev/null 2>&1")
        TestProcess.shell("rm -rf '\(directory)'")
    }

    /// A new, empty database; its name.
    public func createDatabase() throws -> String {
        let name = "t_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(16)
        try run(["\(bin)/createdb", "-h", directory, "-p", port, "-U", "devkit", name], asServer: false)
        return String(name)
    }

    /// The URL of `database` over the socket.
    public func url(_ database: String) -> String {
        "postgresql://devkit@/\(database)?host=\(directory)" + (tls.map { "&port=\($0.port)" } ?? "")
    }

    /// The server's port (its socket is named after it): 5432 unless it listens on TCP.
    private var port: String { tls.map { String($0.port) } ?? "5432" }

    /// One SQL command through psql as the devkit user, outside the code under
    /// test; its output unaligned, without headers, trimmed.
    @discardableResult
    public func sql(_ database: String, _ text: String) throws -> String {
        try run(["\(bin)/psql", "-h", directory, "-p", port, "-U", "devkit", "-d", database, "-tAc", text], asServer: false)
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// `pg_dump` of `database`: what a backup of the server holds.
    public func dump(_ database: String) throws -> String {
        try run(["\(bin)/pg_dump", "-h", directory, "-p", port, "-U", "devkit", database], asServer: false)
    }

    /// Runs a server tool (as postgres when root) and returns its stdout. Through a
    /// shell (``TestProcess/shell(_:)``, which hands down no other descriptor) with
    /// the output in files: with Foundation's Process and pipes, the server pg_ctl
    /// starts kept the output pipe open and the read never ended.
    @discardableResult
    public func run(_ argv: [String], asServer: Bool = true) throws -> String {
        let out = directory + "/.out.\(UUID().uuidString)"
        defer { unlink(out); unlink(out + ".err") }
        let status = TestProcess.shell(shellCommand(argv, asServer: asServer) + " </dev/null >'\(out)' 2>'\(out).err'")
        let stdout = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
        guard status == 0 else {
            let stderr = (try? String(contentsOfFile: out + ".err", encoding: .utf8)) ?? ""
            throw ClusterError("\(argv.joined(separator: " ")) failed (\(status)): \(stderr)")
        }
        return stdout
    }
}

public struct ClusterError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
