import DevKitModel
#if canImport(Glibc)
import Glibc
#endif

/// Labelled values for people, the one label style of every command (`info`, the
/// result of `provision`, `cert`, `registry show`): `Label:  value`, one per line,
/// the values of a block starting in one column, two spaces after the longest
/// label's colon. Labels are capitalised phrases (`Registration ID`, `MAC address`,
/// `SHA-1 thumbprint`).
///
/// Values come from outside (a board's reply, a registry row, a path): each is
/// escaped (`escaped`), so a control or bidi character can neither reach the
/// terminal nor start a line of its own that reads like another label.
package func labelledLines(_ rows: [(label: String, value: String)], indent: String = "") -> String {
    let width = rows.map(\.label.count).max() ?? 0
    return rows.map { row in
        let label = row.label + ":"
        return indent + label + String(repeating: " ", count: width + 3 - label.count) + escaped(row.value)
    }.joined(separator: "\n")
}

/// Prints text for people on standard output, its control and invisible format
/// characters escaped (`escapedControlCharacters`, layout kept), as `printError`
/// does on standard error: for lines that quote a path, a board's reply or a
/// registry value. (Certificates and JSON are printed as they are: PEM holds none,
/// and the JSON encoder escapes control characters itself.)
package func printOutput(_ text: String) {
    print(escapedControlCharacters(text))
}

/// Whether standard output and standard error are the same terminal: then a person
/// reads both as one stream, and an error need not repeat what the output just said
/// (a command to run). Redirect either and each stream stays complete on its own.
package func outputAndErrorShareATerminal() -> Bool {
    guard isatty(STDOUT_FILENO) == 1, isatty(STDERR_FILENO) == 1 else { return false }
    var out = stat(), err = stat()
    guard fstat(STDOUT_FILENO, &out) == 0, fstat(STDERR_FILENO, &err) == 0 else { return false }
    return out.st_rdev == err.st_rdev
}
