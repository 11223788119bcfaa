//! The type of a CSV column, learnt one value at a time as the file streams past.
//!
//! The rules are arrow-csv's schema inference (`arrow_csv::reader::Format::infer_schema`,
//! arrow 58: every value is matched against one pattern per type and the column gets the type
//! all its values agree on), checked on the bytes of each field instead of with a regex set, so
//! the scan that cuts the file into pieces also types it:
//!
//! | value (after unquoting; empty = null, ignored)        | kind                      |
//! |--------------------------------------------------------|---------------------------|
//! | `true` / `false`, any case                             | Boolean                   |
//! | `-?[0-9]+`                                             | Int64 (text beyond `i64`) |
//! | `-?` digits with `.` and/or an exponent (`1.`, `.5`, `1e5`), `NaN`, `nan`, `inf`, `-inf` | Float64 |
//! | `YYYY-MM-DD`                                           | Date32                    |
//! | `YYYY-MM-DD[T ]hh:mm:ss` + optional suffix             | Timestamp(Second)         |
//! | ... `.f` with 1–3 / 4–6 / 7–9 fraction digits          | Timestamp(ms / µs / ns)   |
//! | anything else, or a value starting with `"`           | Utf8                      |
//!
//! A column whose values are all of one kind gets that type; Int64 with Float64 gives Float64;
//! dates and timestamps together give the finest timestamp; no values give Null; any other mix
//! gives Utf8. Digits are ASCII digits (arrow's regexes accept any Unicode digit, which its
//! parsers then reject).
//!
//! Lakehouse's conservative refinement is applied on top: a number with a leading zero (`007`,
//! `-01.5`) makes its column Utf8, so zip codes and identifiers keep their text.

use arrow::datatypes::{DataType, TimeUnit};

const BOOLEAN: u16 = 1 << 0;
const INTEGER: u16 = 1 << 1;
const FLOAT: u16 = 1 << 2;
const DATE: u16 = 1 << 3;
const SECOND: u16 = 1 << 4;
const MILLISECOND: u16 = 1 << 5;
const MICROSECOND: u16 = 1 << 6;
const NANOSECOND: u16 = 1 << 7;
const TEXT: u16 = 1 << 8;

/// The kinds of value seen so far in one CSV column.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct ColumnTypes {
    seen: u16,
}

impl ColumnTypes {
    /// Whether the column is text whatever comes next (further values need no look).
    pub(super) fn is_text(self) -> bool {
        self.seen & TEXT != 0
    }

    /// Takes one field's bytes (unquoted; empty means null and is ignored).
    pub(super) fn add(&mut self, value: &[u8]) {
        if value.is_empty() || self.is_text() {
            return;
        }
        // Most values are of the kind their column already has: that is checked first.
        let same = match self.seen {
            INTEGER => plain_integer(value),
            FLOAT => plain_decimal(value),
            0b110 => plain_integer(value) || plain_decimal(value),
            DATE => value.len() == 10 && temporal(value) == Some(DATE),
            _ => false,
        };
        if !same {
            self.seen |= kind(value);
        }
    }

    /// The column's type for the values seen (see the module docs).
    pub(super) fn data_type(self) -> DataType {
        match self.seen {
            0 => DataType::Null,
            BOOLEAN => DataType::Boolean,
            INTEGER => DataType::Int64,
            FLOAT | 0b110 => DataType::Float64,
            seen if seen & !(DATE | SECOND | MILLISECOND | MICROSECOND | NANOSECOND) == 0 => {
                if seen & NANOSECOND != 0 {
                    DataType::Timestamp(TimeUnit::Nanosecond, None)
                } else if seen & MICROSECOND != 0 {
                    DataType::Timestamp(TimeUnit::Microsecond, None)
                } else if seen & MILLISECOND != 0 {
                    DataType::Timestamp(TimeUnit::Millisecond, None)
                } else if seen & SECOND != 0 {
                    DataType::Timestamp(TimeUnit::Second, None)
                } else {
                    DataType::Date32
                }
            }
            _ => DataType::Utf8,
        }
    }
}

/// The kind of one non-empty value, leading-zero numbers counted as text.
fn kind(value: &[u8]) -> u16 {
    if value[0] == b'"' {
        return TEXT;
    }
    if value.eq_ignore_ascii_case(b"true") || value.eq_ignore_ascii_case(b"false") {
        return BOOLEAN;
    }
    let unsigned = value.strip_prefix(b"-").unwrap_or(value);
    let leading_zero = unsigned.len() > 1 && unsigned[0] == b'0' && unsigned[1].is_ascii_digit();
    if all_digits(unsigned) {
        // Beyond i64 (19 digits or more may overflow) the value stays text.
        let fits =
            value.len() < 19 || std::str::from_utf8(value).is_ok_and(|v| v.parse::<i64>().is_ok());
        return if fits && !leading_zero { INTEGER } else { TEXT };
    }
    if is_decimal(unsigned) {
        return if leading_zero { TEXT } else { FLOAT };
    }
    if let Some(kind) = temporal(value) {
        return kind;
    }
    match value {
        b"NaN" | b"nan" | b"inf" | b"-inf" => FLOAT,
        _ => TEXT,
    }
}

/// An INTEGER that is not text: `-?[0-9]+`, shorter than 19 bytes, no leading zero.
fn plain_integer(value: &[u8]) -> bool {
    let unsigned = value.strip_prefix(b"-").unwrap_or(value);
    value.len() < 19 && all_digits(unsigned) && !(unsigned.len() > 1 && unsigned[0] == b'0')
}

/// A FLOAT that is not text: a decimal without a leading zero.
fn plain_decimal(value: &[u8]) -> bool {
    let unsigned = value.strip_prefix(b"-").unwrap_or(value);
    is_decimal(unsigned)
        && !(unsigned.len() > 1 && unsigned[0] == b'0' && unsigned[1].is_ascii_digit())
}

fn all_digits(bytes: &[u8]) -> bool {
    !bytes.is_empty() && bytes.iter().all(u8::is_ascii_digit)
}

/// `(\d*\.\d+|\d+\.\d*)([eE][-+]?\d+)?` or `\d+[eE][-+]?\d+` (the sign already taken off),
/// in one pass.
fn is_decimal(unsigned: &[u8]) -> bool {
    let digits_from = |mut i: usize| {
        while i < unsigned.len() && unsigned[i].is_ascii_digit() {
            i += 1;
        }
        i
    };
    let whole = digits_from(0);
    let mut at = whole;
    let dot = unsigned.get(at) == Some(&b'.');
    let mut fraction = 0;
    if dot {
        let end = digits_from(at + 1);
        fraction = end - at - 1;
        at = end;
    }
    if dot && whole + fraction == 0 {
        return false;
    }
    match unsigned.get(at) {
        None => dot,
        Some(b'e' | b'E') if dot || whole > 0 => {
            let mut start = at + 1;
            if matches!(unsigned.get(start), Some(b'+' | b'-')) {
                start += 1;
            }
            let end = digits_from(start);
            end == unsigned.len() && end > start
        }
        Some(_) => false,
    }
}

/// Dates and timestamps: `YYYY-MM-DD`, then `[T ]hh:mm:ss`, then either nothing, a suffix not
/// starting with a digit or `.` (a zone), or `.` with 1–9 fraction digits and an optional
/// suffix not starting with a digit. A suffix holds no newline.
fn temporal(value: &[u8]) -> Option<u16> {
    let shape = |pattern: &[u8], bytes: &[u8]| {
        bytes.len() >= pattern.len()
            && pattern.iter().zip(bytes).all(|(p, b)| match p {
                b'd' => b.is_ascii_digit(),
                p => p == b,
            })
    };
    if !shape(b"dddd-dd-dd", value) {
        return None;
    }
    if value.len() == 10 {
        return Some(DATE);
    }
    if !matches!(value[10], b'T' | b' ') || !shape(b"dd:dd:dd", &value[11..]) {
        return None;
    }
    let rest = &value[19..];
    let suffix_ok = |suffix: &[u8]| match suffix.split_first() {
        None => true,
        Some((first, tail)) => !first.is_ascii_digit() && !tail.contains(&b'\n'),
    };
    match rest.split_first() {
        None => Some(SECOND),
        Some((b'.', fraction)) => {
            let digits = fraction.iter().take_while(|b| b.is_ascii_digit()).count();
            if !suffix_ok(&fraction[digits..]) {
                return None;
            }
            match digits {
                1..=3 => Some(MILLISECOND),
                4..=6 => Some(MICROSECOND),
                7..=9 => Some(NANOSECOND),
                _ => None,
            }
        }
        Some(_) => suffix_ok(rest).then_some(SECOND),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// arrow-csv's type for a one-column file holding `values`.
    fn arrow_type(values: &[&str]) -> DataType {
        let mut text = String::from("c\n");
        for v in values {
            text.push('"');
            text.push_str(&v.replace('"', "\"\""));
            text.push_str("\"\n");
        }
        let (schema, _) = arrow::csv::reader::Format::default()
            .with_header(true)
            .infer_schema(text.as_bytes(), None)
            .unwrap();
        schema.field(0).data_type().clone()
    }

    fn ours(values: &[&str]) -> DataType {
        let mut types = ColumnTypes::default();
        for v in values {
            types.add(v.as_bytes());
        }
        types.data_type()
    }

    #[test]
    fn single_values_type_as_arrow_csv_types_them() {
        let values = [
            "true",
            "FALSE",
            "TrUe",
            "truth",
            "t",
            "1",
            "0",
            "-0",
            "-",
            "+5",
            "42",
            "-42",
            "9223372036854775807",
            "9223372036854775808",
            "-9223372036854775808",
            "99999999999999999999",
            "1.5",
            "-1.5",
            ".5",
            "5.",
            "-.5",
            ".",
            "1e5",
            "1E-5",
            "1.5e+10",
            "e5",
            "1e",
            "1.5.5",
            "1,5",
            " 1",
            "1 ",
            "NaN",
            "nan",
            "inf",
            "-inf",
            "Infinity",
            "2024-01-02",
            "2024-1-2",
            "20240102",
            "2024-01-02T03:04:05",
            "2024-01-02 03:04:05",
            "2024-01-02T03:04:05Z",
            "2024-01-02T03:04:05+01:00",
            "2024-01-02T03:04:05.1",
            "2024-01-02T03:04:05.123",
            "2024-01-02T03:04:05.1234",
            "2024-01-02T03:04:05.123456",
            "2024-01-02T03:04:05.1234567",
            "2024-01-02T03:04:05.123456789",
            "2024-01-02T03:04:05.1234567890",
            "2024-01-02T03:04:05.",
            "2024-01-02T03:04:05.123Z",
            "2024-01-02T03:04:056",
            "2024-01-02T03:04",
            "2024-01-02X03:04:05",
            "hello",
            "\"quoted",
            "a\nb",
            "2024-01-02T03:04:05 x\ny",
            "2024-01-02T03:04:05.12\n",
            "€",
            "0x10",
        ];
        for value in values {
            assert_eq!(ours(&[value]), arrow_type(&[value]), "value {value:?}");
        }
    }

    #[test]
    fn mixed_columns_type_as_arrow_csv_types_them() {
        let columns: [&[&str]; 15] = [
            &["1", "2", "3.5"],
            &["1.5", "2.5", "7", "1e3"],
            &["2024-01-02", "2024-01-03", "2024-01-02 03:04:05"],
            &["1.5", "2", "x"],
            &["7", "8", "9999999999999999999"],
            &["1", "2.5"],
            &["1", "true"],
            &["2024-01-02", "2024-01-02T03:04:05"],
            &["2024-01-02T03:04:05.1", "2024-01-02T03:04:05.123456"],
            &["2024-01-02", "1"],
            &["1.5", "NaN", "3"],
            &["true", "false", "x"],
            &["1", "", "2"],
            &["", ""],
            &["-1", "1e3"],
        ];
        for values in columns {
            assert_eq!(ours(values), arrow_type(values), "values {values:?}");
        }
    }

    #[test]
    fn leading_zeros_and_oversized_integers_stay_text() {
        assert_eq!(ours(&["007", "1"]), DataType::Utf8);
        assert_eq!(ours(&["1", "2", "007"]), DataType::Utf8);
        assert_eq!(ours(&["1.5", "2.5", "01.5"]), DataType::Utf8);
        assert_eq!(ours(&["-01.5", "2.5"]), DataType::Utf8);
        assert_eq!(ours(&["00.5"]), DataType::Utf8);
        assert_eq!(ours(&["0", "0.5", "-0.25"]), DataType::Float64);
        assert_eq!(ours(&["99999999999999999999"]), DataType::Utf8);
        assert_eq!(ours(&["0001-01-01"]), DataType::Date32);
    }
}
