import DevKitBoardCLI
import ArgumentParser
import DPSModel
import DPSService
import DevKitModel

/// `devkit dps list`: every enrollment (the query API, all pages).
struct DPSListCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "List the individual enrollments of the DPS.",
        usage: """
            devkit dps list --connection-string-file <file> [--page-size <n>]
                [--endpoint <url>] [--ca-file <file>] [--json]
            """,
        discussion: """
            Reads every page of the query API (following its continuation tokens) and \
            prints a line per enrollment: registration ID, status, SHA-1 thumbprint. \
            --json prints one JSON object per enrollment (the service's body).

            Examples:
              devkit dps list --connection-string-file dps.cs
              devkit dps list --connection-string-file dps.cs --json |
                jq -r .registrationId

            \(DPSHelp.exitCodes)
            """)

    @OptionGroup var connection: DPSConnectionOptions

    @Option(
        name: .customLong("page-size"),
        help: ArgumentHelp("Enrollments per request (default: the service's).", valueName: "n"))
    var pageSize: Int?

    @Flag(help: "One JSON object per enrollment.")
    var json = false

    @OptionGroup var outputLevel: OutputLevelOptions

    func validate() throws {
        if let pageSize, !(1...10_000).contains(pageSize) { throw ValidationError("--page-size takes 1 to 10000.") }
    }

    func run() async throws {
        try await reportingErrors {
            let all = try await withDPSClient(connection) { try await $0.query(pageSize: pageSize) }
            for e in all {
                if json {
                    try printJSON(e)
                } else {
                    let thumb = e.primaryCertificateInfo?.sha1Thumbprint
                        ?? e.primaryCertificatePEM.flatMap { try? EnrollmentCertificate(pem: $0) }?.sha1Thumbprint ?? "-"
                    printOutput("\(e.registrationId)  \(e.provisioningStatus?.rawValue ?? "enabled")  SHA-1 \(thumb)")
                }
            }
            if all.isEmpty && !json && OutputLevel.current != .quiet { printError("devkit: the DPS has no enrollments") }
        }
    }
}
