import DevKitModel

/// A domain value's parser as an `@Option` transform, so ArgumentParser validates the
/// value where it enters and reports the model's own message (exit 64). Used
/// instead of `ExpressibleByArgument`, whose `init?(argument:)` cannot say why a
/// value was refused.
func argument<T>(_ parse: @escaping @Sendable (String) throws(InputError) -> T) -> @Sendable (String) throws -> T {
    { text in try parse(text) }
}
