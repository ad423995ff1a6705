import DevKitSystem
import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Where a PostgreSQL registry is: `postgresql://user@host:5432/db`, with
/// `?sslmode=disable|require|verify-ca|verify-full` and `sslrootcert=FILE` (the CA
/// that signed the server's certificate; else `~/.postgresql/root.crt`, as libpq), or `?host=/run/dir` for a Unix socket in that
/// directory (as libpq spells it). A password in the URL is refused: a command
/// line is visible to every user of the machine (`ps`); it comes from a password
/// file or `~/.pgpass` (``password(passwordFile:environment:)``).
public struct PostgresLocation: Sendable, Equatable, CustomStringConvertible {
    public enum SSLMode: String, Sendable {
        case disable
        /// TLS, the server's certificate not checked unless a CA file is there
        /// (libpq's `require`: then it is `verify-ca`).
        case require
        /// TLS, the certificate checked against the CA file, not the host name.
        case verifyCA = "verify-ca"
        /// TLS, the certificate checked against the CA file and the host name.
        case verifyFull = "verify-full"
    }

    /// How the server's certificate is checked (``certificateCheck(environment:)``).
    public enum CertificateCheck: Sendable, Equatable {
        /// Encrypted, the certificate not checked (or no TLS at all: `disable`).
        case unchecked
        /// Signed by the CA in `caFile`, for any host name.
        case chain(caFile: String)
        /// Signed by the CA in `caFile`, for this host.
        case chainAndHost(caFile: String)
    }

    public var user: String
    /// A host name or address, or the directory of a Unix socket (an absolute path).
    public var host: String
    public var port: Int
    public var database: String
    public var sslMode: SSLMode
    public var caFile: String?

    /// Whether `text` names a PostgreSQL registry rather than an SQLite file.
    public static func isURL(_ text: String) -> Bool {
        text.hasPrefix("postgresql://") || text.hasPrefix("postgres://")
    }

    /// Whether `text` was meant as a URL but is not a PostgreSQL one: `postgresq://`,
    /// `POSTGRESQL://`, ` postgresql://` (a leading space, quotes), `postgresql:/` (one
    /// slash), `postgresql//` (no colon), `postgresql:user@db`, `jdbc:postgresql://`,
    /// `DATABASE_URL=postgresql://`, `mysql://`. Taken for a file path, it became an
    /// SQLite registry under the working directory, with the URL's password in its
    /// directory names, while the shared registry never heard of the boards. A path
    /// written as one (`/…`, `./…`, `../…`) is a path whatever follows; otherwise
    /// "://" anywhere, a `postgres`/`postgresql` first component followed by `:` or
    /// `/`, or a scheme and a colon before the first slash (`name:/`) is refused.
    public static func isMistypedURL(_ text: String) -> Bool {
        guard !isURL(text), !text.hasPrefix("/"), !text.hasPrefix("./"), !text.hasPrefix("../") else { return false }
        if text.contains("://") { return true }
        // Spaces, quotes and invisible characters around a pasted URL.
        let around = CharacterSet.whitespacesAndNewlines.union(CharacterSet(charactersIn: "\"'`\u{200B}\u{FEFF}"))
        let trimmed = text.trimmingCharacters(in: around).lowercased()
        if ["postgresql:", "postgres:", "postgresql/", "postgres/"].contains(where: trimmed.hasPrefix) { return true }
        guard let colon = trimmed.firstIndex(of: ":"), trimmed[colon...].dropFirst().hasPrefix("/") else { return false }
        let scheme = trimmed[..<colon]
        return scheme.first?.isLetter == true
            && scheme.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "+.-".contains($0)) }
    }

    public init(url text: String) throws(RegistryError) {
        func bad(_ reason: String) -> RegistryError {
            .invalidURL(text: Self.redact(text), reason: reason + "; give postgresql://USER@HOST:PORT/DATABASE")
        }
        guard Self.isURL(text), let components = URLComponents(string: text) else {
            throw bad("not a PostgreSQL URL")
        }
        let items = components.queryItems ?? []
        if components.password != nil || items.contains(where: { $0.name == "password" }) {
            throw .invalidURL(
                text: Self.redact(text),
                reason: "the URL holds a password, which would be shown wherever the URL is (a command line any "
                    + "user of this machine can read, the commands devkit prints, logs); "
                    + "put it in a file given with --registry-password-file (in a profile, `password_file` under "
                    + "[registry]), or in ~/.pgpass (or the file PGPASSFILE names), and leave it out of the URL")
        }
        // Only what devkit reads: a misspelt `sslmdoe=verify-full` silently dropped
        // would leave the server's certificate unchecked while the user thinks it is.
        if let unknown = items.first(where: { !Self.parameters.contains($0.name) }) {
            // A name without a value is not repeated: it may be a secret typed in the wrong place.
            let named = unknown.value == nil ? "a parameter without a value" : "'\(unknown.name)'"
            throw bad(
                "\(named) is not a parameter devkit reads (it reads \(Self.parameters.joined(separator: ", "))"
                    + (unknown.name == "user" ? "; the user goes before the @" : "") + ")")
        }
        // `#` would end the URL there, silently: the rest (a path, a password) dropped.
        if components.fragment != nil {
            throw bad("a '#' ends the URL early; write it as %23 where it belongs to a value")
        }
        let query = Dictionary(items.map { ($0.name, $0.value ?? "") }, uniquingKeysWith: { _, last in last })
        guard let user = components.user.flatMap({ $0.removingPercentEncoding }), !user.isEmpty else {
            throw bad("no user name")
        }
        let database = String(components.path.drop(while: { $0 == "/" }))
        guard !database.isEmpty, !database.contains("/") else { throw bad("no database name") }
        var host = query["host"] ?? components.host ?? ""
        // An IPv6 address is written in brackets in a URL; NIO and .pgpass want it bare.
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty else { throw bad("no host") }
        var sslMode = SSLMode.disable
        if let mode = query["sslmode"] {
            guard let parsed = SSLMode(rawValue: mode) else {
                throw bad("sslmode '\(mode)' is not one of disable, require, verify-ca, verify-full")
            }
            sslMode = parsed
        } else if !host.hasPrefix("/") {
            // Over the network, TLS unless told otherwise.
            sslMode = .require
        }
        self.user = user
        self.host = host
        if let text = query["port"] {
            guard let port = Int(text), (1...65535).contains(port) else { throw bad("port '\(text)' is not a port number") }
            self.port = port
        } else {
            self.port = components.port ?? 5432
        }
        self.database = database
        self.sslMode = sslMode
        self.caFile = query["sslrootcert"]
    }

    /// The query parameters a URL may carry (libpq's names).
    static let parameters = ["sslmode", "sslrootcert", "host", "port"]

    /// The Unix socket's path, when `host` is a directory.
    public var socketPath: String? { host.hasPrefix("/") ? "\(host)/.s.PGSQL.\(port)" : nil }

    public var description: String {
        let shownHost = host.hasPrefix("/") ? "" : host.contains(":") ? "[\(host)]" : host
        var text = "postgresql://\(user)@" + shownHost + ":\(port)/\(database)"
        if host.hasPrefix("/") { text += "?host=\(host)" }
        return text
    }

    /// How the server's certificate is checked, as libpq does: `verify-ca` and
    /// `verify-full` need the CA file (`sslrootcert`, else `~/.postgresql/root.crt`)
    /// and fail without it; `require` checks the chain (like `verify-ca`) when that
    /// file is given or there, else checks nothing.
    public func certificateCheck(
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws(RegistryError) -> CertificateCheck {
        let home = environment["HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? NSHomeDirectory()
        let defaultRoot = home + "/.postgresql/root.crt"
        switch sslMode {
        case .disable:
            return .unchecked
        case .require where caFile == nil:
            return access(defaultRoot, F_OK) == 0 ? .chain(caFile: defaultRoot) : .unchecked
        case .require, .verifyCA, .verifyFull:
            // A CA file named for `require` must be there too: libpq fails then as well.
            let file = caFile ?? defaultRoot
            guard access(file, R_OK) == 0 else {
                let error = errno
                throw .cannotOpen(
                    path: description,
                    reason: "sslmode=\(sslMode.rawValue) checks the server's certificate against a CA file, and "
                        + (caFile == nil
                            ? "no sslrootcert=FILE was given and there is no \(file); give sslrootcert=FILE in the URL"
                            : "\(file) cannot be read (\(String(cString: strerror(error))))"),
                    errno: error)
            }
            return sslMode == .verifyFull ? .chainAndHost(caFile: file) : .chain(caFile: file)
        }
    }

    /// `text` without a password it may hold, for messages.
    /// The value of any parameter devkit does not read is masked too (`Password=`,
    /// `sslpassword=`): refused, it is still quoted in the message.
    public static func redact(_ text: String) -> String {
        // A URL that does not parse is not shown past its scheme: where its password
        // would be cannot be told (`u:pw@db:54x2`).
        guard var components = URLComponents(string: text) else {
            guard let scheme = text.range(of: "://") else { return "(not shown)" }
            return text[..<scheme.upperBound] + "… (not shown: it may hold a password)"
        }
        let items = components.queryItems ?? []
        let hidden = items.contains { !parameters.contains($0.name) }
        // `#` ends the URL's query: what follows may be the rest of a password.
        guard components.password != nil || hidden || components.fragment != nil else { return text }
        if components.fragment != nil { components.fragment = "***" }
        if components.password != nil { components.password = "***" }
        if hidden {
            components.queryItems = items.map { item in
                if parameters.contains(item.name) { return item }
                return item.value == nil ? URLQueryItem(name: "***", value: nil) : URLQueryItem(name: item.name, value: "***")
            }
        }
        return components.string ?? "postgresql://…"
    }

    /// The password for this location: the first line of `passwordFile` when given
    /// (refused if group or others may read it: a named file silently skipped would
    /// only turn into a puzzling authentication failure, and the password in it is
    /// exposed until the file is fixed), else the matching line of `PGPASSFILE` or `~/.pgpass` (libpq's format,
    /// `host:port:database:user:password`, `*` matching anything; a file others may
    /// read is ignored, as libpq does), else nil (trust or peer authentication).
    public func password(
        passwordFile: String?, environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws(RegistryError) -> String? {
        if let file = passwordFile {
            var st = stat()
            if let known = Self.readOnce.withLock({ $0[file] }) { return known }
            let kind = stat(file, &st) == 0 ? st.st_mode & S_IFMT : 0
            if kind == S_IFDIR || kind == S_IFCHR || kind == S_IFBLK || kind == S_IFSOCK {
                // Said before its mode: "chmod 600" would not make a directory or a device a
                // password (and `chmod 600 /dev/null` would break the system).
                throw .cannotOpen(
                    path: description,
                    reason: "the password file \(file) is \(kind == S_IFDIR ? "a directory" : "a device or socket, not a file"); "
                        + "give the file that holds the password",
                    errno: EISDIR)
            }
            if kind == S_IFREG, st.st_mode & 0o077 != 0 {
                // Named through a descriptor (/dev/stdin, /dev/fd/N): the file behind it is to blame.
                let through = file.hasPrefix("/dev/") || file.hasPrefix("/proc/")
                throw .cannotOpen(
                    path: description,
                    reason: "the password file \(file) may be read by others (mode \(String(st.st_mode & 0o777, radix: 8))); "
                        + (through ? "chmod 600 the file it comes from" : "run: chmod 600 \(file)"),
                    errno: EACCES)
            }
            let data: [UInt8]
            do {
                data = try InputFile.read(file, limit: .secret, standardInputDash: false)
            } catch {
                // Its errno decides the exit code (a missing file exits 66, as a missing CA file does).
                // `-` names a file here (no standard input for a password file): said, for
                // whoever meant standard input.
                let dash = file == "-" && error.errno?.rawValue == ENOENT
                    ? " (`-` is not standard input here: give /dev/stdin, or <(command))" : ""
                throw .cannotOpen(
                    path: description, reason: "cannot read the password file \(file): \(error.reason)" + dash,
                    errno: error.errno?.rawValue)
            }
            let text = String(decoding: data, as: UTF8.self)
            // A file saved with Windows line ends: the \r is not part of the password (libpq drops it
            // too). "\r\n" is one Character to Swift, so it is a separator of its own.
            var first = text.split(omittingEmptySubsequences: false, whereSeparator: Self.isLineEnd).first ?? ""
            while first.hasSuffix("\r") { first = first.dropLast() }
            if first.isEmpty {
                // Said here: the server would only say the login failed.
                throw .cannotOpen(
                    path: description, reason: "the password file \(file) is empty: its first line is the password",
                    errno: EACCES)
            }
            // A pipe (`<(pass show db)`) can be read once: kept for the next connection
            // of this process (`watch` reconnects after a server outage).
            if kind == S_IFIFO { Self.readOnce.withLock { $0[file] = String(first) } }
            return String(first)
        }
        let home = environment["HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? NSHomeDirectory()
        let pgpass = environment["PGPASSFILE"] ?? (home + "/.pgpass")
        var st = stat()
        // Not a regular file (a FIFO would block the read forever), or others may read
        // it: skipped, as libpq skips it.
        guard stat(pgpass, &st) == 0, st.st_mode & S_IFMT == S_IFREG, st.st_mode & 0o077 == 0,
            let data = FileManager.default.contents(atPath: pgpass)
        else { return nil }
        // libpq's rule (passwordFromFile): the host field is matched against the host as
        // given, a socket directory included, except that a socket in libpq's default
        // directory is `localhost`. (devkit matched `localhost` for every socket, so a
        // line that works for psql was not found, and one psql ignores was used.)
        let hostField = host == Self.defaultSocketDirectory ? "localhost" : host
        let wanted = [hostField, String(port), database, user]
        for var line in String(decoding: data, as: UTF8.self).split(whereSeparator: Self.isLineEnd) where !line.hasPrefix("#") {
            while line.hasSuffix("\r") { line = line.dropLast() }  // Windows line ends, which libpq drops too
            let fields = Self.pgpassFields(String(line))
            guard fields.count == 5 else { continue }
            if zip(fields.prefix(4), wanted).allSatisfy({ $0 == "*" || $0 == $1 }) { return fields[4] }
        }
        return nil
    }

    /// A line end, Unix's or Windows's (one Character to Swift).
    static func isLineEnd(_ character: Character) -> Bool { character == "\n" || character == "\r\n" }

    /// Passwords read from pipes, by the path given: a pipe's end cannot be read again.
    private static let readOnce = Mutex<[String: String]>([:])

    /// libpq's DEFAULT_PGSOCKET_DIR as Debian builds it (`pg_config --configure`;
    /// upstream's is /tmp): the socket directory a `.pgpass` line calls `localhost`.
    static let defaultSocketDirectory = "/var/run/postgresql"

    /// A `.pgpass` line's fields: split on `:`, `\:` and `\\` escaped; the password
    /// ends at its first unescaped `:`, as libpq reads it.
    static func pgpassFields(_ line: String) -> [String] {
        var fields = [""]
        var escaping = false
        for character in line {
            if escaping {
                fields[fields.count - 1].append(character)
                escaping = false
            } else if character == "\\" {
                escaping = true
            } else if character == ":" {
                if fields.count == 5 { break }
                fields.append("")
            } else {
                fields[fields.count - 1].append(character)
            }
        }
        return fields
    }
}
