import Crypto
import DevKitModel
import DevKitSystem
import Foundation
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// The registry key: the 32-byte AES-256 key that seals every secret the registry
/// stores (see ``SecretSealer``), read from a key file of mode 0600.
///
/// The file holds the key as 32 raw bytes, as 64 hex digits, or as base64 text
/// (surrounding white space ignored). ``id`` names the key without revealing it:
/// it is stored with each sealed secret, so a registry says which key opens it.
public struct RegistryKey: Sendable {
    /// 16 lower-case hex digits: the first 8 bytes of the key's SHA-256.
    public let id: String
    /// The key's bytes (SymmetricKey is not Sendable here; making one is cheap).
    private let bytes: [UInt8]
    var key: SymmetricKey { SymmetricKey(data: bytes) }

    public init(bytes: [UInt8]) throws(RegistryError) {
        guard bytes.count == 32 else {
            throw .keyFileInvalid(path: "", reason: "a registry key is 32 bytes, not \(bytes.count)")
        }
        self.bytes = bytes
        id = Hex.encode(SHA256.hash(data: bytes).prefix(8))
    }

    /// A new random key.
    public static func generate() -> RegistryKey {
        let bytes = SymmetricKey(size: .bits256).withUnsafeBytes { Array($0) }
        return try! RegistryKey(bytes: bytes)  // 32 bytes by construction
    }

    /// `$XDG_CONFIG_HOME/devkit/registry.key`, or `~/.config/devkit/registry.key`
    /// when `XDG_CONFIG_HOME` is unset, empty or not absolute (per the XDG spec).
    public static func defaultPath(
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) -> String {
        var base = environment["XDG_CONFIG_HOME"] ?? ""
        if !base.hasPrefix("/") {
            let home = environment["HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? NSHomeDirectory()
            base = (home as NSString).appendingPathComponent(".config")
        }
        return ((base as NSString).appendingPathComponent("devkit") as NSString)
            .appendingPathComponent("registry.key")
    }

    /// Reads the key in `path`. Refuses a symbolic link, anything but a regular
    /// file, a file owned by another user than this one (or root), and a file that
    /// group or others may read: whoever reads the key reads every UDS sealed with
    /// it, and whoever can replace it chooses the key new secrets are sealed with.
    /// Throws ``RegistryError/keyUnavailable(path:reason:neededKeyID:errno:)`` with ENOENT's
    /// text when there is no such file.
    public static func load(path: String) throws(RegistryError) -> RegistryKey {
        // The type is checked before opening: opening a device runs its driver (a
        // tty may hang up, reset a board, or become this process's controlling
        // terminal; a pty whose other end is not ready fails with EIO), so anything
        // but a regular file is refused unopened. fstat below checks the opened file
        // again, in case it was replaced in between.
        var before = stat()
        if lstat(path, &before) == 0 && before.st_mode & S_IFMT != S_IFLNK,
            let refusal = refusal(of: before, path: path, user: geteuid())
        {
            throw refusal
        }
        // O_NOFOLLOW: the link is refused, not followed to whatever it points at now.
        // O_NONBLOCK and O_NOCTTY: whatever replaced the file since lstat opens at
        // once (and is refused below), never blocking devkit or becoming its terminal.
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC)
        guard fd >= 0 else {
            let error = errno
            if error == ELOOP {
                throw .keyFileInvalid(
                    path: path,
                    reason: "it is a symbolic link, which devkit does not follow (whoever can change the link "
                        + "chooses the key); give the file it points to with --key-file, or put the file itself there")
            }
            throw .keyUnavailable(path: path, reason: String(cString: strerror(error)), neededKeyID: nil, errno: error)
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            let error = errno
            throw .keyUnavailable(path: path, reason: String(cString: strerror(error)), neededKeyID: nil, errno: error)
        }
        if let refusal = refusal(of: st, path: path, user: geteuid()) { throw refusal }
        // A key file is at most a few dozen bytes; read a little more to tell a wrong file.
        var bytes = [UInt8](repeating: 0, count: 4096)
        var count = 0
        while count < bytes.count {
            let n = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress! + count, $0.count - count) }
            if n < 0 && errno == EINTR { continue }
            guard n >= 0 else {
                let error = errno
                throw .keyUnavailable(path: path, reason: String(cString: strerror(error)), neededKeyID: nil, errno: error)
            }
            if n == 0 { break }
            count += n
        }
        guard let key = parse(Array(bytes[..<count])) else {
            throw .keyFileInvalid(
                path: path, reason: "it holds neither 32 raw bytes, nor 64 hex digits, nor base64 of 32 bytes")
        }
        return key
    }

    /// Why a key file with this `stat` may not be used by `user`, or nil.
    static func refusal(of st: stat, path: String, user: uid_t) -> RegistryError? {
        guard st.st_mode & S_IFMT == S_IFREG else {
            return .keyFileInvalid(
                path: path,
                reason: "it is not a regular file (\(fileType(st.st_mode)))")
        }
        guard st.st_uid == user || st.st_uid == 0 else {
            return .keyFileInvalid(
                path: path,
                reason: "it belongs to user \(st.st_uid), not to this user (\(user)) or root, and its owner could "
                    + "replace the key; run: chown \(user) \(escaped(path)) (or use a key file of your own)")
        }
        if st.st_mode & 0o077 != 0 { return .keyFileInsecure(path: path, mode: st.st_mode & 0o777) }
        return nil
    }

    private static func fileType(_ mode: mode_t) -> String {
        switch mode & S_IFMT {
        case S_IFDIR: "a directory"
        case S_IFIFO: "a FIFO"
        case S_IFCHR, S_IFBLK: "a device"
        case S_IFSOCK: "a socket"
        default: "not a plain file"
        }
    }

    /// The key in a key file's bytes: 32 raw bytes, 64 hex digits or base64 text.
    static func parse(_ bytes: [UInt8]) -> RegistryKey? {
        if bytes.count == 32 { return try? RegistryKey(bytes: bytes) }
        let isSpace: (UInt8) -> Bool = { $0 == 0x20 || ($0 >= 0x09 && $0 <= 0x0D) }
        guard let first = bytes.firstIndex(where: { !isSpace($0) }),
            let last = bytes.lastIndex(where: { !isSpace($0) })
        else { return nil }
        let text = Array(bytes[first...last])
        if text.count == 64, text.allSatisfy(Hex.isHexDigit) {
            var key = [UInt8]()
            for i in stride(from: 0, to: 64, by: 2) { key.append(Hex.value(text[i])! << 4 | Hex.value(text[i + 1])!) }
            return try? RegistryKey(bytes: key)
        }
        if let decoded = Data(base64Encoded: Data(text)), decoded.count == 32 {
            return try? RegistryKey(bytes: Array(decoded))
        }
        return nil
    }

    /// Writes this key to a new file `path` (mode 0600, as 64 hex digits and a
    /// newline), durably, creating its directory (0700) if needed. Never replaces
    /// an existing file, even in a race: that may be the only copy of a key.
    public func write(to path: String) throws(RegistryError) {
        let directory = parentDirectory(of: path)
        do {
            if !directory.isEmpty { try DurableFile.makeDirectories(directory, mode: 0o700) }
            let text = key.withUnsafeBytes { Hex.encode($0) } + "\n"
            try DurableFile.write(Array(text.utf8), to: path, mode: 0o600, replacing: false)
        } catch {
            throw .keyFileNotWritten(path: path, reason: error.reason, errno: error.errno.rawValue)
        }
    }

    /// The key `source` names, for a registry whose sealed secrets need `neededKeyID`
    /// (nil: it holds none yet). The default file is created when it does not exist,
    /// nothing needs another key and `create` allows it; `created` then says so.
    /// Without `create` (a read-only open) and with nothing sealed, a missing default
    /// file gives a key of no file that nothing is ever sealed with.
    static func resolve(
        _ source: RegistryKeySource, neededKeyID: String?, create: Bool = true
    ) throws(RegistryError) -> (key: RegistryKey, created: Bool) {
        // A key of no file, that the handle's sealer never uses (it withholds).
        if source == .withheld { return (generate(), false) }
        let key: RegistryKey
        do {
            key = try load(path: source.path)
        } catch .keyUnavailable(let path, let reason, _, let error) where error == ENOENT {
            guard case .defaultFile = source, neededKeyID == nil else {
                throw .keyUnavailable(path: path, reason: reason, neededKeyID: neededKeyID, errno: error)
            }
            guard create else { return (generate(), false) }
            let new = generate()
            do {
                try new.write(to: path)
                return (new, true)
            } catch .keyFileNotWritten(_, _, EEXIST) {
                // Another devkit created it first: use theirs.
                return (try load(path: path), false)
            }
        }
        if let needed = neededKeyID, needed != key.id {
            throw .wrongKey(path: source.path, keyID: key.id, neededKeyID: needed)
        }
        return (key, false)
    }
}

/// Where the registry key comes from.
public enum RegistryKeySource: Sendable, Equatable {
    /// A key file the user named (`--key-file`, the profile's `key_file`): it must exist.
    case file(String)
    /// The default key file (``RegistryKey/defaultPath(environment:)``): created
    /// (mode 0600) when it does not exist and the registry holds no sealed secret yet,
    /// so one station needs no setup.
    case defaultFile(String)
    /// No key at all, for a command that shows no secret (`registry list`, and `show`
    /// and `export` without the UDS, given no key file): the rows are read with their
    /// UDS withheld, so someone who may look at the registry but holds no key can.
    /// Only for a handle that reads (nothing can be sealed); its
    /// `keyID` is a throwaway key's, shown nowhere.
    case withheld

    /// The default key file of this environment.
    public static func defaultKey(
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) -> RegistryKeySource {
        .defaultFile(RegistryKey.defaultPath(environment: environment))
    }

    public var path: String {
        switch self {
        case .file(let path), .defaultFile(let path): path
        case .withheld: ""
        }
    }
}
