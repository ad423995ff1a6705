import DevKitModel
import Foundation
import GRDB
import Testing

@testable import DevKitRegistry

/// Schema v6: each board's last registration check (issue 14).
@Suite struct VerificationRecordTests {
    @Test func anInconclusiveCheckDoesNotReplaceADefinitiveOne() {
        let assigned = BoardVerification(outcome: "assigned", assignedHub: "hub.example", at: Date(timeIntervalSince1970: 1))
        let unauthorized = BoardVerification(outcome: "unauthorized", at: Date(timeIntervalSince1970: 2))
        let timeout = BoardVerification(outcome: "timeout", at: Date(timeIntervalSince1970: 3))
        let later = BoardVerification(outcome: "timeout", at: Date(timeIntervalSince1970: 4))
        #expect(BoardVerification.kept(earlier: assigned, later: timeout) == assigned)
        #expect(BoardVerification.kept(earlier: unauthorized, later: timeout) == unauthorized)
        #expect(BoardVerification.kept(earlier: assigned, later: unauthorized) == unauthorized)
        #expect(BoardVerification.kept(earlier: unauthorized, later: assigned) == assigned)
        #expect(BoardVerification.kept(earlier: nil, later: timeout) == timeout)
        // An inconclusive check over an inconclusive one: the later is the last seen.
        #expect(BoardVerification.kept(earlier: timeout, later: later) == later)
    }

    @Test func aVersion5DatabaseKeepsItsRowsAndGetsTheVerificationColumns() throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let path = tmp.file("v5.sqlite")
        // The schema and migration log a release-13 devkit (schema v5) left: a done,
        // enrolled board and an unfinished one.
        let queue = try DatabaseQueue(path: path)
        try queue.write { db in
            try db.execute(sql: """
                CREATE TABLE grdb_migrations (identifier TEXT NOT NULL PRIMARY KEY);
                INSERT INTO grdb_migrations VALUES ('v1: board'), ('v2: board_on_usb_serial'),
                    ('v3: board.superseded_by'), ('v4: board.provision_settings'), ('v5: board.enrollment_*');
                CREATE TABLE board (
                    id INTEGER PRIMARY KEY AUTOINCREMENT, mac TEXT, usb_serial TEXT, registration_id TEXT,
                    firmware_version TEXT, uds TEXT NOT NULL, certificate_sha1 TEXT, certificate_sha256 TEXT,
                    certificate_path TEXT, enrollment_path TEXT,
                    state TEXT NOT NULL CHECK (state IN ('in_progress', 'failed', 'done')), error TEXT,
                    created_at DATETIME NOT NULL, updated_at DATETIME NOT NULL, uds_recorded_at DATETIME,
                    uds_sent_at DATETIME, uds_confirmed_at DATETIME, version_read_at DATETIME, mac_read_at DATETIME,
                    certificate_written_at DATETIME, enrollment_written_at DATETIME,
                    superseded_by INTEGER REFERENCES board(id), provision_settings TEXT,
                    enrollment_action TEXT CHECK (enrollment_action IN
                        ('pending', 'created', 'updated', 'unchanged', 'conflict', 'failed')),
                    enrollment_at DATETIME, enrollment_dps_host TEXT, enrollment_etag TEXT,
                    enrollment_sha1_thumbprint TEXT, enrollment_error_code INTEGER, enrollment_error_message TEXT,
                    enrollment_tracking_id TEXT);
                CREATE INDEX board_on_mac ON board(mac);
                CREATE INDEX board_on_registration_id ON board(registration_id);
                CREATE INDEX board_on_usb_serial ON board(usb_serial);
                INSERT INTO board (mac, registration_id, firmware_version, uds, certificate_sha1, state,
                    created_at, updated_at, uds_recorded_at, uds_sent_at, uds_confirmed_at, version_read_at,
                    mac_read_at, certificate_written_at, enrollment_written_at, enrollment_action, enrollment_at,
                    enrollment_dps_host, enrollment_etag, enrollment_sha1_thumbprint)
                VALUES ('a4cf120b9e31', 'az-a4cf120b9e31v1v6v2', '1.6.2', '\(udsAHex.lowercased())', 'A1B2', 'done',
                    '2026-01-02 03:04:05.000', '2026-01-02 03:04:05.000', '2026-01-02 03:04:05.000',
                    '2026-01-02 03:04:05.000', '2026-01-02 03:04:05.000', '2026-01-02 03:04:05.000',
                    '2026-01-02 03:04:05.000', '2026-01-02 03:04:05.000', '2026-01-02 03:04:05.000',
                    'created', '2026-01-02 03:05:00.000', 'my-dps.azure-devices-provisioning.net', '"e1"', 'A1B2');
                INSERT INTO board (uds, state, created_at, updated_at, uds_recorded_at)
                VALUES ('\(udsAHex.lowercased())', 'in_progress', '2026-01-03 03:04:05.000', '2026-01-03 03:04:05.000',
                    '2026-01-03 03:04:05.000');
                """)
        }
        try queue.close()

        let registry = try Registry(path: path)
        let rows = try registry.allBoards()
        #expect(rows.count == 2)
        let old = try #require(try registry.board(id: 1))
        #expect(old.state == .done && old.registrationID == "az-a4cf120b9e31v1v6v2" && old.mac == "a4cf120b9e31")
        #expect(old.enrollment?.action == .created && old.enrollment?.etag == "\"e1\"" && old.isEnrolled)
        #expect(old.completedSteps == ProvisioningStep.allCases)
        #expect(old.verification == nil)
        #expect(try registry.board(id: 2)?.state == .inProgress)
        let columns = try DatabaseQueue(path: path).read { db in try db.columns(in: "board").map(\.name) }
        for column in ["verification_outcome", "verification_assigned_hub", "verification_device_id", "verification_at"] {
            #expect(columns.contains(column))
        }
        let migrations = try DatabaseQueue(path: path).read { db in
            try String.fetchAll(db, sql: "SELECT identifier FROM grdb_migrations")
        }
        #expect(migrations.contains("v6: board.verification_*"))

        // The old row takes a verification; nothing else about it changes.
        let at = Date(timeIntervalSince1970: 1_780_000_000)
        try registry.recordVerification(
            boardID: 1, BoardVerification(outcome: "assigned", assignedHub: "hub.example", deviceID: "dev-1", at: at))
        let verified = try #require(try Registry(path: path).board(id: 1))
        #expect(verified.verification == BoardVerification(outcome: "assigned", assignedHub: "hub.example", deviceID: "dev-1", at: at))
        #expect(verified.verification?.registered == true)
        #expect(verified.enrollment == old.enrollment && verified.uds == old.uds && verified.state == .done)

        // A later check replaces it: an outcome without hub or device.
        try registry.recordVerification(boardID: 1, BoardVerification(outcome: "unauthorized"))
        let refused = try #require(try registry.board(id: 1))
        #expect(refused.verification?.outcome == "unauthorized" && refused.verification?.assignedHub == nil)
        #expect(refused.verification?.deviceID == nil && refused.verification?.registered == false)

        // A later inconclusive check (timeout) keeps the definitive one, and its time;
        // a later definitive one replaces it.
        let refusedAt = try #require(refused.verification?.at)
        try registry.recordVerification(boardID: 1, BoardVerification(outcome: "timeout"))
        #expect(try registry.board(id: 1)?.verification == refused.verification)
        #expect(try registry.board(id: 1)?.verification?.at == refusedAt)
        try registry.recordVerification(boardID: 1, BoardVerification(outcome: "assigned", assignedHub: "hub.example"))
        #expect(try registry.board(id: 1)?.verification?.outcome == "assigned")
        #expect(throws: RegistryError.self) { try registry.recordVerification(boardID: 99, BoardVerification(outcome: "timeout")) }

        // A re-issued certificate has not registered yet: the old check is dropped;
        // the same certificate written again keeps it.
        try registry.markSteps([.certificateWritten], boardID: 1, update: BoardUpdate(certificateSHA256: "S1"))
        try registry.recordVerification(boardID: 1, BoardVerification(outcome: "assigned", assignedHub: "hub.example"))
        try registry.markSteps([.certificateWritten], boardID: 1, update: BoardUpdate(certificateSHA256: "S1"))
        #expect(try registry.board(id: 1)?.verification?.outcome == "assigned")
        try registry.markSteps([.certificateWritten], boardID: 1, update: BoardUpdate(certificateSHA256: "S2"))
        #expect(try registry.board(id: 1)?.verification == nil)
        #expect(try registry.board(id: 1)?.certificateSHA256 == "S2")
    }
}
