import DPSModel
import DevKitModel
import Foundation

/// A DPS request that failed, with what the service said: the HTTP status, DPS's
/// error code, message and tracking ID (what Microsoft support asks for). Never
/// carries the SAS token or the key.
public struct DPSServiceError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// The service answered with an error status.
        case http
        /// It could not be reached: DNS, connection refused, TLS handshake.
        case unreachable
        /// No answer in time (connect or request timeout), after the retries.
        case timedOut
        /// The connection broke mid-request (reset, closed), after the retries.
        case connectionLost
        /// An answer that is not what the API documents (not JSON, wrong shape).
        case invalidResponse
        /// A value the client refuses before sending (an ID DPS would refuse, > 10 in a bulk).
        case invalidRequest
        /// The trust anchors (`--ca-file`) could not be read.
        case trustAnchors
    }

    public var kind: Kind
    /// What was asked, e.g. `PUT /enrollments/az-1`.
    public var operation: String
    public var status: Int?
    public var errorCode: Int?
    public var message: String?
    public var trackingId: String?
    /// Tries made (retries included).
    public var attempts: Int

    public init(
        kind: Kind, operation: String, status: Int? = nil, errorCode: Int? = nil, message: String? = nil,
        trackingId: String? = nil, attempts: Int = 1
    ) {
        self.kind = kind; self.operation = operation; self.status = status; self.errorCode = errorCode
        self.message = message; self.trackingId = trackingId; self.attempts = attempts
    }

    /// Throttled (429) or unavailable (503) still after the retries.
    public var isThrottled: Bool { kind == .http && (status == 429 || status == 503) }

    /// The service's words, then its error code and tracking ID, all escaped.
    public var description: String {
        var text: String
        switch kind {
        case .http:
            text = "DPS answered \(operation) with HTTP \(status.map(String.init) ?? "?")"
            if let message, !message.isEmpty { text += ": \(escaped(message))" }
        case .unreachable: text = "cannot reach DPS for \(operation): \(escaped(message ?? "unknown reason"))"
        case .timedOut: text = "DPS did not answer \(operation) in time: \(escaped(message ?? "timeout"))"
        case .connectionLost: text = "the connection to DPS broke during \(operation): \(escaped(message ?? "closed"))"
        case .invalidResponse: text = "DPS's answer to \(operation) is not what the API documents: \(escaped(message ?? ""))"
        case .invalidRequest: text = escaped(message ?? "invalid request")
        case .trustAnchors: text = escaped(message ?? "cannot read the trust anchors")
        }
        var details: [String] = []
        if let errorCode { details.append("error code \(errorCode)") }
        if let trackingId { details.append("tracking ID \(escaped(trackingId))") }
        if attempts > 1 { details.append("\(attempts) tries") }
        if !details.isEmpty { text += " (" + details.joined(separator: ", ") + ")" }
        return text
    }
}
