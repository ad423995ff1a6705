// FoundationEssentials, not Foundation: its JSONEncoder is the same one, and the
// small binary then links no ICU or the rest of Foundation.
import FoundationEssentials

/// The one JSON setup behind every `--json` path, `registry export` and the JSON Lines
/// streams (`list --watch`, `provision`/`watch` events, `cert --batch`).
///
/// Keys are sorted so the output is stable for scripts and tests; `/` is not escaped
/// so paths read as written; one line per value unless `pretty` (for humans).
package enum JSONOutput {
    package static func encoder(pretty: Bool = false) -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = pretty
            ? [.sortedKeys, .withoutEscapingSlashes, .prettyPrinted]
            : [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }

    /// `value` as JSON text.
    package static func text<T: Encodable>(_ value: T, pretty: Bool = false) throws -> String {
        String(decoding: try encoder(pretty: pretty).encode(value), as: UTF8.self)
    }
}

/// Prints one JSON object on stdout as one line, for `--json`.
package func printJSON<T: Encodable>(_ value: T) throws {
    print(try JSONOutput.text(value))
}

/// An optional written as `null` when absent, instead of the key being left out.
///
/// Synthesized `Encodable` skips nil optionals (`encodeIfPresent`); our output
/// promises scripts that every key is present, so optional fields that must always
/// appear are declared `@NullEncoded var x: T?`. Optionals without it are left out
/// when nil, as before.
@propertyWrapper
package struct NullEncoded<Value: Encodable>: Encodable {
    package var wrappedValue: Value?

    package init(wrappedValue: Value?) { self.wrappedValue = wrappedValue }

    package func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        if let wrappedValue { try container.encode(wrappedValue) } else { try container.encodeNil() }
    }
}

/// A type-erased `Encodable`, for objects whose values have different types
/// (`["event": "snapshot", "devices": [...]]`).
package struct AnyEncodable: Encodable {
    private let encodeValue: (any Encoder) throws -> Void
    package init<T: Encodable>(_ value: T) { encodeValue = value.encode(to:) }
    package func encode(to encoder: any Encoder) throws { try encodeValue(encoder) }
}
