//! Instants written in documents and on the command line: RFC 3339 with an offset.

use jiff::Timestamp;
use jiff::fmt::temporal::Pieces;

/// The first instant latchkey refuses, 9000-01-01T00:00:00Z. jiff's range ends late on
/// 9999-12-30 (so `9999-12-31T23:59:59Z`, valid RFC 3339, cannot be represented at all);
/// a bound well inside it means a grant's end, a grace period added to it or a `for:`
/// counted from a start can never overflow and be mistaken for "no expiry".
pub const LATEST: Timestamp = Timestamp::constant(221_845_392_000, 0);

/// Why an instant was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseInstantError {
    #[error("unparseable timestamp {0:?}")]
    Syntax(String),
    #[error("timestamp {input:?} is not before {LATEST}, the latest instant latchkey accepts")]
    TooLate { input: String },
}

/// Parses an RFC 3339 instant with offset (`2026-12-15T18:00:00Z`, `...+01:00`).
/// Instants at or after [`LATEST`] are an error of their own, including those that are
/// valid RFC 3339 but beyond what jiff can represent.
pub fn parse_instant(input: &str) -> Result<Timestamp, ParseInstantError> {
    let s = input.trim();
    let too_late = || ParseInstantError::TooLate {
        input: input.to_string(),
    };
    match s.parse::<Timestamp>() {
        Ok(t) if t < LATEST => Ok(t),
        Ok(_) => Err(too_late()),
        Err(_) if written_after_latest(s) => Err(too_late()),
        Err(_) => Err(ParseInstantError::Syntax(input.to_string())),
    }
}

/// A well-formed date, time and offset in a year from [`LATEST`]'s on: jiff refuses
/// those past its range, but they are instants all the same, not typos.
fn written_after_latest(s: &str) -> bool {
    Pieces::parse(s)
        .is_ok_and(|p| p.time().is_some() && p.offset().is_some() && p.date().year() >= LATEST_YEAR)
}

const LATEST_YEAR: i16 = 9000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latest_is_the_start_of_its_year() {
        assert_eq!(LATEST.to_string(), "9000-01-01T00:00:00Z");
        assert_eq!(LATEST.to_zoned(jiff::tz::TimeZone::UTC).year(), LATEST_YEAR);
    }

    #[test]
    fn ordinary_instants_parse() {
        for (input, want) in [
            ("2026-12-15T18:00:00Z", "2026-12-15T18:00:00Z"),
            ("2026-12-15T19:00:00+01:00", "2026-12-15T18:00:00Z"),
            (" 2026-12-15T18:00:00.5Z ", "2026-12-15T18:00:00.5Z"),
            ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00Z"),
            (
                "8999-12-31T23:59:59.999999999Z",
                "8999-12-31T23:59:59.999999999Z",
            ),
            // The bound is an instant, not a year as written.
            ("9000-01-01T00:30:00+01:00", "8999-12-31T23:30:00Z"),
        ] {
            assert_eq!(parse_instant(input).unwrap().to_string(), want, "{input}");
        }
    }

    /// Issue 15: `9999-12-31T23:59:59Z` was called unparseable although it is valid RFC
    /// 3339 (jiff cannot represent it); it is now refused for what it is.
    #[test]
    fn instants_from_the_bound_on_are_too_late_not_unparseable() {
        for input in [
            "9000-01-01T00:00:00Z",
            "9999-12-30T21:00:00Z", // inside jiff's range
            "9999-12-31T23:59:59Z", // beyond it
            "9999-12-31T23:59:59-23:59",
        ] {
            assert_eq!(
                parse_instant(input),
                Err(ParseInstantError::TooLate {
                    input: input.into()
                }),
                "{input}"
            );
        }
        assert_eq!(
            parse_instant("9999-12-31T23:59:59Z")
                .unwrap_err()
                .to_string(),
            "timestamp \"9999-12-31T23:59:59Z\" is not before 9000-01-01T00:00:00Z, the latest instant latchkey accepts"
        );
    }

    #[test]
    fn malformed_instants_are_unparseable() {
        for input in [
            "next tuesday",
            "2026-12-15",
            "2026-12-15T18:00:00", // no offset: which 18:00?
            "2026-02-30T00:00:00Z",
            "9999-12-32T00:00:00Z",
            "",
        ] {
            assert_eq!(
                parse_instant(input),
                Err(ParseInstantError::Syntax(input.into())),
                "{input}"
            );
        }
    }
}
