import DevKitSystem
import Foundation
import SystemPackage
#if canImport(Glibc)
import Glibc
#endif

/// Where the emulator keeps what survives a restart, and the name of each file.
///
/// ```
/// ca.pem                 the CA clients trust (public, 0644)
/// ca-key.pem             its key (0600)
/// server.pem             the TLS server certificate for localhost / 127.0.0.1 (0644)
/// server-key.pem         its key (0600)
/// connection-string      the service connection string; its key is the one the
///                        emulator accepts (0600; the key's only home)
/// state.json             enrollments and device registrations (0600)
/// id-scope               the ID scope devices register under (made on first use)
/// lock                   held by the running emulator (one per directory)
/// ```
public struct EmulatorStateDirectory: Sendable {
    public let path: String

    public init(_ path: String) {
        // Relative paths stay relative to where the emulator was started; printed
        // paths are absolute so that another shell can use them.
        if path.hasPrefix("/") {
            self.path = path
        } else {
            self.path = FileManager.default.currentDirectoryPath + "/" + path
        }
    }

    public var caCertificate: String { path + "/ca.pem" }
    var caKey: String { path + "/ca-key.pem" }
    public var serverCertificate: String { path + "/server.pem" }
    var serverKey: String { path + "/server-key.pem" }
    public var connectionStringFile: String { path + "/connection-string" }
    public var stateFile: String { path + "/state.json" }
    public var idScopeFile: String { path + "/id-scope" }

    /// Holds the directory for this process (flock on `lock`, which the kernel drops
    /// with the process, kill -9 too): two emulators on one directory would each
    /// rewrite state.json from its own memory, and one would lose the other's
    /// enrollments. The descriptor is kept open for the emulator's life.
    func lock() throws(EmulatorSetupError) -> SystemPackage.FileDescriptor {
        let path = self.path + "/lock"
        let fd: SystemPackage.FileDescriptor
        do {
            fd = try SystemPackage.FileDescriptor.open(
                FilePath(path), .readWrite, options: [.create, .closeOnExec], permissions: [.ownerReadWrite])
        } catch {
            let errno = (error as? Errno)?.rawValue ?? EIO
            throw .directory(path: self.path, errno: errno, reason: "cannot open \(path) (\(String(cString: strerror(errno))))")
        }
        do {
            try fd.lockExclusiveNonBlocking()
        } catch {
            try? fd.close()
            if error == .wouldBlock { throw .inUse(path: self.path) }
            throw .directory(path: self.path, errno: error.rawValue, reason: "cannot lock \(path) (\(String(cString: strerror(error.rawValue))))")
        }
        return fd
    }

    /// `$XDG_STATE_HOME/devkit/dps`, else `~/.local/state/devkit/dps` (the XDG base
    /// directory spec's place for state that should persist but is not worth a backup).
    public static func defaultPath(environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        if let state = environment["XDG_STATE_HOME"], state.hasPrefix("/") {
            return state + "/devkit/dps"
        }
        let home = environment["HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? NSHomeDirectory()
        return home + "/.local/state/devkit/dps"
    }

    /// Creates the directory (and its parents) 0700 if it is missing, refuses one
    /// another user owns, and narrows one of ours that others could read to 0700:
    /// it holds the service key.
    func prepare() throws(EmulatorSetupError) {
        do {
            try DurableFile.makeDirectories(path, mode: 0o700)
        } catch {
            throw .directory(path: path, errno: error.errno.rawValue, reason: "cannot create it (\(error.path): \(error.reason))")
        }
        var st = stat()
        guard stat(path, &st) == 0 else {
            throw .directory(path: path, errno: errno, reason: String(cString: strerror(errno)))
        }
        guard st.st_uid == geteuid() else {
            throw .directory(path: path, errno: EPERM, reason: "owned by another user; choose a --state-dir of your own")
        }
        if st.st_mode & 0o077 != 0 {
            // Ours but open to others (made by hand, or by a umask of 0): narrowed,
            // as ssh does with ~/.ssh, rather than refused.
            guard chmod(path, 0o700) == 0 else {
                throw .directory(path: path, errno: errno, reason: "cannot make it private (chmod 700): \(String(cString: strerror(errno)))")
            }
        }
    }
}
