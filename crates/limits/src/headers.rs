//! Header values that tell a client where it stands, per draft-ietf-httpapi-ratelimit-headers-10
//! (27 September 2025; a -11 of May 2026 exists and was not checked): two Structured Fields lists,
//! `RateLimit-Policy: "login";q=10;w=60` (the quota `q` per window of `w` seconds) and
//! `RateLimit: "login";r=3;t=20` (`r` units remaining, `t` seconds until they reset), and
//! RFC 9110's `Retry-After` seconds on a 429.
//!
//! A GCRA bucket of `burst` requests refills completely in `burst` intervals, so the policy is
//! advertised as `q = burst` per `w = burst × interval`: with the default burst that is exactly
//! the configured rate (`"10/m"` → `q=10;w=60`). `t` on an allowed request is the time until
//! the bucket is full again, so `r` is never more than a client can really spend.

use std::time::Duration;

use crate::{Decision, Policy};

/// The `RateLimit-Policy` value for a policy: the same on every refusal of its routes.
pub fn policy_header(policy: &Policy) -> String {
    format!(
        "{};q={};w={}",
        sf_string(policy.name()),
        policy.burst(),
        whole_seconds(policy.refill()).max(1)
    )
}

/// The `RateLimit` value after a decision.
pub fn ratelimit_header(policy: &Policy, decision: &Decision) -> String {
    let (remaining, reset) = match *decision {
        Decision::Allowed { remaining, reset } => (remaining, reset),
        Decision::Limited { retry_after } => (0, retry_after),
    };
    use std::fmt::Write as _;
    let mut out = String::with_capacity(policy.name().len() + 24);
    push_sf_string(&mut out, policy.name());
    let _ = write!(out, ";r={remaining};t={}", whole_seconds(reset));
    out
}

/// The `Retry-After` value of a refused request: whole seconds, rounded up and at least 1 so
/// a client that waits that long is let through.
pub fn retry_after(decision: &Decision) -> Option<String> {
    match *decision {
        Decision::Allowed { .. } => None,
        Decision::Limited { retry_after } => Some(whole_seconds(retry_after).max(1).to_string()),
    }
}

/// Seconds rounded up: a client told to wait 0 when 300 ms are left would come back too soon.
fn whole_seconds(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

/// An sf-string (RFC 8941, 3.3.3). Policy names are printable ASCII (checked by
/// [`Policy::new`]); `"` and `\` are escaped.
fn sf_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    push_sf_string(&mut out, text);
    out
}

fn push_sf_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(rate: &str, burst: Option<u32>) -> Policy {
        Policy::new("login", rate.parse().unwrap(), burst).unwrap()
    }

    #[test]
    fn policy_header_states_quota_and_window() {
        assert_eq!(policy_header(&policy("10/m", None)), "\"login\";q=10;w=60");
        assert_eq!(
            policy_header(&policy("10/m", Some(5))),
            "\"login\";q=5;w=30"
        );
        assert_eq!(
            policy_header(&policy("100/h", None)),
            "\"login\";q=100;w=3600"
        );
        // A window under a second is still advertised as one second, never 0.
        assert_eq!(policy_header(&policy("5/s", Some(2))), "\"login\";q=2;w=1");
    }

    #[test]
    fn ratelimit_header_rounds_reset_up() {
        let login = policy("10/m", None);
        let allowed = Decision::Allowed {
            remaining: 3,
            reset: Duration::from_millis(19_200),
        };
        assert_eq!(ratelimit_header(&login, &allowed), "\"login\";r=3;t=20");
        let full = Decision::Allowed {
            remaining: 9,
            reset: Duration::ZERO,
        };
        assert_eq!(ratelimit_header(&login, &full), "\"login\";r=9;t=0");
        let limited = Decision::Limited {
            retry_after: Duration::from_millis(5_001),
        };
        assert_eq!(ratelimit_header(&login, &limited), "\"login\";r=0;t=6");
    }

    #[test]
    fn retry_after_is_whole_seconds_at_least_one() {
        let limited = |ms| Decision::Limited {
            retry_after: Duration::from_millis(ms),
        };
        assert_eq!(retry_after(&limited(6_000)).as_deref(), Some("6"));
        assert_eq!(retry_after(&limited(5_001)).as_deref(), Some("6"));
        assert_eq!(retry_after(&limited(1)).as_deref(), Some("1"));
        assert_eq!(retry_after(&limited(0)).as_deref(), Some("1"));
        let allowed = Decision::Allowed {
            remaining: 1,
            reset: Duration::ZERO,
        };
        assert_eq!(retry_after(&allowed), None);
    }

    #[test]
    fn names_are_escaped_as_sf_strings() {
        let odd = Policy::new("a\"b\\c", "1/s".parse().unwrap(), None).unwrap();
        assert_eq!(policy_header(&odd), r#""a\"b\\c";q=1;w=1"#);
    }
}
