import DPSModel
import Foundation
import Synchronization
import Testing
@testable import DPSService

/// The sleeps a policy asked for, instead of sleeping.
final class SleepLog: Sendable {
    let waits = Mutex<[Duration]>([])
    var all: [Duration] { waits.withLock { $0 } }
    func policy(maxAttempts: Int = 5, random: Double = 1) -> RetryPolicy {
        RetryPolicy(
            maxAttempts: maxAttempts, baseDelay: .milliseconds(500), maxDelay: .seconds(30), maxRetryAfter: .seconds(120),
            sleep: { d in self.waits.withLock { $0.append(d) } }, random: { random })
    }
}

struct Failure: Error, Equatable { let n: Int }

@Suite("Retry policy")
struct RetryPolicyTests {
    @Test("backoff doubles up to the cap; full jitter scales it")
    func backoff() {
        let log = SleepLog()
        let p = log.policy()
        #expect(p.delay(afterAttempt: 1, retryAfter: nil) == .milliseconds(500))
        #expect(p.delay(afterAttempt: 2, retryAfter: nil) == .seconds(1))
        #expect(p.delay(afterAttempt: 4, retryAfter: nil) == .seconds(4))
        #expect(p.delay(afterAttempt: 10, retryAfter: nil) == .seconds(30))
        #expect(p.delay(afterAttempt: 40, retryAfter: nil) == .seconds(30))
        #expect(log.policy(random: 0.25).delay(afterAttempt: 3, retryAfter: nil) == .milliseconds(500))
        #expect(log.policy(random: 0).delay(afterAttempt: 3, retryAfter: nil) == .zero)
        // Retry-After wins over the backoff.
        #expect(p.delay(afterAttempt: 1, retryAfter: .seconds(7)) == .seconds(7))
    }

    @Test("at most 5 tries in all, then the last failure")
    func fiveTries() async {
        let log = SleepLog()
        let tries = Mutex(0)
        await #expect(throws: Failure(n: 5)) {
            try await log.policy().run { (n: Int) -> RetryPolicy.Attempt<Int> in
                tries.withLock { $0 += 1 }
                return .retry(Failure(n: n), retryAfter: nil)
            }
        }
        #expect(tries.withLock { $0 } == 5)
        #expect(log.all == [.milliseconds(500), .seconds(1), .seconds(2), .seconds(4)])
    }

    @Test("Retry-After is obeyed; one too long is not waited for")
    func retryAfter() async throws {
        let log = SleepLog()
        let value = try await log.policy().run { n -> RetryPolicy.Attempt<String> in
            n < 3 ? .retry(Failure(n: n), retryAfter: .seconds(2)) : .success("ok")
        }
        #expect(value == "ok")
        #expect(log.all == [.seconds(2), .seconds(2)])
        let long = SleepLog()
        await #expect(throws: Failure(n: 1)) {
            try await long.policy().run { n -> RetryPolicy.Attempt<String> in .retry(Failure(n: n), retryAfter: .seconds(600)) }
        }
        #expect(long.all.isEmpty)
    }

    @Test("a thrown error is not retried; retryNow costs no try and no wait")
    func noRetryAndRetryNow() async throws {
        let log = SleepLog()
        let tries = Mutex(0)
        await #expect(throws: Failure(n: 1)) {
            try await log.policy().run { n -> RetryPolicy.Attempt<Int> in
                tries.withLock { $0 += 1 }
                throw Failure(n: n)
            }
        }
        #expect(tries.withLock { $0 } == 1)
        // A renewed token (retryNow) then four backoff retries: six calls, four waits.
        let calls = Mutex(0)
        await #expect(throws: Failure.self) {
            try await log.policy().run { n -> RetryPolicy.Attempt<Int> in
                let c = calls.withLock { $0 += 1; return $0 }
                return c == 1 ? .retryNow(Failure(n: n)) : .retry(Failure(n: n), retryAfter: nil)
            }
        }
        #expect(calls.withLock { $0 } == 6)
        #expect(log.all.count == 4)
    }
}

@Suite("Proxy from the environment")
struct ProxySettingsTests {
    @Test func readsHTTPSProxyAndNoProxy() throws {
        let env = ["HTTPS_PROXY": "http://user:p%40ss@proxy.corp:3128", "NO_PROXY": "localhost,.internal.example, 127.0.0.1"]
        let p = try #require(try ProxySettings.fromEnvironment(env, for: "my-dps.azure-devices-provisioning.net"))
        #expect(p.host == "proxy.corp" && p.port == 3128 && p.user == "user" && p.password == "p@ss")
        #expect(try ProxySettings.fromEnvironment(env, for: "localhost") == nil)
        #expect(try ProxySettings.fromEnvironment(env, for: "dps.internal.example") == nil)
        #expect(try ProxySettings.fromEnvironment(env, for: "127.0.0.1") == nil)
        #expect(try ProxySettings.fromEnvironment(["https_proxy": "proxy:8080", "NO_PROXY": "*"], for: "x") == nil)
        #expect(try ProxySettings.fromEnvironment(["https_proxy": "proxy:8080"], for: "x")?.port == 8080)
        #expect(try ProxySettings.fromEnvironment([:], for: "x") == nil)
        // Lower case wins, as in curl.
        #expect(try ProxySettings.fromEnvironment(["https_proxy": "a:1", "HTTPS_PROXY": "b:2"], for: "x")?.host == "a")
        #expect(throws: ProxyError.self) { try ProxySettings.fromEnvironment(["HTTPS_PROXY": "ftp://x"], for: "h") }
        let error = ProxyError(value: "http://user:secret@proxy")
        #expect(!error.description.contains("secret"))
    }
}
