import Foundation

/// `provisioningStatus`: `enabled` or `disabled`; another value the service may add
/// is kept as it came.
public struct ProvisioningStatus: RawRepresentable, Codable, Sendable, Hashable, CustomStringConvertible {
    public var rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public static let enabled = ProvisioningStatus(rawValue: "enabled")
    public static let disabled = ProvisioningStatus(rawValue: "disabled")
    public var description: String { rawValue }
    public init(from decoder: any Decoder) throws { rawValue = try decoder.singleValueContainer().decode(String.self) }
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(rawValue)
    }
}

/// What DPS reports about an enrolled certificate (`...primary.info`), filled in by
/// the service: the client never sends it.
public struct X509CertificateInfo: Codable, Sendable, Equatable {
    public var subjectName: String?
    public var sha1Thumbprint: String?
    public var sha256Thumbprint: String?
    public var issuerName: String?
    public var notBeforeUtc: String?
    public var notAfterUtc: String?
    public var serialNumber: String?
    public var version: Int?

    public init(
        subjectName: String? = nil, sha1Thumbprint: String? = nil, sha256Thumbprint: String? = nil,
        issuerName: String? = nil, notBeforeUtc: String? = nil, notAfterUtc: String? = nil,
        serialNumber: String? = nil, version: Int? = nil
    ) {
        self.subjectName = subjectName; self.sha1Thumbprint = sha1Thumbprint
        self.sha256Thumbprint = sha256Thumbprint; self.issuerName = issuerName
        self.notBeforeUtc = notBeforeUtc; self.notAfterUtc = notAfterUtc
        self.serialNumber = serialNumber; self.version = version
    }
}

/// One client certificate: the PEM text sent, and the service's `info` in answers.
public struct X509CertificateWithInfo: Codable, Sendable, Equatable {
    public var certificate: String?
    public var info: X509CertificateInfo?
    public init(certificate: String? = nil, info: X509CertificateInfo? = nil) {
        self.certificate = certificate
        self.info = info
    }
}

public struct X509Certificates: Codable, Sendable, Equatable {
    public var primary: X509CertificateWithInfo?
    public var secondary: X509CertificateWithInfo?
    public init(primary: X509CertificateWithInfo? = nil, secondary: X509CertificateWithInfo? = nil) {
        self.primary = primary
        self.secondary = secondary
    }
}

/// `attestation.x509`. Only client certificates (individual enrollments); the
/// group fields (`signingCertificates`, `caReferences`) are kept as they came.
public struct X509Attestation: Codable, Sendable, Equatable {
    public var clientCertificates: X509Certificates?
    public var signingCertificates: JSONValue?
    public var caReferences: JSONValue?
    public init(clientCertificates: X509Certificates? = nil) { self.clientCertificates = clientCertificates }
}

/// `attestation`: `type` is `x509` here; TPM and symmetric-key attestations are
/// kept as they came (devkit only writes X.509 ones).
public struct Attestation: Codable, Sendable, Equatable {
    public var type: String
    public var x509: X509Attestation?
    public var tpm: JSONValue?
    public var symmetricKey: JSONValue?
    public init(type: String, x509: X509Attestation? = nil) {
        self.type = type
        self.x509 = x509
    }

    /// X.509 attestation with `pem` (sent as it is, as the Azure CLI does) as the primary certificate.
    public static func x509(primaryPEM pem: String) -> Attestation {
        Attestation(type: "x509", x509: X509Attestation(
            clientCertificates: X509Certificates(primary: X509CertificateWithInfo(certificate: pem))))
    }
}

/// An individual enrollment, the body of `PUT /enrollments/{id}` and of its answers.
///
/// Fields the model does not name (`initialTwin`, `capabilities`,
/// `reprovisionPolicy`, `allocationPolicy`, `iotHubs`, ...) are kept in ``extra``
/// and written back, so an enrollment read, changed and PUT loses nothing.
public struct IndividualEnrollment: Codable, Sendable, Equatable {
    public var registrationId: String
    public var attestation: Attestation
    public var deviceId: String?
    public var iotHubHostName: String?
    public var provisioningStatus: ProvisioningStatus?
    /// In answers; sent on an update (the service also takes `If-Match`).
    public var etag: String?
    public var createdDateTimeUtc: String?
    public var lastUpdatedDateTimeUtc: String?
    /// Every other top-level field, as it came.
    public var extra: [String: JSONValue]

    public init(
        registrationId: String, attestation: Attestation, deviceId: String? = nil, iotHubHostName: String? = nil,
        provisioningStatus: ProvisioningStatus? = nil, etag: String? = nil, createdDateTimeUtc: String? = nil,
        lastUpdatedDateTimeUtc: String? = nil, extra: [String: JSONValue] = [:]
    ) {
        self.registrationId = registrationId; self.attestation = attestation; self.deviceId = deviceId
        self.iotHubHostName = iotHubHostName; self.provisioningStatus = provisioningStatus; self.etag = etag
        self.createdDateTimeUtc = createdDateTimeUtc; self.lastUpdatedDateTimeUtc = lastUpdatedDateTimeUtc
        self.extra = extra
    }

    /// An X.509 individual enrollment for a board's Alias certificate.
    public static func x509(
        registrationId: String, certificatePEM: String, deviceId: String? = nil, iotHubHostName: String? = nil,
        provisioningStatus: ProvisioningStatus = .enabled
    ) -> IndividualEnrollment {
        IndividualEnrollment(
            registrationId: registrationId, attestation: .x509(primaryPEM: certificatePEM), deviceId: deviceId,
            iotHubHostName: iotHubHostName, provisioningStatus: provisioningStatus)
    }

    /// The primary client certificate's PEM text, when the enrollment is X.509.
    public var primaryCertificatePEM: String? { attestation.x509?.clientCertificates?.primary?.certificate }
    /// What the service reports of the primary certificate.
    public var primaryCertificateInfo: X509CertificateInfo? { attestation.x509?.clientCertificates?.primary?.info }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case registrationId, attestation, deviceId, iotHubHostName, provisioningStatus, etag
        case createdDateTimeUtc, lastUpdatedDateTimeUtc
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        registrationId = try c.decode(String.self, forKey: .registrationId)
        attestation = try c.decode(Attestation.self, forKey: .attestation)
        deviceId = try c.decodeIfPresent(String.self, forKey: .deviceId)
        iotHubHostName = try c.decodeIfPresent(String.self, forKey: .iotHubHostName)
        provisioningStatus = try c.decodeIfPresent(ProvisioningStatus.self, forKey: .provisioningStatus)
        etag = try c.decodeIfPresent(String.self, forKey: .etag)
        createdDateTimeUtc = try c.decodeIfPresent(String.self, forKey: .createdDateTimeUtc)
        lastUpdatedDateTimeUtc = try c.decodeIfPresent(String.self, forKey: .lastUpdatedDateTimeUtc)
        let known = Set(CodingKeys.allCases.map(\.stringValue))
        let all = try decoder.container(keyedBy: AnyKey.self)
        var extra: [String: JSONValue] = [:]
        for key in all.allKeys where !known.contains(key.stringValue) {
            extra[key.stringValue] = try all.decode(JSONValue.self, forKey: key)
        }
        self.extra = extra
    }

    public func encode(to encoder: any Encoder) throws {
        var all = encoder.container(keyedBy: AnyKey.self)
        for (name, value) in extra { try all.encode(value, forKey: AnyKey(name)) }
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(registrationId, forKey: .registrationId)
        try c.encode(attestation, forKey: .attestation)
        try c.encodeIfPresent(deviceId, forKey: .deviceId)
        try c.encodeIfPresent(iotHubHostName, forKey: .iotHubHostName)
        try c.encodeIfPresent(provisioningStatus, forKey: .provisioningStatus)
        try c.encodeIfPresent(etag, forKey: .etag)
        try c.encodeIfPresent(createdDateTimeUtc, forKey: .createdDateTimeUtc)
        try c.encodeIfPresent(lastUpdatedDateTimeUtc, forKey: .lastUpdatedDateTimeUtc)
    }
}

/// `mode` of a bulk enrollment operation.
public enum BulkEnrollmentMode: String, Codable, Sendable, CaseIterable {
    case create, update, updateIfMatchETag, delete
}

/// The body of `POST /enrollments`: up to ``maxEnrollments`` enrollments at once.
public struct BulkEnrollmentOperation: Codable, Sendable, Equatable {
    /// The service takes at most 10 enrollments per bulk request.
    public static let maxEnrollments = 10

    public var mode: BulkEnrollmentMode
    public var enrollments: [IndividualEnrollment]

    /// Checks the limit (a decoded body is not checked: the local DPS answers it with 400).
    public init(mode: BulkEnrollmentMode, enrollments: [IndividualEnrollment]) throws(BulkEnrollmentSizeError) {
        guard !enrollments.isEmpty, enrollments.count <= Self.maxEnrollments else {
            throw BulkEnrollmentSizeError(count: enrollments.count)
        }
        self.mode = mode
        self.enrollments = enrollments
    }
}

/// A bulk operation with no enrollments or more than 10.
public struct BulkEnrollmentSizeError: Error, Equatable, Sendable, CustomStringConvertible {
    public var count: Int
    public var description: String {
        "a bulk enrollment operation holds 1 to \(BulkEnrollmentOperation.maxEnrollments) enrollments, not \(count)"
    }
}

/// One enrollment a bulk operation could not apply.
public struct BulkEnrollmentOperationError: Codable, Sendable, Equatable {
    public var registrationId: String
    public var errorCode: Int
    public var errorStatus: String?
    public init(registrationId: String, errorCode: Int, errorStatus: String?) {
        self.registrationId = registrationId
        self.errorCode = errorCode
        self.errorStatus = errorStatus
    }
}

/// The answer to `POST /enrollments`: the others were applied.
public struct BulkEnrollmentOperationResult: Codable, Sendable, Equatable {
    public var isSuccessful: Bool
    public var errors: [BulkEnrollmentOperationError]
    public init(isSuccessful: Bool, errors: [BulkEnrollmentOperationError] = []) {
        self.isSuccessful = isSuccessful
        self.errors = errors
    }
    enum CodingKeys: String, CodingKey { case isSuccessful, errors }
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        isSuccessful = try c.decode(Bool.self, forKey: .isSuccessful)
        errors = try c.decodeIfPresent([BulkEnrollmentOperationError].self, forKey: .errors) ?? []
    }
}

/// The body of `POST /enrollments/query`.
public struct QuerySpecification: Codable, Sendable, Equatable {
    public var query: String
    public init(query: String = "*") { self.query = query }
}

/// `status` of a device registration: `unassigned`, `assigning`, `assigned`,
/// `failed`, `disabled`; another value is kept as it came.
public struct RegistrationStatus: RawRepresentable, Codable, Sendable, Hashable, CustomStringConvertible {
    public var rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public static let unassigned = Self(rawValue: "unassigned")
    public static let assigning = Self(rawValue: "assigning")
    public static let assigned = Self(rawValue: "assigned")
    public static let failed = Self(rawValue: "failed")
    public static let disabled = Self(rawValue: "disabled")
    public var description: String { rawValue }
    public init(from decoder: any Decoder) throws { rawValue = try decoder.singleValueContainer().decode(String.self) }
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(rawValue)
    }
}

/// The answer to `GET /registrations/{id}`: how the device's last registration went.
public struct DeviceRegistrationState: Codable, Sendable, Equatable {
    public var registrationId: String
    public var status: RegistrationStatus?
    public var assignedHub: String?
    public var deviceId: String?
    public var substatus: String?
    public var errorCode: Int?
    public var errorMessage: String?
    public var createdDateTimeUtc: String?
    public var lastUpdatedDateTimeUtc: String?
    public var etag: String?

    public init(
        registrationId: String, status: RegistrationStatus? = nil, assignedHub: String? = nil, deviceId: String? = nil,
        substatus: String? = nil, errorCode: Int? = nil, errorMessage: String? = nil,
        createdDateTimeUtc: String? = nil, lastUpdatedDateTimeUtc: String? = nil, etag: String? = nil
    ) {
        self.registrationId = registrationId; self.status = status; self.assignedHub = assignedHub
        self.deviceId = deviceId; self.substatus = substatus; self.errorCode = errorCode
        self.errorMessage = errorMessage; self.createdDateTimeUtc = createdDateTimeUtc
        self.lastUpdatedDateTimeUtc = lastUpdatedDateTimeUtc; self.etag = etag
    }
}

/// The service's error body: `{"errorCode": 400004, "trackingId": "...", "message":
/// "...", "info": {...}, "timestampUtc": "..."}`. `errorCode` is taken as a number or
/// a numeric string (older answers); other fields are optional.
public struct DPSErrorBody: Codable, Sendable, Equatable {
    public var errorCode: Int?
    public var trackingId: String?
    public var message: String?
    public var info: [String: JSONValue]?
    public var timestampUtc: String?

    public init(errorCode: Int?, trackingId: String? = nil, message: String? = nil,
                info: [String: JSONValue]? = nil, timestampUtc: String? = nil) {
        self.errorCode = errorCode; self.trackingId = trackingId; self.message = message
        self.info = info; self.timestampUtc = timestampUtc
    }

    enum CodingKeys: String, CodingKey { case errorCode, trackingId, message, info, timestampUtc }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        if let n = try? c.decodeIfPresent(Int.self, forKey: .errorCode) {
            errorCode = n
        } else if let s = try? c.decodeIfPresent(String.self, forKey: .errorCode) {
            errorCode = Int(s)
        } else {
            errorCode = nil
        }
        trackingId = try c.decodeIfPresent(String.self, forKey: .trackingId)
        message = try c.decodeIfPresent(String.self, forKey: .message)
        info = try? c.decodeIfPresent([String: JSONValue].self, forKey: .info)
        timestampUtc = try c.decodeIfPresent(String.self, forKey: .timestampUtc)
    }
}
