import DevKitModel
import GRDB

// The domain values as database values: stored as the text devkit always stored
// (a MAC as 12 lower-case hex digits), so old rows read the same.
// A column that does not parse fails to decode instead of giving a wrong value.
// Not the UDS: it reaches the database only sealed (SecretSealer), never as a value
// GRDB could bind as it is.

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
