import DevKitModel
import DevKitSystem
import Dispatch
import Foundation
import GRDB
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The record of every board provisioned on this machine: an embedded SQLite
/// database (by default `$XDG_DATA_HOME/devkit/registry.sqlite`).
///
/// Durability is the point of this type. Every write is one transaction in WAL
/// mode, so once a write method returns, a crash of the process (`kill -9`) at any
/// later moment leaves a row that says how far the board got. The write that
/// records a UDS also runs with `synchronous=FULL`: it is fsynced before the
/// method returns, so it survives a power cut too. Later step marks run with
/// `synchronous=NORMAL` (no fsync per commit; synced with the next FULL commit or
/// checkpoint): a power cut may forget the last few marks, which only makes a
/// resume redo steps that are safe to redo, while 16 boards provisioned at once
/// do not queue behind one fsync per step. Marks of steps that are safe to redo can
/// also be committed in the background
/// (``markStepsInBackground(_:of:update:committed:)``): a crash may then lose the
/// ones still queued, with the same consequence. The provisioning workflow calls
/// ``recordNewBoard(uds:mac:usbSerial:registrationID:firmwareVersion:alsoMark:)``
/// *before* sending the UDS to a board, so no board can hold a UDS the registry lacks.
///
/// ```swift
/// let registry = try Registry(path: Registry.defaultPath())
/// var board = try registry.recordNewBoard(uds: uds)
/// board = try registry.markStep(.udsSent, boardID: board.id!)
/// ```
///
/// The directory is created with mode 0700 and the database file with 0600
/// (SQLite gives its `-wal` and `-shm` files the database file's mode).
/// Safe to share between tasks and between processes.
public final class Registry: Sendable {
    /// The database file.
    public let path: String
    let pool: DatabasePool
    /// New boards (their UDS): committed with `synchronous=FULL`.
    private let syncedWrites = GroupCommit()
    /// Step marks and failures: `synchronous=NORMAL`.
    private let writes = GroupCommit()
    /// Seals and opens the secrets (RegistrySealing.swift).
    let sealer: SecretSealer
    /// The ID of the registry key this handle seals with.
    public var keyID: String { sealer.key.id }
    /// The default key file, when this handle created it (the registry held no
    /// sealed secret and there was no key yet): the CLI says so once.
    public let createdKeyFile: String?
    /// Opened with `readOnly`: nothing is written through this handle.
    public let readOnly: Bool
    /// A read-only open found the file still owing the rewrite that drops old
    /// copies of secrets (clear ones, or sealed under a replaced key): the next
    /// writing open (e.g. `devkit registry upgrade`) does it. Always false for a
    /// writing open, which has done it.
    public let owesRewrite: Bool
    /// The tests' view of this handle's file rewrites (nil outside tests).
    let hooks: RewriteHooks?
    /// A read-only open of a file with no schema yet (0 bytes, or a writing open
    /// stopped before it made the tables): reads go to this empty in-memory
    /// registry, so they find no board instead of failing.
    private let blank: DatabaseQueue?
    /// Which run (thread) of this process holds each claimed board (``claim(boards:station:)``).
    let claimTable = ClaimTable()
    /// Which process holds each claimed board, for a writing handle (ClaimFiles.swift).
    let claimFiles: ClaimFiles?

    /// Opens (creating if needed) the registry at `path`, migrating it to the
    /// current schema, with the registry key from `key`. Secrets an older devkit
    /// stored in clear text are sealed on the way, and a rewrite of the file that a
    /// previous open or rekey could not finish is finished (see RegistrySealing.swift).
    ///
    /// With `readOnly`, the file must exist and is neither migrated, sealed nor
    /// rewritten, and no key file is created: for commands that only read. A registry
    /// that still holds clear-text secrets then throws ``RegistryError/needsUpgrade(path:reason:)``,
    /// and one that owes its rewrite says so in ``owesRewrite``. A file with no schema
    /// at all (0 bytes, or an SQLite database without tables) reads as an empty
    /// registry; any other file that is not a devkit registry throws
    /// ``RegistryError/notARegistry(path:reason:)``.
    public convenience init(
        path: String, key: RegistryKeySource = .defaultKey(), readOnly: Bool = false
    ) throws(RegistryError) {
        try self.init(path: path, key: key, readOnly: readOnly, hooks: nil)
    }

    /// The same, with the tests' hooks on the file rewrite.
    init(path: String, key: RegistryKeySource, readOnly: Bool, hooks: RewriteHooks?) throws(RegistryError) {
        // Before anything is created or migrated: nothing could be sealed.
        precondition(readOnly || key != .withheld, "a registry opened for writing needs its key")
        self.path = path
        self.hooks = hooks
        let parent = parentDirectory(of: path)
        let directory = parent.isEmpty ? "." : parent
        var created = false
        if !readOnly {
            // A key file the user named, or the default one when it is there, is checked
            // before a new registry is created: a missing or unusable one left an empty
            // registry file behind its error. (A missing default key is made later.)
            if access(path, F_OK) != 0 {
                switch key {
                case .file(let keyPath): _ = try RegistryKey.load(path: keyPath)
                case .defaultFile(let keyPath) where access(keyPath, F_OK) == 0: _ = try RegistryKey.load(path: keyPath)
                case .defaultFile, .withheld: break
                }
            }
            try Self.makeDirectory(directory)
            created = try Self.createPrivateFile(path)
        }

        var config = Configuration()
        config.readonly = readOnly
        // Wait for another devkit process holding the write lock (e.g. `watch`)
        // rather than failing at once.
        config.busyMode = .timeout(10)
        config.prepareDatabase { db in
            // Step marks: durable against a crash of the process, not synced one by
            // one (see the type's documentation). recordNewBoard raises it to FULL.
            if !readOnly { try db.execute(sql: "PRAGMA synchronous = NORMAL") }
            // Sorting, sealing and VACUUM's copy of the whole file stay in memory: a
            // temporary file would hold clear secrets of an upgrade (or sealed values
            // of the old key during a rekey) outside the registry's file.
            try db.execute(sql: "PRAGMA temp_store = MEMORY")
        }
        if !readOnly && !created {
            // Another program's database is refused before anything is written to
            // it: opening the pool would already switch it to WAL.
            var probeConfig = Configuration()
            probeConfig.readonly = true
            probeConfig.busyMode = .timeout(10)
            let probe: DatabaseQueue
            do {
                probe = try DatabaseQueue(path: path, configuration: probeConfig)
            } catch {
                throw Self.openFailure(path: path, directory: directory, error)
            }
            defer { try? probe.close() }
            _ = try Self.hasNoSchema(probe, path: path)
        }
        let database: DatabasePool
        do {
            database = try DatabasePool(path: path, configuration: config)
            if !readOnly {
                try Self.migrator.migrate(database)
            } else {
                // The first read of a WAL file creates its -wal and -shm files when no
                // run has them open: here, so that a directory this user cannot write
                // gets openFailure's explanation (SQLite says "attempt to write a
                // readonly database").
                _ = try database.read { db in try db.tableExists("board") }
            }
        } catch {
            throw Self.openFailure(path: path, directory: directory, error)
        }
        if readOnly, try Self.hasNoSchema(database, path: path) {
            blank = try Self.blankRegistry(path: path)
        } else {
            blank = nil
        }
        let state = blank != nil ? SealingState(keyID: nil, holdsClearSecrets: false)
            : try Self.sealingState(database, path: path)
        if readOnly && state.holdsClearSecrets {
            throw .needsUpgrade(
                path: path,
                reason: "it was written by an older devkit and holds secrets in clear text, which a command that "
                    + "only reads does not seal")
        }
        let resolved = try RegistryKey.resolve(key, neededKeyID: state.keyID, create: !readOnly)
        let sealer = SecretSealer(key: resolved.key, source: key)
        if !readOnly {
            if state.holdsClearSecrets { try Self.sealClearSecrets(database, sealer, path: path, hooks) }
            try Self.finishPendingScrub(database, path: path, hooks)
            owesRewrite = false
        } else {
            owesRewrite = blank == nil ? try Self.rewriteOwed(database, path: path) : false
        }
        pool = database
        self.sealer = sealer
        self.readOnly = readOnly
        claimFiles = readOnly ? nil : ClaimFiles(registryPath: path)
        createdKeyFile = resolved.created ? key.path : nil
        if created {
            // The new file's directory entry must survive a crash too (best effort:
            // some network file systems refuse a directory fsync).
            try? DurableFile.syncDirectory(directory)
        }
    }

    /// `$XDG_DATA_HOME/devkit/registry.sqlite`, or `~/.local/share/devkit/registry.sqlite`
    /// when `XDG_DATA_HOME` is unset, empty or not absolute (per the XDG spec).
    public static func defaultPath(
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) -> String {
        var base = environment["XDG_DATA_HOME"] ?? ""
        if !base.hasPrefix("/") {
            let home = environment["HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? NSHomeDirectory()
            base = (home as NSString).appendingPathComponent(".local/share")
        }
        return ((base as NSString).appendingPathComponent("devkit") as NSString)
            .appendingPathComponent("registry.sqlite")
    }

    // MARK: Writing

    /// Inserts a new board with its UDS and marks ``ProvisioningStep/udsRecorded``.
    /// Returns once the row is committed and synced to disk.
    ///
    /// - Parameters:
    ///   - uds: stored as 64 lower-case hex digits.
    ///   - mac: the Wi-Fi MAC if already known.
    ///   - alsoMark: later steps to mark in the same commit: the provisioning
    ///     workflow marks ``ProvisioningStep/udsSent`` here, as the UDS goes to the
    ///     board right after (one synced commit instead of two in a row).
    @discardableResult
    public func recordNewBoard(
        uds: UDS, mac: MACAddress? = nil, usbSerial: String? = nil,
        registrationID: RegistrationID? = nil, firmwareVersion: FirmwareVersion? = nil,
        provisionSettings: String? = nil, station: String? = nil, alsoMark: [ProvisioningStep] = []
    ) throws(RegistryError) -> BoardRecord {
        let now = Date()
        var record = BoardRecord(
            id: nil, mac: mac?.hex, usbSerial: usbSerial, registrationID: registrationID?.value,
            firmwareVersion: firmwareVersion?.text, storedUDS: uds, state: .inProgress,
            createdAt: now, updatedAt: now, provisionSettings: provisionSettings, udsRecordedAt: now,
            macReadAt: mac == nil ? nil : now, station: station)
        for step in alsoMark { record.setCompleted(step, at: now) }
        // Committed with FULL sync before we return, i.e. before the caller may send
        // the UDS anywhere; boards recorded at the same moment share the commit.
        let sealer = self.sealer
        return try write(synced: true) { db in
            try Self.insert(&record, sealer, db)
            return record
        }
    }

    /// Marks `step` done for a board, storing what was learned at that step in the
    /// same transaction. Marking ``ProvisioningStep/enrollmentWritten`` makes the
    /// board ``BoardState/done``; any other step sets ``BoardState/inProgress`` and
    /// clears a previous error.
    @discardableResult
    public func markStep(
        _ step: ProvisioningStep, boardID: Int64, update: BoardUpdate = BoardUpdate()
    ) throws(RegistryError) -> BoardRecord {
        try markSteps([step], boardID: boardID, update: update)
    }

    /// Marks several steps done in one transaction: steps whose results became
    /// durable together (the certificate and enrollment files are written as a
    /// pair) cost one commit, not one each.
    @discardableResult
    public func markSteps(
        _ steps: [ProvisioningStep], boardID: Int64, update: BoardUpdate = BoardUpdate()
    ) throws(RegistryError) -> BoardRecord {
        let sealer = self.sealer
        return try write { db in try Self.mark(steps, boardID: boardID, update, at: Date(), sealer, db) }
    }

    /// ``markSteps(_:boardID:update:)`` for the row `board`: a local file's
    /// transaction costs no round trip, so the row is read again in it.
    @discardableResult
    public func markSteps(
        _ steps: [ProvisioningStep], of board: BoardRecord, update: BoardUpdate = BoardUpdate()
    ) throws(RegistryError) -> BoardRecord {
        guard let boardID = board.id else { throw .boardNotFound("(not recorded)") }
        return try markSteps(steps, boardID: boardID, update: update)
    }

    /// Marks steps like ``markSteps(_:boardID:update:)`` but returns at once, without
    /// waiting for the commit: the board need not wait for bookkeeping before its
    /// next command. Returns `board` (the row as the caller last had it) as the
    /// commit will leave it.
    ///
    /// Marks queued for a board are committed in the order they were queued, and
    /// before any write queued after them, so a later ``markSteps(_:boardID:update:)``
    /// or ``markFailed(boardID:error:)`` returns only once they are committed. A
    /// crash may lose marks still queued: the row then says the board got less far
    /// than it did, and a resume repeats steps that are safe to repeat.
    ///
    /// - Parameter committed: called on the committing thread once the mark is
    ///   committed (with the row) or has failed. It must not write to the registry:
    ///   that thread is the one that would commit the write.
    @discardableResult
    public func markStepsInBackground(
        _ steps: [ProvisioningStep], of board: BoardRecord, update: BoardUpdate = BoardUpdate(),
        committed: @escaping @Sendable (Result<BoardRecord, RegistryError>) -> Void = { _ in }
    ) throws(RegistryError) -> BoardRecord {
        guard let boardID = board.id else { throw .boardNotFound("(not recorded)") }
        let now = Date()
        var expected = board
        Self.advance(&expected, steps, update, at: now)
        let path = self.path
        let result = Mutex<BoardRecord?>(nil)
        let sealer = self.sealer
        let job = GroupCommit.Job { db in
            let record = try Self.mark(steps, boardID: boardID, update, at: now, sealer, db)
            result.withLock { $0 = record }
        }
        job.completion = { job in
            if let error = job.error {
                committed(.failure(error as? RegistryError ?? .database(path: path, reason: "\(error)")))
            } else if let record = result.withLock({ $0 }) {
                committed(.success(record))
            }
        }
        let pool = self.pool
        writes.submit(job) { batch in GroupCommit.commit(batch, in: pool, synced: false) }
        return expected
    }

    /// Marks `steps` on the stored row, in the caller's transaction.
    private static func mark(
        _ steps: [ProvisioningStep], boardID: Int64, _ update: BoardUpdate, at now: Date, _ sealer: SecretSealer,
        _ db: Database
    ) throws -> BoardRecord {
        guard var record = try fetchBoard(db, id: boardID, sealer) else { throw RegistryError.boardNotFound("\(boardID)") }
        advance(&record, steps, update, at: now)
        try store(record, db)
        return record
    }

    /// What marking `steps` with `update` at `now` does to a row.
    static func advance(_ record: inout BoardRecord, _ steps: [ProvisioningStep], _ update: BoardUpdate, at now: Date) {
        // A new certificate (a re-issue) has not registered yet: the last check was of the old one.
        if let new = update.certificateSHA256, new != record.certificateSHA256 { record.verification = nil }
        record.apply(update)
        for step in steps { record.setCompleted(step, at: now) }
        if update.mac != nil && record.macReadAt == nil { record.macReadAt = now }
        record.updatedAt = now
        record.state = record.nextStep == nil ? .done : .inProgress
        record.error = nil
    }

    /// What a failure does to a row (both backends): `failed`, with its error, unless
    /// the row is `done` already. A late failure (a verification, an enrollment owed,
    /// a run stopped after its last step was committed) must not undo a finished
    /// board: `--resume` would then redo it, and `registry list` would call it broken.
    static func fail(_ record: inout BoardRecord, _ message: String) {
        guard record.state != .done else { return }
        record.state = .failed
        record.error = message
    }

    /// Reads board `boardID`'s row, applies `change`, and stores it as updated now, in one transaction.
    private func updateBoard(_ boardID: Int64, _ change: @escaping (inout BoardRecord) -> Void) throws(RegistryError) -> BoardRecord {
        try write { [sealer] db in
            guard var record = try Self.fetchBoard(db, id: boardID, sealer) else {
                throw RegistryError.boardNotFound("\(boardID)")
            }
            change(&record)
            record.updatedAt = Date()
            try Self.store(record, db)
            return record
        }
    }

    /// Records that the last run on this board stopped on `error` (no secrets in it).
    @discardableResult
    public func markFailed(boardID: Int64, error message: String) throws(RegistryError) -> BoardRecord {
        try updateBoard(boardID) { Self.fail(&$0, message) }
    }

    /// Records what enrolling a board in DPS came to (replacing the previous
    /// record). The board's state and steps are unchanged: enrollment is not a
    /// provisioning step, and a board whose enrollment failed keeps its files and
    /// stays `done` (shown `done, not enrolled`).
    @discardableResult
    public func recordEnrollment(boardID: Int64, _ enrollment: BoardEnrollment) throws(RegistryError) -> BoardRecord {
        try updateBoard(boardID) { $0.enrollment = enrollment }
    }

    /// Records how the board's registration with DPS went when it was last
    /// verified: it replaces the previous record, except that an inconclusive
    /// check does not replace a definitive outcome (``BoardVerification/kept(earlier:later:)``).
    /// State and steps are unchanged.
    @discardableResult
    public func recordVerification(boardID: Int64, _ verification: BoardVerification) throws(RegistryError) -> BoardRecord {
        try updateBoard(boardID) { $0.verification = BoardVerification.kept(earlier: $0.verification, later: verification) }
    }

    /// Records several boards' enrollments in one transaction: a fleet's outcomes
    /// (`dps enroll --from-registry`), where a commit per board was a quarter of a
    /// 1,000-board run's time (Scripts/bench-enroll.sh). A board not found fails
    /// the whole transaction: nothing is recorded.
    public func recordEnrollments(_ enrollments: [(boardID: Int64, enrollment: BoardEnrollment)]) throws(RegistryError) {
        guard !enrollments.isEmpty else { return }
        let now = Date()
        try write { [sealer] db in
            for (boardID, enrollment) in enrollments {
                guard var record = try Self.fetchBoard(db, id: boardID, sealer) else {
                    throw RegistryError.boardNotFound("\(boardID)")
                }
                record.enrollment = enrollment
                record.updatedAt = now
                try Self.store(record, db)
            }
        }
    }

    /// Marks board `old` as replaced by board `new`, recording where its files went
    /// (they were moved aside so the new board's could take their names).
    @discardableResult
    public func markSuperseded(
        boardID old: Int64, by new: Int64, certificatePath: String?, enrollmentPath: String?
    ) throws(RegistryError) -> BoardRecord {
        try write(synced: true) { [sealer] db in
            guard var record = try Self.fetchBoard(db, id: old, sealer) else { throw RegistryError.boardNotFound("\(old)") }
            record.supersededBy = new
            record.certificatePath = certificatePath
            record.enrollmentPath = enrollmentPath
            record.updatedAt = Date()
            try Self.store(record, db)
            return record
        }
    }

    // MARK: Reading

    /// The boards, newest first, whose recorded certificate has this SHA-256
    /// thumbprint (any case): who owns a certificate file is decided by what it
    /// holds, which rows of every release record the same way, where their paths
    /// were stored relative to wherever devkit ran before release 12.
    public func boards(withCertificateSHA256 thumbprint: String) throws(RegistryError) -> [BoardRecord] {
        let key = thumbprint.uppercased()
        return try read { [sealer] db in
            try BoardRecord.filter(Column("certificate_sha256").uppercased == key)
                .order(Column("id").desc).fetchAll(db, sealer)
        }
    }

    /// The board with this row id.
    public func board(id: Int64) throws(RegistryError) -> BoardRecord? {
        try read { [sealer] db in try Self.fetchBoard(db, id: id, sealer) }
    }

    /// The most recent board with this MAC (any usual spelling).
    public func board(byMAC mac: String) throws(RegistryError) -> BoardRecord? {
        let normalized = try Self.normalizeMAC(mac)
        return try read { [sealer] db in
            try BoardRecord.filter(Column("mac") == normalized)
                .order(Column("id").desc).fetchOne(db, sealer)
        }
    }

    /// The most recent board whose ST-LINK has this USB serial number.
    public func board(byUSBSerial usbSerial: String) throws(RegistryError) -> BoardRecord? {
        try read { [sealer] db in
            try BoardRecord.filter(Column("usb_serial") == usbSerial)
                .order(Column("id").desc).fetchOne(db, sealer)
        }
    }

    public func latestBoardIDs(
        usbSerial: String?, mac: String?, confirmedOnly: Bool
    ) throws(RegistryError) -> (bySerial: Int64?, byMAC: Int64?) {
        let condition = confirmedOnly ? " AND uds_confirmed_at IS NOT NULL" : ""
        let mac = try mac.map { m throws(RegistryError) in try Self.normalizeMAC(m) }
        return try read { db in
            let bySerial = try usbSerial.flatMap {
                try Int64.fetchOne(db, sql: "SELECT MAX(id) FROM board WHERE usb_serial = ?" + condition, arguments: [$0])
            }
            let byMAC = try mac.flatMap { try Int64.fetchOne(db, sql: "SELECT MAX(id) FROM board WHERE mac = ?" + condition, arguments: [$0]) }
            return (bySerial, byMAC)
        }
    }

    /// The most recent board with this registration ID.
    public func board(byRegistrationID registrationID: String) throws(RegistryError) -> BoardRecord? {
        try read { [sealer] db in
            try BoardRecord.filter(Column("registration_id") == registrationID)
                .order(Column("id").desc).fetchOne(db, sealer)
        }
    }

    /// Finds a board by row id (all digits), MAC, or registration ID, in that order.
    public func board(matching key: String) throws(RegistryError) -> BoardRecord? {
        if !key.isEmpty, key.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), let id = Int64(key),
            let found = try board(id: id)
        {
            return found
        }
        if let mac = try? Self.normalizeMAC(key), let found = try board(byMAC: mac) {
            return found
        }
        return try board(byRegistrationID: key)
    }

    /// Every board, oldest first.
    public func allBoards() throws(RegistryError) -> [BoardRecord] {
        try read { [sealer] db in try BoardRecord.order(Column("id")).fetchAll(db, sealer) }
    }

    /// Boards whose provisioning has not finished (in progress or failed), oldest first.
    public func unfinishedBoards() throws(RegistryError) -> [BoardRecord] {
        try read { [sealer] db in
            try BoardRecord.filter(Column("state") != BoardState.done.rawValue)
                .order(Column("id")).fetchAll(db, sealer)
        }
    }

    // MARK: MAC addresses

    /// `a4cf120b9e31`, `A4:CF:12:0B:9E:31` or `a4-cf-12-0b-9e-31` → `a4cf120b9e31`
    /// (``MACAddress``'s rule), for lookups by a key the user typed.
    public static func normalizeMAC(_ mac: String) throws(RegistryError) -> String {
        do { return try MACAddress(mac).hex } catch { throw .invalidMAC(mac) }
    }

    /// A value read back from a row (stored as text), typed by `parse`. Rows written
    /// by devkit always parse; one that does not was edited by hand.
    public static func parseStored<T>(
        _ parse: (String) throws(InputError) -> T, _ text: String, board id: Int64
    ) throws(RegistryError) -> T {
        do { return try parse(text) } catch { throw .invalidStoredValue(board: id, error) }
    }

    // MARK: Internals

    /// Whether the file has no schema at all (0 bytes, or no table: a writing open
    /// made the file and stopped before its tables), false when it has devkit's.
    /// Any other file is refused, by a writing open too (which would otherwise add
    /// devkit's tables to it): an SQLite database of another program, or no SQLite
    /// database.
    private static func hasNoSchema(_ pool: some DatabaseReader, path: String) throws(RegistryError) -> Bool {
        let tables: Int
        do {
            tables = try pool.read { db in
                // GRDB makes grdb_migrations before the first migration's transaction:
                // a file with only that (and SQLite's own) is a registry stopped at birth.
                try db.tableExists("board") ? -1 : Int.fetchOne(db, sql: """
                    SELECT count(*) FROM sqlite_master WHERE name <> 'grdb_migrations' AND name NOT LIKE 'sqlite_%'
                    """) ?? 0
            }
        } catch let error as DatabaseError where error.resultCode == .SQLITE_NOTADB {
            throw .notARegistry(path: path, reason: "it is not an SQLite database")
        } catch {
            throw .cannotOpen(path: path, reason: "\(error)")
        }
        if tables < 0 { return false }
        guard tables == 0 else {
            throw .notARegistry(path: path, reason: "it is an SQLite database without devkit's tables")
        }
        return true
    }

    /// For a read-only open of a file with no schema: an empty in-memory registry,
    /// so reads find no board instead of failing.
    private static func blankRegistry(path: String) throws(RegistryError) -> DatabaseQueue {
        do {
            let empty = try DatabaseQueue()
            try migrator.migrate(empty)
            return empty
        } catch {
            throw .database(path: path, reason: "\(error)")
        }
    }

    private static let migrator: DatabaseMigrator = {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1: board") { db in
            try db.create(table: "board") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("mac", .text)
                t.column("usb_serial", .text)
                t.column("registration_id", .text)
                t.column("firmware_version", .text)
                t.column("uds", .text).notNull()
                t.column("certificate_sha1", .text)
                t.column("certificate_sha256", .text)
                t.column("certificate_path", .text)
                t.column("enrollment_path", .text)
                t.column("state", .text).notNull()
                    .check(sql: "state IN ('in_progress', 'failed', 'done')")
                t.column("error", .text)
                t.column("created_at", .datetime).notNull()
                t.column("updated_at", .datetime).notNull()
                for step in ProvisioningStep.allCases {
                    t.column(step.columnName, .datetime)
                }
            }
            try db.create(index: "board_on_mac", on: "board", columns: ["mac"])
            try db.create(
                index: "board_on_registration_id", on: "board", columns: ["registration_id"])
        }
        // `watch` looks a board up by USB serial each time one is plugged in.
        migrator.registerMigration("v2: board_on_usb_serial") { db in
            try db.create(index: "board_on_usb_serial", on: "board", columns: ["usb_serial"])
        }
        // A board provisioned again into the same files with `--force` replaces the
        // row that had them: the old row points to the new one.
        migrator.registerMigration("v3: board.superseded_by") { db in
            try db.alter(table: "board") { t in
                t.add(column: "superseded_by", .integer).references("board")
            }
        }
        // What `provision --resume N` needs besides the UDS (issue 12): written by
        // the provisioning workflow when it records a board.
        migrator.registerMigration("v4: board.provision_settings") { db in
            try db.alter(table: "board") { t in t.add(column: "provision_settings", .text) }
        }
        // Each board's DPS enrollment (issue 13): the last result of enrolling it,
        // or `pending` when DPS was configured and no result is recorded yet.
        migrator.registerMigration("v5: board.enrollment_*") { db in
            try db.alter(table: "board") { t in
                t.add(column: "enrollment_action", .text)
                    .check(sql: "enrollment_action IN ("
                        + BoardEnrollment.Action.allCases.map { "'\($0.rawValue)'" }.joined(separator: ", ") + ")")
                t.add(column: "enrollment_at", .datetime)
                t.add(column: "enrollment_dps_host", .text)
                t.add(column: "enrollment_etag", .text)
                t.add(column: "enrollment_sha1_thumbprint", .text)
                t.add(column: "enrollment_error_code", .integer)
                t.add(column: "enrollment_error_message", .text)
                t.add(column: "enrollment_tracking_id", .text)
            }
        }
        // Each board's last registration check (issue 14): what its log said, the
        // hub and device ID DPS gave it, and when.
        migrator.registerMigration("v6: board.verification_*") { db in
            try db.alter(table: "board") { t in
                t.add(column: "verification_outcome", .text)
                t.add(column: "verification_assigned_hub", .text)
                t.add(column: "verification_device_id", .text)
                t.add(column: "verification_at", .datetime)
            }
        }
        // The registry's key and whether a rewrite is owed (RegistrySealing.swift).
        // A registry sealed before this table gets the key its sealed values name
        // (the most common one, should an old race have left two).
        migrator.registerMigration("v7: registry_meta") { db in
            try db.create(table: "registry_meta") { t in
                t.primaryKey("name", .text)
                t.column("value", .text).notNull()
            }
            var counts: [String: Int] = [:]
            for stored in try String.fetchAll(db, sql: "SELECT uds FROM board WHERE uds LIKE 'sealed1:%'") {
                if let id = SecretSealer.keyID(of: stored) { counts[id, default: 0] += 1 }
            }
            if let id = counts.max(by: { ($0.value, $1.key) < ($1.value, $0.key) })?.key {
                try setMeta(db, Meta.keyID, id)
            }
        }
        // Which station recorded each board (issue 16): stations sharing a registry
        // on PostgreSQL, or a station's file copied there, tell their rows apart.
        migrator.registerMigration("v8: board.station") { db in
            try db.alter(table: "board") { t in t.add(column: "station", .text) }
        }
        return migrator
    }()

    // Step marks fetch and store one row by id, several times per board. Through
    // GRDB's query interface each built its SQL and compiled a statement (with the
    // authorizer) every time: 12% of the daemon's CPU with 16 boards. These are
    // compiled once per connection and cached.
    // The UDS is written once, sealed, when the row is inserted (or re-sealed by
    // rekey): a step mark never rewrites it.
    private static let selectByID = "SELECT * FROM board WHERE id = ?"
    private static let updateByID = "UPDATE board SET "
        + BoardRecord.databaseColumns.dropFirst().filter { $0 != "uds" }.map { "\($0) = ?" }
        .joined(separator: ", ") + " WHERE id = ?"

    private static func fetchBoard(_ db: Database, id: Int64, _ sealer: SecretSealer) throws -> BoardRecord? {
        try Row.fetchOne(db.cachedStatement(sql: selectByID), arguments: [id]).map(sealer.record)
    }

    private static func store(_ record: BoardRecord, _ db: Database) throws {
        let values = zip(BoardRecord.databaseColumns, record.databaseValues).dropFirst()
            .filter { $0.0 != "uds" }.map(\.1)
        try db.cachedStatement(sql: updateByID)
            .execute(arguments: StatementArguments(values + [record.id as (any DatabaseValueConvertible)?]))
    }

    /// Runs `body` in a write transaction and returns once it is committed (and, with
    /// `synced`, fsynced). Writes from threads arriving at the same moment share one
    /// transaction, each in its own savepoint so one failing does not undo the others.
    /// One transaction each, handed from thread to thread through GRDB's writer,
    /// made 16 boards finishing together wait 2-3.5 ms for every step mark; and one
    /// FULL commit each made the last of 16 new boards wait ~13 ms before it started.
    private func write<T>(synced: Bool = false, _ body: @escaping (Database) throws -> T) throws(RegistryError) -> T {
        var value: T?
        let job = GroupCommit.Job { db in value = try body(db) }
        let pool = self.pool
        (synced ? syncedWrites : writes).run(job) { batch in GroupCommit.commit(batch, in: pool, synced: synced) }
        if let error = job.error {
            if let error = error as? RegistryError { throw error }
            throw .database(path: path, reason: "\(error)")
        }
        return value!
    }

    private func read<T>(_ body: @escaping (Database) throws -> T) throws(RegistryError) -> T {
        do {
            if let blank { return try blank.read(body) }
            return try pool.read(body)
        } catch let error as RegistryError {
            throw error
        } catch {
            throw .database(path: path, reason: "\(error)")
        }
    }

    /// Why SQLite could not open the registry, with the errno that decides the exit
    /// code. SQLite says only "unable to open database file"; in WAL mode it must also
    /// create `<file>-wal` and `<file>-shm` beside the file, so a directory this user
    /// cannot write fails even when the file itself is theirs.
    private static func openFailure(path: String, directory: String, _ error: any Error) -> RegistryError {
        if let error = error as? DatabaseError, error.resultCode == .SQLITE_NOTADB {
            return .notARegistry(path: path, reason: "it is not an SQLite database")
        }
        let base = (path as NSString).lastPathComponent
        if access(directory, W_OK | X_OK) != 0 {
            let error = errno
            return .cannotOpen(
                path: path,
                reason: "SQLite must create \(base)-wal and \(base)-shm in \(escaped(directory)), which this user "
                    + "cannot write (\(String(cString: strerror(error)))); give this user write access to that "
                    + "directory (or run devkit as its owner)",
                errno: error)
        }
        if access(path, R_OK | W_OK) != 0 {
            let error = errno
            return .cannotOpen(path: path, reason: String(cString: strerror(error)), errno: error)
        }
        return .cannotOpen(path: path, reason: "\(error)")
    }

    /// `mkdir -p` where every directory this creates gets mode 0700.
    private static func makeDirectory(_ directory: String) throws(RegistryError) {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory) {
            if isDirectory.boolValue { return }
            throw .cannotCreateDirectory(path: directory, reason: "a file with that name exists", errno: ENOTDIR)
        }
        let parent = parentDirectory(of: directory)
        if !parent.isEmpty && parent != directory { try makeDirectory(parent) }
        if mkdir(directory, 0o700) != 0 && errno != EEXIST {
            let error = errno
            throw .cannotCreateDirectory(path: directory, reason: String(cString: strerror(error)), errno: error)
        }
        // The umask can only remove bits, but say what we mean.
        _ = chmod(directory, 0o700)
    }

    /// Creates the database file with mode 0600 before SQLite opens it (SQLite would
    /// use 0644 minus the umask). Tightens an existing file to 0600. Returns whether
    /// the file was created.
    private static func createPrivateFile(_ path: String) throws(RegistryError) -> Bool {
        var fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600)
        var created = true
        if fd < 0 && errno == EEXIST {
            created = false
            fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW)
        }
        guard fd >= 0 else {
            let error = errno
            throw .cannotOpen(path: path, reason: String(cString: strerror(error)), errno: error)
        }
        defer { close(fd) }
        if fchmod(fd, 0o600) != 0 {
            let error = errno
            throw .cannotOpen(path: path, reason: String(cString: strerror(error)), errno: error)
        }
        return created
    }
}

/// What can go wrong with the registry. Messages never contain the UDS, and say what
/// happened; the CLI adds which option or command to use.
public enum RegistryError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The registry's directory could not be created; `errno` when a system call
    /// said why (the CLI maps it to an exit code).
    case cannotCreateDirectory(path: String, reason: String, errno: Int32? = nil)
    /// The database file could not be created, opened or migrated; `errno` as above.
    case cannotOpen(path: String, reason: String, errno: Int32? = nil)
    /// A read or write failed.
    case database(path: String, reason: String)
    /// A board's claim could not be taken for a reason other than another holder:
    /// its file in the SQLite registry's claims directory (`path`) could not be
    /// made or opened (permissions, no descriptors left); `errno` as above.
    case claimFailed(path: String, reason: String, errno: Int32)
    /// A value recorded for a board does not parse (the row was edited by hand).
    case invalidStoredValue(board: Int64, InputError)
    /// The MAC given is not 12 hex digits.
    case invalidMAC(String)
    /// No board matches the id, MAC or registration ID given.
    case boardNotFound(String)
    /// The registry key file could not be read (`errno` ENOENT: there is none);
    /// `neededKeyID` when the registry holds secrets sealed with that key.
    case keyUnavailable(path: String, reason: String, neededKeyID: String?, errno: Int32? = nil)
    /// The key file may be read by group or others (`mode`: its permission bits).
    case keyFileInsecure(path: String, mode: mode_t)
    /// The key file holds no key in a form devkit reads.
    case keyFileInvalid(path: String, reason: String)
    /// A new key file could not be written (EEXIST: one is already there).
    case keyFileNotWritten(path: String, reason: String, errno: Int32)
    /// The key in `path` (`keyID`) is not the one the registry's secrets are sealed with.
    case wrongKey(path: String, keyID: String, neededKeyID: String)
    /// A sealed value does not open with the right key: altered, or copied from another row.
    case sealedValueRejected(board: Int64, column: String, reason: String)
    /// A read-only open found a registry that a writing open must upgrade first
    /// (secrets in clear text).
    case needsUpgrade(path: String, reason: String)
    /// The file is not a devkit registry: not an SQLite database, or another
    /// program's (it has tables, but not devkit's).
    case notARegistry(path: String, reason: String)
    /// The PostgreSQL server at `server` cannot be reached, or the connection to it
    /// was lost: a temporary failure, worth retrying once it is back.
    case serverUnavailable(server: String, reason: String)
    /// `--registry` (or `url` under [registry]) names a PostgreSQL registry in a
    /// way devkit cannot use (`text` holds no password).
    case invalidURL(text: String, reason: String)
    /// A shared (PostgreSQL) registry was opened with no key file at `path`: devkit
    /// never makes one there, since every station must seal with the same key.
    case sharedKeyMissing(path: String, server: String)
    /// A statement waited `seconds` for a lock another session of the PostgreSQL
    /// server holds (a `registry migrate --to` or `rekey` in progress, a maintenance
    /// command) and gave up; nothing of that step was written.
    case registryLocked(server: String, seconds: Int)
    /// Another station of a shared registry is provisioning this board (`board`:
    /// its MAC or USB serial) right now.
    case boardBusy(board: String, station: String)

    public var description: String {
        switch self {
        case .cannotCreateDirectory(let path, let reason, _):
            "cannot create the registry directory \(escaped(path)): \(reason)"
        case .cannotOpen(let path, let reason, _) where PostgresLocation.isURL(path):
            "cannot open the registry \(escaped(path)): \(reason)"
        case .cannotOpen(let path, let reason, _):
            "cannot open the registry \(escaped(path)): \(reason); check its permissions"
        case .claimFailed(let path, let reason, _):
            "cannot claim the board in the station's claims directory beside the registry (\(escaped(path))): \(reason)"
        case .database(let path, let reason):
            "registry \(escaped(path)): \(reason)"
        case .invalidStoredValue(let id, let error):
            "board #\(id) in the registry holds a value devkit cannot use: \(error)"
        case .invalidMAC(let mac):
            "'\(refusedValue(mac))' is not a MAC address; give 12 hex digits, e.g. a4cf120b9e31 or A4:CF:12:0B:9E:31"
        case .boardNotFound(let key):
            "no board '\(refusedValue(key))' in the registry"
        case .keyUnavailable(let path, let reason, let needed, _):
            "cannot read the registry key \(escaped(path)): \(reason)"
                + (needed.map { "; the registry's secrets are sealed with key \($0)" } ?? "")
        case .keyFileInsecure(let path, let mode):
            "the registry key \(escaped(path)) may be read by others (mode \(String(mode, radix: 8))); "
                + "run: chmod 600 \(escaped(path))"
        case .keyFileInvalid(let path, let reason):
            "the registry key \(escaped(path)) cannot be used: \(reason)"
        case .keyFileNotWritten(let path, let reason, _):
            "cannot write the registry key \(escaped(path)): \(reason)"
        case .wrongKey(let path, let keyID, let needed):
            "the registry's secrets are sealed with key \(needed), but \(path.isEmpty ? "the key given" : escaped(path)) "
                + "is key \(keyID)"
        case .sealedValueRejected(let board, let column, let reason):
            "board #\(board)'s sealed \(column) cannot be opened: \(reason)"
        case .needsUpgrade(let path, let reason):
            "the registry \(escaped(path)) must be upgraded first: \(reason)"
        case .notARegistry(let path, let reason):
            "\(escaped(path)) is not a devkit registry: \(reason)"
        case .serverUnavailable(let server, let reason):
            "cannot reach the registry's PostgreSQL server \(escaped(server)): \(reason)"
        case .invalidURL(let text, let reason):
            "cannot use the registry URL \(escaped(text)): \(reason)"
        case .registryLocked(let server, let seconds):
            "the registry \(escaped(server)) is locked by another session (a `registry migrate --to` or "
                + "`registry rekey` in progress, or a maintenance command on the server): waited \(seconds) s"
        case .boardBusy(let board, let station):
            "board \(escaped(board)) is being provisioned by station \(escaped(station)) right now"
        case .sharedKeyMissing(let path, let server):
            "no registry key at \(escaped(path)) for the shared registry \(escaped(server)), and devkit does not "
                + "make one for a shared registry"
        }
    }
}

/// Group commit: a caller that finds no commit running commits every job queued
/// so far (its own included); callers that arrive meanwhile queue and wait, and the
/// next of them commits all of those together. Each returns once its own job is
/// committed (or has failed). Jobs can also be submitted without waiting
/// (``submit(_:commit:)``); when no caller is there to commit them, a background
/// thread does. Jobs are committed in the order they were queued.
final class GroupCommit: @unchecked Sendable {
    /// One caller's work and, once its batch is done, its error if it failed.
    final class Job: @unchecked Sendable {
        let body: (Database) throws -> Void
        /// Written by the committing thread before it broadcasts, read under the lock.
        var error: (any Error)?
        /// Called on the committing thread once the job's batch is done (submitted jobs).
        var completion: ((Job) -> Void)?
        fileprivate var done = false
        init(_ body: @escaping (Database) throws -> Void) { self.body = body }
    }

    private let condition = NSCondition()
    private var queue: [Job] = []
    private var committing = false
    /// Callers of `run` whose job is not done yet.
    private var waiting = 0
    private var commitsRun = 0

    /// Commits run so far (fewer than jobs when callers overlapped).
    var commitCount: Int { condition.withLock { commitsRun } }
    /// Jobs waiting for the next commit.
    var queuedCount: Int { condition.withLock { queue.count } }

    /// One transaction for `batch`, each job in a savepoint; a job whose savepoint
    /// fails gets its error, the others commit. If the commit fails, every job does.
    /// `synced`: `synchronous=FULL` for this commit (fsynced before it returns).
    static func commit(_ batch: [Job], in writer: some DatabaseWriter, synced: Bool) {
        do {
            try writer.writeWithoutTransaction { db in
                if synced { try db.execute(sql: "PRAGMA synchronous = FULL") }
                defer { if synced { try? db.execute(sql: "PRAGMA synchronous = NORMAL") } }
                try db.inTransaction(.immediate) {
                    // Alone in its transaction, a job needs no savepoint: its failure
                    // rolls the transaction back.
                    if batch.count == 1 {
                        try batch[0].body(db)
                        return .commit
                    }
                    for job in batch {
                        do {
                            try db.inSavepoint {
                                try job.body(db)
                                return .commit
                            }
                        } catch {
                            job.error = error
                        }
                    }
                    return .commit
                }
            }
        } catch {
            for job in batch where job.error == nil { job.error = error }
        }
    }

    /// Queues `job` and returns once it is committed (or has failed).
    func run(_ job: Job, commit: @escaping @Sendable ([Job]) -> Void) {
        condition.lock()
        defer { condition.unlock() }
        queue.append(job)
        waiting += 1
        while !job.done {
            if committing {
                condition.wait()
                continue
            }
            commitQueued(commit)
        }
        waiting -= 1
        // Submitted jobs queued meanwhile, and nobody left to commit them.
        if !queue.isEmpty && !committing && waiting == 0 { startBackgroundCommits(commit) }
    }

    /// Queues `job` and returns at once; its `completion` says when it is done.
    func submit(_ job: Job, commit: @escaping @Sendable ([Job]) -> Void) {
        condition.lock()
        defer { condition.unlock() }
        queue.append(job)
        // Otherwise the caller committing now, or one waiting to, takes it along.
        if !committing && waiting == 0 { startBackgroundCommits(commit) }
    }

    /// Commits everything queued, as one batch. Called with the lock held and
    /// `committing` false; returns with the lock held.
    private func commitQueued(_ commit: ([Job]) -> Void) {
        committing = true
        commitsRun += 1
        let batch = queue
        queue.removeAll()
        condition.unlock()
        commit(batch)
        for finished in batch { finished.completion?(finished) }
        condition.lock()
        for finished in batch { finished.done = true }
        committing = false
        condition.broadcast()
    }

    /// Commits on a background thread until the queue is empty. Lock held.
    ///
    /// A thread of its own, not a dispatch worker: every run that waits for a
    /// commit (``run(_:commit:)``) blocks until it lands, and when blocked work
    /// holds the global queue's workers (a `--jobs` re-issue, many board runs)
    /// a commit queued there waited behind them.
    private func startBackgroundCommits(_ commit: @escaping @Sendable ([Job]) -> Void) {
        committing = true  // reserved for the background thread
        let thread = Thread { [self] in
            condition.lock()
            defer { condition.unlock() }
            committing = false  // the reservation: commitQueued takes it again
            while !queue.isEmpty { commitQueued(commit) }
        }
        thread.name = "registry commit"
        thread.start()
    }
}
