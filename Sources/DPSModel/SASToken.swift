import Crypto
import Foundation

/// A DPS service SAS token, the `Authorization` header of every service request:
/// `SharedAccessSignature sr=<urlenc(resource)>&sig=<urlenc(signature)>&se=<expiry>&skn=<policy>`,
/// signature = base64(HMAC-SHA256(key, urlenc(resource) + "\n" + expiry)).
/// Written here because no Swift library signs Azure SAS tokens; swift-crypto does the HMAC.
public struct SASToken: Sendable, Equatable, CustomStringConvertible {
    /// One hour, as the Azure SDKs default to.
    public static let defaultLifetime: TimeInterval = 3600

    /// The whole header value. It authorises requests for its lifetime: never log it.
    public let header: String
    /// Seconds since the Unix epoch.
    public let expiry: Int64

    public var description: String { "SASToken(expiry: \(expiry), <redacted>)" }

    /// Signs a token for `resource` (the DPS host name: lower-cased here, no scheme).
    public static func make(resource: String, key: DPSSharedAccessKey, policyName: String, expiry: Int64) -> SASToken {
        let encodedResource = urlEncode(resource.lowercased())
        let signature = sign(encodedResource: encodedResource, expiry: expiry, key: key)
        let header = "SharedAccessSignature sr=\(encodedResource)&sig=\(urlEncode(signature))"
            + "&se=\(expiry)&skn=\(urlEncode(policyName))"
        return SASToken(header: header, expiry: expiry)
    }

    /// base64(HMAC-SHA256(key, encodedResource + "\n" + expiry)).
    static func sign(encodedResource: String, expiry: Int64, key: DPSSharedAccessKey) -> String {
        let mac = HMAC<SHA256>.authenticationCode(for: Data("\(encodedResource)\n\(expiry)".utf8), using: key.symmetricKey)
        return Data(mac).base64EncodedString()
    }

    /// Percent-encodes every byte but RFC 3986's unreserved characters
    /// (`A-Z a-z 0-9 - . _ ~`), upper-case hex: what the Azure SDKs do (Python's
    /// `urllib.parse.quote(s, safe="")`), so `.` and `-` of a host name stay as they are.
    public static func urlEncode(_ text: String) -> String {
        var out = ""
        for b in text.utf8 {
            switch b {
            case 0x41...0x5A, 0x61...0x7A, 0x30...0x39, 0x2D, 0x2E, 0x5F, 0x7E:
                out.unicodeScalars.append(Unicode.Scalar(b))
            default:
                out += "%" + String(b, radix: 16, uppercase: true).leftPadded(to: 2)
            }
        }
        return out
    }

    /// Decodes `%XX` (and `+` as a space, as form encoding writes it); nil when an
    /// escape is broken or the bytes are not UTF-8.
    public static func urlDecode(_ text: String) -> String? {
        var bytes: [UInt8] = []
        var utf8 = Array(text.utf8)[...]
        while let b = utf8.popFirst() {
            if b == 0x25 {
                guard utf8.count >= 2, let hi = hexValue(utf8.removeFirst()), let lo = hexValue(utf8.removeFirst())
                else { return nil }
                bytes.append(hi << 4 | lo)
            } else if b == 0x2B {
                bytes.append(0x20)
            } else {
                bytes.append(b)
            }
        }
        return String(validating: bytes, as: UTF8.self)
    }

    private static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case 0x30...0x39: c - 0x30
        case 0x41...0x46: c - 0x41 + 10
        case 0x61...0x66: c - 0x61 + 10
        default: nil
        }
    }

    /// A token's fields as the header carries them.
    public struct Parsed: Sendable, Equatable {
        /// `sr` as sent (still percent-encoded): what was signed.
        public var encodedResource: String
        /// `sr` decoded: the host name.
        public var resource: String
        /// `sig` decoded: the base64 signature.
        public var signature: String
        public var expiry: Int64
        /// `skn` decoded; nil when absent (DPS service tokens always carry it).
        public var policyName: String?
    }

    /// Reads an `Authorization` header value. Fields in any order.
    public static func parse(_ header: String) throws(SASTokenError) -> Parsed {
        let prefix = "SharedAccessSignature "
        guard header.hasPrefix(prefix) else { throw .malformed("it does not start with 'SharedAccessSignature '") }
        var fields: [String: String] = [:]
        for pair in header.dropFirst(prefix.count).split(separator: "&") {
            guard let eq = pair.firstIndex(of: "=") else { throw .malformed("a field without '='") }
            let name = String(pair[..<eq])
            guard fields[name] == nil else { throw .malformed("the field \(name) twice") }
            fields[name] = String(pair[pair.index(after: eq)...])
        }
        guard let sr = fields["sr"], let resource = urlDecode(sr) else { throw .malformed("no resource (sr)") }
        guard let sigText = fields["sig"], let sig = urlDecode(sigText) else { throw .malformed("no signature (sig)") }
        guard let seText = fields["se"], let se = Int64(seText) else { throw .malformed("no expiry (se)") }
        var policy: String?
        if let skn = fields["skn"] {
            guard let decoded = urlDecode(skn) else { throw .malformed("a broken policy name (skn)") }
            policy = decoded
        }
        return Parsed(encodedResource: sr, resource: resource, signature: sig, expiry: se, policyName: policy)
    }

    /// Checks a token the way the service does: its resource is `resource` (case
    /// ignored), its policy one of `policies`, it has not expired at `now`, and its
    /// signature is that policy key's (compared in constant time). Returns the policy name.
    @discardableResult
    public static func verify(
        _ header: String, resource: String, policies: [String: DPSSharedAccessKey], now: Date = Date()
    ) throws(SASTokenError) -> String {
        let token = try parse(header)
        guard token.resource.lowercased() == resource.lowercased() else { throw .wrongResource(token.resource) }
        guard let name = token.policyName else { throw .malformed("no policy name (skn)") }
        guard let key = policies[name] else { throw .unknownPolicy(name) }
        guard let signature = Data(base64Encoded: token.signature) else { throw .badSignature }
        let signed = Data("\(token.encodedResource)\n\(token.expiry)".utf8)
        // swift-crypto's check compares in constant time.
        guard HMAC<SHA256>.isValidAuthenticationCode(signature, authenticating: signed, using: key.symmetricKey)
        else { throw .badSignature }
        guard Double(token.expiry) > now.timeIntervalSince1970 else { throw .expired(token.expiry) }
        return name
    }
}

/// Why a SAS token was refused.
public enum SASTokenError: Error, Equatable, Sendable, CustomStringConvertible {
    case malformed(String)
    case wrongResource(String)
    case unknownPolicy(String)
    case badSignature
    case expired(Int64)

    public var description: String {
        switch self {
        case .malformed(let why): return "the SAS token is malformed: \(why)"
        case .wrongResource(let r): return "the SAS token is for '\(r)', not this service"
        case .unknownPolicy(let p): return "the SAS token names the policy '\(p)', which this service does not have"
        case .badSignature: return "the SAS token's signature does not match the policy's key"
        case .expired(let se): return "the SAS token expired at \(se) (seconds since the epoch)"
        }
    }
}

extension String {
    fileprivate func leftPadded(to n: Int) -> String { count >= n ? self : String(repeating: "0", count: n - count) + self }
}
