import DevKitModel
import DevKitRegistry
import DevKitSystem
import Foundation
import Synchronization

/// Re-issues certificates for recorded boards after a firmware update: the
/// firmware is measured once, then every board with a known MAC gets a new
/// `<id>.pem` and `<id>.enrollment.json` from its recorded UDS.
///
/// A board whose registration ID was the derived `az-<mac>v<old version>` gets the
/// derived ID for the new version (that is what the device will present); any
/// other recorded ID is kept. Errors are per board and do not stop the others.
public struct CertificateReissue {
    public let registry: any RegistryStore
    public let factory: CertificateFactory
    /// Where each board's row is claimed before it is read and changed (a shared
    /// registry): held for a batch of boards, until the batched `run`'s `each`
    /// returns (the caller's enrollments of that batch), then given back; nil: no
    /// claims (a caller that holds none).
    public var claims: RowClaims?

    /// - Parameter factory: from the measurer, for the new firmware image.
    public init(registry: any RegistryStore, factory: @escaping CertificateFactory) {
        self.registry = registry
        self.factory = factory
    }

    /// One board's outcome.
    public struct Item: Sendable {
        public var boardID: Int64
        public var result: Result<ProvisionResult, ReissueError>
    }

    public struct ReissueError: Error, Sendable, CustomStringConvertible {
        /// What would let the board be re-issued; the front end says how.
        public enum Remedy: Sendable, Equatable {
            /// Finish the interrupted provisioning of this board first.
            case finishProvisioning(boardID: Int64)
            /// Name the new firmware's version (none is recorded for the board).
            case giveFirmwareVersion
            /// Its files' names hold board `owner`'s certificate: re-issue into another directory.
            case filesOfAnotherBoard(owner: Int64)
            /// Another station holds the board (provisioning it, or changing its row): try again later.
            case busy(station: String)
        }

        /// What happened, in the registry's terms.
        public var description: String
        /// Not a failure: the row is an earlier record of a board provisioned again
        /// later, whose certificate would no longer match what the board holds.
        public var superseded = false
        public var remedy: Remedy?

        public init(description: String, superseded: Bool = false, remedy: Remedy? = nil) {
            self.description = description
            self.superseded = superseded
            self.remedy = remedy
        }
    }

    /// Re-issues for every board that has a MAC, or only `boardIDs` when given.
    /// `firmwareVersion` is the version of the new image (it changes derived IDs);
    /// nil keeps each board's recorded version. `jobs` boards are certified at once
    /// (the registry takes concurrent writers); the items are in the boards' order
    /// whatever `jobs` is.
    /// Without ``claims`` only: with them, a batch's claims are given back before
    /// this returns; the batched form lets a caller act on a batch under them.
    public func run(
        firmwareVersion: FirmwareVersion?, outputDirectory: String, dps: DPSSettings = DPSSettings(),
        boardIDs: [Int64]? = nil, jobs: Int = 1
    ) throws -> [Item] {
        precondition(claims == nil, "a re-issue with claims goes a batch at a time: run(...each:)")
        var items: [Item] = []
        try run(
            firmwareVersion: firmwareVersion, outputDirectory: outputDirectory, dps: dps, boardIDs: boardIDs, jobs: jobs
        ) { items += $0 }
        return items
    }

    /// As ``run(firmwareVersion:outputDirectory:dps:boardIDs:jobs:)``, a batch of
    /// boards at a time: `each` gets every `batch` boards' items, in order, while
    /// their rows are still claimed (``claims``), and the claims are given back when
    /// it returns. So a fleet holds at most `batch` rows' claims at once (each a few
    /// locks of the server's shared lock table, which a whole fleet could fill), and
    /// a caller records what it does with a batch (its enrollments) under them.
    public func run(
        firmwareVersion: FirmwareVersion?, outputDirectory: String, dps: DPSSettings = DPSSettings(),
        boardIDs: [Int64]? = nil, jobs: Int = 1, batch: Int = RowClaims.batch, each: ([Item]) throws -> Void
    ) throws {
        try ProvisionWorkflow.checkOutputDirectory(outputDirectory)
        let all = try registry.allBoards()
        let latest = LatestBoardRecords(all)
        let boards = all.filter { board in
            boardIDs.map { board.id.map($0.contains) ?? false } ?? true
        }
        for range in RowClaims.batches(boards.indices, size: batch) {
            defer { claims?.releaseAll() }
            try each(certify(Array(boards[range]), latest, firmwareVersion, outputDirectory, dps, jobs))
        }
    }

    /// One batch's items, in the boards' order.
    private func certify(
        _ boards: [BoardRecord], _ latest: LatestBoardRecords, _ firmwareVersion: FirmwareVersion?, _ outputDirectory: String,
        _ dps: DPSSettings, _ jobs: Int
    ) -> [Item] {
        func superseded(_ board: BoardRecord, by newer: SupersedingRow) -> ReissueError {
            ReissueError(
                description: "board #\(board.id!) was provisioned again as #\(newer.boardID) (same "
                    + (newer.sameUSBSerial ? "USB serial" : "MAC") + "), which holds its current UDS: skipped",
                superseded: true)
        }
        let item = { (board: BoardRecord) -> Item in
            Item(boardID: board.id!, result: Result { () throws(ReissueError) in
                // As listed (no claim taken for a row known to be old), then as the
                // registry says under the claim: a batch is claimed long after the
                // listing, and another station may have provisioned the board again
                // meanwhile.
                if let newer = latest.newer(than: board) { throw superseded(board, by: newer) }
                // Claimed, then read again: what another station's run changed
                // meanwhile (or is changing: busy) is what counts.
                var current = board
                if let claims {
                    do {
                        try claims.take(board)
                    } catch RegistryError.boardBusy(let what, let station) {
                        throw ReissueError(
                            description: "board #\(board.id!) was not re-issued: board \(escaped(what)) is being provisioned by "
                                + "station \(escaped(station)) right now", remedy: .busy(station: station))
                    } catch {
                        throw ReissueError(description: "\(error)")
                    }
                    do {
                        guard let fresh = try registry.board(id: board.id!) else {
                            throw ReissueError(description: "board #\(board.id!) is no longer in the registry")
                        }
                        if let newer = try registry.supersedingRow(of: fresh) { throw superseded(fresh, by: newer) }
                        current = fresh
                    } catch let e as ReissueError {
                        throw e
                    } catch {
                        throw ReissueError(description: "\(error)")
                    }
                }
                do { return try reissue(current, firmwareVersion, outputDirectory, dps) } catch let e as ReissueError {
                    throw e
                } catch {
                    throw ReissueError(description: "\(error)")
                }
            })
        }
        guard jobs > 1, boards.count > 1 else { return boards.map(item) }
        // Boards whose new files would have the same name check each other's ownership
        // (the second finds the first's files): those go one after another, in order,
        // after the others, so the outcome is the one a single thread gives.
        var byName: [String: Int] = [:]
        let names = boards.map { board in
            (try? target(board, firmwareVersion))?.registrationID.value
        }
        for case let name? in names { byName[name, default: 0] += 1 }
        let shared = names.indices.filter { names[$0].map { byName[$0]! > 1 } ?? false }
        let independent = names.indices.filter { names[$0].map { byName[$0]! == 1 } ?? true }
        let results = Mutex([Item?](repeating: nil, count: boards.count))
        // `item` runs on several threads at once: it only reads what it captured (the
        // registry is Sendable), and each result goes to its own slot.
        let work = UncheckedSendableClosure(item)
        let threads = min(jobs, independent.count)
        runOnThreads(threads) { thread in
            for k in stride(from: thread, to: independent.count, by: threads) {
                let i = independent[k]
                let done = work.body(boards[i])
                results.withLock { $0[i] = done }
            }
        }
        for i in shared {
            let done = item(boards[i])
            results.withLock { $0[i] = done }
        }
        return results.withLock { $0.map { $0! } }
    }

    /// What a board is re-issued as: its registration ID (derived ones follow the new
    /// version), the version and its MAC; throws what keeps it from being re-issued.
    private func target(
        _ board: BoardRecord, _ newVersion: FirmwareVersion?
    ) throws -> (registrationID: RegistrationID, version: FirmwareVersion, mac: MACAddress) {
        let id = board.id!
        // Until the board confirmed it, the recorded UDS may not be the one it holds:
        // a certificate from it could be for a secret the board never stored.
        guard board.udsConfirmedAt != nil else {
            throw ReissueError(
                description: "board #\(id) did not finish provisioning: the board never confirmed its UDS "
                    + "(its next step is \(board.nextStep?.rawValue ?? "uds_confirmed"))",
                remedy: .finishProvisioning(boardID: id))
        }
        guard let recordedMAC = board.mac else {
            throw ReissueError(
                description: "board #\(id) did not finish provisioning: it has no MAC recorded "
                    + "(its next step is \(board.nextStep?.rawValue ?? "mac_read"))",
                remedy: .finishProvisioning(boardID: id))
        }
        let recordedVersion = try board.firmwareVersion.map { v throws(RegistryError) in
            try Registry.parseStored(FirmwareVersion.init, v, board: id)
        }
        guard let version = newVersion ?? recordedVersion else {
            throw ReissueError(description: "board #\(id) has no firmware version recorded", remedy: .giveFirmwareVersion)
        }
        let mac = try Registry.parseStored(MACAddress.init, recordedMAC, board: id)
        func derived(_ version: FirmwareVersion) throws(RegistrationIDError) -> RegistrationID {
            try RegistrationIDScheme.derived.registrationID(mac: mac, usbSerial: nil, firmwareVersion: version)
        }
        let recordedID = try board.registrationID.map { r throws(RegistryError) in
            try Registry.parseStored(RegistrationID.init, r, board: id)
        }
        var registrationID = try recordedID ?? derived(version)
        // A board that had the derived ID of its old version gets the one of its new version.
        if let old = recordedVersion, registrationID == (try? derived(old)) {
            registrationID = try derived(version)
        }
        return (registrationID, version, mac)
    }

    private func reissue(
        _ board: BoardRecord, _ newVersion: FirmwareVersion?, _ outputDirectory: String, _ dps: DPSSettings
    ) throws -> ProvisionResult {
        let id = board.id!
        let (registrationID, version, mac) = try target(board, newVersion)
        // Another row's files are never replaced (nor moved: reissue has no --force).
        let owned = try BoardFileOwnership(registry: registry).owners(
            registrationID: registrationID, outputDirectory: outputDirectory, excluding: id)
        if let other = owned.first, let owner = other.owner.id {
            throw ReissueError(
                description: "board #\(id) was not re-issued: \(other.paths[0]) holds the certificate of board "
                    + "#\(owner) in the registry, and was left as it was",
                remedy: .filesOfAnotherBoard(owner: owner))
        }
        let files = try BoardCertificateFiles.write(
            uds: board.uds, registrationID: registrationID, factory: factory, outputDirectory: outputDirectory, dps: dps)
        // Board-side steps stay as they were: only the host-side outputs are new. One commit.
        try registry.markSteps(
            [.certificateWritten, .enrollmentWritten], boardID: id, update: files.update(firmwareVersion: version))
        return files.result(boardID: id, mac: mac, firmwareVersion: version)
    }
}

/// A closure handed to the re-issue's threads, which only read what it captured.
private struct UncheckedSendableClosure<Input, Output>: @unchecked Sendable {
    let body: (Input) -> Output
    init(_ body: @escaping (Input) -> Output) { self.body = body }
}

/// The latest row for each USB serial and each MAC of a listing, found in one pass
/// (a factory registry may hold thousands of rows). A board provisioned again
/// holds its latest row's UDS. Rows with neither are matched by neither (an
/// emulated board on a bare pty has no USB serial).
public struct LatestBoardRecords {
    var bySerial: [String: Int64] = [:]
    var byMAC: [String: Int64] = [:]

    public init(_ all: [BoardRecord]) {
        for board in all {
            guard let id = board.id else { continue }
            if let serial = board.usbSerial, (bySerial[serial] ?? .min) < id { bySerial[serial] = id }
            if let mac = board.mac, (byMAC[mac] ?? .min) < id { byMAC[mac] = id }
        }
    }

    /// A later row of the same board, as listed.
    public func newer(than board: BoardRecord) -> SupersedingRow? {
        board.superseded(
            latestWithItsUSBSerial: board.usbSerial.flatMap { bySerial[$0] }, latestWithItsMAC: board.mac.flatMap { byMAC[$0] })
    }
}
