#if canImport(Glibc)
import Glibc
#endif

/// Help text shared by the one-shot board commands.
package enum BoardHelp {
    package static let modes = """
        The board must be in configuration mode: hold button A, press and release reset, \
        release A (the screen shows "Configuration"). Without a board, `devkit emulate` \
        starts a virtual one and prints its port.
        """
    package static let exitCodes = """
        Exit codes: 64 invalid input, 66 no such port or secret file unreadable, \
        69 board unplugged or not in configuration mode, 73 cannot write the secret \
        file (set-uds --generate-uds), 74 the board reported an error or bytes were lost, 75 timeout or port in \
        use (try again), 77 permission denied on the port (join the dialout group).
        """
}

/// Step lines ("devkit: storing the UDS…") on stderr when it is a terminal; silent
/// for scripts and pipes, whose output stays the result alone.
package func progressReporter() -> (String) -> Void {
    guard isatty(STDERR_FILENO) == 1, OutputLevel.current != .quiet else { return { _ in } }
    return { step in printError("devkit: \(step)…") }
}
