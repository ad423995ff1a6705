import DevKitModel
import Foundation
import GRDB
import Testing

@testable import DevKitRegistry

/// Schema v5: each board's DPS enrollment (issue 13).
@Suite struct EnrollmentRecordTests {
    /// A board through every step; `update` goes with the last commit.
    func doneBoard(_ registry: Registry, update: BoardUpdate = BoardUpdate()) throws -> BoardRecord {
        let id = try #require(try registry.recordNewBoard(uds: udsA, alsoMark: [.udsSent]).id)
        for step in [ProvisioningStep.udsConfirmed, .versionRead, .macRead] { try registry.markStep(step, boardID: id) }
        var update = update
        update.certificateSHA1 = "A1B2"
        return try registry.markSteps([.certificateWritten, .enrollmentWritten], boardID: id, update: update)
    }

    @Test func aVersion4DatabaseOpensAndGetsTheEnrollmentColumns() throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let path = tmp.file("v4.sqlite")
        // The schema and migration log a release-12 devkit (schema v4) left, with a done board.
        let queue = try DatabaseQueue(path: path)
        try queue.write { db in
            try db.execute(sql: """
                CREATE TABLE grdb_migrations (identifier TEXT NOT NULL PRIMARY KEY);
                INSERT INTO grdb_migrations VALUES ('v1: board'), ('v2: board_on_usb_serial'),
                    ('v3: board.superseded_by'), ('v4: board.provision_settings');
                CREATE TABLE board (
                    id INTEGER PRIMARY KEY AUTOINCREMENT, mac TEXT, usb_serial TEXT, registration_id TEXT,
                    firmware_version TEXT, uds TEXT NOT NULL, certificate_sha1 TEXT, certificate_sha256 TEXT,
                    certificate_path TEXT, enrollment_path TEXT,
                    state TEXT NOT NULL CHECK (state IN ('in_progress', 'failed', 'done')), error TEXT,
                    created_at DATETIME NOT NULL, updated_at DATETIME NOT NULL, uds_recorded_at DATETIME,
                    uds_sent_at DATETIME, uds_confirmed_at DATETIME, version_read_at DATETIME, mac_read_at DATETIME,
                    certificate_written_at DATETIME, enrollment_written_at DATETIME,
                    superseded_by INTEGER REFERENCES board(id), provision_settings TEXT);
                CREATE INDEX board_on_mac ON board(mac);
                CREATE INDEX board_on_registration_id ON board(registration_id);
                CREATE INDEX board_on_usb_serial ON board(usb_serial);
                INSERT INTO board (mac, registration_id, firmware_version, uds, certificate_sha1, state,
                    created_at, updated_at, uds_recorded_at, uds_sent_at, uds_confirmed_at, version_read_at,
                    mac_read_at, certificate_written_at, enrollment_written_at)
                VALUES ('a4cf120b9e31', 'az-a4cf120b9e31v1v6v2', '1.6.2', '\(udsAHex.lowercased())', 'A1B2', 'done',
                    '2026-01-02 03:04:05.000', '2026-01-02 03:04:05.000', '2026-01-02 03:04:05.000',
                    '2026-01-02 03:04:05.000', '2026-01-02 03:04:05.000', '2026-01-02 03:04:05.000',
                    '2026-01-02 03:04:05.000', '2026-01-02 03:04:05.000', '2026-01-02 03:04:05.000');
                """)
        }
        try queue.close()

        let registry = try Registry(path: path)
        let old = try #require(try registry.board(id: 1))
        #expect(old.state == .done && old.registrationID == "az-a4cf120b9e31v1v6v2")
        #expect(old.enrollment == nil && !old.isEnrolled && !old.awaitsEnrollment)
        let columns = try DatabaseQueue(path: path).read { db in try db.columns(in: "board").map(\.name) }
        for column in ["enrollment_action", "enrollment_at", "enrollment_dps_host", "enrollment_etag",
                       "enrollment_sha1_thumbprint", "enrollment_error_code", "enrollment_error_message",
                       "enrollment_tracking_id"] {
            #expect(columns.contains(column))
        }
        let migrations = try DatabaseQueue(path: path).read { db in
            try String.fetchAll(db, sql: "SELECT identifier FROM grdb_migrations")
        }
        #expect(migrations.contains("v5: board.enrollment_*"))

        // The old row takes an enrollment like a new one.
        let created = BoardEnrollment(
            action: .created, dpsHost: "my-dps.azure-devices-provisioning.net", etag: "\"1\"", sha1Thumbprint: "A1B2")
        try registry.recordEnrollment(boardID: 1, created)
        let enrolled = try #require(try Registry(path: path).board(id: 1))
        #expect(enrolled.enrollment?.action == .created && enrolled.enrollment?.etag == "\"1\"")
        #expect(enrolled.isEnrolled && !enrolled.awaitsEnrollment)
        #expect(enrolled.state == .done && enrolled.completedSteps == ProvisioningStep.allCases)
    }

    @Test func pendingWithTheCertificateThenTheResult() throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let registry = try Registry(path: tmp.file("r.sqlite"))
        let board = try doneBoard(registry, update: BoardUpdate(enrollment: .pending(dpsHost: "localhost")))
        let id = try #require(board.id)
        // Done, its enrollment owed: `done, not enrolled`.
        #expect(board.state == .done && board.enrollment?.action == .pending)
        #expect(board.awaitsEnrollment && !board.isEnrolled)

        // A network failure: no DPS code, the message kept; the board stays done.
        let down = BoardEnrollment(
            action: .failed, dpsHost: "localhost", errorMessage: "cannot reach DPS: connection refused")
        var row = try registry.recordEnrollment(boardID: id, down)
        #expect(row.state == .done && row.awaitsEnrollment)
        #expect(row.completedSteps == ProvisioningStep.allCases)

        // A refusal keeps DPS's code, message and tracking ID.
        let refused = BoardEnrollment(
            action: .failed, dpsHost: "localhost", errorCode: 401002, errorMessage: "Invalid certificate",
            trackingID: "t-123")
        try registry.recordEnrollment(boardID: id, refused)
        row = try #require(try Registry(path: tmp.file("r.sqlite")).board(id: id))
        #expect(row.enrollment == BoardEnrollment(
            action: .failed, at: row.enrollment!.at, dpsHost: "localhost", errorCode: 401002,
            errorMessage: "Invalid certificate", trackingID: "t-123"))

        // Created: enrolled, with DPS's etag and thumbprint (any case).
        try registry.recordEnrollment(
            boardID: id, BoardEnrollment(action: .created, dpsHost: "localhost", etag: "e1", sha1Thumbprint: "a1b2"))
        row = try #require(try registry.board(id: id))
        #expect(row.isEnrolled && !row.awaitsEnrollment && row.enrollment?.errorCode == nil)

        // A certificate re-issued since (new firmware) is not the enrolled one.
        row = try registry.markSteps(
            [.certificateWritten, .enrollmentWritten], boardID: id, update: BoardUpdate(certificateSHA1: "C3D4"))
        #expect(row.enrollment?.action == .created && !row.isEnrolled && row.awaitsEnrollment)

        // A conflict leaves it not enrolled.
        row = try registry.recordEnrollment(boardID: id, BoardEnrollment(action: .conflict, sha1Thumbprint: "FFFF"))
        #expect(!row.isEnrolled && row.awaitsEnrollment)
    }

    @Test func anUnknownActionInTheDatabaseIsRefusedBySQLite() throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let registry = try Registry(path: tmp.file("r.sqlite"))
        let id = try #require(try doneBoard(registry).id)
        #expect(throws: (any Error).self) {
            try DatabaseQueue(path: tmp.file("r.sqlite")).write { db in
                try db.execute(sql: "UPDATE board SET enrollment_action = 'enrolled' WHERE id = ?", arguments: [id])
            }
        }
    }

    @Test("a fleet's enrollments in one commit: each on its board; a missing board records none")
    func fleetInOneCommit() throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let registry = try Registry(path: tmp.file("r.sqlite"))
        let a = try #require(try doneBoard(registry).id)
        let b = try #require(try doneBoard(registry).id)
        try registry.recordEnrollments([
            (a, BoardEnrollment(action: .created, dpsHost: "dps.example", etag: "\"e1\"", sha1Thumbprint: "A1B2")),
            (b, BoardEnrollment(action: .conflict, dpsHost: "dps.example", errorMessage: "DPS holds another")),
        ])
        #expect(try registry.board(id: a)?.enrollment?.etag == "\"e1\"")
        #expect(try registry.board(id: a)?.isEnrolled == true)
        #expect(try registry.board(id: b)?.enrollment?.action == .conflict)

        #expect(throws: RegistryError.boardNotFound("999")) {
            try registry.recordEnrollments([(a, BoardEnrollment(action: .unchanged)), (999, BoardEnrollment(action: .created))])
        }
        #expect(try registry.board(id: a)?.enrollment?.action == .created, "the transaction was rolled back whole")
    }
}
