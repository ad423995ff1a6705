import Crypto
import DevKitModel
import Foundation

/// A DPS shared access policy's key: the decoded bytes of `SharedAccessKey`. Never
/// shown (description and mirror are redacted, like DevKitModel's secrets).
public struct DPSSharedAccessKey: Sendable, Hashable, CustomStringConvertible,
    CustomDebugStringConvertible, CustomReflectable
{
    /// The key bytes, for signing only.
    public let secretBytes: [UInt8]

    /// From the base64 text of a connection string; nil when it is not base64.
    public init?(base64 text: String) {
        guard let data = Data(base64Encoded: text), !data.isEmpty else { return nil }
        secretBytes = Array(data)
    }

    public init(bytes: [UInt8]) { secretBytes = bytes }

    /// The base64 text, for writing a connection string (the local DPS prints its own).
    public var base64: String { Data(secretBytes).base64EncodedString() }

    var symmetricKey: SymmetricKey { SymmetricKey(data: secretBytes) }

    public var description: String { "DPSSharedAccessKey(<redacted>)" }
    public var debugDescription: String { description }
    public var customMirror: Mirror { Mirror(self, children: [], displayStyle: .struct) }
}

/// A DPS shared access policy connection string,
/// `HostName=<dps>.azure-devices-provisioning.net;SharedAccessKeyName=<policy>;SharedAccessKey=<base64>`.
/// Parts in any order, surrounding whitespace and line ends ignored, names matched
/// case-insensitively (as the Azure SDKs do). Shown without its key.
public struct DPSConnectionString: Sendable, Hashable, CustomStringConvertible,
    CustomDebugStringConvertible, CustomReflectable
{
    /// The DPS host name, lower case (the SAS resource).
    public let hostName: String
    /// The shared access policy's name (`SharedAccessKeyName`).
    public let policyName: String
    public let key: DPSSharedAccessKey

    public init(hostName: String, policyName: String, key: DPSSharedAccessKey) {
        self.hostName = hostName.lowercased()
        self.policyName = policyName
        self.key = key
    }

    public init(_ text: String) throws(DPSConnectionStringError) {
        let text = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !text.isEmpty else { throw .empty }
        var parts: [String: String] = [:]
        for part in text.split(separator: ";", omittingEmptySubsequences: true) {
            let part = part.trimmingCharacters(in: .whitespaces)
            if part.isEmpty { continue }
            // Split at the first '=' only: base64 keys end with '=' padding.
            guard let eq = part.firstIndex(of: "=") else {
                // Never quoted: it could be a piece of the key.
                throw .malformedPart
            }
            let name = part[..<eq].trimmingCharacters(in: .whitespaces).lowercased()
            let value = part[part.index(after: eq)...].trimmingCharacters(in: .whitespaces)
            guard parts[name] == nil else { throw .duplicate(String(part[..<eq])) }
            parts[name] = value
        }
        if parts["deviceid"] != nil || parts["idscope"] != nil || parts["dpsendpoint"] != nil {
            throw .deviceConnectionString
        }
        guard let host = parts["hostname"], !host.isEmpty else { throw .missing("HostName") }
        guard let policy = parts["sharedaccesskeyname"], !policy.isEmpty else { throw .missing("SharedAccessKeyName") }
        guard let keyText = parts["sharedaccesskey"], !keyText.isEmpty else { throw .missing("SharedAccessKey") }
        guard !host.contains("/"), !host.contains(" "), host.unicodeScalars.allSatisfy({ $0.isASCII && $0.value > 0x20 })
        else { throw .badHostName(host) }
        guard let key = DPSSharedAccessKey(base64: keyText) else { throw .keyNotBase64 }
        self.init(hostName: host, policyName: policy, key: key)
    }

    /// The connection string's text, key included: for the local DPS to print the
    /// string it accepts, never for a log.
    public var secretText: String {
        "HostName=\(hostName);SharedAccessKeyName=\(policyName);SharedAccessKey=\(key.base64)"
    }

    /// A SAS token for this policy and host that expires at `expiry` (seconds since the epoch).
    public func token(expiry: Int64) -> SASToken {
        SASToken.make(resource: hostName, key: key, policyName: policyName, expiry: expiry)
    }

    /// A SAS token valid for `lifetime` seconds from `now`.
    public func token(validFor lifetime: TimeInterval = SASToken.defaultLifetime, now: Date = Date()) -> SASToken {
        token(expiry: Int64(now.timeIntervalSince1970 + lifetime))
    }

    public var description: String { "DPSConnectionString(HostName=\(hostName);SharedAccessKeyName=\(policyName);SharedAccessKey=<redacted>)" }
    public var debugDescription: String { description }
    public var customMirror: Mirror {
        Mirror(self, children: ["hostName": hostName, "policyName": policyName], displayStyle: .struct)
    }
}

/// Why a DPS connection string was refused. Never quotes the key.
public enum DPSConnectionStringError: Error, Equatable, Sendable, CustomStringConvertible {
    case empty
    /// The name of the part that is missing (`HostName`, `SharedAccessKeyName`, `SharedAccessKey`).
    case missing(String)
    case duplicate(String)
    /// A part without '=' (not quoted: it may be part of the key).
    case malformedPart
    case keyNotBase64
    case badHostName(String)
    /// A device's connection string (DeviceId=, IdScope=), not a service policy's.
    case deviceConnectionString

    public var description: String {
        let shape = "HostName=<dps>.azure-devices-provisioning.net;SharedAccessKeyName=<policy>;SharedAccessKey=<key>"
        switch self {
        case .empty: return "the DPS connection string is empty; it reads \(shape)"
        case .missing(let part): return "the DPS connection string has no \(part)=; it reads \(shape)"
        case .duplicate(let part): return "the DPS connection string gives \(escaped(part)) twice"
        case .malformedPart: return "the DPS connection string has a part without '='; it reads \(shape)"
        case .keyNotBase64: return "the DPS connection string's SharedAccessKey is not base64 (copy it again from the policy)"
        case .badHostName(let host): return "the DPS connection string's HostName '\(escaped(host))' is not a host name"
        case .deviceConnectionString:
            return "this is a device's connection string (DeviceId=/IdScope=), not a DPS shared access policy's; "
                + "use the service's policy (Shared access policies, e.g. provisioningserviceowner): \(shape)"
        }
    }
}
