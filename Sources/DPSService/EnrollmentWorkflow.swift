import DPSModel
import DevKitModel
import Foundation

/// One board to enroll: its registration ID and the certificate it presents.
public struct EnrollmentItem: Sendable {
    public var registrationId: String
    public var certificate: EnrollmentCertificate
    public init(registrationId: String, certificate: EnrollmentCertificate) {
        self.registrationId = registrationId
        self.certificate = certificate
    }
}

/// What is written into each enrollment, and how.
public struct EnrollmentSettings: Sendable {
    /// The IoT Hub device ID (default: DPS uses the registration ID). One board only.
    public var deviceId: String?
    /// The hub to assign the device to (default: the DPS's allocation policy).
    public var iotHubHostName: String?
    public var provisioningStatus: ProvisioningStatus
    /// Replace an enrollment that holds another certificate (with `If-Match`).
    public var replace: Bool
    /// Requests in flight at once for a fleet.
    public var parallel: Int

    public init(
        deviceId: String? = nil, iotHubHostName: String? = nil, provisioningStatus: ProvisioningStatus = .enabled,
        replace: Bool = false, parallel: Int = 4
    ) {
        self.deviceId = deviceId; self.iotHubHostName = iotHubHostName
        self.provisioningStatus = provisioningStatus; self.replace = replace; self.parallel = max(1, parallel)
    }
}

/// What happened to one enrollment.
public enum EnrollmentAction: String, Sendable, Codable, CaseIterable {
    case created, updated, unchanged, conflict, failed
}

/// One board's result: what `dps enroll` prints and what the registry records
/// (action, etag, time, DPS's thumbprint).
public struct EnrollmentOutcome: Sendable, Equatable {
    public var registrationId: String
    public var action: EnrollmentAction
    /// The enrollment's etag after this run (nil when failed, or a read-back failed).
    public var etag: String?
    /// As DPS reports it (its `info`), else as computed here (the same digest).
    public var sha1Thumbprint: String?
    public var sha256Thumbprint: String?
    /// When the outcome was known.
    public var time: Date
    /// Why it failed, or what the conflict is.
    public var error: DPSServiceError?
    /// For a conflict: what DPS holds (its SHA-1 thumbprint).
    public var message: String?

    public init(
        registrationId: String, action: EnrollmentAction, etag: String? = nil, sha1Thumbprint: String? = nil,
        sha256Thumbprint: String? = nil, time: Date = Date(), error: DPSServiceError? = nil, message: String? = nil
    ) {
        self.registrationId = registrationId; self.action = action; self.etag = etag
        self.sha1Thumbprint = sha1Thumbprint; self.sha256Thumbprint = sha256Thumbprint; self.time = time
        self.error = error; self.message = message
    }

    /// Whether the board is enrolled with its certificate now.
    public var isEnrolled: Bool { action == .created || action == .updated || action == .unchanged }
}

/// Enrolls boards in DPS idempotently: an enrollment that already holds the same
/// certificate is left alone (`unchanged`, nothing written); one that holds another
/// is a `conflict` unless ``EnrollmentSettings/replace``, which PUTs with `If-Match`
/// (a 412 there, another writer in between, fails that board and nothing more is
/// written to it); an absent one is `created`.
///
/// One board: GET, then PUT when needed. A fleet: bulk `create` in chunks of 10, a
/// few requests in flight, without reading first (most boards of a fleet are new);
/// then one read (query pages for many, a GET each for few) gives the created
/// ones' etags (bulk answers carry none) and what DPS holds for the boards the bulk
/// refused: the same certificate is unchanged, another a conflict or a replace,
/// none a failure with DPS's error.
public struct EnrollmentWorkflow: Sendable {
    public let client: DPSClient
    public var settings: EnrollmentSettings
    /// Enrollments read back per query page for a fleet.
    public var readBackPageSize = 1000
    /// Told how many boards each bulk request settled, as it returns (a fleet's
    /// progress before its outcomes, which wait for the read-back).
    public var bulkProgress: (@Sendable (Int) -> Void)?

    public init(client: DPSClient, settings: EnrollmentSettings) {
        self.client = client
        self.settings = settings
    }

    /// Enrolls `items`, calling `progress` as each board's outcome is known (from
    /// several tasks: it must be thread-safe). Outcomes come back in input order.
    public func enroll(
        _ items: [EnrollmentItem], progress: @escaping @Sendable (EnrollmentOutcome) -> Void = { _ in }
    ) async -> [EnrollmentOutcome] {
        var outcomes = [EnrollmentOutcome?](repeating: nil, count: items.count)
        var valid: [Int] = []
        var seen: [String: Int] = [:]
        for (i, item) in items.enumerated() {
            if let refusal = precheck(item) {
                outcomes[i] = refusal
            } else if let first = seen[DPSRegistrationIDRules.key(item.registrationId)] {
                outcomes[i] = failure(item.registrationId, .invalidRequest, "given twice (also as item \(first + 1))")
            } else {
                seen[DPSRegistrationIDRules.key(item.registrationId)] = i
                valid.append(i)
            }
            if let o = outcomes[i] { progress(o) }
        }
        if valid.count == 1 {
            let i = valid[0]
            let o = await enrollOne(items[i])
            progress(o)
            outcomes[i] = o
        } else if !valid.isEmpty {
            for (i, o) in await enrollFleet(valid.map { ($0, items[$0]) }, progress: progress) { outcomes[i] = o }
        }
        return outcomes.map { $0! }
    }

    // MARK: - One board

    /// GET, then PUT when absent (created) or different and replacing (updated).
    public func enrollOne(_ item: EnrollmentItem) async -> EnrollmentOutcome {
        do {
            guard let existing = try await client.get(item.registrationId) else {
                let stored = try await client.createOrUpdate(newEnrollment(item))
                return outcome(item, .created, stored)
            }
            return try await resolveExisting(item, existing)
        } catch {
            return EnrollmentOutcome(registrationId: item.registrationId, action: .failed, error: error, message: error.description)
        }
    }

    /// An enrollment DPS already holds: unchanged, conflict, or replaced with If-Match.
    /// The same certificate with other settings (disabled, another hub or device
    /// ID, as DPS holds it) stays as it is, saying what differs, unless replacing:
    /// a rerun must not enable an enrollment someone disabled on purpose.
    private func resolveExisting(_ item: EnrollmentItem, _ existing: IndividualEnrollment) async throws(DPSServiceError) -> EnrollmentOutcome {
        if holdsSameCertificate(existing, item.certificate) {
            let differences = differingSettings(existing)
            guard !differences.isEmpty else { return outcome(item, .unchanged, existing) }
            guard settings.replace else {
                var o = outcome(item, .unchanged, existing)
                o.message = "DPS holds this certificate for \(item.registrationId), but " + differences.joined(separator: " and ")
                return o
            }
            return try await update(item, existing)
        }
        guard settings.replace else {
            let theirs = existing.primaryCertificateInfo?.sha1Thumbprint
                ?? existing.primaryCertificatePEM.flatMap { try? EnrollmentCertificate(pem: $0) }?.sha1Thumbprint
            var o = outcome(item, .conflict, existing)
            // The thumbprints shown are ours (what would be enrolled); the message names theirs.
            o.sha1Thumbprint = item.certificate.sha1Thumbprint
            o.sha256Thumbprint = item.certificate.sha256Thumbprint
            o.message = "DPS holds another certificate for \(item.registrationId)"
                + (theirs.map { " (SHA-1 \($0))" } ?? (existing.primaryCertificatePEM == nil ? " (not an X.509 enrollment)" : ""))
            return o
        }
        return try await update(item, existing)
    }

    /// What of `existing` is not as these settings would write it (a hub or device
    /// ID only when one is given), said for people: "it is disabled".
    private func differingSettings(_ existing: IndividualEnrollment) -> [String] {
        var differences: [String] = []
        let status = existing.provisioningStatus ?? .enabled
        if status != settings.provisioningStatus { differences.append("it is \(escaped(status.rawValue))") }
        // Host names compare without case, as DNS does.
        if let hub = settings.iotHubHostName, existing.iotHubHostName?.lowercased() != hub.lowercased() {
            differences.append("it assigns the device to \(existing.iotHubHostName.map { "hub \(escaped($0))" } ?? "the hub DPS's allocation policy picks")")
        }
        if let d = settings.deviceId, existing.deviceId != d {
            differences.append("its device ID is \(existing.deviceId.map { "'\(escaped($0))'" } ?? "the registration ID")")
        }
        return differences
    }

    /// PUTs `existing` with our certificate and settings, with If-Match.
    private func update(_ item: EnrollmentItem, _ existing: IndividualEnrollment) async throws(DPSServiceError) -> EnrollmentOutcome {
        // Everything else of the enrollment (initial twin, capabilities, allocation)
        // is kept, and the settings given here apply. The attestation is ours: DPS
        // reads back a certificate's details, not its PEM, and a PUT must carry the
        // certificates themselves, so a secondary one (another board's, or one added
        // in the portal) cannot be sent back and is dropped, with the same certificate too.
        var updated = existing
        updated.attestation = .x509(primaryPEM: item.certificate.pem)
        updated.provisioningStatus = settings.provisioningStatus
        if let d = settings.deviceId { updated.deviceId = d }
        if let h = settings.iotHubHostName { updated.iotHubHostName = h }
        updated.createdDateTimeUtc = nil
        updated.lastUpdatedDateTimeUtc = nil
        do {
            let stored = try await client.createOrUpdate(updated, ifMatch: existing.etag ?? "*")
            return outcome(item, .updated, stored)
        } catch where error.status == 412 {
            var error = error
            error.message = "the enrollment changed since it was read (If-Match \(existing.etag ?? "*") is stale): "
                + "another writer updated it; nothing was written; run again to see its state"
            throw error
        }
    }

    // MARK: - A fleet

    private func enrollFleet(
        _ items: [(index: Int, item: EnrollmentItem)], progress: @escaping @Sendable (EnrollmentOutcome) -> Void
    ) async -> [(Int, EnrollmentOutcome)] {
        let chunks = stride(from: 0, to: items.count, by: BulkEnrollmentOperation.maxEnrollments).map {
            Array(items[$0..<min($0 + BulkEnrollmentOperation.maxEnrollments, items.count)])
        }
        // Each chunk: bulk create; what it created is read back, what it refused
        // is decided once DPS's enrollments are read (below).
        var created: [(Int, EnrollmentItem)] = []
        var refused: [Refused] = []
        var done: [(Int, EnrollmentOutcome)] = []
        await withTaskGroup(of: ChunkResult.self) { group in
            var next = 0
            func add() {
                guard next < chunks.count else { return }
                let chunk = chunks[next]
                next += 1
                group.addTask { await self.createChunk(chunk, progress: progress) }
            }
            for _ in 0..<min(settings.parallel, chunks.count) { add() }
            for await result in group {
                created += result.created
                refused += result.refused
                done += result.done
                add()
            }
        }
        // One read for both: the created ones' etags, and what DPS holds for the
        // refused ones. Many refused boards are a rerun: reading them through query
        // pages (1,000 a request) instead of a GET each made a rerun of 1,000 boards
        // 1,000 requests longer than the run that created them (Scripts/bench-enroll.sh).
        let held = await readPages(created.map(\.1) + refused.map(\.item))
        // Decided a few at once: a --replace writes, an enrollment not seen is read.
        await withTaskGroup(of: (Int, EnrollmentOutcome).self) { group in
            var next = 0
            func add() {
                guard next < refused.count else { return }
                let r = refused[next]
                next += 1
                group.addTask { (r.index, await self.decideRefused(r, held: held[DPSRegistrationIDRules.key(r.item.registrationId)])) }
            }
            for _ in 0..<min(settings.parallel, refused.count) { add() }
            for await (i, o) in group {
                progress(o)
                done.append((i, o))
                add()
            }
        }
        let readBack = await readRest(created.map(\.1), found: held)
        for (i, item) in created {
            let o = outcome(item, .created, readBack[DPSRegistrationIDRules.key(item.registrationId)])
            progress(o)
            done.append((i, o))
        }
        return done
    }

    /// A board a bulk create refused, and DPS's reason.
    private struct Refused: Sendable {
        let index: Int
        let item: EnrollmentItem
        let error: BulkEnrollmentOperationError
    }

    private struct ChunkResult: Sendable {
        var created: [(Int, EnrollmentItem)] = []
        var refused: [Refused] = []
        var done: [(Int, EnrollmentOutcome)] = []
    }

    /// One bulk create: the boards it created (to read back), those it refused (to
    /// decide), and the outcomes of boards settled here (the request failed).
    private func createChunk(
        _ chunk: [(index: Int, item: EnrollmentItem)], progress: @Sendable (EnrollmentOutcome) -> Void
    ) async -> ChunkResult {
        let result: BulkEnrollmentOperationResult
        do {
            result = try await client.bulk(.create, chunk.map { newEnrollment($0.item) })
            bulkProgress?(chunk.count - result.errors.count)
        } catch where error.kind == .http && error.status.map({ (400..<500).contains($0) && $0 != 401 && $0 != 403 && $0 != 429 }) == true {
            // The whole request refused (one board's data, by a server that checks
            // before applying any): each board alone, so the others still go in.
            var r = ChunkResult()
            for (i, item) in chunk {
                let o = await enrollOne(item)
                progress(o)
                r.done.append((i, o))
            }
            return r
        } catch {
            var r = ChunkResult()
            r.done = chunk.map { (i, item) in
                let o = EnrollmentOutcome(registrationId: item.registrationId, action: .failed, error: error, message: error.description)
                progress(o)
                return (i, o)
            }
            return r
        }
        var errors: [String: BulkEnrollmentOperationError] = [:]
        for e in result.errors { errors[DPSRegistrationIDRules.key(e.registrationId)] = e }
        var r = ChunkResult()
        for (i, item) in chunk {
            if let e = errors[DPSRegistrationIDRules.key(item.registrationId)] {
                r.refused.append(Refused(index: i, item: item, error: e))
            } else {
                r.created.append((i, item))
            }
        }
        return r
    }

    /// A board the bulk create refused: usually because it exists (a rerun, or a
    /// retried request that had been applied). With what DPS holds (read above),
    /// unchanged, a conflict or a replace; not seen there, it is read alone: absent,
    /// it fails with the bulk's reason.
    private func decideRefused(_ r: Refused, held: IndividualEnrollment?) async -> EnrollmentOutcome {
        do {
            var existing = held
            if existing == nil { existing = try await client.get(r.item.registrationId) }
            if let existing { return try await resolveExisting(r.item, existing) }
            let error = DPSServiceError(
                kind: .http, operation: "POST /enrollments (bulk create)", status: 400,
                errorCode: r.error.errorCode, message: r.error.errorStatus ?? "refused by the bulk operation")
            return EnrollmentOutcome(registrationId: r.item.registrationId, action: .failed, error: error, message: error.description)
        } catch {
            return EnrollmentOutcome(registrationId: r.item.registrationId, action: .failed, error: error, message: error.description)
        }
    }

    /// The enrollments DPS holds for `items`, by ID key, read through query pages
    /// (1,000 a request) when there are more than two bulk requests' worth, at most
    /// about three times as many enrollments as wanted (a large DPS is not read
    /// whole); none read for fewer (a GET each is then cheaper). A failed page ends
    /// the reading: what is missing is read alone later.
    private func readPages(_ items: [EnrollmentItem]) async -> [String: IndividualEnrollment] {
        var found: [String: IndividualEnrollment] = [:]
        guard items.count > 2 * BulkEnrollmentOperation.maxEnrollments else { return found }
        var wanted = Set(items.map { DPSRegistrationIDRules.key($0.registrationId) })
        let budget = max(2, (3 * items.count) / readBackPageSize + 1)
        var continuation: String?
        var pages = 0
        repeat {
            guard let page = try? await client.queryPage(pageSize: readBackPageSize, continuation: continuation) else { break }
            pages += 1
            for e in page.enrollments {
                let key = DPSRegistrationIDRules.key(e.registrationId)
                if wanted.remove(key) != nil { found[key] = e }
            }
            continuation = page.continuation
        } while continuation != nil && !wanted.isEmpty && pages < budget
        return found
    }

    /// `found` and a GET for each of `items` not in it, a few in flight. A read-back
    /// failure leaves that board without its etag: it is enrolled all the same.
    private func readRest(_ items: [EnrollmentItem], found: [String: IndividualEnrollment]) async -> [String: IndividualEnrollment] {
        var found = found
        let rest = items.filter { found[DPSRegistrationIDRules.key($0.registrationId)] == nil }
        await withTaskGroup(of: (String, IndividualEnrollment?).self) { group in
            var next = 0
            func add() {
                guard next < rest.count else { return }
                let id = rest[next].registrationId
                next += 1
                group.addTask { (DPSRegistrationIDRules.key(id), try? await self.client.get(id)) }
            }
            for _ in 0..<min(settings.parallel, rest.count) { add() }
            for await (key, e) in group {
                if let e { found[key] = e }
                add()
            }
        }
        return found
    }

    // MARK: - Helpers

    /// Refuses before sending what DPS would refuse: an ID against its rules, a
    /// certificate whose CN is not the ID (DPS matches the device by it).
    private func precheck(_ item: EnrollmentItem) -> EnrollmentOutcome? {
        do { try DPSRegistrationIDRules.check(item.registrationId) } catch {
            return failure(item.registrationId, .invalidRequest, error.description)
        }
        guard let cn = item.certificate.commonName else {
            return failure(item.registrationId, .invalidRequest, "the certificate has no subject CN; DPS matches the device by it")
        }
        guard DPSRegistrationIDRules.key(cn) == DPSRegistrationIDRules.key(item.registrationId) else {
            return failure(
                item.registrationId, .invalidRequest,
                "the certificate's subject CN is '\(escaped(cn))', not the registration ID '\(escaped(item.registrationId))'; DPS matches the device by its CN")
        }
        return nil
    }

    private func failure(_ id: String, _ kind: DPSServiceError.Kind, _ message: String) -> EnrollmentOutcome {
        let error = DPSServiceError(kind: kind, operation: "enroll \(id)", message: message)
        return EnrollmentOutcome(registrationId: id, action: .failed, error: error, message: message)
    }

    private func newEnrollment(_ item: EnrollmentItem) -> IndividualEnrollment {
        .x509(
            registrationId: item.registrationId, certificatePEM: item.certificate.pem, deviceId: settings.deviceId,
            iotHubHostName: settings.iotHubHostName, provisioningStatus: settings.provisioningStatus)
    }

    /// Whether DPS's enrollment holds this certificate: the same DER (the PEM's
    /// line breaks may differ), or, when its PEM cannot be read here, the same
    /// SHA-256 thumbprint in the service's info.
    private func holdsSameCertificate(_ e: IndividualEnrollment, _ c: EnrollmentCertificate) -> Bool {
        if let pem = e.primaryCertificatePEM, let theirs = try? EnrollmentCertificate(pem: pem) { return theirs.sameCertificate(as: c) }
        if let sha256 = e.primaryCertificateInfo?.sha256Thumbprint { return sha256.uppercased() == c.sha256Thumbprint }
        return false
    }

    private func outcome(_ item: EnrollmentItem, _ action: EnrollmentAction, _ stored: IndividualEnrollment?) -> EnrollmentOutcome {
        let info = stored?.primaryCertificateInfo
        return EnrollmentOutcome(
            registrationId: item.registrationId, action: action, etag: stored?.etag,
            sha1Thumbprint: info?.sha1Thumbprint ?? item.certificate.sha1Thumbprint,
            sha256Thumbprint: info?.sha256Thumbprint ?? item.certificate.sha256Thumbprint)
    }
}
