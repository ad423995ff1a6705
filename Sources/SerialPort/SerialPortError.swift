import Glibc
import SystemPackage

/// Why a serial port could not be opened, read or written.
///
/// Every case says what happened; ``description`` also says what to do next.
/// No case ever carries data that went over the wire, so errors never leak secrets.
public enum SerialPortError: Error, Equatable, Sendable, CustomStringConvertible {
    /// No device at `path` (not plugged in, or the wrong name).
    case notFound(path: String)
    /// The device exists but this user may not open it (not in the `dialout` group).
    case permissionDenied(path: String)
    /// Another process holds the port; `pid` is that process when it could be found.
    case inUse(path: String, pid: Int32?)
    /// `path` is not a terminal device (a regular file, a directory, ...).
    case notATerminal(path: String)
    /// The device went away: unplugged, reset, or the other end of a pty closed.
    case disconnected(path: String)
    /// ``SerialPort/cancel()`` woke the wait.
    case cancelled
    /// The rate is not one of the standard termios rates (see ``SerialPort/supportedBaudRates``).
    case unsupportedBaudRate(Int)
    /// A write could not hand all bytes to the driver before its deadline
    /// (the device stopped reading: flow-controlled, hung, or far too slow).
    case writeTimedOut(path: String, written: Int, count: Int)
    /// Any other failure of a system call.
    case system(call: String, errno: Errno, path: String)

    public var description: String {
        switch self {
        case .notFound(let path):
            return "No serial device at \(path). Check that the board is plugged in and "
                + "the name is right (ls /dev/ttyACM* /dev/serial/by-id/)."
        case .permissionDenied(let path):
            let group = Self.serialGroup { getgrnam($0) != nil }
            return "Permission denied opening \(path). Add yourself to the \(group) group "
                + "with `sudo usermod -aG \(group) $USER`, then log out and back in "
                + "(or install the devkit udev rule)."
        case .inUse(let path, let pid):
            if let pid {
                return "Serial port \(path) is in use by PID \(pid)\(Self.commandName(of: pid)). "
                    + "Close that program (or stop it with `kill \(pid)`) and try again."
            }
            return "Serial port \(path) is in use by another program. "
                + "Close the other terminal or devkit session on it and try again."
        case .notATerminal(let path):
            return "\(path) is not a serial device. Name the board's tty, e.g. /dev/ttyACM0."
        case .disconnected(let path):
            return "The device on \(path) disconnected. Plug the board back in "
                + "(hold button A and press reset for configuration mode) and try again."
        case .cancelled:
            return "The wait on the port was cancelled: devkit was told to stop (Ctrl-C, SIGTERM)."
        case .unsupportedBaudRate(let rate):
            return "Unsupported baud rate \(rate). Use a standard rate such as \(SerialPort.defaultBaudRate) "
                + "(the DevKit console runs at \(SerialPort.defaultBaudRate))."
        case .writeTimedOut(let path, let written, let count):
            return "Timed out writing to \(path): \(written) of \(count) bytes were sent. "
                + "The device stopped reading; reset the board and try again."
        case .system(let call, let errno, let path):
            return "\(call) failed on \(path): \(errno). Check the device and try again."
        }
    }

    /// " (name)" from /proc/PID/comm, or "" when it cannot be read.
    private static func commandName(of pid: Int32) -> String {
        guard let bytes = try? readSmallFile("/proc/\(pid)/comm") else { return "" }
        let name = String(decoding: bytes, as: UTF8.self)
            .trimmingSuffix(while: { $0 == "\n" })
        return name.isEmpty ? "" : " (\(name))"
    }
}

extension String {
    fileprivate func trimmingSuffix(while predicate: (Character) -> Bool) -> String {
        var s = Substring(self)
        while let last = s.last, predicate(last) { s = s.dropLast() }
        return String(s)
    }
}

extension SerialPortError {
    /// The group that owns serial ports here, from the contents of /etc/group:
    /// `dialout` (Debian, Ubuntu, Fedora, openSUSE), else `uucp` (Arch), else `dialout`.
    /// Scripts/install-udev.sh picks the rule's group the same way.
    public static func serialGroup(etcGroup: String) -> String {
        let names = Set(etcGroup.split(separator: "\n").map { String($0.prefix { $0 != ":" }) })
        return serialGroup(exists: names.contains)
    }

    /// The same, asking `exists` (the message asks the group database, `getgrnam`).
    public static func serialGroup(exists: (String) -> Bool) -> String {
        ["dialout", "uucp"].first(where: exists) ?? "dialout"
    }
}
