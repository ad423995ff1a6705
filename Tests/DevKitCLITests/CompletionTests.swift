import DevKitTestSupport
import Foundation
import Testing

/// Shell completion that helps (issue 12 item 16): `--port` completes the attached
/// DevKits (`devkit list --names`), every option naming a file completes files and
/// every directory option directories, in the bash, zsh and fish scripts
/// ArgumentParser generates from the same declarations.
@Suite("Shell completion")
struct CompletionTests {
    /// One option or positional of one command, from `--experimental-dump-help`.
    struct Argument {
        var command: String
        var name: String
        var valueName: String
        var isHidden: Bool
        /// The completion kind as ArgumentParser dumps it (`{"file": {...}}`), nil
        /// for the default (none).
        var completion: [String: Any]?

        var label: String { "\(command) --\(name)" }
    }

    /// Every option and positional of every command.
    static func arguments() throws -> [Argument] {
        let result = try TestProcess.run([try TestProcess.devkitBinary, "--experimental-dump-help"], timeout: 120)
        #expect(result.status == 0, "\(result.stderr)")
        let root = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        var found: [Argument] = []
        func walk(_ command: [String: Any], _ path: [String]) {
            let path = path + [command["commandName"] as? String ?? "?"]
            for argument in command["arguments"] as? [[String: Any]] ?? [] where argument["kind"] as? String != "flag" {
                let names = (argument["names"] as? [[String: Any]] ?? []).compactMap { $0["name"] as? String }
                found.append(Argument(
                    command: path.joined(separator: " "), name: names.first ?? "<\(argument["valueName"] ?? "")>",
                    valueName: argument["valueName"] as? String ?? "",
                    isHidden: argument["shouldDisplay"] as? Bool == false,
                    completion: argument["completionKind"] as? [String: Any]))
            }
            for subcommand in command["subcommands"] as? [[String: Any]] ?? [] { walk(subcommand, path) }
        }
        walk(try #require(root["command"] as? [String: Any]), [])
        return found
    }

    /// A path is what these value names say, or what an option called `--…file` /
    /// `--…-dir` takes (the hidden old spellings have no value name of their own).
    static func takesPath(_ argument: Argument) -> Bool {
        ["file", "path", "dir"].contains(argument.valueName) || argument.name.hasSuffix("file")
            || argument.name.hasSuffix("-dir")
    }

    /// A board's serial `--port <path>`; `emulate-dps --port <port>` is a TCP port number.
    static func isSerialPort(_ argument: Argument) -> Bool {
        argument.name == "port" && argument.valueName == "path"
    }

    @Test("every option whose value is a path completes files, directories, or (--port) DevKit ports")
    func everyPathOptionCompletes() throws {
        let arguments = try Self.arguments()
        let paths = arguments.filter(Self.takesPath)
        // Not vacuous: the options the commands are known to take.
        for label in ["devkit provision --port", "devkit provision --bin", "devkit cert --output-dir",
                      "devkit console --log", "devkit set-wifi --password-file", "devkit watch --port",
                      "devkit registry reissue --registry", "devkit emulate --link"] {
            #expect(paths.contains { $0.label == label }, "\(label) is not seen as a path option")
        }
        #expect(paths.count >= 40, "\(paths.count) path options")
        for argument in paths {
            let kind = argument.completion?.keys.first
            if Self.isSerialPort(argument) {
                let command = (argument.completion?["shellCommand"] as? [String: Any])?["command"] as? String
                #expect(command == "devkit list --names", "\(argument.label) completes \(argument.completion ?? [:])")
            } else if argument.valueName == "dir" || argument.name.hasSuffix("-dir") {
                #expect(kind == "directory", "\(argument.label) completes \(argument.completion ?? [:])")
            } else {
                #expect(kind == "file", "\(argument.label) completes \(argument.completion ?? [:])")
            }
        }
        // And the other way round: file and directory completion only where help
        // names a path, so `--help` and completion agree.
        for argument in arguments where ["file", "directory"].contains(argument.completion?.keys.first ?? "") {
            #expect(Self.takesPath(argument), "\(argument.label) completes paths but its value is <\(argument.valueName)>")
        }
    }

    @Test("the firmware options complete their build outputs' extensions")
    func firmwareExtensions() throws {
        let arguments = try Self.arguments()
        for (name, ext) in [("bin", "bin"), ("map", "map"), ("elf", "elf"), ("profile", "toml")] {
            for argument in arguments where argument.name == name {
                let extensions = (argument.completion?["file"] as? [String: Any])?["extensions"] as? [String]
                #expect(extensions == [ext], "\(argument.label): \(argument.completion ?? [:])")
            }
        }
    }

    static func script(_ shell: String) throws -> String {
        let result = try TestProcess.run(
            [try TestProcess.devkitBinary, "--generate-completion-script", shell], timeout: 120)
        #expect(result.status == 0, "\(result.stderr)")
        return result.stdout
    }

    @Test("the bash, zsh and fish scripts complete --port with `devkit list --names`", arguments: ["bash", "zsh", "fish"])
    func scriptsCallListNames(shell: String) throws {
        let script = try Self.script(shell)
        #expect(script.contains("devkit list --names"), "\(shell): no port completion")
        // Every command's --port uses it.
        let calls = script.components(separatedBy: "devkit list --names").count - 1
        let ports = try Self.arguments().filter(Self.isSerialPort).count
        #expect(ports >= 8 && calls == ports, "\(shell): \(calls) port completions for \(ports) --port options")
    }

    /// The bash script run by bash, as when Tab is pressed: `--port` offers the
    /// DevKit node the testbed has (through `devkit list --names` on PATH, under
    /// umockdev), `--bin` offers .bin files and directories, `--output-dir` only
    /// directories.
    @Test("bash completes --port with the attached DevKit, --bin with .bin files, --output-dir with directories")
    func bashCompletes() throws {
        let umockdevRun = try #require(TestProcess.which("umockdev-run"), "umockdev-run missing: apt install umockdev")
        let dir = consoleTestDirectory()
        defer { _ = try? TestProcess.run(["/bin/rm", "-rf", dir], timeout: 10) }
        let bin = dir + "/bin"
        try FileManager.default.createDirectory(atPath: bin, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: bin + "/devkit", withDestinationPath: try TestProcess.devkitBinary)
        let work = dir + "/work"
        try FileManager.default.createDirectory(atPath: work + "/builds", withIntermediateDirectories: true)
        for file in ["sketch.ino.bin", "sketch.ino.map", "notes.txt"] {
            #expect(FileManager.default.createFile(atPath: work + "/" + file, contents: Data()))
        }
        try Self.script("bash").write(toFile: dir + "/devkit.bash", atomically: false, encoding: .utf8)

        // complete WORDS...: what Tab offers for the last word (empty: a new word).
        let driver = """
            source "$1"
            complete_line() {
                COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1))
                COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
                COMPREPLY=()
                _devkit devkit "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
                printf '%s\\n' "$*=>$(printf '%s,' "${COMPREPLY[@]}" | tr '\\n' ' ')"
            }
            cd "$2"
            complete_line devkit info --port ''
            complete_line devkit watch --profile p.toml --port ''
            complete_line devkit cert --bin ''
            complete_line devkit provision --output-dir ''
            """
        let result = try TestProcess.run(
            [umockdevRun, "--device", ListTestSupport.fixtures.appendingPathComponent("bench-three-ttys.umockdev").path,
             "--", "/bin/bash", "-c", driver, "bash", dir + "/devkit.bash", work],
            environment: ["PATH": bin + ":/usr/bin:/bin"], timeout: 60)
        #expect(result.status == 0, "\(result.stderr)")
        let lines = result.stdoutLines
        try #require(lines.count == 4, "\(result.stdout)\n\(result.stderr)")
        #expect(lines[0] == "devkit info --port =>/dev/ttyACM0,", "\(lines[0])")
        #expect(lines[1] == "devkit watch --profile p.toml --port =>/dev/ttyACM0,", "\(lines[1])")
        let binOffers = Set(lines[2].components(separatedBy: "=>")[1].split(separator: ",").map(String.init))
        #expect(binOffers == ["sketch.ino.bin", "builds"], "\(lines[2])")
        #expect(lines[3] == "devkit provision --output-dir =>builds,", "\(lines[3])")
    }
}
