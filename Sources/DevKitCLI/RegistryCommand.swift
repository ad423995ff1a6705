import ArgumentParser

/// `devkit registry`: the record of every board provisioned on this machine.
struct RegistryCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "registry",
        abstract: "Show and export the record of provisioned boards.",
        discussion: """
            Every `devkit provision` (and `autoconfigure`, `watch`) records the board in \
            the registry before the UDS is sent to it (a local SQLite file, or a PostgreSQL \
            server that several stations share: --registry postgresql://...): MAC, USB serial, \
            registration ID, firmware version, UDS, certificate thumbprints and the time \
            of each step. A board interrupted mid-way (crash, unplug) keeps a row that \
            says how far it got, so it can be finished or its certificate re-issued.

            The database is $XDG_DATA_HOME/devkit/registry.sqlite \
            (~/.local/share/devkit/registry.sqlite), mode 0600 in a 0700 directory; \
            --registry PATH chooses another file. Each UDS in it is sealed (AES-256-GCM) \
            with the registry key, $XDG_CONFIG_HOME/devkit/registry.key \
            (~/.config/devkit/registry.key) unless --key-file FILE says otherwise; devkit \
            creates that file the first time. Back the key up: without it the recorded \
            UDS cannot be read. `registry keygen` makes a key, `registry rekey` re-seals \
            the registry under another. `list`, `show` and `export` only read: they never \
            create a key or change the file; a registry an older devkit wrote with the UDS \
            in clear text is sealed by `registry upgrade` (or any command that writes).

            Several stations share one registry on a PostgreSQL server with \
            --registry postgresql://USER@HOST/DATABASE (or `url` under [registry] in a \
            profile), every station with the same --key-file; `registry migrate --to URL` \
            copies a station's SQLite registry there.

            Examples:
              devkit registry list
              devkit registry show a4cf120b9e31
              devkit registry export --format csv > boards.csv
              devkit registry keygen new.key
              devkit registry rekey --new-key-file new.key
              devkit registry list --registry postgresql://devkit@db/devkit
            """,
        subcommands: [RegistryListCommand.self, RegistryShowCommand.self, RegistryExportCommand.self, RegistryReissueCommand.self,
            RegistryKeygenCommand.self, RegistryRekeyCommand.self, RegistryUpgradeCommand.self, RegistryMigrateCommand.self],
        defaultSubcommand: RegistryListCommand.self)
}
