import VirtualDevKit

/// A started virtual DevKit for one test; stopped by `defer kit.stop()`.
public func startedKit(_ configuration: VirtualDevKitConfiguration = .init()) throws -> VirtualDevKit {
    let kit = try VirtualDevKit(configuration: configuration)
    kit.start()
    return kit
}
