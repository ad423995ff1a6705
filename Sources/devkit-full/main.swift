import DevKitCLI

// The executable stays thin: every command lives in the DevKitCLI library.
// Synchronous on purpose: see DevKitCommand.runAsRoot.
DevKitCommand.runAsRoot()
