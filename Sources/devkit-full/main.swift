import DevKitBoardCLI
import DevKitCLI

// The executable stays thin: every command lives in the DevKitCLI library.
// Handed over by `devkit`, it keeps that name (BoardCommandLine.takeProgramName).
// Synchronous on purpose: see DevKitCommand.runAsRoot.
BoardCommandLine.takeProgramName()
DevKitCommand.runAsRoot()
