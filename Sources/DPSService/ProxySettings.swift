import Foundation

/// The HTTPS proxy from the environment, as curl and most tools read it:
/// `HTTPS_PROXY` (or `https_proxy`; lower case wins, as in curl), and `NO_PROXY` /
/// `no_proxy`: comma-separated host names, `.suffix` or `suffix` domain matches,
/// `*` for all, IP addresses; ports are ignored. AsyncHTTPClient takes a proxy but
/// reads no environment, hence this small reader.
public struct ProxySettings: Sendable, Equatable {
    public var host: String
    public var port: Int
    /// `user:password@` in the proxy URL, for Basic proxy authentication.
    public var user: String?
    public var password: String?
    public var noProxy: [String]

    public init(host: String, port: Int, user: String? = nil, password: String? = nil, noProxy: [String] = []) {
        self.host = host; self.port = port; self.user = user; self.password = password; self.noProxy = noProxy
    }

    /// The proxy for requests to `targetHost`, or nil for none (unset, or NO_PROXY matches).
    public static func fromEnvironment(
        _ environment: [String: String] = ProcessInfo.processInfo.environment, for targetHost: String
    ) throws(ProxyError) -> ProxySettings? {
        guard let raw = environment["https_proxy"] ?? environment["HTTPS_PROXY"], !raw.isEmpty else { return nil }
        let noProxy = (environment["no_proxy"] ?? environment["NO_PROXY"] ?? "")
            .split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces).lowercased() }.filter { !$0.isEmpty }
        if bypasses(targetHost, noProxy) { return nil }
        let withScheme = raw.contains("://") ? raw : "http://" + raw
        guard let url = URLComponents(string: withScheme), let host = url.host, !host.isEmpty else {
            throw ProxyError(value: raw)
        }
        guard url.scheme == "http" || url.scheme == "https" else { throw ProxyError(value: raw) }
        return ProxySettings(
            host: host, port: url.port ?? (url.scheme == "https" ? 443 : 80),
            user: url.user.flatMap { $0.removingPercentEncoding }, password: url.password.flatMap { $0.removingPercentEncoding },
            noProxy: noProxy)
    }

    static func bypasses(_ host: String, _ patterns: [String]) -> Bool {
        let host = host.lowercased().trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        for pattern in patterns {
            var p = pattern
            if let colon = p.lastIndex(of: ":"), !p.contains("]"), p.filter({ $0 == ":" }).count == 1 {
                p = String(p[..<colon])  // host:port: the port is ignored
            }
            p = p.trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
            if p == "*" { return true }
            if p.hasPrefix(".") { p.removeFirst() }
            if p.hasPrefix("*.") { p.removeFirst(2) }
            if host == p || host.hasSuffix("." + p) { return true }
        }
        return false
    }
}

/// An `HTTPS_PROXY` value that is not a proxy URL.
public struct ProxyError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Shown without its user information (it may hold a password).
    public var value: String
    public var description: String {
        let shown = value.range(of: "@").map { "…@" + value[$0.upperBound...] } ?? value
        return "HTTPS_PROXY is set to '\(shown)', which is not a proxy URL (http://host:port)"
    }
}
