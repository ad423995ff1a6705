@testable import DevKitBoardCLI
import DevKitRegistry
import DevKitWorkflows
import DeviceDiscovery
import Foundation
import Testing

@testable import DevKitCLI

/// The exact text each `--json` shape prints for a value with nils: keys sorted,
/// `/` not escaped, one line, and a nil written as `null` only where the output
/// promises every key (`@NullEncoded`); other nils are left out.
@Suite struct JSONOutputTests {
    @Test func setUDSWritesNullForNoFile() throws {
        let result = SetUDSCommand.Result(port: "/dev/ttyACM0", stored: true, generated: false, udsFile: nil)
        #expect(try JSONOutput.text(result) == #"{"generated":false,"port":"/dev/ttyACM0","stored":true,"uds_file":null}"#)
        let saved = SetUDSCommand.Result(port: "/dev/ttyACM0", stored: true, generated: true, udsFile: "keys/uds.hex")
        #expect(try JSONOutput.text(saved) == #"{"generated":true,"port":"/dev/ttyACM0","stored":true,"uds_file":"keys/uds.hex"}"#)
    }

    @Test func infoWritesEveryKey() throws {
        let result = InfoCommand.Result(
            port: "/dev/pts/3", firmwareVersion: "1.6.2", micoVersion: nil, mbedOSVersion: nil, mbedTLSVersion: nil,
            wifiVersion: nil, macAddress: nil, registrationID: nil)
        #expect(try JSONOutput.text(result) == #"{"firmware_version":"1.6.2","mac_address":null,"mbed_os_version":null,"mbed_tls_version":null,"mico_version":null,"port":"/dev/pts/3","registration_id":null,"wifi_version":null}"#)
        let full = InfoCommand.Result(
            port: "/dev/pts/3", firmwareVersion: "1.6.2", micoVersion: "11", mbedOSVersion: "5.4", mbedTLSVersion: "2.4",
            wifiVersion: "3.3", macAddress: "a4cf120b9e31", registrationID: "az-a4cf120b9e31v1.6.2")
        #expect(try JSONOutput.text(full) == #"{"firmware_version":"1.6.2","mac_address":"a4cf120b9e31","mbed_os_version":"5.4","mbed_tls_version":"2.4","mico_version":"11","port":"/dev/pts/3","registration_id":"az-a4cf120b9e31v1.6.2","wifi_version":"3.3"}"#)
    }

    @Test func provisionEventWritesNullBoardIDAndLeavesOutPort() throws {
        let early = ProvisionReporter.EventJSON(
            event: "step", stage: "uds", status: "started", message: "storing", boardID: nil, port: nil)
        #expect(try JSONOutput.text(early) == #"{"board_id":null,"event":"step","message":"storing","stage":"uds","status":"started"}"#)
        let watched = ProvisionReporter.EventJSON(
            event: "step", stage: "uds", status: "done", message: "stored", boardID: 7, port: "/dev/ttyACM1")
        #expect(try JSONOutput.text(watched) == #"{"board_id":7,"event":"step","message":"stored","port":"/dev/ttyACM1","stage":"uds","status":"done"}"#)
    }

    /// Only a board another station (or run) holds is "left to the station that
    /// holds it", without a resume hint; a claim that failed because the server
    /// was away is a stop like any other, and a busy error at another stage too.
    @Test func onlyABusyClaimIsLeftToTheOtherStation() {
        let busy = RegistryError.boardBusy(board: "with MAC a4cf120b9e31", station: "line-1")
        let away = RegistryError.serverUnavailable(server: "postgresql://db/devkit", reason: "connection refused")
        #expect(ProvisionEvent(stage: .claim, status: .failed, message: "", boardID: 3, error: busy).isHeldElsewhere)
        #expect(ProvisionEvent(stage: .claim, status: .failed, message: "", error: busy).isHeldElsewhere)
        #expect(!ProvisionEvent(stage: .claim, status: .failed, message: "", boardID: 3, error: away).isHeldElsewhere)
        #expect(!ProvisionEvent(stage: .mac, status: .failed, message: "", boardID: 3, error: busy).isHeldElsewhere)
    }

    @Test func certResultLeavesOutFilesNotWritten() {
        var result = CertResult(registrationID: "dev-1", sha1Thumbprint: "AB", sha256Thumbprint: "CD")
        result.certificate = "out/dev-1.pem"
        #expect(result.jsonLine() == #"{"certificate":"out/dev-1.pem","registration_id":"dev-1","sha1_thumbprint":"AB","sha256_thumbprint":"CD","warnings":[]}"#)
    }

    @Test func certBatchFailureLine() throws {
        let line = CertBatchLineFailure(error: #"cannot write out/x.pem: "denied""#, line: 3)
        #expect(try JSONOutput.text(line) == #"{"error":"cannot write out/x.pem: \"denied\"","line":3}"#)
    }

    @Test func listWritesNullForUnknownDeviceFields() throws {
        let board = DevKitDevice(devnode: "/dev/ttyACM2", kernelName: "ttyACM2", devpath: "/e", syspath: "/sys/e")
        #expect(try ListOutput.json(["devices": AnyEncodable([board])]) == #"{"devices":[{"by_id":null,"devpath":"/e","kernel_name":"ttyACM2","node":"/dev/ttyACM2","serial":null,"syspath":"/sys/e","usb_path":null}]}"#)
        #expect(try ListOutput.json(["event": AnyEncodable("add"), "device": AnyEncodable(board)]) == #"{"device":{"by_id":null,"devpath":"/e","kernel_name":"ttyACM2","node":"/dev/ttyACM2","serial":null,"syspath":"/sys/e","usb_path":null},"event":"add"}"#)
    }

    private struct Pair: Encodable {
        @NullEncoded var a: String?
        var b: String
    }

    @Test func prettyForHumans() throws {
        #expect(try JSONOutput.text(Pair(a: nil, b: "x/y"), pretty: true) == """
            {
              "a" : null,
              "b" : "x/y"
            }
            """)
        #expect(try JSONOutput.text(Pair(a: "1", b: "x/y")) == #"{"a":"1","b":"x/y"}"#)
    }

    /// Times are shown as the registry stores them, to the millisecond: a stored
    /// `.780` (0.77999… seconds as a double) was shown as `.779`.
    @Test func timestampsRoundToTheStoredMillisecond() {
        for millis in [780, 779, 1, 999, 0, 786] {
            let date = Date(timeIntervalSince1970: 1_796_521_307 + Double(millis) / 1000)
            #expect(timestamp(date).hasSuffix(String(format: ".%03dZ", millis)), "\(millis): \(timestamp(date))")
        }
        #expect(timestamp(Date(timeIntervalSince1970: 1_796_521_307.7806)).hasSuffix(".781Z"), "to the nearest, as stored")
    }
}
