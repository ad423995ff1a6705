import DevKitModel

/// The places TOMLKit cannot be given. Its parser (toml++ 3, as TOMLKit 0.6.0 builds it,
/// assertions on) aborts the whole process, exit 134, instead of reporting an error:
/// - a table header whose first key character is none of a bare key's (`A-Z a-z 0-9
///   _ -`), a quote, `]` or a blank: `[[[firmware]]]`, `[.dps]`, `[é]`, a lone `[`;
/// - an array whose next value (after `[` or a comma, blanks, line breaks and comments)
///   starts with `}` or a Unicode line separator (U+0085, U+2028, U+2029);
/// - a value that is a date, a space, one digit and the value's end (`1979-05-27 0`):
///   toml++ scans on for a time and asserts there is more; or a date padded with
///   about 115 `_`s and a space, after which it steps back over more characters
///   than it keeps;
/// - a date-time whose date is valid and whose time does not start with a digit
///   (`2024-05-27T:10:00`).
/// And TOMLKit reads a text only up to its first NUL character, silently.
/// A typo in a profile must be an error that names its line (exit 65); under the udev
/// unit an abort is also retried every 10 s. No library offers the check (toml++ fixed
/// the header case upstream, after the release TOMLKit builds), so this finds those
/// places before TOMLKit parses, reading only as much of TOML's structure as it takes to
/// know a header (a `[` that starts a statement outside every value and string), an
/// array's next value and a value's first token (which toml++ classifies by the
/// characters it holds before it parses it). Everything else is TOMLKit's to judge.
enum TOMLAbortCheck {
    /// Where toml++ would abort: the line and column (both from 1), what it expected
    /// and found there; the character's place in the UTF-8 text, and the bytes that,
    /// put in its place, make toml++ report an error instead, there or just after it,
    /// or earlier where the text has an earlier error (nil for a NUL: the text before
    /// it is what TOMLKit reads).
    struct Abort {
        var line: Int
        var column: Int
        var message: String
        var offset: Int
        var length: Int
        var replacement: [UInt8]?

        /// `text` as TOMLKit can be given it safely, to learn whether it finds an error
        /// before this place: the character replaced, or the text cut at the NUL.
        func defused(_ text: String) -> String {
            var bytes = Array(text.utf8)
            if let replacement {
                bytes.replaceSubrange(offset..<offset + length, with: replacement)
            } else {
                bytes.removeSubrange(offset...)
            }
            return String(decoding: bytes, as: UTF8.self)
        }
    }

    /// The first place toml++ would abort on in `text`, or a NUL character (TOMLKit
    /// hands toml++ a C string: it would read the text up to it and no further); nil
    /// when there is none.
    static func firstAbort(in text: String) -> Abort? {
        let bytes = Array(text.utf8)
        let end = bytes.firstIndex(of: 0) ?? bytes.count
        var scanner = Scanner(bytes: Array(bytes[..<end]))
        if let abort = scanner.run() { return abort }
        guard end < bytes.count else { return nil }
        var nul = Scanner(bytes: bytes)
        nul.line = 1 + bytes[..<end].filter { $0 == UInt8(ascii: "\n") }.count
        nul.lineStart = max(nul.lineStart, (bytes[..<end].lastIndex(of: UInt8(ascii: "\n")) ?? -1) + 1)
        return nul.abort(at: end, "a NUL character, which TOML does not allow", replacement: nil)
    }

    private struct Scanner {
        let bytes: [UInt8]
        var i = 0
        var line = 1
        var lineStart = 0
        /// The open `[` (arrays) and `{` (inline tables) of the statement's value.
        var open: [UInt8] = []

        init(bytes: [UInt8]) {
            self.bytes = bytes
            if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { i = 3 }  // a byte-order mark, skipped by toml++
            lineStart = i
        }

        func byte(_ at: Int) -> UInt8? { at < bytes.count ? bytes[at] : nil }

        /// The Unicode scalar at `at` and its length in bytes.
        func scalar(_ at: Int) -> (value: UInt32, length: Int) {
            var decoder = UTF8()
            var iterator = bytes[at...].makeIterator()
            guard case .scalarValue(let scalar) = decoder.decode(&iterator) else { return (0xFFFD, 1) }
            return (scalar.value, UTF8.width(scalar))
        }

        func abort(at j: Int, _ message: String, replacement: [UInt8]?) -> Abort {
            Abort(
                line: line, column: String(decoding: bytes[lineStart..<j], as: UTF8.self).unicodeScalars.count + 1,
                message: message, offset: j, length: scalar(j).length, replacement: replacement)
        }

        /// The character at `j`, escaped, as a message quotes it.
        func found(_ j: Int) -> String {
            escaped(String(decoding: bytes[j..<min(j + scalar(j).length, bytes.count)], as: UTF8.self))
        }

        mutating func newline(at j: Int) {
            line += 1
            lineStart = j + 1
        }

        static func isBlank(_ byte: UInt8?) -> Bool { byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") }

        func skipBlanks(_ j: inout Int) -> Bool {
            let start = j
            while Self.isBlank(byte(j)) { j += 1 }
            return j > start
        }

        /// The Unicode line separators toml++ knows: U+0085, U+2028, U+2029.
        static func isLineSeparator(_ value: UInt32) -> Bool { value == 0x85 || value == 0x2028 || value == 0x2029 }

        /// toml++ reports (does not abort on) a non-ASCII blank where it skips blanks.
        func isNonASCIIBlank(_ value: UInt32) -> Bool {
            [0xA0, 0x1680, 0x180E, 0x202F, 0x205F, 0x2060, 0x3000, 0xFEFF].contains(value) || (0x2000...0x200B).contains(value)
        }

        /// Past the string whose opening quote is at `i`, multi-line ones included.
        mutating func skipString() {
            let quote = bytes[i]
            let basic = quote == UInt8(ascii: "\"")
            let multiline = byte(i + 1) == quote && byte(i + 2) == quote
            i += multiline ? 3 : 1
            while let b = byte(i) {
                if b == UInt8(ascii: "\\") && basic {
                    if byte(i + 1) == UInt8(ascii: "\n") { newline(at: i + 1) }
                    i += 2
                    continue
                }
                if b == UInt8(ascii: "\n") {
                    guard multiline else { return }  // an unclosed string: TOMLKit says so
                    newline(at: i)
                } else if b == quote {
                    // A multi-line string closes at its last three quotes of a run: up to
                    // two before them are its content (`"""x""""` is `x"`).
                    var run = 0
                    while byte(i + run) == quote { run += 1 }
                    if !multiline || run >= 3 {
                        i += multiline ? run : 1
                        return
                    }
                    i += run
                    continue
                }
                i += 1
            }
        }

        /// Where the line holding `j` ends (its newline, or the end): past a comment.
        func endOfLine(from j: Int) -> Int {
            bytes[j...].firstIndex(of: UInt8(ascii: "\n")) ?? bytes.count
        }

        /// A table header at `i`: as toml++ reads one, `[`, blanks, a second `[` only
        /// right after the first (`[ [` is its own error), blanks, then the key.
        func headerAbort() -> Abort? {
            var j = i + 1
            let blanks = skipBlanks(&j)
            if byte(j) == UInt8(ascii: "[") {
                guard !blanks else { return nil }
                j += 1
                _ = skipBlanks(&j)
            }
            guard let b = byte(j) else { return nil }
            switch b {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                 UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "_"), UInt8(ascii: "-"),
                 UInt8(ascii: "\""), UInt8(ascii: "'"), UInt8(ascii: "]"):
                return nil
            default:
                if isNonASCIIBlank(scalar(j).value) { return nil }
                return abort(
                    at: j, "Error while parsing table header: expected a key (a letter, digit, '_', '-' or a quoted key), saw '\(found(j))'",
                    replacement: [UInt8(ascii: "]")])
            }
        }

        /// An array's next value, after `[` or a comma at `i`: as toml++ looks for it,
        /// past blanks, line breaks and comments.
        mutating func arrayValueAbort() -> Abort? {
            var j = i + 1
            while let b = byte(j) {
                if Self.isBlank(b) {
                    j += 1
                } else if b == UInt8(ascii: "\n") {
                    newline(at: j)
                    j += 1
                } else if b == UInt8(ascii: "\r") && byte(j + 1) == UInt8(ascii: "\n") {
                    j += 1
                } else if b == UInt8(ascii: "#") {
                    j = endOfLine(from: j)
                } else {
                    break
                }
            }
            i = j
            guard let b = byte(j) else { return nil }
            guard b == UInt8(ascii: "}") || Self.isLineSeparator(scalar(j).value) else { return valueAbort(at: j) }
            return abort(at: j, "Error while parsing array: expected a value or ']', saw '\(found(j))'", replacement: [UInt8(ascii: ",")])
        }

        static func isDigit(_ byte: UInt8?) -> Bool { byte.map { (0x30...0x39).contains($0) } ?? false }

        /// toml++'s value terminators: blanks and line breaks (ASCII or not), `]`, `}`, `,`, `#`.
        func isValueTerminator(_ j: Int) -> Bool {
            guard let b = byte(j) else { return false }
            switch b {
            case 0x09...0x0D, 0x20, UInt8(ascii: "]"), UInt8(ascii: "}"), UInt8(ascii: ","), UInt8(ascii: "#"): return true
            case 0x80...:
                let value = scalar(j).value
                return isNonASCIIBlank(value) || Self.isLineSeparator(value)
            default: return false
            }
        }

        /// What toml++ notes of a value's first token before it parses it (its
        /// `value_traits`): the kinds of character in it, as far as they decide
        /// between a date, a date-time and the rest. Digits and the signs, `.` and `:`
        /// count anywhere; the letters under toml++'s own conditions.
        struct Traits: OptionSet {
            let rawValue: Int
            init(rawValue: Int) { self.rawValue = rawValue }
            static let digits = Traits(rawValue: 1), b = Traits(rawValue: 2), e = Traits(rawValue: 4), o = Traits(rawValue: 8)
            static let p = Traits(rawValue: 16), t = Traits(rawValue: 32), x = Traits(rawValue: 64), z = Traits(rawValue: 128)
            static let colon = Traits(rawValue: 256), plus = Traits(rawValue: 512), minus = Traits(rawValue: 1024)
            static let dot = Traits(rawValue: 2048)

            /// Of a token that starts with a digit; `chars` without its `_`s.
            init(digitFirst chars: [UInt32]) {
                var traits: Traits = []
                let zero = chars.first == 0x30
                for (index, c) in chars.enumerated() {
                    let count = index + 1
                    switch c {
                    case 0x30...0x39: traits.insert(.digits)
                    case 0x41...0x5A, 0x61...0x7A:
                        switch c | 0x20 {
                        case 0x62 where count == 2 && zero: traits.insert(.b)
                        case 0x65 where count > 1 && traits.isDisjoint(with: [.b, .o, .p, .t, .x, .z, .colon, .plus, .minus]):
                            traits.insert(.e)
                        case 0x6F where count == 2 && zero: traits.insert(.o)
                        case 0x70 where traits.contains(.x): traits.insert(.p)
                        case 0x78 where count == 2 && zero: traits.insert(.x)
                        case 0x74: traits.insert(.t)
                        case 0x7A: traits.insert(.z)
                        default: break
                        }
                    case 0x2B: traits.insert(.plus)
                    case 0x2D: traits.insert(.minus)
                    case 0x2E: traits.insert(.dot)
                    case 0x3A: traits.insert(.colon)
                    default: break
                    }
                }
                self = traits
            }

            /// The sets toml++ parses as a date-time (offset or not, fraction or not).
            static let dateTimes: [Traits] = [
                [.digits, .minus, .colon, .t], [.digits, .plus, .minus, .colon, .t],
                [.digits, .minus, .colon, .dot, .t], [.digits, .plus, .minus, .colon, .dot, .t],
                [.digits, .minus, .colon, .z, .t], [.digits, .minus, .colon, .dot, .z, .t],
            ]
        }

        /// A value starting at `start` (after `=`, `[` or a comma) that toml++ would
        /// abort on while it reads a date or date-time. Taking a local date and a space
        /// for the start of a date-time, toml++ scans on past the space and a digit,
        /// then steps back over all it read:
        /// - a date padded with about 115 `_`s (never valid): the step back is longer
        ///   than the 127 characters toml++ keeps; flagged at the space, which
        ///   replaced (at or past the 126th character) makes toml++ report the `_`,
        ///   always earlier;
        /// - a date, one space, one digit and the token's end (not the text's): toml++
        ///   asserts that more of the time follows.
        /// And `YYYY-MM-DD`, a valid date, and `T` (a token toml++ takes for a
        /// date-time), then a character that is not a digit: its time parser asserts
        /// one. A `0` put before that character makes toml++ report the hour instead.
        func valueAbort(at start: Int) -> Abort? {
            guard Self.isDigit(byte(start)) else { return nil }
            // The first token, as toml++ scans it: to a value terminator, at most 127
            // characters read (its `_`s among them, though left out of `chars`).
            var j = start
            var chars: [UInt32] = []
            var scanned = 0
            while j < bytes.count && !isValueTerminator(j) && scanned < 127 {
                let (value, length) = scalar(j)
                if value != 0x5F { chars.append(value) }
                scanned += 1
                j += length
            }
            let traits = Traits(digitFirst: chars)
            if chars.count == 10 && chars[4] == 0x2D && chars[7] == 0x2D && traits == [.digits, .minus],
               byte(j) == UInt8(ascii: " ") {
                // What toml++ reads past the token before it steps back: the space
                // alone (no digit after it), the space and a digit (then the end), or
                // those and at least one more character. A digit and a value's end
                // is the next case, whose defused text (the digit replaced) reads the
                // space alone: past 127 that would abort too, so it is flagged here.
                let digit = Self.isDigit(byte(j + 1))
                let digitAlone = digit && isValueTerminator(j + 2)
                let ahead = !digit || digitAlone ? 1 : j + 2 >= bytes.count ? 2 : 3
                if scanned + ahead > 127 {
                    return abort(
                        at: j, "Error while parsing date: a date holds no '_'", replacement: [UInt8(ascii: "x")])
                }
                if digitAlone {
                    return abort(
                        at: j + 1, "Error while parsing date-time: expected a time (HH:MM:SS), saw '\(found(j + 1))' alone",
                        replacement: [UInt8(ascii: "x")])
                }
            }
            if isDate(at: start), byte(start + 10) == UInt8(ascii: "T") || byte(start + 10) == UInt8(ascii: "t"),
               start + 11 < j, !Self.isDigit(byte(start + 11)), Traits.dateTimes.contains(traits) {
                let flagged = start + 11
                return abort(
                    at: flagged, "Error while parsing date-time: expected a 2-digit hour, saw '\(found(flagged))'",
                    replacement: [UInt8(ascii: "0")] + bytes[flagged..<flagged + scalar(flagged).length])
            }
            return nil
        }

        /// A valid calendar date, `YYYY-MM-DD`, at `start`: toml++ parses it before the
        /// time (an invalid one is its error, not an abort).
        func isDate(at start: Int) -> Bool {
            guard start + 10 <= bytes.count,
                  (start..<start + 10).allSatisfy({ [start + 4, start + 7].contains($0) ? bytes[$0] == 0x2D : Self.isDigit(bytes[$0]) })
            else { return false }
            func number(_ from: Int, _ count: Int) -> Int { bytes[from..<from + count].reduce(0) { $0 * 10 + Int($1 - 0x30) } }
            let year = number(start, 4), month = number(start + 5, 2), day = number(start + 8, 2)
            guard (1...12).contains(month) else { return false }
            let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
            let days = month == 2 ? (leap ? 29 : 28) : [4, 6, 9, 11].contains(month) ? 30 : 31
            return (1...days).contains(day)
        }

        mutating func run() -> Abort? {
            var statementStart = true
            var inHeader = false  // a header's brackets are not a value's
            while let b = byte(i) {
                if b == UInt8(ascii: "\n") {
                    newline(at: i)
                    i += 1
                    inHeader = false
                    if open.isEmpty { statementStart = true }
                    continue
                }
                if statementStart {
                    if Self.isBlank(b) || (b == UInt8(ascii: "\r") && byte(i + 1) == UInt8(ascii: "\n")) {
                        i += 1
                        continue
                    }
                    if b == UInt8(ascii: "\r") { return nil }  // a lone CR: toml++'s own error comes first
                    statementStart = false
                    if b == UInt8(ascii: "[") {
                        if let abort = headerAbort() { return abort }
                        inHeader = true
                        i += 1
                        continue
                    }
                }
                switch b {
                case UInt8(ascii: "#"):
                    i = endOfLine(from: i)
                    continue
                case UInt8(ascii: "\""), UInt8(ascii: "'"):
                    skipString()
                    continue
                case UInt8(ascii: "[") where !inHeader:
                    open.append(b)
                    if let abort = arrayValueAbort() { return abort }
                    continue
                case UInt8(ascii: ",") where !inHeader && open.last == UInt8(ascii: "["):
                    if let abort = arrayValueAbort() { return abort }
                    continue
                case UInt8(ascii: "=") where !inHeader:
                    var j = i + 1
                    _ = skipBlanks(&j)
                    if let abort = valueAbort(at: j) { return abort }
                case UInt8(ascii: "{") where !inHeader:
                    open.append(b)
                case UInt8(ascii: "]") where !inHeader, UInt8(ascii: "}") where !inHeader:
                    if !open.isEmpty { open.removeLast() }
                default:
                    break
                }
                i += 1
            }
            return nil
        }
    }
}
