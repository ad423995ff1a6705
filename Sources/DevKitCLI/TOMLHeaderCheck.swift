/// The one table header TOMLKit cannot be given. Its parser (toml++ 3, as TOMLKit 0.6.0
/// builds it, assertions on) aborts the whole process, exit 134, when a table header's
/// first key character is none of a bare key's (`A-Z a-z 0-9 _ -`), a quote or `]`:
/// `[[[firmware]]]`, `[.dps]`, `[é]`, or a lone `[` at the end of a line. A typo in a
/// profile must be an error that names its line (exit 65); under the udev unit an abort
/// is also retried every 10 s. No library offers the check, so this finds that case
/// before TOMLKit parses: a header is a `[` that starts a statement outside every value
/// (array, inline table) and string; everything else is TOMLKit's to judge.
enum TOMLHeaderCheck {
    /// The line, column (both from 1) and character of the first header toml++ would
    /// abort on; nil when there is none.
    static func abortingHeader(in text: String) -> (line: Int, column: Int, found: String)? {
        let bytes = Array(text.utf8)
        var i = bytes.starts(with: [0xEF, 0xBB, 0xBF]) ? 3 : 0  // a byte-order mark toml++ skips
        var line = 1
        var lineStart = i
        var depth = 0  // open `[` and `{` of values
        var statementStart = true

        func isBlank(_ byte: UInt8) -> Bool { byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") }
        func skipBlanks(_ j: inout Int) -> Bool {
            let start = j
            while j < bytes.count && isBlank(bytes[j]) { j += 1 }
            return j > start
        }
        func mayStartKey(_ byte: UInt8) -> Bool {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                 UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "_"), UInt8(ascii: "-"),
                 UInt8(ascii: "\""), UInt8(ascii: "'"), UInt8(ascii: "]"):
                return true
            default:
                return false
            }
        }
        /// Past a string starting at `i` (its opening quote), multi-line ones included.
        func skipString() {
            let quote = bytes[i]
            let triple = i + 2 < bytes.count && bytes[i + 1] == quote && bytes[i + 2] == quote
            i += triple ? 3 : 1
            while i < bytes.count {
                let byte = bytes[i]
                if byte == UInt8(ascii: "\\") && quote == UInt8(ascii: "\"") {
                    i += 2
                    continue
                }
                if byte == UInt8(ascii: "\n") {
                    guard triple else { return }  // an unclosed string: TOMLKit says so
                    line += 1
                    lineStart = i + 1
                } else if byte == quote
                    && (!triple || (i + 2 < bytes.count && bytes[i + 1] == quote && bytes[i + 2] == quote))
                {
                    i += triple ? 3 : 1
                    return
                }
                i += 1
            }
        }

        while i < bytes.count {
            let byte = bytes[i]
            if byte == UInt8(ascii: "\n") {
                line += 1
                lineStart = i + 1
                statementStart = depth == 0
                i += 1
                continue
            }
            if statementStart {
                if isBlank(byte) || byte == UInt8(ascii: "\r") {
                    i += 1
                    continue
                }
                statementStart = false
                if byte == UInt8(ascii: "[") {
                    // As toml++ reads a header: `[`, blanks, a second `[` only right after
                    // the first (`[ [` is its own error), blanks, then the key.
                    var j = i + 1
                    let blanks = skipBlanks(&j)
                    if j < bytes.count && bytes[j] == UInt8(ascii: "[") && !blanks {
                        j += 1
                        _ = skipBlanks(&j)
                    } else if j < bytes.count && bytes[j] == UInt8(ascii: "[") {
                        j = bytes.count  // toml++ refuses it itself
                    }
                    if j < bytes.count && !mayStartKey(bytes[j]) {
                        var end = j + 1  // the whole character, continuation bytes included
                        while end < bytes.count && (0x80..<0xC0).contains(bytes[end]) { end += 1 }
                        let found = String(decoding: bytes[j..<end], as: UTF8.self)
                        let column = String(decoding: bytes[lineStart..<j], as: UTF8.self).unicodeScalars.count + 1
                        return (line, column, found)
                    }
                    // The rest of the header line: its brackets are not a value's.
                    while i < bytes.count && bytes[i] != UInt8(ascii: "\n") {
                        if bytes[i] == UInt8(ascii: "\"") || bytes[i] == UInt8(ascii: "'") {
                            skipString()
                        } else if bytes[i] == UInt8(ascii: "#") {
                            while i < bytes.count && bytes[i] != UInt8(ascii: "\n") { i += 1 }
                        } else {
                            i += 1
                        }
                    }
                    continue
                }
            }
            switch byte {
            case UInt8(ascii: "#"):
                while i < bytes.count && bytes[i] != UInt8(ascii: "\n") { i += 1 }
                continue
            case UInt8(ascii: "\""), UInt8(ascii: "'"):
                skipString()
                continue
            case UInt8(ascii: "["), UInt8(ascii: "{"):
                depth += 1
            case UInt8(ascii: "]"), UInt8(ascii: "}"):
                depth = max(0, depth - 1)
            default:
                break
            }
            i += 1
        }
        return nil
    }
}
