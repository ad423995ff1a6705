/// Why a value was refused, in the domain's words (no command-line flags: callers
/// add where the value came from and what to do). Messages never echo a secret, and
/// show a refused value's control characters escaped (`\0`, `\t`, `\u{1B}`), never raw.
public enum InputError: Error, Equatable, Sendable, CustomStringConvertible {
    case udsLength(Int)
    case udsCharacter(position: Int)
    case registrationIDEmpty
    case registrationIDTooLong(Int)
    case registrationIDCharacter(String, position: Int)
    case macFormat(String)
    case firmwareVersionFormat(String)
    case connectionStringEmpty
    case connectionStringTooLong(Int)
    case wifiPasswordTooLong(Int)
    /// `what` is the kind of value ("password", "connection string"); never the value.
    case controlCharacter(in: String)

    public var description: String {
        switch self {
        case .udsLength(let n):
            return "the UDS has \(n) characters; it must be exactly 64 hex digits (0-9, a-f, either case)"
        case .udsCharacter(let position):
            return "the UDS has a non-hex character at position \(position); it must be exactly 64 hex digits (0-9, a-f, either case)"
        case .registrationIDEmpty:
            return "the registration ID is empty; use 1 to 126 characters from a-z, 0-9 and '-'"
        case .registrationIDTooLong(let n):
            return "the registration ID has \(n) characters; the DevKit firmware can encode at most 126 (a-z, 0-9, '-')"
        case .registrationIDCharacter(let c, let position):
            return "the registration ID has '\(escaped(c))' at position \(position); only a-z, 0-9 and '-' are allowed (lower case)"
        case .macFormat(let text):
            return "'\(refusedValue(text))' is not a MAC address; use 12 hex digits, e.g. a4cf120b9e31, A4:CF:12:0B:9E:31 or a4-cf-12-0b-9e-31"
        case .firmwareVersionFormat(let text):
            return "'\(refusedValue(text))' is not a firmware version; use three dot-separated numbers, e.g. 1.6.2"
        case .connectionStringEmpty:
            return "the connection string is empty"
        case .connectionStringTooLong(let n):
            return "the connection string is \(n) bytes; the board stores at most 511"
        case .wifiPasswordTooLong(let n):
            return "the password is \(n) bytes; Wi-Fi passwords are at most 63"
        case .controlCharacter(let what):
            return "the \(what) contains a control character (tab, newline, …), which the console cannot take"
        }
    }
}

/// A refused value as a message quotes it: escaped, and masked where it has a UDS's
/// shape (a UDS typed or pasted into the wrong field must not reach a log).
public func refusedValue(_ text: some StringProtocol) -> String {
    escaped(maskingHexRuns(text))
}

/// `text` with control characters written as Swift escapes (`\0`, `\t`, `\n`, `\r`,
/// `\u{1B}`), so a refused value cannot move the cursor or hide itself in a terminal.
/// Invisible format characters are escaped too (`\u{202E}`): a bidi override
/// (U+202A-U+202E, U+2066-U+2069) would show a value's characters in another order,
/// a zero-width space would hide one, a line separator would break the line.
/// Use it wherever a message or output quotes text from outside: user input (a value,
/// a path, a batch line, a key), a board's reply, a registry row.
public func escaped(_ text: some StringProtocol) -> String {
    escape(text, keepingLayout: false)
}

/// A whole message made safe for a terminal just before it is printed: control
/// characters escaped as by ``escaped(_:)``, except the newlines and tabs the message
/// is laid out with; backslashes are left alone, so values the message already quotes
/// through ``escaped(_:)`` read the same. The last line of defence for input a message
/// quotes without ``escaped(_:)``.
public func escapedControlCharacters(_ message: some StringProtocol) -> String {
    escape(message, keepingLayout: true)
}

private func escape(_ text: some StringProtocol, keepingLayout: Bool) -> String {
    // Printable ASCII (most IDs, paths and messages) needs no escape: one scan of its
    // bytes instead of building a copy scalar by scalar (a batch prints a line per device).
    // Scanned as a String's contiguous UTF-8: the generic view is iterated through
    // witness calls, which cost as much as the copy it spares.
    var copy = String(text)
    let plain = copy.withUTF8 { bytes in
        bytes.allSatisfy { byte in
            (byte >= 0x20 && byte < 0x7F && (keepingLayout || byte != 0x5C))
                || (keepingLayout && (byte == 0x0A || byte == 0x09))
        }
    }
    if plain { return copy }
    var out = ""
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\n" where keepingLayout, "\t" where keepingLayout, "\\" where keepingLayout:
            out.unicodeScalars.append(scalar)
        case "\0": out += "\\0"
        case "\t": out += "\\t"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\\": out += "\\\\"
        case _ where scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value) || isInvisibleFormat(scalar):
            out += "\\u{" + String(scalar.value, radix: 16, uppercase: true) + "}"
        default: out.unicodeScalars.append(scalar)
        }
    }
    return out
}

/// Unicode's format characters (general category Cf: the bidi embeddings, overrides
/// and isolates, zero-width spaces and joiners, the byte-order mark, tags) and the
/// line and paragraph separators: they change how the text around them is drawn
/// without showing themselves.
private func isInvisibleFormat(_ scalar: Unicode.Scalar) -> Bool {
    guard scalar.value >= 0xAD else { return false }  // ASCII and Latin-1 text: none (fast path)
    switch scalar.properties.generalCategory {
    case .format, .lineSeparator, .paragraphSeparator: return true
    default: return false
    }
}
