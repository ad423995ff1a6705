import DevKitModel

/// What every registry backend does, the same way (issue 16): the SQLite file
/// (``Registry``) and a shared PostgreSQL server (``PostgresRegistry``). Rows,
/// states and sealed secrets are identical; errors are ``RegistryError``s.
/// The workflows and the CLI take `any RegistryStore`, never a backend.
///
/// Requirements carry no default arguments (a protocol cannot); the extension
/// below gives the usual short spellings.
public protocol RegistryStore: AnyObject, Sendable {
    /// Where the registry is, for messages: the SQLite file's path, or the
    /// server's URL (which never holds a password).
    var path: String { get }
    /// The ID of the registry key this handle seals with.
    var keyID: String { get }
    /// The default key file, when opening this handle created it.
    var createdKeyFile: String? { get }

    // MARK: Writing

    @discardableResult
    func recordNewBoard(
        uds: UDS, mac: MACAddress?, usbSerial: String?, registrationID: RegistrationID?,
        firmwareVersion: FirmwareVersion?, provisionSettings: String?, station: String?, alsoMark: [ProvisioningStep]
    ) throws(RegistryError) -> BoardRecord

    @discardableResult
    func markSteps(_ steps: [ProvisioningStep], boardID: Int64, update: BoardUpdate) throws(RegistryError) -> BoardRecord

    /// Marks steps as ``markSteps(_:boardID:update:)`` does, given `board`, the row
    /// as the caller last had it: where the backend can, without reading it again
    /// (see ``PostgresRegistry/markSteps(_:of:update:)``). Returns once committed.
    @discardableResult
    func markSteps(_ steps: [ProvisioningStep], of board: BoardRecord, update: BoardUpdate) throws(RegistryError) -> BoardRecord

    /// Marks steps without waiting for the commit where the backend can (see
    /// ``Registry/markStepsInBackground(_:of:update:committed:)``); `committed` is
    /// called once the mark is committed or has failed.
    @discardableResult
    func markStepsInBackground(
        _ steps: [ProvisioningStep], of board: BoardRecord, update: BoardUpdate,
        committed: @escaping @Sendable (Result<BoardRecord, RegistryError>) -> Void
    ) throws(RegistryError) -> BoardRecord

    @discardableResult
    func markFailed(boardID: Int64, error message: String) throws(RegistryError) -> BoardRecord

    @discardableResult
    func recordEnrollment(boardID: Int64, _ enrollment: BoardEnrollment) throws(RegistryError) -> BoardRecord

    /// Several boards' enrollments in one transaction; a board not found records nothing.
    func recordEnrollments(_ enrollments: [(boardID: Int64, enrollment: BoardEnrollment)]) throws(RegistryError)

    @discardableResult
    func recordVerification(boardID: Int64, _ verification: BoardVerification) throws(RegistryError) -> BoardRecord

    @discardableResult
    func markSuperseded(
        boardID old: Int64, by new: Int64, certificatePath: String?, enrollmentPath: String?
    ) throws(RegistryError) -> BoardRecord

    /// Re-seals every secret under `newKey`; returns how many. This handle keeps the old key.
    @discardableResult
    func rekey(to newKey: RegistryKey) throws(RegistryError) -> Int

    /// Takes `keys` (a board's MAC, its USB serial) for `station` until
    /// ``release(boards:)`` or until this handle's connection ends (a station killed
    /// with -9 frees them), so that two stations never provision one board at once.
    /// Throws ``RegistryError/boardBusy(board:station:)``, taking none, when another
    /// station, or another run (thread) of this one, holds one of them. Claims
    /// nest within a run: the thread holding a key may claim it again (each claim
    /// paired with one release), as a workflow does inside `watch`'s claim of the
    /// same board.
    func claim(boards keys: [String], station: String) throws(RegistryError)
    /// Gives back what ``claim(boards:station:)`` took.
    func release(boards keys: [String])

    // MARK: Reading

    func board(id: Int64) throws(RegistryError) -> BoardRecord?
    func board(byMAC mac: String) throws(RegistryError) -> BoardRecord?
    func board(byUSBSerial usbSerial: String) throws(RegistryError) -> BoardRecord?
    func board(byRegistrationID registrationID: String) throws(RegistryError) -> BoardRecord?
    /// The latest row IDs for a USB serial and for a MAC (any spelling), without
    /// reading (or unsealing) the rows: what ``supersedingRow(of:)`` asks.
    /// `confirmedOnly`: among rows whose board confirmed its UDS (the board holds that
    /// row's UDS, unless a later run sent another): what a listing calls a later row.
    func latestBoardIDs(
        usbSerial: String?, mac: String?, confirmedOnly: Bool
    ) throws(RegistryError) -> (bySerial: Int64?, byMAC: Int64?)
    func board(matching key: String) throws(RegistryError) -> BoardRecord?
    /// Newest first; the thumbprint in any case.
    func boards(withCertificateSHA256 thumbprint: String) throws(RegistryError) -> [BoardRecord]
    func allBoards() throws(RegistryError) -> [BoardRecord]
    func unfinishedBoards() throws(RegistryError) -> [BoardRecord]
}

extension RegistryStore {
    /// A new board recorded with no station.
    @discardableResult
    public func recordNewBoard(
        uds: UDS, mac: MACAddress?, usbSerial: String?, registrationID: RegistrationID?,
        firmwareVersion: FirmwareVersion?, provisionSettings: String?, alsoMark: [ProvisioningStep]
    ) throws(RegistryError) -> BoardRecord {
        try recordNewBoard(
            uds: uds, mac: mac, usbSerial: usbSerial, registrationID: registrationID, firmwareVersion: firmwareVersion,
            provisionSettings: provisionSettings, station: nil, alsoMark: alsoMark)
    }

    /// The latest row IDs for a USB serial and for a MAC, whatever their state.
    public func latestBoardIDs(usbSerial: String?, mac: String?) throws(RegistryError) -> (bySerial: Int64?, byMAC: Int64?) {
        try latestBoardIDs(usbSerial: usbSerial, mac: mac, confirmedOnly: false)
    }

    /// The same among rows whose board confirmed its UDS.
    public func latestConfirmedBoardIDs(usbSerial: String?, mac: String?) throws(RegistryError) -> (bySerial: Int64?, byMAC: Int64?) {
        try latestBoardIDs(usbSerial: usbSerial, mac: mac, confirmedOnly: true)
    }

    /// Finds a board by row id (all digits), MAC, or registration ID, in that order.
    public func board(matching key: String) throws(RegistryError) -> BoardRecord? {
        if !key.isEmpty, key.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), let id = Int64(key),
            let found = try board(id: id)
        {
            return found
        }
        if let mac = try? Registry.normalizeMAC(key), let found = try board(byMAC: mac) {
            return found
        }
        return try board(byRegistrationID: key)
    }

    /// The later row of the same board than `board` (provisioned again since, on
    /// any station: a new row, a new UDS), asked now; nil when `board` is its
    /// latest. Asked under the board's claim, it stays true until the claim is given
    /// back for a board whose USB serial or MAC a provisioning run claims before it
    /// records a row (every DevKit on its ST-LINK; a bare pty with no MAC given is not).
    /// Any later row counts, finished or not, as with `registry reissue`.
    public func supersedingRow(of board: BoardRecord) throws(RegistryError) -> SupersedingRow? {
        let latest = try latestBoardIDs(usbSerial: board.usbSerial, mac: board.mac)
        return board.superseded(latestWithItsUSBSerial: latest.bySerial, latestWithItsMAC: latest.byMAC)
    }
}

/// A later row of a board: the board was provisioned again, and holds that row's UDS.
public struct SupersedingRow: Sendable, Equatable {
    public var boardID: Int64
    /// Found by the board's USB serial (else by its MAC).
    public var sameUSBSerial: Bool
}

extension BoardRecord {
    /// Which of the latest rows for this board's USB serial and for its MAC (in
    /// that order) is later than this one, if either. The one rule for a
    /// superseded row, whether the latest rows come from a listing or from the
    /// registry now.
    public func superseded(latestWithItsUSBSerial bySerial: Int64?, latestWithItsMAC byMAC: Int64?) -> SupersedingRow? {
        guard let id else { return nil }
        if let bySerial, bySerial > id { return SupersedingRow(boardID: bySerial, sameUSBSerial: true) }
        if let byMAC, byMAC > id { return SupersedingRow(boardID: byMAC, sameUSBSerial: false) }
        return nil
    }
}

extension Registry: RegistryStore {
    /// An SQLite registry belongs to one station, so no other station can hold a
    /// board; another run of it can, in this process (a board replugged under a new
    /// node while its first run still holds the old one) or in another one on the
    /// same file (an `autoconfigure` per plugged node, a `provision --resume` beside
    /// a `watch`), and is refused, as on a shared registry. A read-only handle
    /// writes nothing and tells only its own threads apart.
    public func claim(boards keys: [String], station: String) throws(RegistryError) {
        for (index, key) in keys.enumerated() {
            switch claimTable.take(key) {
            case .nested:
                continue
            case .heldByAnotherRun:
                release(boards: Array(keys.prefix(index)))
                throw ClaimTable.busyHere(key, station: station)
            case .fresh:
                do {
                    try claimFiles?.take(key, station: station)
                } catch {
                    claimTable.forget(key)
                    release(boards: Array(keys.prefix(index)))
                    throw error
                }
            }
        }
    }

    public func release(boards keys: [String]) {
        for key in keys { _ = claimTable.give(key, releasingLast: { claimFiles?.give(key) }) }
    }
}
