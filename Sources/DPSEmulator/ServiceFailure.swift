import DPSModel
import Foundation
import HTTPTypes

/// A request the emulator refuses, answered as DPS answers: the HTTP status, a body
/// `{"errorCode", "trackingId", "message", "info", "timestampUtc"}` and the code again
/// in `x-ms-error-code`.
///
/// DPS documents its error codes only as "HTTP status × 1000 + a number"; the
/// numbers below are the emulator's own (Docs/dps-emulator.md lists them), except
/// 401002, seen from the real service.
struct ServiceFailure: Error, Equatable {
    var status: HTTPResponse.Status
    var errorCode: Int
    var message: String

    /// The body is not JSON, or not the shape the operation takes.
    static func badBody(_ why: String) -> Self { .init(status: .badRequest, errorCode: 400001, message: why) }
    /// `api-version` missing or not one the emulator speaks.
    static func badAPIVersion(_ why: String) -> Self { .init(status: .badRequest, errorCode: 400002, message: why) }
    /// A registration ID DPS would refuse, or a body's ID that is not the path's.
    static func badRegistrationID(_ why: String) -> Self { .init(status: .badRequest, errorCode: 400004, message: why) }
    /// Not an X.509 attestation, or a certificate that cannot be read.
    static func badCertificate(_ why: String) -> Self { .init(status: .badRequest, errorCode: 400010, message: why) }
    /// The certificate's subject CN is not the registration ID.
    static func commonNameMismatch(_ why: String) -> Self { .init(status: .badRequest, errorCode: 400011, message: why) }
    /// A bulk operation with no enrollment or more than 10.
    static func bulkSize(_ why: String) -> Self { .init(status: .badRequest, errorCode: 400012, message: why) }
    /// A query the emulator does not run (only `*` / `SELECT * FROM enrollments`), or a bad page size or token.
    static func badQuery(_ why: String) -> Self { .init(status: .badRequest, errorCode: 400013, message: why) }
    /// Any refused SAS token (the reason is in the message, as DPS's differ only there).
    static func unauthorized(_ why: String) -> Self { .init(status: .unauthorized, errorCode: 401002, message: why) }
    /// The device API's refusal of a presented certificate that matches no enabled
    /// enrollment (or none at all): DPS's own code and message.
    static let invalidCertificate = Self(status: .unauthorized, errorCode: 401002, message: "Invalid certificate")
    static func operationNotFound(_ id: String) -> Self {
        .init(status: .notFound, errorCode: 404203, message: "Operation '\(id)' not found (or already ended).")
    }
    static func enrollmentNotFound(_ id: String) -> Self {
        .init(status: .notFound, errorCode: 404201, message: "Enrollment '\(id)' not found.")
    }
    static func registrationNotFound(_ id: String) -> Self {
        .init(status: .notFound, errorCode: 404202, message: "Device registration '\(id)' not found.")
    }
    static func noSuchOperation(_ method: HTTPRequest.Method, _ path: String) -> Self {
        .init(status: .notFound, errorCode: 404000, message: "No operation \(method) \(path) in this service (the emulator implements the enrollment and registration-state API).")
    }
    /// Bulk `create` of an enrollment that exists, or a PUT without `If-Match`
    /// under `--require-if-match`.
    static func conflict(_ why: String) -> Self { .init(status: .conflict, errorCode: 409201, message: why) }
    /// `If-Match` (or a bulk item's `etag`) is not the enrollment's current etag.
    static func preconditionFailed(_ why: String) -> Self { .init(status: .preconditionFailed, errorCode: 412201, message: why) }
    static func tooLarge(_ limit: Int) -> Self {
        .init(status: .contentTooLarge, errorCode: 413001, message: "The request body is larger than \(limit) bytes.")
    }
    static let throttled = Self(status: .tooManyRequests, errorCode: 429001, message: "Too many requests (the emulator's --throttle).")
    static let unavailable = Self(status: .serviceUnavailable, errorCode: 503001, message: "The service is unavailable (the emulator's --fail-5xx).")
    /// The state could not be saved: the change is not durable.
    static func stateNotSaved(_ why: String) -> Self {
        .init(status: .internalServerError, errorCode: 500001, message: "The emulator could not save its state: \(why)")
    }

    /// The body DPS sends with this failure.
    func body(trackingId: String, now: Date = Date()) -> DPSErrorBody {
        DPSErrorBody(errorCode: errorCode, trackingId: trackingId, message: message, info: [:], timestampUtc: dpsTimestamp(now))
    }
}

/// A time as DPS writes it: ISO 8601, UTC, with fractional seconds.
func dpsTimestamp(_ date: Date) -> String {
    date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true))
}
