import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Scripts/99-az3166-devkit.rules, Scripts/devkit-autoconfigure@.service and
/// Scripts/install-udev.sh, checked with the real udevadm and systemd-analyze
/// where the machine has them (a test that cannot run here is cancelled with the
/// reason, not passed).
@Suite("udev rule, systemd unit and installer")
struct UdevRuleTests {
    static let scripts = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Scripts")
    static var rules: String { scripts.appendingPathComponent("99-az3166-devkit.rules").path }
    static var checkRule: String { scripts.appendingPathComponent("check-udev-rule.sh").path }
    static var installer: String { scripts.appendingPathComponent("install-udev.sh").path }
    static var bench: String { BoundedProcess.fixtures.appendingPathComponent("bench-three-ttys.umockdev").path }
    static let stlinkTTY = "/sys/devices/pci0000:00/0000:00:14.0/usb1/1-2/1-2:1.2/tty/ttyACM0"
    static let otherTTY = "/sys/devices/pci0000:00/0000:00:14.0/usb1/1-3/1-3:1.0/tty/ttyACM1"

    /// `udevadm test` of the rule against one emulated tty (Scripts/check-udev-rule.sh
    /// isolates it in a mount namespace); cancels the test when the machine cannot.
    func dryRun(_ syspath: String) throws -> (properties: [String: String], log: String) {
        let result = try BoundedProcess.run(
            ["/bin/sh", Self.checkRule, Self.rules, Self.bench, syspath, "add"], timeout: 60)
        #expect(!result.timedOut)
        if result.status == 77 {
            try Test.cancel(Comment(rawValue: result.stderr.trimmingCharacters(in: .whitespacesAndNewlines)))
        }
        try #require(result.status == 0, "udevadm test failed:\n\(result.stderr)")
        var properties: [String: String] = [:]
        for line in result.stdoutLines {
            guard let equals = line.firstIndex(of: "=") else { continue }
            properties[String(line[..<equals])] = String(line[line.index(after: equals)...])
        }
        return (properties, result.stderr)
    }

    @Test("On the ST-LINK tty the rule ignores ModemManager, sets dialout 0660, /dev/devkit-0, wants the unit")
    func ruleMatchesTheDevKit() throws {
        let (properties, log) = try dryRun(Self.stlinkTTY)
        #expect(properties["ID_MM_DEVICE_IGNORE"] == "1")
        #expect(properties["SYSTEMD_WANTS"] == "devkit-autoconfigure@ttyACM0.service")
        #expect(properties["TAGS"]?.contains(":systemd:") == true)
        let links = properties["DEVLINKS"]?.split(separator: " ").map(String.init) ?? []
        #expect(links.contains("/dev/devkit-0"))
        // udevadm logs which rule line set what; these must come from our file.
        let dialout = try #require(getgrnam("dialout"), "no dialout group here").pointee.gr_gid
        #expect(log.contains("99-az3166-devkit.rules:"))
        #expect(log.range(of: #"99-az3166-devkit\.rules:\d+ GROUP \#(dialout)\b"#, options: .regularExpression) != nil)
        #expect(log.range(of: #"99-az3166-devkit\.rules:\d+ MODE 0660"#, options: .regularExpression) != nil)
    }

    @Test("Another USB serial tty is left alone")
    func ruleIgnoresOtherTTYs() throws {
        let (properties, log) = try dryRun(Self.otherTTY)
        #expect(properties["DEVNAME"] == "/dev/ttyACM1")  // the run did happen
        #expect(properties["ID_MM_DEVICE_IGNORE"] == nil)
        #expect(properties["SYSTEMD_WANTS"] == nil)
        #expect(!(properties["DEVLINKS"] ?? "").contains("/dev/devkit-"))
        #expect(log.range(of: #"99-az3166-devkit\.rules:\d+ "#, options: .regularExpression) == nil)
    }

    @Test("udevadm verify accepts the rule (systemd >= 253)")
    func udevadmVerify() throws {
        guard let udevadm = BoundedProcess.which("udevadm") else {
            try Test.cancel("udevadm not installed (apt install udev)")
        }
        let probe = try BoundedProcess.run([udevadm, "verify", "--help"], timeout: 120)
        if probe.status != 0 {
            try Test.cancel("this udevadm has no `verify` (systemd < 253); the udevadm test dry runs cover the rule")
        }
        let result = try BoundedProcess.run([udevadm, "verify", Self.rules], timeout: 120)
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
    }

    @Test("install-udev.sh --destdir installs both files; systemd-analyze verifies the unit")
    func installerAndUnit() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("devkit-install-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: root) }
        let result = try BoundedProcess.run(
            ["/bin/sh", Self.installer, "--destdir", root.path, "--devkit-binary", "/bin/true"], timeout: 120)
        #expect(result.status == 0, "\(result.stderr)")
        let rules = root.appendingPathComponent("etc/udev/rules.d/99-az3166-devkit.rules").path
        let unit = root.appendingPathComponent("etc/systemd/system/devkit-autoconfigure@.service").path
        #expect(result.stdout.contains("installed \(rules)"))
        #expect(result.stdout.contains("installed \(unit) (runs /bin/true)"))
        #expect(result.stdout.contains("not reloading"))
        #expect(FileManager.default.contents(atPath: rules) == FileManager.default.contents(atPath: Self.rules))
        let unitText = try String(contentsOfFile: unit, encoding: .utf8)
        #expect(unitText.contains(
            "ExecStart=/bin/true autoconfigure --port /dev/%I --profile /etc/devkit/profile.toml\n"))
        #expect(unitText.contains("BindsTo=dev-%i.device\n"))
        // The README profile's output_dir, the one place under /etc the unit may write.
        var isDirectory: ObjCBool = false
        #expect(FileManager.default.fileExists(
            atPath: root.appendingPathComponent("etc/devkit/enrollments").path, isDirectory: &isDirectory) && isDirectory.boolValue)
        #expect(unitText.contains("ReadWritePaths=-/etc/devkit/enrollments\n"))
        for path in [rules, unit] {
            let mode = (try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int) ?? 0
            #expect(mode == 0o644, "\(path)")
        }

        guard let analyze = BoundedProcess.which("systemd-analyze") else {
            try Test.cancel("systemd-analyze not installed: the unit was installed but not verified")
        }
        // An instance name makes systemd load the template as udev would start it.
        let verify = try BoundedProcess.run(
            [analyze, "verify", "--man=no", unit.replacingOccurrences(of: "@.service", with: "@ttyACM0.service")],
            timeout: 60)
        #expect(verify.status == 0, "\(verify.stderr)")
        #expect(verify.stderr.isEmpty, "systemd-analyze warned:\n\(verify.stderr)")
    }

    @Test("the unit runs the devkit-full beside the devkit given: one process start per board, not two")
    func unitRunsDevkitFull() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("devkit-install-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: root) }
        let bin = root.appendingPathComponent("opt/bin").path
        try FileManager.default.createDirectory(atPath: bin, withIntermediateDirectories: true)
        for name in ["devkit", "devkit-full"] {
            #expect(FileManager.default.createFile(atPath: bin + "/" + name, contents: Data("#!/bin/sh\n".utf8),
                                                   attributes: [.posixPermissions: 0o755]))
        }
        let result = try BoundedProcess.run(
            ["/bin/sh", Self.installer, "--destdir", root.path + "/dest", "--devkit-binary", bin + "/devkit"], timeout: 120)
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("(runs \(bin)/devkit-full)"))
        let unit = try String(
            contentsOfFile: root.path + "/dest/etc/systemd/system/devkit-autoconfigure@.service", encoding: .utf8)
        #expect(unit.contains("ExecStart=\(bin)/devkit-full autoconfigure --port /dev/%I --profile /etc/devkit/profile.toml\n"))
    }

    @Test("install-udev.sh refuses to install into / without root")
    func installerNeedsRoot() throws {
        var argv = ["/bin/sh", Self.installer]
        if getuid() == 0 {
            guard let setpriv = BoundedProcess.which("setpriv") else {
                try Test.cancel("running as root and no setpriv to drop privileges")
            }
            argv = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"] + argv
        }
        let result = try BoundedProcess.run(argv, timeout: 120)
        #expect(result.status == 77)
        #expect(result.stderr.contains("must run as root"))
        #expect(result.stdout.isEmpty)  // nothing was installed
    }
}
