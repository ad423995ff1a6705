import DevKitTestSupport
import Foundation

typealias BoundedProcessResult = ProcessResult

enum BoundedProcess {
    static let fixtures = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/umockdev")

    /// This test bundle's executable, re-run inside a testbed by the umockdev tests.
    static var testBundle: String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }

    static func which(_ name: String) -> String? { TestProcess.which(name) }

    /// Runs `argv` with stdin on /dev/null; see `TestProcess.run`.
    static func run(
        _ argv: [String], environment: [String: String] = [:], timeout: Double
    ) throws -> BoundedProcessResult {
        try TestProcess.run(argv, environment: environment, timeout: timeout)
    }
}
