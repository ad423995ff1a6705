import DevKitModel
import DevKitSystem
import DPSModel
import Foundation
import NIOPosix

/// The emulator's data: individual enrollments and device registration states,
/// keyed by registration ID as DPS compares them (case-insensitively), kept in
/// `state.json` in the state directory.
///
/// An actor, so concurrent requests see each change whole. Every change is on disk
/// before its answer goes out (DevKitSystem's DurableFile: write, fsync, rename);
/// changes that arrive while a write is under way share the next one (a group
/// commit), so a fleet's parallel bulk requests do not queue one fsync each.
actor EnrollmentStore {
    /// The enrollments as stored: the PEM sent, the `info` computed from it.
    private var enrollments: [String: IndividualEnrollment] = [:]
    /// Each enrollment's JSON, encoded once per change rather than per save.
    private var encodedEnrollments: [String: Data] = [:]
    /// The device side's records (`GET /registrations/{id}`), written by the
    /// device API's register and poll (``DeviceRoutes``).
    private var registrations: [String: DeviceRegistrationState] = [:]

    private let file: String
    /// Bumped by every change; `savedGeneration` is the last one on disk.
    private var generation = 0
    private var savedGeneration = 0
    private var saving: Task<Void, any Error>?

    init(file: String) throws(EmulatorSetupError) {
        self.file = file
        let bytes: [UInt8]
        do {
            bytes = try InputFile.read(file, limit: .emulatorState, standardInputDash: false)
        } catch .cannotOpen(.noSuchFileOrDirectory) {
            return  // a new state directory
        } catch {
            throw .state(path: file, reason: error.reason)
        }
        let state: PersistedState
        do {
            state = try JSONDecoder().decode(PersistedState.self, from: Data(bytes))
        } catch {
            throw .state(path: file, reason: "not the emulator's JSON (\(error)); move it aside to start empty")
        }
        guard state.version == PersistedState.currentVersion else {
            throw .state(path: file, reason: "written by another version of devkit (format \(state.version))")
        }
        let encoder = Self.encoder()
        for enrollment in state.enrollments {
            let key = DPSRegistrationIDRules.key(enrollment.registrationId)
            enrollments[key] = enrollment
            encodedEnrollments[key] = try? encoder.encode(enrollment)
        }
        for registration in state.registrations {
            registrations[DPSRegistrationIDRules.key(registration.registrationId)] = registration
        }
    }

    var count: Int { enrollments.count }

    // MARK: Enrollments

    /// `PUT /enrollments/{id}`: creates, or replaces when `If-Match` is absent
    /// (unless `requireIfMatch`), `*`, or the current etag.
    func put(
        _ enrollment: ValidatedEnrollment, ifMatch: String?, requireIfMatch: Bool, now: Date = Date()
    ) async throws(ServiceFailure) -> IndividualEnrollment {
        let key = enrollment.key
        if let current = enrollments[key] {
            if let ifMatch {
                guard etagMatches(ifMatch, current.etag) else {
                    throw .preconditionFailed("The etag in If-Match is not the enrollment's current one (it changed since it was read).")
                }
            } else if requireIfMatch {
                throw .conflict("Enrollment '\(current.registrationId)' exists; send If-Match with its etag (or *) to replace it.")
            }
        } else if let ifMatch, ifMatch != "*" {
            // An etag of something that is not there cannot match.
            throw .preconditionFailed("If-Match names an etag, but enrollment '\(enrollment.value.registrationId)' does not exist.")
        }
        let stored = store(enrollment, now: now)
        try await save()
        return stored
    }

    func get(_ id: String) throws(ServiceFailure) -> IndividualEnrollment {
        guard let enrollment = enrollments[DPSRegistrationIDRules.key(id)] else { throw .enrollmentNotFound(id) }
        return enrollment
    }

    /// `DELETE /enrollments/{id}`, honouring `If-Match`.
    func delete(_ id: String, ifMatch: String?) async throws(ServiceFailure) {
        let key = DPSRegistrationIDRules.key(id)
        guard let current = enrollments[key] else { throw .enrollmentNotFound(id) }
        if let ifMatch, !etagMatches(ifMatch, current.etag) {
            throw .preconditionFailed("The etag in If-Match is not the enrollment's current one (it changed since it was read).")
        }
        remove(key)
        try await save()
    }

    /// `POST /enrollments`: each enrollment on its own (one failing does not stop
    /// the others), saved once. `items` are the operation's enrollments, each
    /// validated or with the failure validation found.
    func bulk(
        mode: BulkEnrollmentMode, items: [Result<ValidatedEnrollment, BulkItemFailure>], now: Date = Date()
    ) async throws(ServiceFailure) -> BulkEnrollmentOperationResult {
        var errors: [BulkEnrollmentOperationError] = []
        var changed = false
        var seen: Set<String> = []
        for item in items {
            let enrollment: ValidatedEnrollment
            switch item {
            case .failure(let failure):
                errors.append(failure.error)
                continue
            case .success(let value):
                enrollment = value
            }
            let id = enrollment.value.registrationId
            func fail(_ failure: ServiceFailure) {
                errors.append(BulkEnrollmentOperationError(registrationId: id, errorCode: failure.errorCode, errorStatus: failure.message))
            }
            // One operation names each enrollment once: which of two would win is
            // not something a client should depend on.
            guard seen.insert(enrollment.key).inserted else {
                fail(.badBody("Enrollment '\(id)' appears more than once in this bulk operation."))
                continue
            }
            let current = enrollments[enrollment.key]
            switch mode {
            case .create:
                if current != nil {
                    fail(.conflict("Enrollment '\(id)' already exists."))
                    continue
                }
                store(enrollment, now: now)
            case .update:
                store(enrollment, now: now)
            case .updateIfMatchETag:
                guard let current else { fail(.enrollmentNotFound(id)); continue }
                guard let etag = enrollment.value.etag else {
                    fail(.preconditionFailed("Mode updateIfMatchETag needs each enrollment's etag; '\(id)' has none."))
                    continue
                }
                guard etagMatches(etag, current.etag) else {
                    fail(.preconditionFailed("The etag of '\(id)' is not the enrollment's current one."))
                    continue
                }
                store(enrollment, now: now)
            case .delete:
                guard let current else { fail(.enrollmentNotFound(id)); continue }
                if let etag = enrollment.value.etag, !etagMatches(etag, current.etag) {
                    fail(.preconditionFailed("The etag of '\(id)' is not the enrollment's current one."))
                    continue
                }
                remove(enrollment.key)
            }
            changed = true
        }
        if changed { try await save() }
        return BulkEnrollmentOperationResult(isSuccessful: errors.isEmpty, errors: errors)
    }

    /// One page of `POST /enrollments/query`, in registration-ID order: at most
    /// `limit` enrollments after the one keyed `after`, and the key to continue from
    /// when more follow.
    func page(limit: Int, after: String?) -> (enrollments: [IndividualEnrollment], next: String?) {
        let keys = enrollments.keys.sorted()
        let start = after.map { after in keys.firstIndex { $0 > after } ?? keys.endIndex } ?? keys.startIndex
        let end = min(start + limit, keys.endIndex)
        let page = keys[start..<end].map { enrollments[$0]! }
        return (page, end < keys.endIndex ? keys[end - 1] : nil)
    }

    // MARK: Registrations

    func registration(_ id: String) throws(ServiceFailure) -> DeviceRegistrationState {
        guard let state = registrations[DPSRegistrationIDRules.key(id)] else { throw .registrationNotFound(id) }
        return state
    }

    /// Records a device's registration state as of `now` (created on first
    /// use), with a new etag; on disk before it returns.
    @discardableResult
    func recordRegistration(
        _ id: String, status: RegistrationStatus, assignedHub: String? = nil, deviceId: String? = nil,
        errorCode: Int? = nil, errorMessage: String? = nil, now: Date = Date()
    ) async throws(ServiceFailure) -> DeviceRegistrationState {
        let key = DPSRegistrationIDRules.key(id)
        let timestamp = dpsTimestamp(now)
        let state = DeviceRegistrationState(
            registrationId: id, status: status, assignedHub: assignedHub, deviceId: deviceId,
            errorCode: errorCode, errorMessage: errorMessage,
            createdDateTimeUtc: registrations[key]?.createdDateTimeUtc ?? timestamp,
            lastUpdatedDateTimeUtc: timestamp, etag: Self.newETag())
        registrations[key] = state
        generation += 1
        try await save()
        return state
    }

    /// The enrollment for `id`, if any (the device API's lookup; no error body).
    func enrollment(_ id: String) -> IndividualEnrollment? {
        enrollments[DPSRegistrationIDRules.key(id)]
    }

    func deleteRegistration(_ id: String, ifMatch: String?) async throws(ServiceFailure) {
        let key = DPSRegistrationIDRules.key(id)
        guard let current = registrations[key] else { throw .registrationNotFound(id) }
        if let ifMatch, !etagMatches(ifMatch, current.etag) {
            throw .preconditionFailed("The etag in If-Match is not the registration's current one.")
        }
        registrations[key] = nil
        generation += 1
        try await save()
    }

    // MARK: Changes and saving

    /// Puts `enrollment` in place with a new etag and the service's fields.
    @discardableResult
    private func store(_ enrollment: ValidatedEnrollment, now: Date) -> IndividualEnrollment {
        var value = enrollment.value
        let timestamp = dpsTimestamp(now)
        value.createdDateTimeUtc = enrollments[enrollment.key]?.createdDateTimeUtc ?? timestamp
        value.lastUpdatedDateTimeUtc = timestamp
        value.etag = Self.newETag()
        if value.provisioningStatus == nil { value.provisioningStatus = .enabled }
        enrollments[enrollment.key] = value
        encodedEnrollments[enrollment.key] = try? Self.encoder().encode(value)
        generation += 1
        return value
    }

    private func remove(_ key: String) {
        enrollments[key] = nil
        encodedEnrollments[key] = nil
        generation += 1
    }

    /// Returns once every change made so far is on disk.
    private func save() async throws(ServiceFailure) {
        let wanted = generation
        while savedGeneration < wanted {
            if let saving {
                // Another request's save is writing: it may not hold our change, so
                // wait for it and look again.
                _ = try? await saving.value
                continue
            }
            let snapshot = encodedState()
            let snapshotGeneration = generation
            let file = self.file
            let task = Task {
                defer { self.saving = nil }
                try await NIOThreadPool.singleton.runIfActive {
                    try DurableFile.write(snapshot, to: file, mode: 0o600)
                }
                self.savedGeneration = max(self.savedGeneration, snapshotGeneration)
            }
            saving = task
            do {
                try await task.value
            } catch {
                throw .stateNotSaved("\(error)")
            }
        }
    }

    /// The whole state as `state.json` holds it, assembled from the enrollments'
    /// JSON encoded at their last change (re-encoding 1,000 certificates for every
    /// save would cost more than the save).
    private func encodedState() -> [UInt8] {
        var out: [UInt8] = Array(#"{"version":\#(PersistedState.currentVersion),"enrollments":["#.utf8)
        for (index, key) in encodedEnrollments.keys.sorted().enumerated() {
            if index > 0 { out.append(UInt8(ascii: ",")) }
            out += encodedEnrollments[key]!
        }
        out += Array(#"],"registrations":"#.utf8)
        let sortedRegistrations = registrations.keys.sorted().map { registrations[$0]! }
        out += (try? Self.encoder().encode(sortedRegistrations)).map(Array.init) ?? Array("[]".utf8)
        out += Array("}\n".utf8)
        return out
    }

    private static func encoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }

    /// An opaque etag, new for every write, in the shape DPS's have (base64 of a
    /// quoted identifier).
    static func newETag() -> String {
        Data("\"\(UUID().uuidString.lowercased())\"".utf8).base64EncodedString()
    }
}

/// Whether an `If-Match` value (or a bulk item's etag) names `current`: `*` names
/// any, and the quotes HTTP puts around an entity tag are optional.
func etagMatches(_ given: String, _ current: String?) -> Bool {
    if given == "*" { return true }
    guard let current else { return false }
    func bare(_ tag: String) -> Substring {
        let tag = tag.trimmingCharacters(in: .whitespaces)
        if tag.count >= 2, tag.hasPrefix("\""), tag.hasSuffix("\"") { return tag.dropFirst().dropLast() }
        return Substring(tag)
    }
    return bare(given) == bare(current)
}

/// What `state.json` holds.
struct PersistedState: Codable {
    static let currentVersion = 1
    var version: Int
    var enrollments: [IndividualEnrollment]
    var registrations: [DeviceRegistrationState]
}

/// A bulk item refused before it reached the store (its ID or certificate).
struct BulkItemFailure: Error {
    var error: BulkEnrollmentOperationError
}

extension InputLimit {
    /// `state.json`: about 2.5 KB per enrollment; 256 MiB is ~100,000 of them.
    static let emulatorState = InputLimit(bytes: 256 << 20, kind: "the emulator's state.json")
}
