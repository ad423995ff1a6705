import Synchronization

/// The Alias certificate's TBS with every byte but the per-device ones fixed.
///
/// For one firmware, two devices' TBSs differ only in the CN's bytes and the two
/// 65-byte public points; every length around them depends on the CN's length alone.
/// So the TBS is encoded once per CN length (by ``DevKitDER/aliasTBS``, the one
/// encoder) with marker values, and each device's TBS is that template with the CN
/// and keys copied in: no DER builder per device. The vectors check the bytes.
struct AliasTBSTemplate: Sendable {
    private let bytes: [UInt8]
    private let cnOffset: Int
    private let cnLength: Int
    private let aliasOffset: Int
    private let deviceIDOffset: Int

    private static let aliasMarker: [UInt8] = [0x04] + [UInt8](repeating: 0xA5, count: 64)
    private static let deviceIDMarker: [UInt8] = [0x04] + [UInt8](repeating: 0x5A, count: 64)

    /// nil when the markers cannot be found exactly once (then callers encode directly).
    init?(cnLength: Int, fwid: [UInt8]) {
        // The subject CN: OID 2.5.4.3 then a UTF8String of one-byte length; the
        // issuer's comes first, the subject's is the last.
        guard cnLength > 0, cnLength < 128,
              let bytes = try? DevKitDER.aliasTBS(
                registrationID: String(repeating: "a", count: cnLength),
                aliasPublic: Self.aliasMarker, deviceIDPublic: Self.deviceIDMarker, fwid: fwid),
              let alias = Self.onlyOffset(of: Self.aliasMarker, in: bytes),
              let deviceID = Self.onlyOffset(of: Self.deviceIDMarker, in: bytes),
              let cnHeader = Self.lastOffset(of: [0x06, 0x03, 0x55, 0x04, 0x03, 0x0C, UInt8(cnLength)], in: bytes)
        else { return nil }
        self.bytes = bytes
        self.cnOffset = cnHeader + 7
        self.cnLength = cnLength
        self.aliasOffset = alias
        self.deviceIDOffset = deviceID
    }

    /// The TBS for these values; `cn` has the template's length, the points 65 bytes.
    func tbs(cn: String.UTF8View, aliasPublic: [UInt8], deviceIDPublic: [UInt8]) -> [UInt8] {
        precondition(cn.count == cnLength && aliasPublic.count == 65 && deviceIDPublic.count == 65)
        var out = bytes
        out.withUnsafeMutableBufferPointer { b in
            var i = cnOffset
            for byte in cn { b[i] = byte; i += 1 }
            for j in 0..<65 { b[aliasOffset + j] = aliasPublic[j]; b[deviceIDOffset + j] = deviceIDPublic[j] }
        }
        return out
    }

    private static func offsets(of needle: [UInt8], in haystack: [UInt8]) -> [Int] {
        guard haystack.count >= needle.count else { return [] }
        return (0...(haystack.count - needle.count)).filter { start in
            haystack[start..<(start + needle.count)].elementsEqual(needle)
        }
    }

    private static func onlyOffset(of needle: [UInt8], in haystack: [UInt8]) -> Int? {
        let found = offsets(of: needle, in: haystack)
        return found.count == 1 ? found[0] : nil
    }

    private static func lastOffset(of needle: [UInt8], in haystack: [UInt8]) -> Int? {
        offsets(of: needle, in: haystack).last
    }
}

/// The templates of one firmware, one per CN length met so far (at most 126),
/// shared by the threads certifying a batch.
final class AliasTBSTemplates: Sendable {
    private let fwid: [UInt8]
    private let byLength = Mutex<[Int: AliasTBSTemplate?]>([:])

    init(fwid: [UInt8]) { self.fwid = fwid }

    func template(cnLength: Int) -> AliasTBSTemplate? {
        if let known = byLength.withLock({ $0[cnLength] }) { return known }
        // Built outside the lock; two threads may both build the first one of a length.
        let made = AliasTBSTemplate(cnLength: cnLength, fwid: fwid)
        byLength.withLock { $0[cnLength] = made }
        return made
    }
}
