//! The spellings of `[limits.NAME]`: `rate = "10/m"`, `burst`, `key = "client"`, and the
//! [`Policy`] they make together. The config crate calls these parsers; their errors are
//! sentences it can put after a file, line and column.

use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::time::Duration;

use http::HeaderName;

/// The largest count a rate or burst may have. A million per second is one request per
/// microsecond, the resolution of the shared store's clock; anything above is a typo.
pub const MAX_COUNT: u32 = 1_000_000;

/// The window of a rate: the unit after the slash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Per {
    /// Per second (`"N/s"`).
    Second,
    /// Per minute (`"N/m"`).
    Minute,
    /// Per hour (`"N/h"`).
    Hour,
}

impl Per {
    /// The length of the period.
    pub fn duration(self) -> Duration {
        Duration::from_secs(match self {
            Per::Second => 1,
            Per::Minute => 60,
            Per::Hour => 3600,
        })
    }
}

/// `N/UNIT`: N requests per second, minute or hour, on average.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    count: NonZeroU32,
    per: Per,
}

impl Rate {
    /// `count` per `per`; refused above the largest count a limiter can time.
    pub fn new(count: NonZeroU32, per: Per) -> Result<Rate, String> {
        if count.get() > MAX_COUNT {
            return Err(format!("the count of a rate must be at most {MAX_COUNT}"));
        }
        Ok(Rate { count, per })
    }

    /// Requests allowed per period.
    pub fn count(&self) -> NonZeroU32 {
        self.count
    }

    /// The period.
    pub fn per(&self) -> Per {
        self.per
    }

    /// The steady spacing between two requests: the window divided by the count.
    pub fn interval(&self) -> Duration {
        self.per.duration() / self.count.get()
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.per {
            Per::Second => "s",
            Per::Minute => "m",
            Per::Hour => "h",
        };
        write!(f, "{}/{unit}", self.count)
    }
}

impl FromStr for Rate {
    type Err = String;

    fn from_str(text: &str) -> Result<Rate, String> {
        let expected =
            format!("rate {text:?}: expected N/UNIT such as \"10/m\", with UNIT one of s, m or h");
        let Some((count, unit)) = text.split_once('/') else {
            return Err(expected);
        };
        let per = match unit {
            "s" => Per::Second,
            "m" => Per::Minute,
            "h" => Per::Hour,
            _ => return Err(expected),
        };
        if count.is_empty() || !count.bytes().all(|b| b.is_ascii_digit()) {
            return Err(expected);
        }
        // All digits, so the only way to fail is overflow.
        let count: u64 = count.parse().unwrap_or(u64::MAX);
        if count == 0 {
            return Err(format!(
                "rate {text:?}: the count must be at least 1 (to refuse every request, use a policy instead)"
            ));
        }
        if count > u64::from(MAX_COUNT) {
            return Err(format!(
                "rate {text:?}: the count must be at most {MAX_COUNT}"
            ));
        }
        let count = NonZeroU32::new(count as u32).expect("checked above");
        Rate::new(count, per)
    }
}

/// What a limit counts by: one bucket per value of this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitKey {
    /// The client's address (after `trusted_proxies`).
    Client,
    /// A request header's value; requests without it share one bucket.
    Header(HeaderName),
    /// A claim of the route's validated JWT.
    Claim(String),
    /// The route itself: one bucket for everybody.
    Route,
}

impl FromStr for LimitKey {
    type Err = String;

    fn from_str(text: &str) -> Result<LimitKey, String> {
        let expected = || {
            format!(
                "key {text:?}: expected \"client\", \"route\", \"header:NAME\" or \"claim:NAME\""
            )
        };
        match text {
            "client" => return Ok(LimitKey::Client),
            "route" => return Ok(LimitKey::Route),
            _ => {}
        }
        let Some((kind, name)) = text.split_once(':') else {
            return Err(expected());
        };
        match kind {
            "header" => HeaderName::from_bytes(name.as_bytes())
                .map(LimitKey::Header)
                .map_err(|_| format!("key {text:?}: {name:?} is not a valid header name")),
            "claim" if name.is_empty() => Err(format!("key {text:?}: the claim name is empty")),
            "claim" => Ok(LimitKey::Claim(name.to_owned())),
            _ => Err(expected()),
        }
    }
}

/// A named limit: its rate and burst. The name appears in the `RateLimit` headers and in
/// the shared store's keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    name: String,
    rate: Rate,
    burst: NonZeroU32,
}

impl Policy {
    /// `burst` is how many requests may arrive at once; `None` takes the rate's count
    /// (`"10/m"` lets 10 through at once, then one every 6 seconds).
    pub fn new(name: &str, rate: Rate, burst: Option<u32>) -> Result<Policy, String> {
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!(
                "limit name {name:?}: use printable ASCII without spaces (it is sent in the RateLimit header)"
            ));
        }
        let burst = match burst {
            None => rate.count(),
            Some(n) if n > MAX_COUNT => {
                return Err(format!("burst {n}: must be at most {MAX_COUNT}"));
            }
            Some(n) => NonZeroU32::new(n).ok_or_else(|| {
                "burst 0: must be at least 1 (the request being decided)".to_owned()
            })?,
        };
        Ok(Policy {
            name: name.to_owned(),
            rate,
            burst,
        })
    }

    /// The `[limits.NAME]` name, shown in the RateLimit headers and metrics.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The steady rate.
    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// Requests allowed at once above the steady rate.
    pub fn burst(&self) -> NonZeroU32 {
        self.burst
    }

    /// How long an emptied bucket takes to fill again: `burst` intervals.
    pub fn refill(&self) -> Duration {
        self.rate.interval() * self.burst.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_with_their_units() {
        let rate: Rate = "10/m".parse().unwrap();
        assert_eq!(rate.count().get(), 10);
        assert_eq!(rate.per(), Per::Minute);
        assert_eq!(rate.interval(), Duration::from_secs(6));
        assert_eq!(
            "5/s".parse::<Rate>().unwrap().interval(),
            Duration::from_millis(200)
        );
        assert_eq!(
            "100/h".parse::<Rate>().unwrap().interval(),
            Duration::from_secs(36)
        );
        assert_eq!(
            "1000000/s".parse::<Rate>().unwrap().interval(),
            Duration::from_micros(1)
        );
        assert_eq!("100/h".parse::<Rate>().unwrap().to_string(), "100/h");
    }

    #[test]
    fn bad_rates_are_refused_with_the_reason() {
        for bad in [
            "", "10", "10/", "/m", "10/min", "10/M", " 10/m", "10 /m", "-1/m", "+1/m", "1.5/s",
            "ten/m", "10/m/s",
        ] {
            let err = bad.parse::<Rate>().unwrap_err();
            assert!(err.contains("expected N/UNIT"), "{bad:?}: {err}");
        }
        let zero = "0/m".parse::<Rate>().unwrap_err();
        assert!(zero.contains("at least 1"), "{zero}");
        for huge in ["1000001/s", "4294967296/m", "99999999999999999999999/h"] {
            let err = huge.parse::<Rate>().unwrap_err();
            assert!(err.contains("at most 1000000"), "{huge}: {err}");
        }
    }

    #[test]
    fn keys_parse_in_their_four_spellings() {
        assert_eq!("client".parse::<LimitKey>().unwrap(), LimitKey::Client);
        assert_eq!("route".parse::<LimitKey>().unwrap(), LimitKey::Route);
        assert_eq!(
            "header:X-Api-Key".parse::<LimitKey>().unwrap(),
            LimitKey::Header(HeaderName::from_static("x-api-key"))
        );
        assert_eq!(
            "claim:sub".parse::<LimitKey>().unwrap(),
            LimitKey::Claim("sub".into())
        );
    }

    #[test]
    fn bad_keys_are_refused_with_the_reason() {
        for bad in ["", "Client", "ip", "header", "cookie:x", "client:x"] {
            let err = bad.parse::<LimitKey>().unwrap_err();
            assert!(err.contains("expected \"client\""), "{bad:?}: {err}");
        }
        assert!("header:"
            .parse::<LimitKey>()
            .unwrap_err()
            .contains("not a valid header name"));
        assert!("header:a b"
            .parse::<LimitKey>()
            .unwrap_err()
            .contains("not a valid header name"));
        assert!("claim:"
            .parse::<LimitKey>()
            .unwrap_err()
            .contains("claim name is empty"));
    }

    #[test]
    fn burst_defaults_to_the_rate_count_and_refuses_zero() {
        let rate: Rate = "10/m".parse().unwrap();
        let policy = Policy::new("login", rate, None).unwrap();
        assert_eq!(policy.burst().get(), 10);
        assert_eq!(policy.refill(), Duration::from_secs(60));
        assert_eq!(
            Policy::new("login", rate, Some(5)).unwrap().refill(),
            Duration::from_secs(30)
        );
        assert!(Policy::new("login", rate, Some(0))
            .unwrap_err()
            .contains("at least 1"));
        assert!(Policy::new("login", rate, Some(2_000_000))
            .unwrap_err()
            .contains("at most"));
        assert!(Policy::new("log in", rate, None)
            .unwrap_err()
            .contains("printable ASCII"));
        assert!(Policy::new("", rate, None).is_err());
    }
}
