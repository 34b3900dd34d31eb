//! Grant and guardrail durations such as `14d`, `36h` or `2w`.

use std::fmt;

use jiff::SignedDuration;

/// A positive span of wall-clock time, written with d/h/m/s/w units (`14d`, `1d12h`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GrantDuration(SignedDuration);

/// Why a duration did not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid duration {input:?}: {why} (write e.g. 14d, 36h, 2w or 1d12h)")]
pub struct ParseDurationError {
    input: String,
    why: &'static str,
}

impl GrantDuration {
    /// Parses `14d`, `2w`, `1d12h`, `90m`, `30s`. Days are 24 hours: grants are about
    /// elapsed time, not calendar days.
    pub fn parse(input: &str) -> Result<Self, ParseDurationError> {
        let err = |why| ParseDurationError {
            input: input.to_string(),
            why,
        };
        let s = input.trim();
        if s.is_empty() {
            return Err(err("empty"));
        }
        let mut total: i64 = 0;
        let mut digits = String::new();
        for c in s.chars() {
            if c.is_ascii_digit() {
                digits.push(c);
                continue;
            }
            let unit: i64 = match c {
                'w' => 7 * 86_400,
                'd' => 86_400,
                'h' => 3_600,
                'm' => 60,
                's' => 1,
                _ => return Err(err("unknown unit")),
            };
            let n: i64 = digits
                .parse()
                .map_err(|_| err("a number must precede each unit"))?;
            digits.clear();
            total = n
                .checked_mul(unit)
                .and_then(|v| total.checked_add(v))
                .ok_or_else(|| err("too long"))?;
        }
        if !digits.is_empty() {
            return Err(err("a unit must follow the number"));
        }
        if total <= 0 {
            return Err(err("must be longer than zero"));
        }
        Ok(GrantDuration(SignedDuration::from_secs(total)))
    }

    /// The duration as jiff's type, for arithmetic with timestamps.
    pub fn as_signed(self) -> SignedDuration {
        self.0
    }

    /// Builds one from a jiff duration (must be positive to be meaningful).
    pub fn from_signed(d: SignedDuration) -> Self {
        GrantDuration(d)
    }
}

impl fmt::Display for GrantDuration {
    /// Writes the largest exact units, e.g. `14d`, `1d12h`, `90s` → `1m30s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut secs = self.0.as_secs();
        if secs < 0 {
            f.write_str("-")?;
            secs = -secs;
        }
        if secs == 0 {
            return f.write_str("0s");
        }
        for (unit, len) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
            if secs >= len {
                write!(f, "{}{unit}", secs / len)?;
                secs %= len;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_combinations() {
        assert_eq!(
            GrantDuration::parse("14d").unwrap().as_signed().as_secs(),
            14 * 86_400
        );
        assert_eq!(
            GrantDuration::parse("2w").unwrap().as_signed().as_secs(),
            14 * 86_400
        );
        assert_eq!(
            GrantDuration::parse("1d12h").unwrap().as_signed().as_secs(),
            36 * 3_600
        );
        assert_eq!(GrantDuration::parse("1d12h").unwrap().to_string(), "1d12h");
    }

    #[test]
    fn rejects_what_is_ambiguous() {
        for bad in ["", "14", "d", "14x", "0d", "1.5d", "-3d"] {
            assert!(GrantDuration::parse(bad).is_err(), "{bad} should not parse");
        }
        assert_eq!(
            GrantDuration::parse("14x").unwrap_err().to_string(),
            "invalid duration \"14x\": unknown unit (write e.g. 14d, 36h, 2w or 1d12h)"
        );
    }
}
