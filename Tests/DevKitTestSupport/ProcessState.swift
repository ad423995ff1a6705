import Foundation

/// What the kernel says of process `pid` (`/proc/<pid>/stat`): its state letter
/// (`R`, `S`, `D`, `T` stopped, `Z` exited but not yet reaped, ...), nil once it is
/// gone. Read from the kernel rather than from Foundation's `Process.isRunning`,
/// which changes only when Foundation's own monitor has reaped the child.
public func processState(_ pid: Int32) -> Character? {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
        let close = stat.lastIndex(of: ")"),
        stat.distance(from: close, to: stat.endIndex) > 2
    else { return nil }
    return stat[stat.index(close, offsetBy: 2)]
}

/// Where process `pid`'s threads wait (`/proc/<pid>/task/*/wchan` and state), for
/// a test's failure message when the process does not end.
public func processWaits(_ pid: Int32) -> String {
    let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
    return tasks.sorted().map { tid in
        let wchan = (try? String(contentsOfFile: "/proc/\(pid)/task/\(tid)/wchan", encoding: .utf8)) ?? "?"
        let comm = (try? String(contentsOfFile: "/proc/\(pid)/task/\(tid)/comm", encoding: .utf8))?
            .trimmingCharacters(in: .whitespacesAndNewlines) ?? "?"
        return "\(tid) \(comm) \(processState(Int32(tid) ?? -1).map(String.init) ?? "?") \(wchan.isEmpty ? "-" : wchan)"
    }.joined(separator: "; ")
}
