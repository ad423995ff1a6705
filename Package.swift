// swift-tools-version:6.3
import PackageDescription

// One module per concern; data flows one way:
//   SerialPort → DevKitConsole → DevKitBoard → DevKitWorkflows → DevKitCLI → devkit-full
//                                DevKitBoard → DevKitBoardCLI → DevKitCLI
//                                              DevKitBoardCLI → devkit (hands the rest to devkit-full)
// DiceRIoT (certificate generator), DeviceDiscovery (libudev), DevKitRegistry
// (SQLite) and VirtualDevKit (the emulated board) stand alone. Underneath them all:
// DevKitModel (the domain values) and DevKitSystem (descriptor I/O, durable files,
// the signal relay) on CDevKitLinux.
// Linux only (termios, udev, ptys, eventfd): no `platforms`, which would only
// claim Apple systems the code does not build on.

// Both executables' link: SwiftPM exports every symbol of an executable for dlsym;
// nothing needs that here, and the Swift runtime's start-up dladdr() scans the dynamic
// symbol table (17,000 entries, then 660): ~0.6 ms of every run. lld with packed
// relative relocations (DT_RELR, glibc >= 2.36): the static binary's ~100,000
// R_X86_64_RELATIVE entries become a few kilobytes of bitmaps that the loader applies
// in a fraction of the time, and the binary shrinks. The binaries stay
// position-independent (ASLR kept).
let lean: [LinkerSetting] = [
    .unsafeFlags(
        ["-Xlinker", "--no-export-dynamic", "-use-ld=lld", "-Xlinker", "-z", "-Xlinker", "pack-relative-relocs"],
        .when(platforms: [.linux])),
]

let package = Package(
    name: "devkit",
    products: [
        .executable(name: "devkit", targets: ["devkit"]),
        .executable(name: "devkit-full", targets: ["devkit-full"]),
        .library(name: "DevKitModel", targets: ["DevKitModel"]),
        .library(name: "DiceRIoT", targets: ["DiceRIoT"]),
        .library(name: "SerialPort", targets: ["SerialPort"]),
        .library(name: "DevKitConsole", targets: ["DevKitConsole"]),
        .library(name: "VirtualDevKit", targets: ["VirtualDevKit"]),
        .library(name: "VirtualDevKitDPS", targets: ["VirtualDevKitDPS"]),
        .library(name: "DeviceDiscovery", targets: ["DeviceDiscovery"]),
        .library(name: "DPSModel", targets: ["DPSModel"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/apple/swift-asn1", from: "1.7.4"),
        .package(url: "https://github.com/apple/swift-system", from: "1.8.1"),
        .package(url: "https://github.com/attaswift/BigInt", from: "6.0.1"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        // The shared registry on a PostgreSQL server (issue 16).
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
        // `devkit emulate-dps`: a local DPS over TLS. Without the default
        // ConfigurationSupport trait (swift-configuration: unused, build time).
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1", traits: ["FullFoundation"]),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-certificates", from: "1.21.1"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        // Hummingbird's own dependencies, named for the types the emulator uses directly.
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
    ],
    targets: [
        // C libraries, found through pkg-config; apt names the package to install.
        .systemLibrary(
            name: "CLibEdit", pkgConfig: "libedit",
            providers: [.apt(["libedit-dev"])]),
        .systemLibrary(
            name: "CLibUDev", pkgConfig: "libudev",
            providers: [.apt(["libudev-dev"])]),

        // The domain values (UDS, MAC, firmware version, registration ID, secrets),
        // each parsed once where it enters; the standard library only.
        .target(name: "DevKitModel"),
        // Prototypes for the Linux calls the Glibc module hides, and the signal
        // relay's handler (in C: async-signal-safe by construction).
        .target(name: "CDevKitLinux"),
        // Base-point multiplications in batches with one affine conversion, on the
        // BoringSSL that swift-crypto links (DiceRIoT's BasePoint).
        .target(name: "CDiceRIoT"),
        // Descriptor I/O, pipes, the durable file writer and the signal relay.
        .target(
            name: "DevKitSystem",
            dependencies: ["CDevKitLinux", .product(name: "SystemPackage", package: "swift-system")]),

        // DPS's values (connection string, SAS token, enrollment bodies, the
        // enrolled certificate's thumbprints), shared by the client, the commands and
        // the local DPS; no I/O.
        .target(
            name: "DPSModel",
            dependencies: [
                "DevKitModel",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "X509", package: "swift-certificates"),
            ]),
        // The DPS service client (enrollments, bulk, query, registration state) on
        // AsyncHTTPClient: SAS tokens, retries, trust anchors, proxies; and the
        // enrollment workflow for one board or a fleet.
        .target(
            name: "DPSService",
            dependencies: [
                "DPSModel", "DevKitModel",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ]),
        .target(
            name: "DiceRIoT",
            dependencies: [
                "DevKitModel", "CDiceRIoT",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
            ]),
        .target(
            name: "SerialPort",
            dependencies: ["DevKitSystem", .product(name: "SystemPackage", package: "swift-system")]),
        .target(
            name: "DevKitConsole",
            dependencies: ["DevKitModel", "SerialPort"]),
        // What a board prints in user mode while it registers with DPS: lines,
        // their meaning, the outcome they add up to, secrets masked (issue 14); no I/O.
        .target(name: "UserModeLog", dependencies: ["DevKitModel"]),
        .target(
            name: "VirtualDevKit",
            dependencies: ["DevKitModel", "CDevKitLinux", "DevKitSystem", .product(name: "SystemPackage", package: "swift-system")]),
        // The DPS sample sketch for the virtual board (user mode): DiceRIoT for its
        // keys, AsyncHTTPClient for the device API over mutual TLS. Apart from
        // VirtualDevKit, which runs it through its small sketch protocol, so that the
        // board itself needs no HTTP/TLS stack. The sample image and the stock
        // firmware's roots are embedded in the code (no resource bundle at run time).
        .target(
            name: "VirtualDevKitDPS",
            dependencies: [
                "VirtualDevKit", "DiceRIoT", "DevKitModel",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            resources: [
                .embedInCode("Resources/Tiny.ino.bin"), .embedInCode("Resources/Tiny.ino.map"),
                .embedInCode("Resources/stock-roots.pem"),
            ]),
        .target(
            name: "DeviceDiscovery",
            dependencies: ["CLibUDev", "DevKitSystem", .product(name: "SystemPackage", package: "swift-system")]),
        .target(
            name: "DevKitRegistry",
            dependencies: [
                "DevKitModel", "DevKitSystem", .product(name: "GRDB", package: "GRDB.swift"),
                // AES-256-GCM sealing of the secrets it stores (issue 16).
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "SystemPackage", package: "swift-system"),
                // The PostgreSQL backend (Sources/DevKitRegistry/Postgres).
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
            ]),
        // The one-shot operations on a board (info, set-uds, ...) and the secret files
        // they read and write: what the small `devkit` binary needs, without the
        // registry, DPS or network stack of the workflows below.
        .target(
            name: "DevKitBoard",
            dependencies: [
                "DevKitModel", "DevKitConsole", "DevKitSystem", .product(name: "SystemPackage", package: "swift-system"),
            ]),
        .target(
            name: "DevKitWorkflows",
            dependencies: [
                "DevKitModel", "DevKitConsole", "DevKitBoard", "SerialPort", "DevKitRegistry", "DevKitSystem",
                // Enrolling each board in DPS as provisioning's last step (issue 13).
                "DPSModel", "DPSService",
                // Following a board's user-mode log (monitor, verify: issue 14).
                "UserModeLog",
                .product(name: "SystemPackage", package: "swift-system"),
                // SHA-256 of the firmware files, recorded for --resume.
                .product(name: "Crypto", package: "swift-crypto"),
            ]),
        // The interactive console (`devkit console`): libedit line editing, the link
        // that follows unplug/replug, transcripts. The CLI supplies its messages and `:cert`.
        .target(
            name: "DevKitREPL",
            dependencies: [
                "CLibEdit", "DevKitConsole", "DevKitModel", "DevKitSystem", "DevKitBoard", "DevKitWorkflows", "SerialPort", "UserModeLog",
                .product(name: "SystemPackage", package: "swift-system"),
            ]),
        // The local DPS (`devkit emulate-dps`): the service API on Hummingbird over
        // TLS, its CA and server certificate, state, SAS checks and fault switches.
        .target(
            name: "DPSEmulator",
            dependencies: [
                "DPSModel", "DevKitModel", "DevKitSystem",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "SystemPackage", package: "swift-system"),
            ]),
        // What the small `devkit` binary runs itself (`--version`, `info`, `set-uds`),
        // and the CLI's shared pieces: exit codes, error reporting, output, port options.
        .target(
            name: "DevKitBoardCLI",
            dependencies: [
                "CDevKitLinux", "DevKitModel", "DevKitSystem", "SerialPort", "DevKitConsole", "DevKitBoard", "DeviceDiscovery",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "SystemPackage", package: "swift-system"),
            ]),
        .target(
            name: "DevKitCLI",
            dependencies: [
                "DevKitModel", "DiceRIoT", "SerialPort", "DevKitConsole", "VirtualDevKit", "VirtualDevKitDPS",
                "DevKitBoard", "DevKitBoardCLI", "DevKitWorkflows", "DeviceDiscovery", "DevKitRegistry", "DevKitSystem", "DevKitREPL",
                "DPSModel", "DPSService", "DPSEmulator", "UserModeLog",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "TOMLKit", package: "TOMLKit"),
                .product(name: "SystemPackage", package: "swift-system"),
            ]),
        // Two binaries, one command line. `devkit` is small: it answers `--version` and
        // runs a plain `info` or `set-uds` line itself (a per-board command scripts and
        // the bench run often, where start-up is most of the time: every module linked
        // adds pointers the loader relocates at each start), and hands every other line
        // to `devkit-full` beside it with execv(2), same process, same arguments.
        .executableTarget(
            name: "devkit", dependencies: ["DevKitBoardCLI"],
            linkerSettings: lean),
        .executableTarget(
            name: "devkit-full", dependencies: ["DevKitCLI", "DevKitBoardCLI"],
            linkerSettings: lean),

        // Scripts/bench-enroll.sh's fleet: N finished boards with real Alias
        // certificates, made through the registry's API (not SQL that could drift
        // from the schema). One file on libraries devkit builds anyway.
        .executableTarget(
            name: "BenchRegistry", dependencies: ["DevKitModel", "DevKitRegistry", "DiceRIoT"],
            path: "Scripts/BenchRegistry"),

        // Bounded child processes, binary paths, scratch directories and a started
        // virtual board, shared by the test targets (a test target cannot import another).
        .target(
            name: "DevKitTestSupport", dependencies: ["CDevKitLinux", "CDevKitTestEnvironment", "VirtualDevKit"],
            path: "Tests/DevKitTestSupport"),
        // Before main() of the test process: a private XDG config/data/state directory
        // for the tests and every process they start, never the developer's own.
        .target(name: "CDevKitTestEnvironment", path: "Tests/CDevKitTestEnvironment"),
        // Fixtures live in Tests/Fixtures and are found through #filePath.
        .testTarget(name: "DevKitModelTests", dependencies: ["DevKitModel"]),
        .testTarget(name: "DPSModelTests", dependencies: ["DPSModel", "DevKitModel"]),
        .testTarget(
            name: "DPSServiceTests",
            dependencies: ["DPSService", "DPSModel", .product(name: "NIOSSL", package: "swift-nio-ssl")]),
        .testTarget(
            name: "DevKitSystemTests",
            dependencies: ["DevKitSystem", .product(name: "SystemPackage", package: "swift-system")]),
        // BigInt: the reference the hand-written arithmetic mod n is checked against.
        .testTarget(
            name: "DiceRIoTTests",
            dependencies: ["DiceRIoT", "DevKitModel", .product(name: "BigInt", package: "BigInt")]),
        .testTarget(
            name: "SerialPortTests",
            dependencies: ["SerialPort", "VirtualDevKit", .product(name: "SystemPackage", package: "swift-system")]),
        .testTarget(name: "DevKitConsoleTests", dependencies: ["DevKitConsole", "DevKitModel"]),
        .testTarget(name: "UserModeLogTests", dependencies: ["UserModeLog", "DevKitModel"]),
        .testTarget(
            name: "VirtualDevKitTests",
            dependencies: [
                "VirtualDevKit", "DevKitConsole", "SerialPort", "DevKitModel",
                .product(name: "SystemPackage", package: "swift-system"),
            ]),
        .testTarget(name: "DeviceDiscoveryTests", dependencies: ["DeviceDiscovery", "DevKitTestSupport"]),
        .testTarget(
            name: "DevKitRegistryTests",
            dependencies: [
                "DevKitRegistry", "DevKitModel", "DevKitTestSupport", "CDevKitTestEnvironment", .product(name: "GRDB", package: "GRDB.swift"),
            ]),
        // The workflows driven in-process (a virtual board, a scratch registry).
        .testTarget(
            name: "DevKitWorkflowsTests",
            dependencies: [
                "DevKitWorkflows", "DevKitBoard", "DevKitConsole", "DevKitModel", "DevKitRegistry", "SerialPort",
                "VirtualDevKit", "DevKitTestSupport", "UserModeLog", .product(name: "Crypto", package: "swift-crypto"),
                // To write rows as an earlier release did (relative paths).
                .product(name: "GRDB", package: "GRDB.swift"),
            ]),
        // The local DPS as users run it, the built `devkit emulate-dps` in its own
        // process, over real TLS on loopback (AsyncHTTPClient trusting only its CA);
        // DPSEmulator for its values (faults, counters, state files).
        .testTarget(
            name: "DPSEmulatorTests",
            dependencies: [
                "DPSEmulator", "DPSModel", "DPSService", "DevKitModel", "DevKitSystem", "DevKitTestSupport",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]),
        // The commands: the built `devkit` run end to end, and the CLI's own types.
        .testTarget(
            name: "DevKitCLITests",
            dependencies: [
                "DevKitCLI", "DevKitBoardCLI", "DevKitREPL", "DevKitConsole", "DevKitBoard", "DevKitWorkflows", "DevKitModel",
                "DevKitRegistry",
                "DeviceDiscovery", "SerialPort", "VirtualDevKit", "DevKitTestSupport",
                // The virtual board's DPS sample, run in-process against the built emulate-dps.
                "VirtualDevKitDPS", "DiceRIoT",
                // To write registry files as an earlier release did (UDS in clear text).
                .product(name: "GRDB", package: "GRDB.swift"),
            ]),
    ]
)
