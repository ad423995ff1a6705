import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// What a bounded child process did.
struct ListProcessResult {
    /// Exit code, or 128 + signal number when it was killed.
    var status: Int32
    var stdout: String
    var stderr: String
    /// True when the deadline passed and the process group was killed.
    var timedOut: Bool

    var stdoutLines: [String] { stdout.split(separator: "\n").map(String.init) }
}

enum ListTestSupport {
    static let fixtures = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/umockdev")

    /// The `devkit` executable `swift test` built next to the test bundle
    /// (`DEVKIT_BINARY` overrides).
    static var devkitBinary: String {
        if let path = ProcessInfo.processInfo.environment["DEVKIT_BINARY"] { return path }
        let bundle = URL(fileURLWithPath: (try? FileManager.default.destinationOfSymbolicLink(
            atPath: "/proc/self/exe")) ?? CommandLine.arguments[0])
        var directory = bundle.deletingLastPathComponent()
        // The bundle may be a directory (…/devkitPackageTests.xctest/…) on some setups.
        while !directory.path.isEmpty, directory.path != "/" {
            let candidate = directory.appendingPathComponent("devkit").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            directory = directory.deletingLastPathComponent()
        }
        return "devkit"
    }

    /// The first executable named `name` on PATH, or nil.
    static func which(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for directory in path.split(separator: ":") {
            let candidate = "\(directory)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }

    /// Runs `argv` with stdin on /dev/null; see `TestProcess.run`.
    static func run(
        _ argv: [String], environment: [String: String] = [:], timeout: Double
    ) throws -> ListProcessResult {
        try TestProcess.run(argv, environment: environment, timeout: timeout)
    }
}
