import Foundation

/// When and how long to wait before trying a failed request again: exponential
/// backoff with full jitter (a random wait between 0 and base·2^(n-1), capped), or
/// the server's `Retry-After` when it gives one; at most ``maxAttempts`` tries in all.
///
/// The sleep and the random source are injectable so the policy itself is tested
/// without waiting; the client uses the real ones.
public struct RetryPolicy: Sendable {
    /// Tries in all, the first one included.
    public var maxAttempts: Int
    /// The backoff's first ceiling; doubled after each failure.
    public var baseDelay: Duration
    /// The largest backoff ceiling.
    public var maxDelay: Duration
    /// A `Retry-After` longer than this is not waited for: the failure is reported.
    public var maxRetryAfter: Duration
    /// Waits; throws when the task is cancelled.
    public var sleep: @Sendable (Duration) async throws -> Void
    /// A uniformly random fraction in 0...1 (the jitter).
    public var random: @Sendable () -> Double

    public init(
        maxAttempts: Int = 5, baseDelay: Duration = .milliseconds(500), maxDelay: Duration = .seconds(30),
        maxRetryAfter: Duration = .seconds(120),
        sleep: @escaping @Sendable (Duration) async throws -> Void = { try await Task.sleep(for: $0) },
        random: @escaping @Sendable () -> Double = { Double.random(in: 0...1) }
    ) {
        self.maxAttempts = max(1, maxAttempts)
        self.baseDelay = baseDelay
        self.maxDelay = maxDelay
        self.maxRetryAfter = maxRetryAfter
        self.sleep = sleep
        self.random = random
    }

    /// What one attempt came to.
    public enum Attempt<Value: Sendable>: Sendable {
        case success(Value)
        /// Worth another try; `retryAfter` is the server's wait, when it said one.
        case retry(any Error, retryAfter: Duration?)
        /// Try again at once, once (a renewed SAS token after a 401): not a backoff step.
        case retryNow(any Error)
    }

    /// The wait before try `attempt + 1` after try `attempt` (1-based) failed.
    public func delay(afterAttempt attempt: Int, retryAfter: Duration?) -> Duration {
        if let retryAfter { return retryAfter }
        let exponent = min(max(attempt - 1, 0), 30)
        let ceiling = min(baseDelay * (1 << exponent), maxDelay)
        return ceiling * random()
    }

    /// Runs `body` (given the 1-based attempt number) until it succeeds, throws, or
    /// has been tried ``maxAttempts`` times; then the last failure is thrown.
    /// `retryNow` does not count as a try (it happens at most once per call, the
    /// body's business), so a renewed token still has its full number of tries.
    public func run<Value: Sendable>(_ body: (Int) async throws -> Attempt<Value>) async throws -> Value {
        var attempt = 1
        var immediate = 0
        while true {
            switch try await body(attempt + immediate) {
            case .success(let value):
                return value
            case .retryNow(let error):
                immediate += 1
                if immediate > maxAttempts { throw error }
            case .retry(let error, let retryAfter):
                if attempt >= maxAttempts { throw error }
                if let retryAfter, retryAfter > maxRetryAfter { throw error }
                try await sleep(delay(afterAttempt: attempt, retryAfter: retryAfter))
                attempt += 1
            }
        }
    }
}
