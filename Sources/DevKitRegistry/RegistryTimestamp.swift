import Foundation

/// The registry's timestamps as text: `yyyy-MM-dd HH:mm:ss.SSS` in UTC, the format
/// GRDB gives a `Date`, so rows written before and after read the same.
///
/// Written by hand because GRDB's conversion goes through Foundation's
/// `DateFormatter` and a `Calendar`, which on Linux load ICU's calendar, time-zone
/// and locale data on first use (about 1 ms and 0.3 ms, on the first board's
/// critical path) and then cost about a microsecond per date; a row holds nine
/// dates and is rewritten at every step, inside the group commit that 16 boards
/// wait for. The arithmetic
/// here is the proleptic Gregorian calendar in UTC, which is all that format needs.
enum RegistryTimestamp {
    /// `date` as `yyyy-MM-dd HH:mm:ss.SSS` (UTC).
    ///
    /// Rounded to the nearest millisecond, as `DateFormatter` does; so a date read
    /// back from its own text (a binary fraction near the millisecond) gives the
    /// same text again.
    static func text(_ date: Date) -> String {
        let millis = Int64((date.timeIntervalSince1970 * 1000 + 0.5).rounded(.down))  // halves up
        let days = floorDivide(millis, 86_400_000)
        let msOfDay = millis - days * 86_400_000
        let (year, month, day) = civil(fromDays: days)
        var out = [UInt8]()
        out.reserveCapacity(23)
        func digits(_ value: Int64, _ width: Int) {
            var divisor: Int64 = 1
            for _ in 1..<width { divisor *= 10 }
            var v = value
            for _ in 0..<width {
                out.append(0x30 + UInt8(v / divisor % 10))
                v %= divisor
                divisor /= 10
            }
        }
        digits(year, 4); out.append(0x2D)  // -
        digits(month, 2); out.append(0x2D)
        digits(day, 2); out.append(0x20)  // space
        digits(msOfDay / 3_600_000, 2); out.append(0x3A)  // :
        digits(msOfDay / 60_000 % 60, 2); out.append(0x3A)
        digits(msOfDay / 1000 % 60, 2); out.append(0x2E)  // .
        digits(msOfDay % 1000, 3)
        return String(decoding: out, as: UTF8.self)
    }

    /// Parses `yyyy-MM-dd HH:mm:ss.SSS` (UTC); nil for any other text (the caller
    /// then leaves it to GRDB, which reads more formats).
    static func date(_ text: String) -> Date? {
        let b = Array(text.utf8)
        guard b.count == 23, b[4] == 0x2D, b[7] == 0x2D, b[10] == 0x20, b[13] == 0x3A,
            b[16] == 0x3A, b[19] == 0x2E
        else { return nil }
        func number(_ range: Range<Int>) -> Int64? {
            var v: Int64 = 0
            for i in range {
                guard b[i] >= 0x30 && b[i] <= 0x39 else { return nil }
                v = v * 10 + Int64(b[i] - 0x30)
            }
            return v
        }
        guard let year = number(0..<4), let month = number(5..<7), let day = number(8..<10),
            let hour = number(11..<13), let minute = number(14..<16), let second = number(17..<19),
            let millis = number(20..<23),
            (1...12).contains(month), day >= 1, day <= daysIn(month: month, year: year),
            hour < 24, minute < 60, second < 60
        else { return nil }
        let days = self.days(fromCivil: year, month, day)
        let total = ((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000 + millis
        return Date(timeIntervalSince1970: Double(total) / 1000)
    }

    private static func floorDivide(_ a: Int64, _ b: Int64) -> Int64 {
        a >= 0 ? a / b : -((-a + b - 1) / b)
    }

    private static func isLeap(_ year: Int64) -> Bool {
        year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
    }

    private static func daysIn(month: Int64, year: Int64) -> Int64 {
        switch month {
        case 2: isLeap(year) ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
    }

    // Days since 1970-01-01 <-> (year, month, day), proleptic Gregorian, counted in
    // 400-year eras of 146,097 days from a year that starts in March (so the leap
    // day is the era-year's last day).

    static func civil(fromDays z: Int64) -> (year: Int64, month: Int64, day: Int64) {
        let z = z + 719_468
        let era = floorDivide(z, 146_097)
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let mp = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        return (yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }

    static func days(fromCivil year: Int64, _ month: Int64, _ day: Int64) -> Int64 {
        let y = month <= 2 ? year - 1 : year
        let era = floorDivide(y, 400)
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }
}
