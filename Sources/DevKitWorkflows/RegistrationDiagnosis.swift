import DPSModel
import DevKitModel
import DevKitRegistry
import UserModeLog

/// What DPS holds for a refused board's registration ID, when devkit could ask it
/// (a connection string given): the refusal's usual causes on the DPS side.
public enum DPSEnrollmentFinding: Sendable, Equatable {
    /// No enrollment with this ID (deleted, or never made).
    case absent
    /// An enrollment whose certificate has this SHA-1 thumbprint (upper-case hex;
    /// nil when DPS reported none and its PEM could not be read).
    case certificate(sha1: String?)

    /// What `enrollment` (nil: none) says.
    public init(_ enrollment: IndividualEnrollment?) {
        guard let enrollment else { self = .absent; return }
        self = .certificate(sha1: enrollment.primaryCertificateInfo?.sha1Thumbprint?.uppercased()
            ?? enrollment.primaryCertificatePEM.flatMap { try? EnrollmentCertificate(pem: $0) }?.sha1Thumbprint)
    }
}

/// What to tell the user about a board's registration outcome (`devkit verify`):
/// one paragraph in plain words. For `unauthorized`, what devkit recorded when it
/// made the certificate (the registry's row) is compared with what the board
/// printed, to name the input that most likely differs.
public enum RegistrationDiagnosis {
    /// - Parameters:
    ///   - record: the registry's row for this board, if one was found.
    ///   - settings: that row's recorded provisioning settings (the firmware measured).
    ///   - enrollment: what DPS holds for the board's registration ID, if it was asked.
    ///   - enrollCommand: the command that enrolls the board's row (`replace`: over
    ///     another certificate), as the caller would run it (its registry, key and DPS).
    public static func explain(
        _ outcome: RegistrationOutcome, classifier: RegistrationClassifier,
        record: BoardRecord? = nil, settings: ProvisionSettings? = nil, enrollment: DPSEnrollmentFinding? = nil,
        enrollCommand: ((_ boardID: Int64, _ replace: Bool) -> String)? = nil
    ) -> String {
        switch outcome {
        case .assigned(let hub):
            return "DPS assigned the board to \(hub): nothing to do."
        case .hubConnected(let hub):
            return "The board is connected to its IoT hub\(hub.map { " \($0)" } ?? ""): nothing to do."
        case .unauthorized:
            return unauthorized(
                classifier: classifier, record: record, settings: settings, enrollment: enrollment, enrollCommand: enrollCommand)
        case .disabled:
            return "DPS knows the board's certificate but its enrollment is disabled: enable the enrollment "
                + "(in the portal, or by enrolling the board's certificate again with --replace and without --disabled) "
                + "and reset the board."
        case .noUDS:
            return "The board has no UDS stored, so it cannot make its certificate: set it in configuration mode "
                + "(devkit set-uds, or devkit provision) and reset the board."
        case .udsInvalid:
            return "The UDS stored on the board is not 64 hex digits (or DiceInit rejected it): set the UDS again "
                + "in configuration mode with devkit set-uds."
        case .noWiFi:
            return "The board did not join a Wi-Fi network: check the Wi-Fi name and password "
                + "(devkit set-wifi) and that the network is in range."
        case .tlsFailed:
            return "The TLS connection to DPS failed before any DPS answer. Stock DevKit firmware trusts only the "
                + "Baltimore CyberTrust root (expired) and DigiCert Global Root CA (G1), neither of which DPS's chain "
                + "ends at now: rebuild the sketch with the DigiCert Global Root G2 in its trusted certificates, flash "
                + "it, measure it again and re-enroll."
        case .unreachable:
            return "The board could not reach DPS (no answer before its timeout): check the network, a firewall, "
                + "and the DPS endpoint and ID scope set on the board."
        case .timeout:
            let at = classifier.lastStatus.map { " It last reported PROV_DEVICE_REG_STATUS_\($0)." } ?? ""
            return "The board printed no outcome before the timeout.\(at) Is the DPS sample sketch flashed, and was "
                + "the board reset? Run again with a longer timeout (verify --timeout; provision and watch "
                + "--verify-timeout; a profile's [verify] timeout), or watch it with devkit monitor."
        }
    }

    /// Whether `id` is what the firmware derives from the row's MAC and version.
    static func isDerived(_ id: String, of record: BoardRecord) -> Bool {
        isDerived(id, mac: record.mac.flatMap { try? MACAddress($0) }, version: record.firmwareVersion)
    }

    /// Whether `id`, printed by the board, is what it derives from the MAC and version
    /// it printed (when it printed them; else whether it has the derived form).
    static func isDerived(_ id: String, by board: BoardIdentity) -> Bool {
        guard board.mac != nil, board.firmwareVersion != nil else { return id.hasPrefix("az-") }
        return isDerived(id, mac: board.mac, version: board.firmwareVersion)
    }

    private static func isDerived(_ id: String, mac: MACAddress?, version: String?) -> Bool {
        guard let mac, let version = version.flatMap({ try? FirmwareVersion($0) }) else { return false }
        return (try? RegistrationID(mac: mac, firmwareVersion: version))?.value == id
    }

    static func unauthorized(
        classifier: RegistrationClassifier, record: BoardRecord?, settings: ProvisionSettings?,
        enrollment: DPSEnrollmentFinding?, enrollCommand: ((_ boardID: Int64, _ replace: Bool) -> String)?
    ) -> String {
        let refused = classifier.errorCode == 401002
            ? "DPS refused the board's certificate (401002 \"Invalid certificate\")"
            : "DPS refused the board (unauthorized)"
        // DPS's side first, when it was asked: a missing enrollment, or one holding
        // another certificate than the board's, explains the refusal whatever the firmware.
        let id = classifier.identity.registrationID ?? record?.registrationID ?? "the board's registration ID"
        // The command as the caller runs it, for the board's row; without a row, in words.
        func finish(replace: Bool) -> String {
            guard let boardID = record?.id, let enrollCommand else {
                return "devkit dps enroll --cert with the board's certificate" + (replace ? " and --replace" : "")
            }
            return "`\(enrollCommand(boardID, replace))`"
        }
        // The board registering under another ID than the one its certificate was
        // made for (a profile's template such as bench-{mac}, which the stock DPS
        // sample does not use; or a sketch built with its own ID) explains everything
        // after it: the enrollment DPS lacks is the board's ID's, and enrolling the
        // certificate again changes nothing. When both are derived az-<mac>v<version>,
        // a MAC or version differs: said below.
        if let printed = classifier.identity.registrationID, let recorded = record?.registrationID,
           DPSRegistrationIDRules.key(printed) != DPSRegistrationIDRules.key(recorded), let record,
           !(Self.isDerived(recorded, of: record) && Self.isDerived(printed, by: classifier.identity))
        {
            return "\(refused): the board registers as \(printed), but its certificate was made and enrolled for "
                + "\(recorded). The sketch must use the ID its certificate was made for: build it with \(recorded), "
                + "or provision the board with the ID it uses (registration_id = \"derived\" in a profile, or "
                + "--registration-id \(printed))."
        }
        switch enrollment {
        case .absent?:
            return "\(refused): DPS has no enrollment for \(id) (it was deleted, or never made). Enroll the board's "
                + "certificate (\(finish(replace: false))) and reset the board."
        case .certificate(let sha1?)?:
            if let recorded = record?.certificateSHA1?.uppercased(), recorded != sha1 {
                return "\(refused): DPS's enrollment for \(id) holds another certificate (SHA-1 \(sha1)) than the one "
                    + "devkit made for this board (SHA-1 \(recorded)). Put this board's in its place "
                    + "(\(finish(replace: true))) and reset the board."
            }
        default:
            break
        }
        let generic = "\(refused): the certificate the board computes is not the enrolled one. The certificate "
            + "depends on the firmware image, the UDS, the registration ID and the firmware version; the usual "
            + "cause is firmware rebuilt or updated since it was measured. Measure the firmware the board runs now "
            + "and re-enroll (devkit cert, then devkit dps enroll --replace)."
        guard let record else {
            return generic + " (No registry row was found for this board to compare with.)"
        }
        let board = classifier.identity
        var differs: [String] = []
        if let printed = board.registrationID, let recorded = record.registrationID, printed != recorded {
            differs.append("the registration ID: the board uses \(printed), the certificate was made for \(recorded)")
        }
        if let printed = board.firmwareVersion, let recorded = record.firmwareVersion, printed != recorded {
            differs.append("the firmware version: the board runs \(printed), the certificate was made for \(recorded)")
        }
        if let printed = board.mac?.hex, let recorded = record.mac, printed != recorded.lowercased() {
            differs.append("the MAC: the board printed \(printed), the registry has \(recorded)")
        }
        if !differs.isEmpty {
            return "\(refused). Differs from what the certificate was made for: " + differs.joined(separator: "; ")
                + ". Provision or re-enroll the board with the values it uses now."
        }
        // The identity matches: the image (or the UDS) is what differs.
        var measured = ""
        if let settings {
            let files = [settings.firmwareElf, settings.firmwareBin].compactMap { $0 }
            let changed = files.filter { path in
                guard let recorded = settings.firmwareSHA256[path] else { return false }
                return (try? ProvisionSettings.sha256(ofFile: path)) != recorded
            }
            if !changed.isEmpty {
                measured = " The firmware file measured, \(changed.joined(separator: ", ")), changed since: "
                    + "it was rebuilt, which is the likely cause."
            } else if let file = files.first {
                measured = " The firmware measured was \(file) (SHA-256 \(settings.firmwareSHA256[file] ?? "?")), "
                    + "unchanged: the board runs another build (flashed from elsewhere, or updated), or holds another "
                    + "UDS (set since with `devkit set-uds` or another tool)."
            }
        }
        return "\(refused). The board's MAC, firmware version and registration ID match the registry's row, so "
            + "the firmware image most likely differs from the one measured, or the board's UDS from the recorded "
            + "one.\(measured) Measure the firmware the board runs now and re-enroll; a board given another UDS is "
            + "provisioned again."
    }
}
