import Synchronization

/// Fault switches: the emulator misbehaving on purpose, so clients' retries,
/// backoff and token renewal can be tested against something real.
public struct EmulatorFaults: Sendable, Equatable {
    /// Answer the first this-many requests with 429 and `Retry-After`.
    public var throttleFirst: Int
    /// The `Retry-After` seconds a throttled answer carries.
    public var retryAfterSeconds: Int
    /// Answer the next this-many requests (after the throttled ones) with 503.
    public var failFirst5xx: Int
    /// Added before every request is handled (a slow or distant service).
    public var latency: Duration
    /// When set, a token expires this long after the emulator first accepted it,
    /// whatever its `se` says; a client that signs a new token (a later `se`, so a
    /// different signature) is accepted again. `nil`: tokens expire at their `se`.
    public var tokenLifetime: Duration?
    /// A PUT without `If-Match` on an existing enrollment is refused (409) instead
    /// of replacing it: DPS's behaviour there is not documented, and clients should
    /// work with either.
    public var requireIfMatch: Bool

    public init(
        throttleFirst: Int = 0, retryAfterSeconds: Int = 1, failFirst5xx: Int = 0,
        latency: Duration = .zero, tokenLifetime: Duration? = nil, requireIfMatch: Bool = false
    ) {
        self.throttleFirst = throttleFirst
        self.retryAfterSeconds = retryAfterSeconds
        self.failFirst5xx = failFirst5xx
        self.latency = latency
        self.tokenLifetime = tokenLifetime
        self.requireIfMatch = requireIfMatch
    }
}

/// What a request gets from the fault switches before it is looked at.
enum InjectedFault: Equatable {
    case throttled(retryAfterSeconds: Int)
    case unavailable
}

/// The kinds of request the emulator counts (`GET /_emulator/stats`, and the
/// summary printed when it stops): one per operation of the service API.
public enum RequestKind: String, Sendable, CaseIterable, Codable {
    case enrollmentPut = "enrollment_put"
    case enrollmentGet = "enrollment_get"
    case enrollmentDelete = "enrollment_delete"
    case bulk
    case query
    case registrationGet = "registration_get"
    case registrationDelete = "registration_delete"
    /// The device API: a device's register, and its operation poll.
    case deviceRegister = "device_register"
    case devicePoll = "device_poll"
    /// Anything else (an unknown path or method).
    case other
}

/// Request counters and the fault switches' countdowns, shared by every
/// connection's handler: a lock, not an actor, because each request touches it
/// once for a few nanoseconds and must not queue behind the state's disk writes.
final class RequestLedger: Sendable {
    private struct Counts {
        var requests = 0
        var byKind: [RequestKind: Int] = [:]
        var byStatus: [Int: Int] = [:]
        var bulkEnrollments = 0
    }

    private let faults: EmulatorFaults
    private let counts = Mutex(Counts())

    init(faults: EmulatorFaults) {
        self.faults = faults
    }

    /// Counts a service request and says which fault, if any, it meets: the first
    /// `throttleFirst` are throttled, the `failFirst5xx` after them fail.
    func admit(_ kind: RequestKind) -> InjectedFault? {
        counts.withLock { counts in
            counts.requests += 1
            counts.byKind[kind, default: 0] += 1
            let n = counts.requests
            if n <= faults.throttleFirst { return .throttled(retryAfterSeconds: faults.retryAfterSeconds) }
            if n <= faults.throttleFirst + faults.failFirst5xx { return .unavailable }
            return nil
        }
    }

    /// Records the status an answer went out with.
    func answered(_ status: Int) {
        counts.withLock { $0.byStatus[status, default: 0] += 1 }
    }

    /// Records how many enrollments a bulk request carried.
    func recordBulk(_ enrollments: Int) {
        counts.withLock { $0.bulkEnrollments += enrollments }
    }

    var snapshot: EmulatorStats {
        counts.withLock { counts in
            EmulatorStats(
                requests: counts.requests,
                byKind: Dictionary(uniqueKeysWithValues: counts.byKind.map { ($0.key.rawValue, $0.value) }),
                byStatus: Dictionary(uniqueKeysWithValues: counts.byStatus.map { (String($0.key), $0.value) }),
                bulkEnrollments: counts.bulkEnrollments)
        }
    }
}

/// The counters as `GET /_emulator/stats` returns them (snake_case keys, as devkit's
/// other JSON output).
public struct EmulatorStats: Sendable, Codable, Equatable {
    /// Service requests received (the stats endpoint itself is not counted).
    public var requests: Int
    /// Requests by ``RequestKind`` raw value.
    public var byKind: [String: Int]
    /// Answers by HTTP status code.
    public var byStatus: [String: Int]
    /// Enrollments carried by bulk requests.
    public var bulkEnrollments: Int
    /// Enrollments stored now.
    public var enrollments: Int = 0

    enum CodingKeys: String, CodingKey {
        case requests
        case byKind = "by_kind"
        case byStatus = "by_status"
        case bulkEnrollments = "bulk_enrollments"
        case enrollments
    }
}
