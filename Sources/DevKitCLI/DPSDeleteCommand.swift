import DevKitBoardCLI
import ArgumentParser
import DPSModel
import DPSService
import DevKitModel

/// `devkit dps delete ID`: remove an enrollment.
struct DPSDeleteCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "delete",
        abstract: "Delete an enrollment.",
        usage: """
            devkit dps delete <registration-id> --connection-string-file <file>
                [--if-match <etag>] [--endpoint <url>] [--ca-file <file>] [--json]
            """,
        discussion: """
            The board can no longer register with DPS (a device already assigned to a \
            hub stays there). --if-match deletes only if the enrollment's etag is still \
            the one given (from `devkit dps show`): if it changed, nothing is deleted \
            and the exit code is 65. Exit 66 when DPS has no such enrollment.

            Examples:
              devkit dps delete az-a4cf120b9e31v1v6v2 --connection-string-file dps.cs
              devkit dps delete az-a4cf120b9e31v1v6v2 --connection-string-file dps.cs \\
                  --if-match '"3e00a5b0-0000-0800-0000-663211f00000"'

            \(DPSHelp.exitCodes)
            """)

    @Argument(help: ArgumentHelp("The enrollment's registration ID.", valueName: "registration-id"))
    var registrationID: String

    @Option(
        name: .customLong("if-match"),
        help: ArgumentHelp("Delete only if the enrollment's etag is this one.", valueName: "etag"))
    var ifMatch: String?

    @OptionGroup var connection: DPSConnectionOptions

    @Flag(help: "Print the result as one JSON object.")
    var json = false

    @OptionGroup var outputLevel: OutputLevelOptions

    struct Result: Encodable {
        let registrationID: String
        let action = "deleted"
        enum CodingKeys: String, CodingKey { case registrationID = "registration_id", action }
    }

    func run() async throws {
        try await reportingErrors {
            do {
                try await withDPSClient(connection) { try await $0.delete(registrationID, ifMatch: ifMatch) }
            } catch let error as DPSServiceError where error.kind == .http && error.status == 404 {
                throw DPSNotFound.enrollment(registrationID)
            } catch var error as DPSServiceError where error.kind == .http && error.status == 412 {
                error.message = "the enrollment's etag is no longer \(ifMatch ?? "*") (it changed since): nothing was deleted"
                throw error
            }
            if json {
                try printJSON(Result(registrationID: registrationID))
            } else {
                printOutput("Deleted the enrollment \(escaped(registrationID)).")
            }
        }
    }
}
