import DevKitBoardCLI

// The small binary: `--version`, `info` and `set-uds` run here; every other command
// line is handed to devkit-full (see BoardCommandLine). Synchronous on purpose.
BoardCommandLine.main()
