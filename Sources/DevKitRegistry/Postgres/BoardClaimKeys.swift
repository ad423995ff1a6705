import Foundation

/// Which keys a board is claimed by on a shared registry (issue 16), the one home
/// of them: the workflows, `watch`/`autoconfigure`, `provision --resume` and the
/// commands that change recorded rows (`registry reissue`, `cert --from-registry`,
/// `dps enroll --from-registry`, a verification's record) all claim through here.
/// The registry turns a key into a lock: an advisory lock on the server
/// (PostgreSQL), or a locked file beside the SQLite file (ClaimFiles.swift).
/// Here, beside the registry, which finds a written row's claim by its key.
public enum BoardClaimKeys {
    /// A board on a port: its MAC once known, its USB serial before.
    public static func board(mac: String?, usbSerial: String?) -> [String] {
        [mac.map { "mac:" + $0.lowercased() }, usbSerial.map { "usb:" + $0.lowercased() }].compactMap { $0 }
    }

    /// A registry row, while a run finishes it or a command changes it.
    public static func row(_ boardID: Int64) -> String { "row:\(boardID)" }

    /// A recorded board, as a command that changes its row claims it: the row first,
    /// then the board it records (its MAC and USB serial). A station provisioning it
    /// holds one of them whichever step it is at (a new board's USB serial or MAC
    /// before its row exists, the row from right after it is recorded; a resume, all).
    public static func recorded(_ board: BoardRecord) -> [String] {
        (board.id.map { [row($0)] } ?? []) + self.board(mac: board.mac, usbSerial: board.usbSerial)
    }
}
