import Crypto
import DevKitModel
import DevKitRegistry
import DevKitSystem
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Which registry row a board's `<id>.pem` and `<id>.enrollment.json` belong to,
/// and taking them over (`--force`). Shared by `provision` and `registry reissue`,
/// so neither overwrites another row's files.
///
/// Ownership is decided by what the file holds: the SHA-256 thumbprint of its
/// certificate against the thumbprint each row records. Not by the paths rows
/// record: rows of earlier releases hold paths relative to wherever devkit ran, and
/// a path says what a row once wrote there, not what the file holds now. A file that
/// no row's certificate is in (`devkit cert` output, a hand-made file) is nobody's
/// and is replaced, as before.
struct BoardFileOwnership {
    let registry: any RegistryStore

    /// Another row's certificate in one or both of the files.
    struct Owned {
        var owner: BoardRecord
        /// The files (of the two) that hold its certificate.
        var paths: [String]
        /// The row was marked superseded by an earlier `--force` run that stopped
        /// before its files were moved: they are moved without asking again.
        var pendingMove: Bool { owner.supersededBy != nil }
    }

    /// The rows other than `boardID` whose certificate is in `<id>.pem` or
    /// `<id>.enrollment.json` under `outputDirectory` (the newest row per file).
    func owners(
        registrationID: RegistrationID, outputDirectory: String, excluding boardID: Int64?
    ) throws -> [Owned] {
        let names = BoardCertificateFiles.paths(registrationID: registrationID, outputDirectory: outputDirectory)
        var found: [Owned] = []
        for path in [names.certificate, names.enrollment] {
            guard let thumbprint = Self.certificateSHA256(inFile: path) else { continue }
            let rows = try registry.boards(withCertificateSHA256: thumbprint)
            // The same certificate recorded for this board too (one UDS provisioned
            // twice) is its own file; otherwise the live row owns it before a superseded one.
            guard !rows.contains(where: { $0.id == boardID }),
                  let owner = rows.first(where: { $0.supersededBy == nil }) ?? rows.first
            else { continue }
            if let index = found.firstIndex(where: { $0.owner.id == owner.id }) {
                found[index].paths.append(path)
            } else {
                found.append(Owned(owner: owner, paths: [path]))
            }
        }
        return found
    }

    /// Throws ``ProvisionError/filesOfAnotherBoard(boardID:owner:path:udsSent:)`` when
    /// a row other than `boardID` that is not being replaced owns one of the files.
    func check(
        registrationID: RegistrationID, outputDirectory: String, boardID: Int64?, udsSent: Bool
    ) throws {
        let owned = try owners(registrationID: registrationID, outputDirectory: outputDirectory, excluding: boardID)
        if let live = owned.first(where: { !$0.pendingMove }), let ownerID = live.owner.id {
            throw ProvisionError.filesOfAnotherBoard(
                boardID: boardID, owner: ownerID, path: live.paths[0], udsSent: udsSent)
        }
    }

    /// Makes the names free for board `boardID`: without `force`, refuses when another
    /// row owns a file; with it, marks each owner superseded by `boardID` (with where
    /// its files go) and then moves its files aside to `<id>.row<N>.*` (or
    /// `<id>.row<N>.<k>.*`, the first pair of names that are both free: nothing is
    /// overwritten). Marked first: a crash before the move leaves a superseded row
    /// whose files are still at the names, and the next run moves them. Returns one
    /// sentence per owner saying where its files went.
    func claim(
        registrationID: RegistrationID, outputDirectory: String, boardID: Int64, force: Bool, udsSent: Bool
    ) throws -> [String] {
        let owned = try owners(registrationID: registrationID, outputDirectory: outputDirectory, excluding: boardID)
        if !force, let live = owned.first(where: { !$0.pendingMove }), let ownerID = live.owner.id {
            throw ProvisionError.filesOfAnotherBoard(
                boardID: boardID, owner: ownerID, path: live.paths[0], udsSent: udsSent)
        }
        let names = BoardCertificateFiles.paths(registrationID: registrationID, outputDirectory: outputDirectory)
        var said: [String] = []
        for item in owned {
            let ownerID = item.owner.id!
            let aside = Self.freeAsideNames(registrationID: registrationID, outputDirectory: outputDirectory, owner: ownerID)
            let moves = item.paths.map { ($0, $0 == names.certificate ? aside.certificate : aside.enrollment) }
            // A file not moved keeps its recorded path unless that is one of the names,
            // which now take the new board's files.
            func recorded(_ path: String?) -> String? {
                guard let path else { return nil }
                let absolute = ProvisionSettings.absolute(path)
                return [names.certificate, names.enrollment].map(ProvisionSettings.absolute).contains(absolute) ? nil : path
            }
            try registry.markSuperseded(
                boardID: ownerID, by: item.owner.supersededBy ?? boardID,
                certificatePath: moves.first { $0.0 == names.certificate }?.1 ?? recorded(item.owner.certificatePath),
                enrollmentPath: moves.first { $0.0 == names.enrollment }?.1 ?? recorded(item.owner.enrollmentPath))
            for (from, to) in moves { try Self.moveWithoutReplacing(from, to) }
            try? DurableFile.syncDirectory(outputDirectory)
            said.append(
                "board #\(ownerID) had these files: it is marked superseded by #\(item.owner.supersededBy ?? boardID), "
                    + "and its " + moves.map { "\(($0.0 as NSString).lastPathComponent) is now \($0.1)" }
                    .joined(separator: ", "))
        }
        return said
    }

    /// `<id>.row<N>.pem` and `.enrollment.json`, or with `.2`, `.3`… after `row<N>` when
    /// either of those names is taken (a file kept by an earlier `--force`).
    static func freeAsideNames(
        registrationID: RegistrationID, outputDirectory: String, owner: Int64
    ) -> (certificate: String, enrollment: String) {
        var k = 1
        while true {
            let suffix = k == 1 ? ".row\(owner)" : ".row\(owner).\(k)"
            let names = BoardCertificateFiles.paths(registrationID: registrationID, outputDirectory: outputDirectory, suffix: suffix)
            if !exists(names.certificate) && !exists(names.enrollment) { return names }
            k += 1
        }
    }

    private static func exists(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0
    }

    /// rename(2) that never replaces: link(2) (EEXIST in a race) then unlink(2); on
    /// a file system without hard links, rename after checking the name is free.
    static func moveWithoutReplacing(_ from: String, _ to: String) throws {
        if link(from, to) == 0 {
            unlink(from)
            return
        }
        let error = errno
        if error == EEXIST || exists(to) {
            throw ProvisionError.cannotMoveAside(path: from, reason: "\(to) exists (nothing was replaced)")
        }
        guard error == EPERM || error == EXDEV || error == ENOTSUP || error == EMLINK else {
            throw ProvisionError.cannotMoveAside(path: from, reason: String(cString: strerror(error)))
        }
        if rename(from, to) != 0 {
            throw ProvisionError.cannotMoveAside(path: from, reason: String(cString: strerror(errno)))
        }
    }

    /// The SHA-256 thumbprint (upper-case hex of the DER) of the certificate in a
    /// `.pem` file or in an enrollment file's primary certificate; nil when there is
    /// no readable certificate in it.
    static func certificateSHA256(inFile path: String) -> String? {
        guard let bytes = try? InputFile.read(path, limit: certificateFileLimit, standardInputDash: false) else {
            return nil
        }
        var pem = String(decoding: bytes, as: UTF8.self)
        if path.hasSuffix(".json") {
            guard let enrollment = try? JSONDecoder().decode(EnrollmentBody.self, from: Data(bytes)) else { return nil }
            pem = enrollment.attestation.x509.clientCertificates.primary.certificate
        }
        guard let der = firstCertificateDER(pem) else { return nil }
        return Hex.encode(SHA256.hash(data: der), uppercase: true)
    }

    /// An enrollment file's certificate and JSON around it are a few KiB.
    static let certificateFileLimit = InputLimit(bytes: 1 << 20, kind: "a certificate or enrollment file")

    /// The DER of the first `CERTIFICATE` block of PEM text.
    static func firstCertificateDER(_ pem: String) -> Data? {
        guard let begin = pem.range(of: "-----BEGIN CERTIFICATE-----"),
              let end = pem.range(of: "-----END CERTIFICATE-----", range: begin.upperBound..<pem.endIndex)
        else { return nil }
        let body = pem[begin.upperBound..<end.lowerBound].filter { !$0.isWhitespace }
        return Data(base64Encoded: String(body))
    }

    /// The part of ``EnrollmentFile/json()`` that holds the certificate.
    private struct EnrollmentBody: Decodable {
        struct Attestation: Decodable { var x509: X509 }
        struct X509: Decodable { var clientCertificates: Certificates }
        struct Certificates: Decodable { var primary: Certificate }
        struct Certificate: Decodable { var certificate: String }
        var attestation: Attestation
    }
}
