import Foundation
import GRDB
import Testing

@testable import DevKitRegistry

@Suite struct RegistryTimestampTests {
    /// Dates from 1900 to 2100, with sub-millisecond fractions, and edges.
    static let dates: [Date] = {
        var generator = SystemRandomNumberGenerator()
        var dates = (0..<20_000).map { _ in
            Date(timeIntervalSince1970: Double.random(in: -2_208_988_800...4_102_444_800, using: &generator))
        }
        dates += [0, -0.0004, 0.0005, 951_782_400, 951_868_799.9996, 1_709_164_800.123, 4_102_444_799.999]
            .map { Date(timeIntervalSince1970: $0) }
        return dates
    }()

    @Test func writesTheTextGRDBWrites() throws {
        var mismatches: [String] = []
        for date in Self.dates {
            let ours = RegistryTimestamp.text(date)
            let grdb = try #require(String.fromDatabaseValue(date.databaseValue))
            if ours != grdb { mismatches.append("\(date.timeIntervalSince1970): \(ours) vs \(grdb)") }
        }
        #expect(mismatches.isEmpty, "\(mismatches.prefix(5))")
    }

    @Test func readsWhatGRDBReads() throws {
        for date in Self.dates.prefix(5000) {
            let text = RegistryTimestamp.text(date)
            let ours = try #require(RegistryTimestamp.date(text))
            let grdb = try #require(Date.fromDatabaseValue(text.databaseValue))
            #expect(abs(ours.timeIntervalSince(grdb)) < 0.000_001, "\(text)")
            // A date read back writes the same text again.
            #expect(RegistryTimestamp.text(ours) == text)
        }
    }

    @Test func knownValues() {
        #expect(RegistryTimestamp.text(Date(timeIntervalSince1970: 0)) == "1970-01-01 00:00:00.000")
        #expect(RegistryTimestamp.text(Date(timeIntervalSince1970: 951_825_600.25)) == "2000-02-29 12:00:00.250")
        #expect(RegistryTimestamp.text(Date(timeIntervalSince1970: -1)) == "1969-12-31 23:59:59.000")
        #expect(RegistryTimestamp.date("2000-02-29 12:00:00.250") == Date(timeIntervalSince1970: 951_825_600.25))
    }

    @Test(arguments: [
        "", "2024-01-01 00:00:00", "2024-01-01T00:00:00.000", "2023-02-29 00:00:00.000",
        "2024-13-01 00:00:00.000", "2024-01-01 24:00:00.000", "2024-01-01 00:60:00.000", "2024-01-0x 00:00:00.000",
    ])
    func leavesOtherTextToGRDB(_ text: String) {
        #expect(RegistryTimestamp.date(text) == nil)
    }

    /// Rows written in GRDB's other date formats (not ours) still read.
    @Test func recordsReadOtherDateFormats() throws {
        let dir = try TempDir()
        defer { dir.cleanup() }
        let registry = try Registry(path: dir.file("r.sqlite"))
        let board = try registry.recordNewBoard(uds: udsA)
        let queue = try DatabaseQueue(path: dir.file("r.sqlite"))
        try queue.write { db in
            try db.execute(sql: "UPDATE board SET created_at = '2024-05-06 07:08:09', uds_sent_at = '2024-05-06T07:08:10.5' WHERE id = ?",
                           arguments: [board.id])
        }
        let read = try #require(try registry.board(id: board.id!))
        #expect(RegistryTimestamp.text(read.createdAt) == "2024-05-06 07:08:09.000")
        #expect(read.udsSentAt.map(RegistryTimestamp.text) == "2024-05-06 07:08:10.500")
    }
}
