import SystemPackage

/// Writes all of `text` to a descriptor, for terminal output (the CLI's messages and
/// the console's screen): a failure (a closed terminal) has no one to be reported to.
public func writeAll(_ fd: Int32, _ text: String) {
    writeAll(fd, Array(text.utf8))
}

/// Writes all of `bytes` to a descriptor, for terminal output; see the String form.
public func writeAll(_ fd: Int32, _ bytes: [UInt8]) {
    try? FileDescriptor(rawValue: fd).writeAll(bytes: bytes)
}
