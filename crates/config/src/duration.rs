//! Durations as operators write them: "500ms", "2s", "5m", "1h".

use std::time::Duration;

/// Parses a duration string; the error says what was expected.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| {
            format!("{text:?} has no unit; write e.g. \"500ms\", \"2s\", \"5m\" or \"1h\"")
        })?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} does not start with a number; write e.g. \"2s\""))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => {
            return Err(format!(
                "{text:?} has an unknown unit {unit:?}; use ms, s, m or h"
            ))
        }
    };
    if !seconds.is_finite() || seconds > 86_400.0 * 365.0 {
        return Err(format!("{text:?} is too long"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
    }

    #[test]
    fn refusals_say_what_to_write() {
        assert!(parse_duration("2").unwrap_err().contains("no unit"));
        assert!(parse_duration("2 days")
            .unwrap_err()
            .contains("unknown unit"));
        assert!(parse_duration("s").unwrap_err().contains("number"));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("99999999h")
            .unwrap_err()
            .contains("too long"));
    }
}
