import Foundation

/// The last time devkit watched a board register with DPS (`devkit verify`,
/// `provision --verify`; schema v6): the outcome the board's own log gave (a
/// `RegistrationOutcome` name: `assigned`, `unauthorized`, `timeout`...), the IoT
/// hub DPS assigned it to and its device ID when known, and when. Never a secret.
///
/// The outcome is kept as its name: the registry does not depend on the log
/// classifier, and a name a later devkit adds still reads back.
public struct BoardVerification: Sendable, Equatable {
    public var outcome: String
    public var assignedHub: String?
    public var deviceID: String?
    public var at: Date

    public init(outcome: String, assignedHub: String? = nil, deviceID: String? = nil, at: Date = Date()) {
        self.outcome = outcome
        self.assignedHub = assignedHub
        self.deviceID = deviceID
        self.at = at
    }

    /// Whether the board registered (`assigned`, or connected to its hub).
    public var registered: Bool { outcome == "assigned" || outcome == "hub_connected" }

    /// Whether the board's log said how registering went. A `timeout` says only
    /// that nothing was seen in time (a board nobody reset, one still running an
    /// earlier boot): it says nothing against an earlier outcome.
    public var isDefinitive: Bool { outcome != "timeout" }

    /// What a row holding `earlier` keeps when `later` is recorded: the later check,
    /// unless it is inconclusive and the earlier one was not (a `devkit verify` that
    /// saw nothing does not erase that the board was assigned, or refused). The
    /// one rule for every registry backend.
    public static func kept(earlier: BoardVerification?, later: BoardVerification) -> BoardVerification {
        guard let earlier, earlier.isDefinitive, !later.isDefinitive else { return later }
        return earlier
    }
}
