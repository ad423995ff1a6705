import DevKitRegistry
import Foundation
import Synchronization

extension RegistryStore {
    /// Claims `keys` for a run that reports its progress: a claim refused (a board
    /// another station holds) or failed (the server away) is reported at the
    /// `claim` stage, then thrown; nothing of the board was touched.
    public func claim(
        _ keys: [String], station: String?, boardID: Int64? = nil, reporting report: (ProvisionEvent) -> Void
    ) throws(RegistryError) {
        do {
            try claim(boards: keys, station: station ?? "unnamed")
        } catch {
            report(ProvisionEvent(stage: .claim, status: .failed, message: "\(error)", boardID: boardID, error: error))
            throw error
        }
    }
}

/// The rows a command over many recorded boards holds while it changes them
/// (`registry reissue`, `dps enroll --from-registry`): each taken with
/// ``take(_:)``, a busy one refused alone (the others go on), all given back by
/// ``releaseAll()`` after each ``batch`` of rows. Safe from several threads (a
/// re-issue certifies boards on several).
public final class RowClaims: Sendable {
    /// The most rows a command holds at once. A row is up to three claims, each
    /// a lock in PostgreSQL's shared lock table (64 × max_connections entries by
    /// default, for every session of the server): a fleet claimed whole would fill
    /// it from about 2,000 rows, and every station's claims would then fail.
    /// (`DEVKIT_TEST_CLAIM_BATCH=N`, 1 to 256: a test hook, so a test crosses
    /// batches with a few boards; never more than 256.)
    public static let batch: Int = ProcessInfo.processInfo.environment["DEVKIT_TEST_CLAIM_BATCH"]
        .flatMap { Int($0) }.flatMap { (1...256).contains($0) ? $0 : nil } ?? 256

    /// The batches `indices` are taken in, in order, at most `size` each (the one
    /// home of the batching: each batch's claims are given back before the next).
    public static func batches(_ indices: Range<Int>, size: Int = batch) -> [Range<Int>] {
        stride(from: indices.lowerBound, to: indices.upperBound, by: max(size, 1)).map {
            $0..<min($0 + max(size, 1), indices.upperBound)
        }
    }

    public let registry: any RegistryStore
    public let station: String
    private let held = Mutex<[[String]]>([])

    public init(registry: any RegistryStore, station: String?) {
        self.registry = registry
        self.station = station ?? "unnamed"
    }

    /// Claims `board` (``BoardClaimKeys/recorded(_:)``) until ``releaseAll()``.
    /// - Throws: ``RegistryError/boardBusy(board:station:)`` when another station
    ///   (or run) holds any of it (nothing is then held), or the server's errors.
    public func take(_ board: BoardRecord) throws(RegistryError) {
        let keys = BoardClaimKeys.recorded(board)
        try registry.claim(boards: keys, station: station)
        held.withLock { $0.append(keys) }
    }

    /// How many rows are held now.
    public var count: Int { held.withLock(\.count) }

    /// Gives back every claim taken.
    public func releaseAll() {
        let all = held.withLock { held in
            defer { held.removeAll() }
            return held
        }
        for keys in all { registry.release(boards: keys) }
    }
}
