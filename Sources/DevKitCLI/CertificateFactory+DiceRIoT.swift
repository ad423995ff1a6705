import DevKitModel
import DevKitSystem
import DevKitWorkflows
import DiceRIoT
import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The firmware measurer backed by the DiceRIoT generator, for `provision`,
/// `autoconfigure`, `watch` and `registry reissue`: the image is read, parsed and
/// measured once; the returned factory certifies each board.
///
/// The measurer remembers the last image it measured: `devkit watch` asks once per
/// board, from one thread per board, and measuring (reading 600 KB, parsing the ELF,
/// hashing) on every board thread at once was repeated work competing with the
/// boards' own. An image whose file changed on disk (its stamp: inode, size, mtime
/// or ctime) is measured again, so a long-running daemon picks up a rebuilt firmware.
func diceRIoTMeasurer() -> FirmwareMeasurer {
    let cache = Mutex<MeasuredImage?>(nil)
    return { source in
        let stamps = FileStamp.of(source)
        // Held while measuring: boards asking at the same moment wait for the one
        // measurement instead of each doing their own.
        return try cache.withLock { (cached: inout MeasuredImage?) throws -> CertificateFactory in
            if let stamps, let cached, cached.source == source, cached.stamps == stamps { return cached.factory }
            let factory = try measureWithDiceRIoT(source)
            cached = stamps.map { MeasuredImage(source: source, stamps: $0, factory: factory) }
            return factory
        }
    }
}

private func measureWithDiceRIoT(_ source: FirmwareSource) throws -> CertificateFactory {
    let image: RIoTImage
    do { image = try source.load() } catch {
        if case .firmware(let problem) = error { throw ProvisionError.firmware("\(problem)") }
        throw error  // keeps its exit status: a missing image is 66 (no input), not 64
    }
    let firmware = MeasuredFirmware(image)
    return { uds, registrationID in
        let credentials = try firmware.credentials(uds: uds, registrationID: registrationID)
        return AliasCertificate(
            pem: credentials.aliasCertificatePEM, sha1: credentials.sha1Thumbprint,
            sha256: credentials.sha256Thumbprint)
    }
}

private struct MeasuredImage {
    let source: FirmwareSource
    let stamps: [FileStamp]
    let factory: CertificateFactory
}

extension FileStamp {
    /// The stamps of the source's files; nil when one cannot be stat'ed (then the
    /// measurement is not remembered and loading reports the problem).
    static func of(_ source: FirmwareSource) -> [FileStamp]? {
        var stamps: [FileStamp] = []
        for path in source.paths {
            guard let stamp = FileStamp(path: path) else { return nil }
            stamps.append(stamp)
        }
        return stamps
    }
}
