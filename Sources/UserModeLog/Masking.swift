import DevKitModel

/// Masks what a sketch may print that must not reach a screen or a log: a
/// connection string's key (`SharedAccessKey=…`, `SymmetricKey=…`), a UDS (64 hex
/// digits) and a Wi-Fi password after a recognisable label. DevKitModel's
/// `maskingSecrets` masks secrets we know; here the secrets are the board's, not
/// known to us, so they are found by their shape. Hand-written: no library knows
/// these shapes.
public enum LogMasking {
    /// The labels whose value, up to `;`, whitespace or a quote, is a secret.
    static let keyLabels = ["sharedaccesskey=", "symmetrickey=", "sharedaccesssignature ", "sig="]
    /// Labels of a Wi-Fi password a sketch may print (`password: x`, `pwd=x`).
    static let passwordLabels = ["password:", "password=", "pwd:", "pwd=", "passphrase:", "passphrase="]

    /// `line` with every secret replaced by `***`.
    public static func mask(_ line: String) -> String {
        var bytes = Array(line.utf8)
        bytes = maskingLabelled(bytes, labels: keyLabels + passwordLabels)
        bytes = DevKitModel.maskingHexRuns(bytes)
        return String(decoding: bytes, as: UTF8.self)
    }

    /// How many leading bytes of an unfinished line can be shown now: all but a
    /// tail that could still become a secret (a run of hex digits that may reach
    /// 64, a label's value not yet ended, the start of a label). Monitor shows a
    /// partial line after a short wait up to this point, so a secret is never
    /// shown half-masked.
    public static func safePrefixLength(of partial: [UInt8]) -> Int {
        let folded = partial.map(fold)
        var safe = partial.count
        // An open label value: hold from the label on.
        for label in keyLabels + passwordLabels {
            let l = Array(label.utf8)
            if let at = lastRange(of: l, in: folded) {
                let rest = folded[(at + l.count)...]
                if !rest.contains(where: isValueEnd) { safe = min(safe, at) }
            }
            // The tail may be the start of a label.
            for k in stride(from: min(l.count - 1, folded.count), to: 0, by: -1)
            where Array(folded.suffix(k)) == Array(l.prefix(k)) {
                safe = min(safe, folded.count - k)
                break
            }
        }
        // A trailing hex run may still grow to 64.
        var run = 0
        while run < folded.count && Hex.isHexDigit(folded[folded.count - 1 - run]) { run += 1 }
        if run > 0 { safe = min(safe, folded.count - run) }
        return safe
    }

    static func fold(_ b: UInt8) -> UInt8 { (0x41...0x5A).contains(b) ? b | 0x20 : b }
    static func isValueEnd(_ b: UInt8) -> Bool {
        b == UInt8(ascii: ";") || b == UInt8(ascii: " ") || b == UInt8(ascii: "\"") || b == UInt8(ascii: "'")
            || b == UInt8(ascii: ",") || b == 0x09
    }

    static func lastRange(of needle: [UInt8], in hay: [UInt8]) -> Int? {
        guard hay.count >= needle.count else { return nil }
        for start in stride(from: hay.count - needle.count, through: 0, by: -1)
        where Array(hay[start..<(start + needle.count)]) == needle { return start }
        return nil
    }

    static func maskingLabelled(_ bytes: [UInt8], labels: [String]) -> [UInt8] {
        let folded = bytes.map(fold)
        var out: [UInt8] = []
        var i = 0
        outer: while i < bytes.count {
            for label in labels {
                let l = Array(label.utf8)
                if i + l.count <= bytes.count, Array(folded[i..<(i + l.count)]) == l {
                    out += bytes[i..<(i + l.count)]
                    var j = i + l.count
                    // `password: x`: the value may follow a space.
                    while j < bytes.count && bytes[j] == UInt8(ascii: " ") { out.append(bytes[j]); j += 1 }
                    var k = j
                    while k < bytes.count && !isValueEnd(bytes[k]) { k += 1 }
                    if k > j { out += Array("***".utf8) }
                    i = k
                    continue outer
                }
            }
            out.append(bytes[i])
            i += 1
        }
        return out
    }
}
