import SystemPackage
#if canImport(Glibc)
import Glibc
#endif

/// Writes all of `text` to a descriptor, for terminal output (the CLI's messages and
/// the console's screen): a failure (a closed terminal) has no one to be reported to.
public func writeAll(_ fd: Int32, _ text: String) {
    writeAll(fd, Array(text.utf8))
}

/// Writes all of `bytes` to a descriptor, for terminal output; see the String form.
public func writeAll(_ fd: Int32, _ bytes: [UInt8]) {
    try? FileDescriptor(rawValue: fd).writeAll(bytes: bytes)
}

/// The width in columns of the terminal on `fd`, for lines redrawn in place (a line
/// that wraps throws the cursor arithmetic off); 80 when the terminal does not say
/// (a fresh pseudo-terminal reports 0).
public func terminalColumns(_ fd: Int32) -> Int {
    var size = winsize()
    return ioctl(fd, UInt(TIOCGWINSZ), &size) == 0 && size.ws_col > 0 ? Int(size.ws_col) : 80
}
