import CDevKitTestEnvironment
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// The private directory the test process made before main() for its XDG
/// config, data and state directories (`config`, `data`, `state` in it), which every
/// child it starts inherits: tests never touch the developer's
/// `~/.config/devkit/registry.key` or registry. Nil only if it could not be made.
public var testEnvironmentHome: String? { CDevKitTestEnvironment_home().map { String(cString: $0) } }

/// Makes sure the default registry key (`$XDG_CONFIG_HOME/devkit/registry.key`,
/// in ``testEnvironmentHome``) exists before a test runs `devkit`. Test processes and the `devkit` they start
/// share that key; without it, whichever opened a registry first would create it and
/// that one `devkit` run would print the one-time "created the registry key" note,
/// which a test checking its stderr did not expect. Made as devkit makes it (32
/// random bytes as hex, mode 0600, never replacing a file: link(2)).
public let sharedRegistryKeyReady: Void = {
    // Never the real home's: without the test environment there is no shared key.
    guard let home = testEnvironmentHome,
        let base = ProcessInfo.processInfo.environment["XDG_CONFIG_HOME"], base.hasPrefix(home + "/")
    else { return }
    let directory = base + "/devkit"
    let path = directory + "/registry.key"
    if access(path, F_OK) == 0 { return }
    _ = mkdir(base, 0o700)
    _ = mkdir(directory, 0o700)
    var key = [UInt8](repeating: 0, count: 32)
    guard getentropy(&key, key.count) == 0 else { return }
    let text = key.map { String(format: "%02x", $0) }.joined() + "\n"
    let temporary = path + ".\(getpid()).tmp"
    let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
    guard fd >= 0 else { return }
    _ = text.utf8CString.withUnsafeBufferPointer { write(fd, $0.baseAddress, $0.count - 1) }
    _ = fsync(fd)
    close(fd)
    _ = link(temporary, path)  // EEXIST: another test process made it first
    unlink(temporary)
}()
