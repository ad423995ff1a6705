// DPSModel: the Azure IoT Hub Device Provisioning Service's values, shared by the
// client (DPSService), the commands (`devkit dps ...`) and the local DPS
// (`devkit emulate-dps`). Pure values: Foundation, swift-crypto, swift-certificates.
// Facts: Docs/dps-service-api.md (service API 2021-10-01).
//
// README: the public API
//   DPSAPI.version                         "2021-10-01", on every request
//   DPSConnectionString(text)              HostName=..;SharedAccessKeyName=..;SharedAccessKey=..
//     .hostName .policyName .key           key: DPSSharedAccessKey (redacted, decoded once)
//     .token(expiry:) / .token(validFor:now:)
//   SASToken.make(resource:key:policyName:expiry:) -> SASToken   (.header, .expiry)
//   SASToken.parse(header) -> SASToken.Parsed (resource, signature, expiry, policyName)
//   SASToken.verify(header, resource:, policies: [name: key], now:) throws(SASTokenError)
//   SASToken.urlEncode / urlDecode          percent-encoding of all but RFC 3986 unreserved
//   IndividualEnrollment (Codable; unknown top-level fields kept in `extra`)
//     .x509(registrationId:certificatePEM:deviceId:iotHubHostName:provisioningStatus:)
//     .primaryCertificatePEM .primaryCertificateInfo
//   Attestation, X509Attestation, X509Certificates, X509CertificateWithInfo, X509CertificateInfo
//   ProvisioningStatus (.enabled/.disabled, any string kept)
//   BulkEnrollmentOperation(mode:enrollments:) (≤ BulkEnrollmentOperation.maxEnrollments = 10)
//   BulkEnrollmentMode (.create .update .updateIfMatchETag .delete)
//   BulkEnrollmentOperationResult, BulkEnrollmentOperationError
//   QuerySpecification(query: "*")
//   DeviceRegistrationState, RegistrationStatus
//   DPSErrorBody (errorCode Int, trackingId, message, info, timestampUtc)
//   EnrollmentCertificate(pem:) / (der:)    DER, commonName, subjectName, issuerName,
//     sha1Thumbprint, sha256Thumbprint (upper-case hex, as DPS), notBefore/notAfter,
//     serialNumber, version, .info (X509CertificateInfo), sameCertificate(as:)
//   JSONValue                                any JSON, for fields kept as they came
//   DevKitModel.DPSRegistrationIDRules.check(id, x509:) / .key(id): DPS's ID rules
import Foundation

/// Constants of the DPS service API.
public enum DPSAPI {
    /// The stable service API version the Azure CLI uses; on every request.
    public static let version = "2021-10-01"
    /// Response/request header carrying the query's continuation token.
    public static let continuationHeader = "x-ms-continuation"
    /// Request header: the most items one query page returns.
    public static let maxItemCountHeader = "x-ms-max-item-count"
    /// Response header naming the error (DPS's errorCode), beside the body.
    public static let errorCodeHeader = "x-ms-error-code"
}

/// Any JSON value, for the fields of a DPS body this model does not name
/// (`initialTwin`, `capabilities`, ...), kept as they came so that an enrollment
/// read and written back loses nothing.
public enum JSONValue: Codable, Sendable, Equatable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let n = try? c.decode(Double.self) { self = .number(n) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([JSONValue].self) { self = .array(a) }
        else { self = .object(try c.decode([String: JSONValue].self)) }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .null: try c.encodeNil()
        case .bool(let b): try c.encode(b)
        case .number(let n):
            // Integers (twin versions, counts) written without a fraction.
            if n.rounded() == n, abs(n) < 1e15 { try c.encode(Int64(n)) } else { try c.encode(n) }
        case .string(let s): try c.encode(s)
        case .array(let a): try c.encode(a)
        case .object(let o): try c.encode(o)
        }
    }
}

/// A coding key for any name: the unknown fields of a body.
struct AnyKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(_ s: String) { stringValue = s }
    init?(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}
