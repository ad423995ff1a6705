import Crypto
import DevKitModel
import Foundation

/// The one place secrets are sealed for the registry and opened again: AES-256-GCM
/// under the ``RegistryKey``, a random 96-bit nonce per seal, and the row and column
/// the value belongs to as authenticated data, so a sealed value copied to another
/// row or column does not open.
///
/// A sealed value is stored as text: `sealed1:<key id>:<base64 of nonce, ciphertext, tag>`.
/// The key ID says which key opens it without revealing the key; the `sealed1`
/// prefix tells it from the 64 hex digits of a UDS stored by an older devkit.
public struct SecretSealer: Sendable {
    public let key: RegistryKey
    /// Where the key came from, for the error that says it is the wrong one.
    public let keyFile: String
    /// Opened without the key (``RegistryKeySource/withheld``): rows are read with
    /// their UDS withheld, and nothing is sealed or opened.
    public let withholds: Bool

    public init(key: RegistryKey, keyFile: String = "", withholds: Bool = false) {
        self.key = key
        self.keyFile = keyFile
        self.withholds = withholds
    }

    /// The sealer of a handle opened from `source` with `key` (``RegistryKey/resolve(_:neededKeyID:create:)``'s).
    init(key: RegistryKey, source: RegistryKeySource) {
        self.init(key: key, keyFile: source.path, withholds: source == .withheld)
    }

    static let prefix = "sealed1:"

    /// Seals `secret` for `column` of board `boardID`.
    public func seal(_ secret: [UInt8], boardID: Int64, column: String) -> String {
        precondition(!withholds, "a registry opened without its key sealed a secret")
        // Seal only fails for a nonce or key of the wrong size, which cannot happen here.
        let box = try! AES.GCM.seal(secret, using: key.key, authenticating: Self.context(boardID, column))
        return Self.prefix + key.id + ":" + box.combined!.base64EncodedString()
    }

    /// Opens a value ``seal(_:boardID:column:)`` made for the same row and column.
    public func open(_ sealed: String, boardID: Int64, column: String) throws(RegistryError) -> [UInt8] {
        precondition(!withholds, "a registry opened without its key opened a secret")
        guard let parts = Self.split(sealed) else {
            throw .sealedValueRejected(board: boardID, column: column, reason: "it is not a sealed value")
        }
        guard parts.keyID == key.id else {
            throw .wrongKey(path: keyFile, keyID: key.id, neededKeyID: parts.keyID)
        }
        do {
            let sealedBox = try AES.GCM.SealedBox(combined: parts.box)
            return Array(try AES.GCM.open(sealedBox, using: key.key, authenticating: Self.context(boardID, column)))
        } catch {
            throw .sealedValueRejected(
                board: boardID, column: column,
                reason: "it does not authenticate (altered, or moved from another row)")
        }
    }

    /// The UDS of board `boardID` from its stored `uds` column.
    func openUDS(_ stored: String, boardID: Int64) throws(RegistryError) -> UDS {
        let bytes = try open(stored, boardID: boardID, column: "uds")
        do { return try UDS(bytes: bytes) } catch { throw .invalidStoredValue(board: boardID, error) }
    }

    func sealUDS(_ uds: UDS, boardID: Int64) -> String { seal(uds.bytes, boardID: boardID, column: "uds") }

    /// Whether a stored value is sealed (else it is clear text of an older devkit).
    static func isSealed(_ stored: String) -> Bool { stored.hasPrefix(prefix) }

    /// The ID of the key that sealed `stored`, or nil when it is not sealed.
    public static func keyID(of stored: String) -> String? { split(stored)?.keyID }

    private static func split(_ stored: String) -> (keyID: String, box: Data)? {
        guard stored.hasPrefix(prefix) else { return nil }
        let rest = stored.dropFirst(prefix.count)
        guard let colon = rest.firstIndex(of: ":"),
            let box = Data(base64Encoded: String(rest[rest.index(after: colon)...]))
        else { return nil }
        return (String(rest[..<colon]), box)
    }

    /// The authenticated data: which table, row and column the value belongs to.
    private static func context(_ boardID: Int64, _ column: String) -> Data {
        Data("devkit registry board \(boardID) \(column)".utf8)
    }
}
