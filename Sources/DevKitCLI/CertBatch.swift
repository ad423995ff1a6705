import DevKitModel
import DevKitSystem
import DiceRIoT
import Foundation

/// `devkit cert --batch`: many devices, one measured firmware.
struct CertBatch {
    let command: CertCommand
    let firmware: MeasuredFirmware

    /// One line of the batch file.
    private struct Entry: Decodable {
        var uds: String
        var registrationID: String?
        var mac: String?
        var firmwareVersion: String?

        enum CodingKeys: String, CodingKey {
            case uds, registrationID = "registration_id", mac, firmwareVersion = "firmware_version"
        }
    }

    /// Certifies every line; a failing line is reported with its number and the
    /// others go on. Throws `.batchIncomplete` when any failed.
    func run(path: String) throws(CertError) {
        let contents = try readWholeFile(path, limit: .certBatch)
        let decoder = JSONDecoder()
        var seen: [String: Int] = [:]
        var total = 0, failed = 0
        var warned = false
        var lineNumber = 0
        for rawLine in contents.split(separator: 0x0A, omittingEmptySubsequences: false) {
            lineNumber += 1
            var line = rawLine
            if line.last == 0x0D { line = line.dropLast() }
            if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) { continue }
            total += 1
            do {
                let (uds, id) = try parse(line, decoder: decoder)
                if let first = seen[id.value] {
                    throw LineError("registration ID \(id.value) already appears on line \(first); each device needs its own ID")
                }
                seen[id.value] = lineNumber
                let result: CertResult
                do { result = try command.certify(firmware: firmware, uds: uds, id: id) } catch {
                    throw LineError(error.userMessage)
                }
                for warning in result.warnings { printWarning("line \(lineNumber): \(warning)") }
                if !warned { printWarning(fixedNonceWarning); warned = true }
                if command.json {
                    print(result.jsonLine())
                } else if command.streamsOutput {
                    print(result.certificatePEM ?? "", terminator: "")
                } else {
                    printOutput("\(result.registrationID)\t\(escaped(result.certificate ?? ""))\tSHA-1 \(result.sha1Thumbprint)")
                }
            } catch {
                failed += 1
                let message = (error as? LineError)?.message ?? "\(error)"
                printError("devkit: error: \(escaped(path)):\(lineNumber): \(message)")
                if command.json {
                    print(try! JSONOutput.text(CertBatchLineFailure(error: message, line: lineNumber)))
                }
            }
        }
        if failed > 0 { throw .batchIncomplete(failed: failed, total: total) }
    }

    private struct LineError: Error {
        let message: String
        init(_ message: String) { self.message = message }
    }

    private func parse(_ line: ArraySlice<UInt8>, decoder: JSONDecoder) throws -> (UDS, RegistrationID) {
        let entry: Entry
        do { entry = try decoder.decode(Entry.self, from: Data(line)) } catch {
            throw LineError(#"not a JSON object with "uds" and "registration_id" (or "mac" and "firmware_version")"#)
        }
        let uds: UDS
        do { uds = try UDS(hex: entry.uds) } catch { throw LineError("\(error)") }
        do {
            switch (entry.registrationID, entry.mac, entry.firmwareVersion) {
            case (let id?, nil, nil): return (uds, try RegistrationID(id))
            case (nil, let mac?, let version?):
                return (uds, try RegistrationID(mac: try MACAddress(mac), firmwareVersion: try FirmwareVersion(version)))
            default:
                throw LineError(#"give either "registration_id", or "mac" with "firmware_version""#)
            }
        } catch let error as InputError {
            throw LineError("\(error)")
        }
    }
}

/// The JSON line for a batch line that failed: `{"error":"…","line":N}`.
struct CertBatchLineFailure: Encodable {
    let error: String
    let line: Int
}
