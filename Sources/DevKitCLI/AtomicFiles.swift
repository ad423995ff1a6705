import DevKitSystem
import DevKitWorkflows
import SystemPackage
#if canImport(Glibc)
import Glibc
#endif

/// Reads a whole file (or standard input for "-") with DevKitSystem's ``InputFile``,
/// with the reason on failure.
func readWholeFile(_ path: String, limit: InputLimit) throws(CertError) -> [UInt8] {
    do { return try InputFile.read(path, limit: limit) } catch {
        throw .unreadable(path: path, reason: error.reason)
    }
}

/// A group of files that appear together or not at all: DevKitSystem's
/// ``FileGroupWriter`` without fsync (10,000 certificates/s in a batch, see
/// Scripts/bench-cert.sh), with the mode less the umask as any tool writes files.
/// A failure leaves neither partial nor empty outputs (the reference tool left
/// empty .pem files behind); secret files are 0600 from their first byte.
struct AtomicFileGroup {
    private var files = FileGroupWriter(durable: false)

    /// Writes `contents` to a temporary file beside `path`.
    mutating func stage(_ contents: String, at path: String, mode: mode_t = 0o644) throws(CertError) {
        do {
            try files.stage(Array(contents.utf8), at: path, mode: mode, honoringUmask: true)
        } catch {
            throw .output(path: error.path, reason: errnoDescription(error.errno.rawValue), errno: error.errno.rawValue)
        }
    }

    /// Renames every staged file into place; on failure removes what was placed.
    mutating func commit() throws(CertError) {
        do {
            try files.commit()
        } catch {
            throw .output(path: error.path, reason: errnoDescription(error.errno.rawValue), errno: error.errno.rawValue)
        }
    }

    /// Removes the staged temporary files.
    mutating func discard() { files.discard() }
}

/// Creates the output directory if it does not exist and checks that this process may
/// create files in it (the workflows' ``ProvisionWorkflow/checkOutputDirectory(_:)``),
/// as `cert`'s error: a batch into a directory it cannot write printed one error per
/// device (50,000 lines for 50,000 devices).
func makeDirectory(_ path: String) throws(CertError) {
    do {
        try ProvisionWorkflow.checkOutputDirectory(path)
    } catch {
        guard case .outputDirectory(_, let detail, let code) = error else {
            throw .output(path: path, reason: "\(error)", errno: nil)
        }
        throw .output(path: path, reason: code == ENOTDIR ? "not a directory" : code.map(errnoDescription) ?? detail, errno: code)
    }
}

func errnoDescription(_ code: Int32) -> String {
    String(cString: strerror(code)).lowercased()
}
