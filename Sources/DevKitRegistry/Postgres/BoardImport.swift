import DevKitModel
import Foundation
import PostgresNIO

/// What copying a station's SQLite registry into a shared PostgreSQL registry did
/// (`devkit registry migrate --to`).
public struct BoardImport: Sendable, Equatable {
    /// Rows copied now.
    public var copied = 0
    /// Rows already there (the same UDS, for the same board): copied by an earlier
    /// run, nothing to do.
    public var alreadyPresent = 0
    /// Rows not copied because the shared registry has the same board (its MAC, or
    /// its USB serial) with a UDS this station never recorded: two identities for
    /// one board; or the same UDS for another board.
    public var conflicts: [Conflict] = []

    public struct Conflict: Sendable, Equatable {
        /// The row in the SQLite file.
        public var sourceID: Int64
        /// What the two rows share: the MAC, the USB serial, or the UDS.
        public var by: Key
        /// The MAC or USB serial shared; by `uds`, the other board's MAC or USB
        /// serial (never the UDS itself).
        public var value: String
        /// What `value` is: `by` itself, or by `uds`, `mac` or `usbSerial`.
        public var valueKind: Key
        /// The newest row of the shared registry that conflicts.
        public var existingID: Int64

        public enum Key: String, Sendable {
            case mac, usbSerial = "usb_serial", uds
        }

        /// `valueKind` defaults to `by` (a MAC or USB serial conflict).
        public init(sourceID: Int64, by: Key, value: String, valueKind: Key? = nil, existingID: Int64) {
            self.sourceID = sourceID
            self.by = by
            self.value = value
            self.valueKind = valueKind ?? by
            self.existingID = existingID
        }
    }
}

extension PostgresRegistry {
    /// Copies the boards of `source` that are not here yet (the same UDS), keeping
    /// their order, steps and `superseded_by` links. A board is matched the same way
    /// by each of its keys: one whose MAC, or USB serial, is already here with a UDS
    /// `source` never recorded for it is not copied but reported (only a person can
    /// tell which identity the board holds), and so is a UDS already here for a
    /// board with another MAC or USB serial. Running it again copies
    /// nothing. One transaction, the table locked against other writers so that a
    /// station provisioning meanwhile cannot slip a conflicting row in.
    @discardableResult
    public func importBoards(from source: Registry) throws(RegistryError) -> BoardImport {
        let boards = try source.allBoards()
        let sealer = self.sealer
        // The UDS `source` recorded under each MAC and each USB serial.
        var sourceUDS: [String: Set<[UInt8]>] = [:]
        for board in boards {
            if let mac = board.mac { sourceUDS["mac:" + mac, default: []].insert(board.uds.bytes) }
            if let usb = board.usbSerial { sourceUDS["usb:" + usb, default: []].insert(board.uds.bytes) }
        }
        return try transaction(within: answerTimeout * 10) { connection in
            _ = try connection.statement("LOCK TABLE board IN SHARE ROW EXCLUSIVE MODE").wait()
            try checkKey(connection)
            var known: [[UInt8]: (id: Int64, mac: String?, usb: String?)] = [:]
            var byKey: [String: [(id: Int64, uds: [UInt8])]] = [:]
            for row in try connection.statement("SELECT id, mac, usb_serial, uds FROM board ORDER BY id").wait() {
                let cells = row.makeRandomAccess()
                let id = try cells["id"].decode(Int64.self)
                let uds = try sealer.open(try cells["uds"].decode(String.self), boardID: id, column: "uds")
                let mac = try cells["mac"].decode(String?.self)
                let usb = try cells["usb_serial"].decode(String?.self)
                known[uds] = (id, mac, usb)
                if let mac { byKey["mac:" + mac, default: []].append((id, uds)) }
                if let usb { byKey["usb:" + usb, default: []].append((id, uds)) }
            }
            /// The newest row here under `key` whose UDS `source` never recorded under it.
            func stranger(_ key: String) -> Int64? {
                byKey[key]?.last(where: { !(sourceUDS[key]?.contains($0.uds) ?? false) })?.id
            }
            var result = BoardImport()
            var newID: [Int64: Int64] = [:]
            var copiedIDs = Set<Int64>()
            for var board in boards {
                let oldID = board.id!
                if let there = known[board.uds.bytes] {
                    // The same UDS is the same row only for the same board.
                    if let mac = board.mac, let theirs = there.mac, mac != theirs {
                        result.conflicts.append(
                            .init(sourceID: oldID, by: .uds, value: theirs, valueKind: .mac, existingID: there.id))
                    } else if let usb = board.usbSerial, let theirs = there.usb, usb != theirs {
                        result.conflicts.append(
                            .init(sourceID: oldID, by: .uds, value: theirs, valueKind: .usbSerial, existingID: there.id))
                    } else {
                        newID[oldID] = there.id
                        result.alreadyPresent += 1
                    }
                    continue
                }
                if let mac = board.mac, let other = stranger("mac:" + mac) {
                    result.conflicts.append(.init(sourceID: oldID, by: .mac, value: mac, existingID: other))
                    continue
                }
                if let usb = board.usbSerial, let other = stranger("usb:" + usb) {
                    result.conflicts.append(.init(sourceID: oldID, by: .usbSerial, value: usb, existingID: other))
                    continue
                }
                guard let id = try connection.statement("SELECT nextval('board_id_seq') AS id").wait().first
                    .flatMap({ try $0.makeRandomAccess()["id"].decode(Int64.self) })
                else { throw RegistryError.database(path: "", reason: "no id from board_id_seq") }
                newID[oldID] = id
                copiedIDs.insert(oldID)
                board.id = id
                board.supersededBy = nil  // linked below, once every row is in
                let values = zip(BoardRecord.databaseColumns, board.databaseValues).map { column, value in
                    column == "uds" ? PostgresData(string: sealer.sealUDS(board.uds, boardID: id)) : Self.bind(value)
                }
                _ = try connection.statement(Self.insertSQL, values).wait()
                result.copied += 1
            }
            for board in boards where copiedIDs.contains(board.id!) {
                guard let old = board.supersededBy, let id = newID[board.id!], let by = newID[old] else { continue }
                _ = try connection.statement(
                    "UPDATE board SET superseded_by = $1 WHERE id = $2", [PostgresData(int64: by), PostgresData(int64: id)]
                ).wait()
            }
            return result
        }
    }
}
