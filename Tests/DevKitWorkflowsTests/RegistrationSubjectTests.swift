import DevKitModel
import DevKitRegistry
import DevKitWorkflows
import Testing
import UserModeLog

/// Which registry row a board's verification is recorded in: never the row of a
/// board other than the one that printed the log (found in review).
@Suite struct RegistrationSubjectTests {
    @Test func aRowWhoseMACIsNotTheBoardsIsNotItsSubject() throws {
        let f = try ProvisionFixture()
        defer { f.cleanup() }
        let version = try FirmwareVersion("1.6.2")
        let macA = try MACAddress("a4cf120b9e31"), macB = try MACAddress("a4cf120b9e32")
        let idA = try RegistrationID(mac: macA, firmwareVersion: version)
        let a = try f.registry.recordNewBoard(uds: f.uds, mac: macA, registrationID: idA, firmwareVersion: version)
        let b = try f.registry.recordNewBoard(uds: f.uds, mac: macB, firmwareVersion: version)
        // Board B's log.
        var classifier = RegistrationClassifier()
        _ = classifier.take(LogLine("DevKit MAC Address: a4cf120b9e32"))
        #expect(classifier.identity.mac == macB)

        // Asked for A's row (by id, or by A's registration ID): B's row is the subject.
        let byID = try RegistrationCheck.subject(classifier: classifier, registry: f.registry, boardID: a.id)
        #expect(byID.record?.id == b.id)
        let byRegistrationID = try RegistrationCheck.subject(
            classifier: classifier, registry: f.registry, registrationID: idA.value)
        #expect(byRegistrationID.record?.id == b.id)

        // A's own log: A's row.
        var own = RegistrationClassifier()
        _ = own.take(LogLine("DevKit MAC Address: a4cf120b9e31"))
        #expect(try RegistrationCheck.subject(classifier: own, registry: f.registry, boardID: a.id).record?.id == a.id)
    }
}

/// The `unauthorized` diagnosis when DPS was asked what it holds for the board.
@Suite struct UnauthorizedDiagnosisTests {
    func refusedRow() throws -> (RegistrationClassifier, BoardRecord, ProvisionFixture) {
        let f = try ProvisionFixture()
        let mac = try MACAddress("a4cf120b9e31")
        let version = try FirmwareVersion("1.6.2")
        var row = try f.registry.recordNewBoard(
            uds: f.uds, mac: mac, registrationID: try RegistrationID(mac: mac, firmwareVersion: version), firmwareVersion: version)
        row = try f.registry.markSteps(
            [.certificateWritten, .enrollmentWritten], boardID: row.id!,
            update: BoardUpdate(certificateSHA1: "AA" + String(repeating: "0", count: 38)))
        var classifier = RegistrationClassifier()
        _ = classifier.take(LogLine("DevKit MAC Address: a4cf120b9e31"))
        return (classifier, row, f)
    }

    /// A board registering under another ID than its certificate's (a profile's
    /// template the sketch does not use) is named first, whatever DPS holds: the
    /// enrollment it lacks is for the board's own ID, and enrolling the certificate
    /// again would change nothing (walkthrough, helper-121).
    @Test func aBoardRegisteringUnderAnotherIDIsTheCauseNamed() throws {
        let (known, derivedRow, f) = try refusedRow()
        defer { f.cleanup() }
        // Provisioned with a template: the row's ID is not the derived one.
        let row = try f.registry.markSteps(
            [], boardID: derivedRow.id!, update: BoardUpdate(registrationID: try RegistrationID("lab-a4cf120b9e31")))
        var classifier = known
        _ = classifier.take(LogLine("PUT /0ne00000000/registrations/bench-a4cf120b9e31/register?api-version=2018-09-01-preview HTTP/1.1"))
        #expect(classifier.identity.registrationID == "bench-a4cf120b9e31")
        for finding in [DPSEnrollmentFinding.absent, .certificate(sha1: row.certificateSHA1), nil] {
            let text = RegistrationDiagnosis.explain(
                .unauthorized, classifier: classifier, record: row, enrollment: finding,
                enrollCommand: { id, _ in "devkit dps enroll --id \(id)" })
            #expect(text.contains("the board registers as bench-a4cf120b9e31, but its certificate was made and enrolled for "
                + "lab-a4cf120b9e31"), "\(text)")
            #expect(!text.contains("dps enroll"), "\(text)")
        }
        // The reverse: a row with the derived ID, a board registering under its own.
        let reverse = RegistrationDiagnosis.explain(
            .unauthorized, classifier: classifier, record: derivedRow, enrollment: .absent,
            enrollCommand: { id, _ in "devkit dps enroll --id \(id)" })
        #expect(reverse.contains("the board registers as bench-a4cf120b9e31, but its certificate was made and enrolled for "
            + "az-a4cf120b9e31v1v6v2") && !reverse.contains("dps enroll"), "\(reverse)")
        // A derived ID that differs is a version or MAC that differs: not this message.
        var other = known
        _ = other.take(LogLine("PUT /0ne00000000/registrations/az-a4cf120b9e31v1v6v5/register?api-version=2018-09-01-preview HTTP/1.1"))
        let derived = RegistrationDiagnosis.explain(.unauthorized, classifier: other, record: derivedRow, enrollment: nil)
        #expect(!derived.contains("the board registers as") && derived.contains("the registration ID: the board uses"),
                "\(derived)")
    }

    @Test func anotherCertificateInDPSIsTheCauseNamed() throws {
        let (classifier, row, f) = try refusedRow()
        defer { f.cleanup() }
        let other = "BB" + String(repeating: "1", count: 38)
        // The command as the caller gives it (its registry, key and DPS options).
        let command: @Sendable (Int64, Bool) -> String = { id, replace in "devkit dps enroll --id \(id)\(replace ? " --replace" : "") X" }
        let text = RegistrationDiagnosis.explain(
            .unauthorized, classifier: classifier, record: row, enrollment: .certificate(sha1: other), enrollCommand: command)
        #expect(text.contains("holds another certificate (SHA-1 \(other))") && text.contains("`devkit dps enroll --id \(row.id!) --replace X`"),
                "\(text)")
        let absent = RegistrationDiagnosis.explain(.unauthorized, classifier: classifier, record: row, enrollment: .absent, enrollCommand: command)
        #expect(absent.contains("DPS has no enrollment") && absent.contains("`devkit dps enroll --id \(row.id!) X`"), "\(absent)")
        // Without the caller's command: words, not a command that would fail pasted.
        let words = RegistrationDiagnosis.explain(.unauthorized, classifier: classifier, record: row, enrollment: .absent)
        #expect(words.contains("devkit dps enroll --cert with the board's certificate") && !words.contains("`"), "\(words)")
        // DPS holds the board's own certificate: the board's side is what differs.
        let same = RegistrationDiagnosis.explain(
            .unauthorized, classifier: classifier, record: row, enrollment: .certificate(sha1: row.certificateSHA1))
        #expect(same.contains("firmware image most likely differs"), "\(same)")
    }
}
