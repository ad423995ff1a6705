import DevKitBoardCLI
import DevKitBoard
import ArgumentParser
import DPSModel
import DPSService
import DevKitModel
import DevKitWorkflows
import Foundation

/// `devkit dps`: enrollments in the Azure IoT Hub Device Provisioning Service.
struct DPSCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dps",
        abstract: "Enroll boards in Azure IoT Hub DPS and look at their enrollments.",
        discussion: """
            Talks to the DPS service API (2021-10-01) with a shared access policy's \
            connection string (HostName=...;SharedAccessKeyName=...;SharedAccessKey=...), \
            read from a file or standard input, never from the command line, never \
            shown. The policy needs EnrollmentRead and EnrollmentWrite (`dps enroll` reads \
            each enrollment before it writes; the default provisioningserviceowner has \
            both); `dps status` needs RegistrationStatusRead.

            \(DPSHelp.connection)

            Examples:
              devkit dps enroll --cert out/az-a4cf120b9e31v1v6v2.pem \\
                  --connection-string-file dps.cs
              devkit dps enroll --from-registry --connection-string-file dps.cs
              devkit dps list --connection-string-file dps.cs --json
              devkit dps status az-a4cf120b9e31v1v6v2 --connection-string-file dps.cs

            \(DPSHelp.exitCodes)
            """,
        subcommands: [
            DPSEnrollCommand.self, DPSShowCommand.self, DPSListCommand.self, DPSStatusCommand.self,
            DPSDeleteCommand.self,
        ])
}

/// Help text shared by the dps commands.
enum DPSHelp {
    static let connection = """
        Requests go to https://<HostName>, or to --endpoint URL (a private endpoint, \
        a local DPS: the SAS token is still signed for the HostName). The system's \
        trust store is used; --ca-file PEM adds anchors. HTTPS_PROXY and NO_PROXY \
        are obeyed. Throttling (429), 5xx answers, timeouts and broken connections \
        are retried (5 tries, backoff with jitter, Retry-After obeyed).
        """
    static let exitCodes = """
        Exit codes: 0 done, 1 a conflict or some boards of a fleet failed, 64 usage, \
        65 DPS refused the data (400), 66 an input is missing (a file, an \
        enrollment), 69 DPS cannot be reached (DNS, refused, TLS), 75 timeouts or \
        throttling that outlasted the retries, 77 DPS refused the key (401/403).
        """
}

/// How to reach DPS: the connection string's file, and where and whom to trust.
struct DPSConnectionOptions: ParsableArguments {
    @Option(
        name: .customLong("connection-string-file"),
        help: ArgumentHelp(
            "File holding the DPS policy's connection string, or - for standard input.", valueName: "file"),
        completion: .file())
    var connectionStringFile: String?

    @Option(help: ArgumentHelp("The service's base URL (default: https://<HostName>).", valueName: "url"))
    var endpoint: String?

    @Option(
        name: .customLong("ca-file"),
        help: ArgumentHelp("PEM certificates to trust besides the system's.", valueName: "file"),
        completion: .file(extensions: ["pem", "crt"]))
    var caFile: String?

    func validate() throws {
        guard let file = connectionStringFile else {
            throw ValidationError(
                "Missing expected argument '--connection-string-file <file>' (or - for standard input): "
                    + "the DPS connection string is never taken from the command line.")
        }
        if file.isEmpty { throw ValidationError("--connection-string-file needs a path, or '-' for standard input.") }
        if let endpoint {
            guard DPSClientConfiguration.endpointURL(endpoint) != nil else {
                throw ValidationError(
                    "--endpoint '\(escaped(endpoint))' is not an https URL (plain http would carry the SAS token in clear); "
                        + "give e.g. https://my-dps.azure-devices-provisioning.net")
            }
        }
        if caFile?.isEmpty == true { throw ValidationError("--ca-file needs a path.") }
    }

    /// Reads the connection string (never printed) and opens a client.
    func client(parallel: Int = 4) throws -> DPSClient {
        let text = try SecretFile.readTrimmed(connectionStringFile!)
        let connectionString: DPSConnectionString
        do { connectionString = try DPSConnectionString(text) } catch {
            throw DPSInputError.connectionString(path: connectionStringFile!, reason: error.description)
        }
        let endpointURL = endpoint.flatMap(URL.init(string:))
        let host = endpointURL?.host ?? connectionString.hostName
        let proxy: ProxySettings?
        do { proxy = try ProxySettings.fromEnvironment(for: host) } catch { throw DPSInputError.proxy(error.description) }
        var configuration = DPSClientConfiguration(
            connectionString: connectionString, endpoint: endpointURL, caFiles: caFile.map { [$0] } ?? [], proxy: proxy,
            maxConnections: parallel)
        if OutputLevel.current == .verbose { configuration.log = { printError("devkit: \($0)") } }
        return try DPSClient(configuration)
    }
}

/// Runs `body` with a client and shuts the client down afterwards, whatever happens.
func withDPSClient<T>(
    _ options: DPSConnectionOptions, parallel: Int = 4, _ body: (DPSClient) async throws -> T
) async throws -> T {
    try await options.client(parallel: parallel).shuttingDown(after: body)
}

/// The dps commands' own input errors.
enum DPSInputError: Error, CLIReportable {
    case connectionString(path: String, reason: String)
    case proxy(String)
    case certificate(path: String, reason: String)
    case enrollmentFile(path: String, reason: String)
    case mismatch(String)
    case noBoards(String)

    var exitStatus: ExitStatus {
        switch self {
        case .connectionString, .certificate, .enrollmentFile: .dataError
        case .proxy, .mismatch: .usage
        case .noBoards: .noInput
        }
    }

    var userMessage: String {
        switch self {
        case .connectionString(let path, let reason):
            "\(escaped(path)) does not hold a DPS connection string: \(reason); copy the policy's "
                + "\"Primary connection string\" (DPS > Shared access policies) into the --connection-string-file"
        case .proxy(let reason): reason + "; fix or unset HTTPS_PROXY"
        case .certificate(let path, let reason): "cannot use \(escaped(path)) as the enrollment certificate: \(reason)"
        case .enrollmentFile(let path, let reason):
            "cannot use \(escaped(path)) as an enrollment file: \(reason); give the <id>.enrollment.json devkit provision wrote"
        case .mismatch(let message): message
        case .noBoards(let message): message
        }
    }
}

extension DPSServiceError: CLIReportable {
    public var exitStatus: ExitStatus {
        switch kind {
        case .http:
            switch status ?? 0 {
            case 401, 403: .noPermission
            case 404: .noInput
            case 429, 503: .tempFail
            case 400..<500: .dataError
            default: .unavailable
            }
        case .unreachable, .invalidResponse: .unavailable
        case .timedOut, .connectionLost: .tempFail
        case .invalidRequest: .dataError
        case .trustAnchors: .noInput
        }
    }

    public var userMessage: String {
        switch kind {
        case .http:
            switch status ?? 0 {
            case 401, 403:
                description + "; check the connection string (its key, HostName and policy name) and that the policy "
                    + "has EnrollmentRead and EnrollmentWrite (RegistrationStatusRead for `dps status`)"
            // Only `dps enroll` has --parallel; the error does not know which command it ends.
            case 429, 503:
                description + "; DPS is throttling or busy: try again later (`dps enroll` sends fewer requests at once "
                    + "with a lower --parallel)"
            case 412: description
            default: description
            }
        case .unreachable:
            description + "; check the HostName or --endpoint, the network and HTTPS_PROXY/NO_PROXY"
        case .timedOut, .connectionLost: description + "; try again later"
        case .trustAnchors: description + "; give a PEM file with --ca-file"
        case .invalidResponse, .invalidRequest: description
        }
    }
}
