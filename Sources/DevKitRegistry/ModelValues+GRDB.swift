import DevKitModel
import GRDB

// The domain values as database values: stored as the text devkit always stored
// (the UDS as 64 lower-case hex digits, a MAC as 12), so old rows read the same.
// A column that does not parse fails to decode instead of giving a wrong value.

extension UDS: DatabaseValueConvertible {
    public var databaseValue: DatabaseValue { hexString.databaseValue }
    public static func fromDatabaseValue(_ dbValue: DatabaseValue) -> UDS? {
        String.fromDatabaseValue(dbValue).flatMap { try? UDS(hex: $0) }
    }
}

extension MACAddress: DatabaseValueConvertible {
    public var databaseValue: DatabaseValue { hex.databaseValue }
    public static func fromDatabaseValue(_ dbValue: DatabaseValue) -> MACAddress? {
        String.fromDatabaseValue(dbValue).flatMap { try? MACAddress($0) }
    }
}

extension FirmwareVersion: DatabaseValueConvertible {
    public var databaseValue: DatabaseValue { text.databaseValue }
    public static func fromDatabaseValue(_ dbValue: DatabaseValue) -> FirmwareVersion? {
        String.fromDatabaseValue(dbValue).flatMap { try? FirmwareVersion($0) }
    }
}

extension RegistrationID: DatabaseValueConvertible {
    public var databaseValue: DatabaseValue { value.databaseValue }
    public static func fromDatabaseValue(_ dbValue: DatabaseValue) -> RegistrationID? {
        String.fromDatabaseValue(dbValue).flatMap { try? RegistrationID($0) }
    }
}
