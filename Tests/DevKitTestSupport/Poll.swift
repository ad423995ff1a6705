import Foundation

/// Checks `condition` every `interval` until it holds or `timeout` has passed (the
/// tests' one bounded wait on something they cannot be told of, never a fixed
/// sleep); whether it held. Blocks the calling thread.
public func pollUntil(
    timeout: Duration = .seconds(60), every interval: Duration = .milliseconds(20), _ condition: () -> Bool
) -> Bool {
    let end = ContinuousClock.now + timeout
    while !condition() {
        if ContinuousClock.now >= end { return false }
        let (seconds, attoseconds) = interval.components
        usleep(useconds_t(seconds * 1_000_000 + attoseconds / 1_000_000_000_000))
    }
    return true
}
