import ArgumentParser

/// Placeholder: `devkit cert` arrives with the certificate generator.
struct CertCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cert", abstract: "Compute the DICE/RIoT enrollment certificate.")
    func run() async throws {}
}
