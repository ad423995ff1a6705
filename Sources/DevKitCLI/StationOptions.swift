import ArgumentParser
import DevKitWorkflows
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// `--station NAME` of the commands that record new boards: which machine of a
/// shared registry provisioned each board.
struct StationOptions: ParsableArguments {
    @Option(
        name: .customLong("station"),
        help: ArgumentHelp(
            "The station name recorded with each board this run records.",
            discussion: """
                Default: `station` under [registry] in the profile, else this machine's host name. \
                Tells apart the stations sharing one registry: `devkit registry list --station NAME`.
                """,
            valueName: "name"))
    var station: String?

    func validate() throws {
        if let station, station.isEmpty || station.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) {
            throw ValidationError("--station takes a non-empty name without control characters.")
        }
    }

    /// The name to record: --station, else the profile's, else the host name.
    func resolved(profile: ProvisioningProfile? = nil) -> String {
        station ?? profile?.station ?? Self.hostName
    }

    /// gethostname(2): the kernel's name, no DNS look-up (Foundation's hostName may do one).
    static var hostName: String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return "localhost" }
        let name = String(cString: buffer)
        return name.isEmpty ? "localhost" : name
    }
}
