import DevKitCLI

// The executable stays thin: every command lives in the DevKitCLI library.
await DevKitCommand.runAsRoot()
