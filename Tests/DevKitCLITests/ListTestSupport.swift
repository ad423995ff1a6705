import DevKitTestSupport
import Foundation

typealias ListProcessResult = ProcessResult

enum ListTestSupport {
    static let fixtures = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/umockdev")

    static var devkitBinary: String { get throws { try TestProcess.devkitBinary } }
    static func which(_ name: String) -> String? { TestProcess.which(name) }

    /// Runs `argv` with stdin on /dev/null; see `TestProcess.run`.
    static func run(
        _ argv: [String], environment: [String: String] = [:], timeout: Double
    ) throws -> ListProcessResult {
        try TestProcess.run(argv, environment: environment, timeout: timeout)
    }
}
