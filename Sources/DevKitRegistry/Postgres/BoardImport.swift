import DevKitModel
import Foundation
import PostgresNIO

/// What copying a station's SQLite registry into a shared PostgreSQL registry did
/// (`devkit registry migrate --to`).
public struct BoardImport: Sendable, Equatable {
    /// Rows copied now.
    public var copied = 0
    /// Rows already there (the same UDS): copied by an earlier run, nothing to do.
    public var alreadyPresent = 0
    /// Rows not copied because the shared registry has the same board (MAC) with
    /// a UDS this station never recorded: two identities for one board.
    public var conflicts: [Conflict] = []

    public struct Conflict: Sendable, Equatable {
        /// The row in the SQLite file.
        public var sourceID: Int64
        public var mac: String
        /// The newest row of the shared registry with that MAC and another UDS.
        public var existingID: Int64
    }
}

extension PostgresRegistry {
    /// Copies the boards of `source` that are not here yet (the same UDS), keeping
    /// their order, steps and `superseded_by` links. A board whose MAC is already
    /// here with a UDS `source` never recorded is not copied but reported: only a
    /// person can tell which identity the board holds. Running it again copies
    /// nothing. One transaction, the table locked against other writers so that a
    /// station provisioning meanwhile cannot slip a conflicting row in.
    @discardableResult
    public func importBoards(from source: Registry) throws(RegistryError) -> BoardImport {
        let boards = try source.allBoards()
        let sealer = self.sealer
        var sourceUDS: [String: Set<[UInt8]>] = [:]
        for board in boards { if let mac = board.mac { sourceUDS[mac, default: []].insert(board.uds.bytes) } }
        return try transaction { connection in
            _ = try connection.query("LOCK TABLE board IN SHARE ROW EXCLUSIVE MODE").wait()
            try checkKey(connection)
            var known: [[UInt8]: Int64] = [:]
            var byMAC: [String: [(id: Int64, uds: [UInt8])]] = [:]
            for row in try connection.query("SELECT id, mac, uds FROM board ORDER BY id").wait() {
                let cells = row.makeRandomAccess()
                let id = try cells["id"].decode(Int64.self)
                let uds = try sealer.open(try cells["uds"].decode(String.self), boardID: id, column: "uds")
                known[uds] = id
                if let mac = try cells["mac"].decode(String?.self) { byMAC[mac, default: []].append((id, uds)) }
            }
            var result = BoardImport()
            var newID: [Int64: Int64] = [:]
            var copiedIDs = Set<Int64>()
            for var board in boards {
                let oldID = board.id!
                if let id = known[board.uds.bytes] {
                    newID[oldID] = id
                    result.alreadyPresent += 1
                    continue
                }
                if let mac = board.mac,
                    let other = byMAC[mac]?.last(where: { !(sourceUDS[mac]?.contains($0.uds) ?? false) })
                {
                    result.conflicts.append(.init(sourceID: oldID, mac: mac, existingID: other.id))
                    continue
                }
                guard let id = try connection.query("SELECT nextval('board_id_seq') AS id").wait().first
                    .flatMap({ try $0.makeRandomAccess()["id"].decode(Int64.self) })
                else { throw RegistryError.database(path: "", reason: "no id from board_id_seq") }
                newID[oldID] = id
                copiedIDs.insert(oldID)
                board.id = id
                board.supersededBy = nil  // linked below, once every row is in
                let values = zip(BoardRecord.databaseColumns, board.databaseValues).map { column, value in
                    column == "uds" ? PostgresData(string: sealer.sealUDS(board.uds, boardID: id)) : Self.bind(value)
                }
                _ = try connection.query(Self.insertSQL, values).wait()
                result.copied += 1
            }
            for board in boards where copiedIDs.contains(board.id!) {
                guard let old = board.supersededBy, let id = newID[board.id!], let by = newID[old] else { continue }
                _ = try connection.query(
                    "UPDATE board SET superseded_by = $1 WHERE id = $2", [PostgresData(int64: by), PostgresData(int64: id)]
                ).wait()
            }
            return result
        }
    }
}
