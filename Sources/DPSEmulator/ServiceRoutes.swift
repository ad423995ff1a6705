import DevKitModel
import DPSModel
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Synchronization

/// The service API's operations on the router: enrollments (one, bulk, query) and
/// registration states. Each handler gets a request that ``ServiceGate`` already
/// let through (faults, SAS token, `api-version`), and throws ``ServiceFailure``
/// for the gate to answer in DPS's shape.
struct ServiceRoutes: Sendable {
    let store: EnrollmentStore
    let ledger: RequestLedger
    let faults: EmulatorFaults

    /// Bodies larger than this are refused (ten enrollments take ~25 KB).
    static let bodyLimit = 1 << 20
    /// `x-ms-max-item-count` when the client sends none, and the most it may ask.
    static let defaultPageSize = 100
    static let maxPageSize = 1000

    func register(on router: Router<DPSRequestContext>) {
        router.put("/enrollments/:id") { request, context in try await put(request, context) }
        router.get("/enrollments/:id") { _, context in
            json(try await store.get(try pathID(context)).answered)
        }
        router.delete("/enrollments/:id") { request, context in
            try await store.delete(try pathID(context), ifMatch: request.headers[.ifMatch])
            return Response(status: .noContent)
        }
        router.post("/enrollments") { request, _ in try await bulk(request) }
        router.post("/enrollments/query") { request, _ in try await query(request) }
        router.get("/registrations/:id") { _, context in
            json(try await store.registration(try pathID(context)))
        }
        router.delete("/registrations/:id") { request, context in
            try await store.deleteRegistration(try pathID(context), ifMatch: request.headers[.ifMatch])
            return Response(status: .noContent)
        }
    }

    private func put(_ request: Request, _ context: DPSRequestContext) async throws -> Response {
        let id = try pathID(context)
        let enrollment = try validate(try await decodeBody(IndividualEnrollment.self, request), pathID: id)
        let stored = try await store.put(
            enrollment, ifMatch: request.headers[.ifMatch], requireIfMatch: faults.requireIfMatch)
        var headers = HTTPFields()
        headers[.eTag] = stored.etag
        return json(stored.answered, headers: headers)
    }

    private func bulk(_ request: Request) async throws -> Response {
        // Decoded item by item, so that one malformed enrollment is that item's
        // error, not the whole request's (as DPS reports per enrollment).
        let operation = try await decodeBody(LooseBulkOperation.self, request)
        let count = operation.enrollments.count
        guard (1...BulkEnrollmentOperation.maxEnrollments).contains(count) else {
            throw ServiceFailure.bulkSize(
                "A bulk enrollment operation takes 1 to \(BulkEnrollmentOperation.maxEnrollments) enrollments; this one has \(count).")
        }
        ledger.recordBulk(count)
        let items = operation.enrollments.map { raw -> Result<ValidatedEnrollment, BulkItemFailure> in
            let id = raw.registrationID ?? ""
            func failure(_ f: ServiceFailure) -> BulkItemFailure {
                BulkItemFailure(error: .init(registrationId: id, errorCode: f.errorCode, errorStatus: f.message))
            }
            if operation.mode == .delete {
                // Deleting needs the ID (and an etag, if any) only; the rest is not looked at.
                do {
                    try DPSRegistrationIDRules.check(id, x509: false)
                } catch {
                    return .failure(failure(.badRegistrationID("Invalid registration ID: \(error).")))
                }
                let value = IndividualEnrollment(registrationId: id, attestation: Attestation(type: "x509"), etag: raw.etag)
                return .success(ValidatedEnrollment(key: DPSRegistrationIDRules.key(id), value: value))
            }
            guard let enrollment = raw.enrollment else {
                return .failure(failure(.badBody("Enrollment \(id.isEmpty ? "without a registrationId" : "'\(id)'") is not an individual enrollment (registrationId, attestation).")))
            }
            do throws(ServiceFailure) {
                return .success(try validate(enrollment, pathID: nil))
            } catch {
                return .failure(failure(error))
            }
        }
        return json(try await store.bulk(mode: operation.mode, items: items))
    }

    private func query(_ request: Request) async throws -> Response {
        let specification = try await decodeBody(QuerySpecification.self, request)
        let normalized = specification.query.split(whereSeparator: \.isWhitespace).joined(separator: " ").lowercased()
        guard normalized == "*" || normalized == "select * from enrollments" else {
            throw ServiceFailure.badQuery("The emulator runs only the query '*' (or SELECT * FROM enrollments), not '\(specification.query)'.")
        }
        var limit = Self.defaultPageSize
        if let text = request.headers[HTTPField.Name(DPSAPI.maxItemCountHeader)!] {
            guard let n = Int(text), n > 0 else {
                throw ServiceFailure.badQuery("\(DPSAPI.maxItemCountHeader) must be a positive number, not '\(text)'.")
            }
            limit = min(n, Self.maxPageSize)
        }
        var after: String?
        if let token = request.headers[HTTPField.Name(DPSAPI.continuationHeader)!], !token.isEmpty {
            guard let data = Data(base64Encoded: token), let key = String(data: data, encoding: .utf8) else {
                throw ServiceFailure.badQuery("\(DPSAPI.continuationHeader) is not a token this service gave.")
            }
            after = key
        }
        let page = await store.page(limit: limit, after: after)
        var headers = HTTPFields()
        headers[HTTPField.Name("x-ms-item-type")!] = "Enrollment"
        if let next = page.next {
            // Opaque to clients: the last key of this page.
            headers[HTTPField.Name(DPSAPI.continuationHeader)!] = Data(next.utf8).base64EncodedString()
        }
        return json(page.enrollments.map(\.answered), headers: headers)
    }

    /// The `{id}` of the path, checked against DPS's general ID rules (the 64-
    /// character X.509 limit is checked with the enrollment).
    private func pathID(_ context: DPSRequestContext) throws(ServiceFailure) -> String {
        let id = context.parameters.get("id") ?? ""
        do {
            try DPSRegistrationIDRules.check(id, x509: false)
        } catch {
            throw .badRegistrationID("Invalid registration ID: \(error).")
        }
        return id
    }

    private func decodeBody<T: Decodable>(_ type: T.Type, _ request: Request) async throws -> T {
        let buffer: ByteBuffer
        do {
            buffer = try await request.body.collect(upTo: Self.bodyLimit)
        } catch {
            throw ServiceFailure.tooLarge(Self.bodyLimit)
        }
        do {
            return try JSONDecoder().decode(T.self, from: Data(buffer.readableBytesView))
        } catch let error as DecodingError {
            throw ServiceFailure.badBody("The request body is not a valid \(Self.bodyName(T.self)): \(Self.describe(error))")
        }
    }

    private static func bodyName(_ type: Any.Type) -> String {
        switch type {
        case is IndividualEnrollment.Type: "individual enrollment"
        case is LooseBulkOperation.Type: "bulk enrollment operation"
        case is QuerySpecification.Type: "query specification"
        default: "body"
        }
    }

    /// A decoding error in a sentence: where, and what was wrong.
    static func describe(_ error: DecodingError) -> String {
        func path(_ context: DecodingError.Context) -> String {
            let path = context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? "." + $0.stringValue }.joined()
            return path.isEmpty ? "" : " at \(path.hasPrefix(".") ? String(path.dropFirst()) : path)"
        }
        switch error {
        case .keyNotFound(let key, let context): return "missing \(key.stringValue)\(path(context))."
        case .typeMismatch(_, let context), .valueNotFound(_, let context):
            return "\(context.debugDescription)\(path(context))."
        case .dataCorrupted(let context): return "\(context.debugDescription)\(path(context))."
        @unknown default: return "\(error)"
        }
    }
}

/// `POST /enrollments` as received: the mode, and each enrollment kept whether
/// or not it decodes (its error is then reported for it alone).
private struct LooseBulkOperation: Decodable {
    var mode: BulkEnrollmentMode
    var enrollments: [LooseEnrollment]
}

private struct LooseEnrollment: Decodable {
    var enrollment: IndividualEnrollment?
    var registrationID: String?
    var etag: String?

    init(from decoder: any Decoder) throws {
        enrollment = try? IndividualEnrollment(from: decoder)
        struct Names: Decodable {
            var registrationId: String?
            var etag: String?
        }
        let names = try? Names(from: decoder)
        registrationID = names?.registrationId
        etag = names?.etag
    }
}

/// A JSON answer, as DPS sends them.
func json<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok, headers: HTTPFields = [:]) -> Response {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    // Encoding the model's own Codable types cannot fail (no non-finite numbers).
    let data = (try? encoder.encode(value)) ?? Data("{}".utf8)
    var headers = headers
    headers[.contentType] = "application/json; charset=utf-8"
    return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: data)))
}
