//! The `shared_store` URL: checked and shown without its password. Here, not in the store,
//! so the config crate can check it without Redis in its dependencies.

/// The URL with any userinfo (and any query, which may carry credentials) replaced by `***`,
/// fit for logs, errors and `/config`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "(not a URL)".to_owned();
    };
    // The last '@' anywhere: a password written with a raw '/' or '?' must not leak either.
    let (rest, hidden_user) = match rest.rfind('@') {
        Some(at) => (&rest[at + 1..], true),
        None => (rest, false),
    };
    let (rest, hidden_query) = match rest.split_once('?') {
        Some((before, _)) => (before, true),
        None => (rest, false),
    };
    format!(
        "{scheme}://{}{rest}{}",
        if hidden_user { "***@" } else { "" },
        if hidden_query { "?***" } else { "" }
    )
}

/// Whether `url` can name a shared store: `redis://` or `rediss://` (TLS) with a host. The
/// error shows the URL redacted.
pub fn check_store_url(url: &str) -> Result<(), String> {
    let shown = redact_url(url);
    let expected = format!(
        "shared_store {shown:?}: expected a URL such as \"redis://127.0.0.1:6379/0\" (or rediss:// for TLS)"
    );
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(expected);
    };
    if scheme != "redis" && scheme != "rediss" {
        return Err(expected);
    }
    let authority = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    let host = authority.split(['/', '?']).next().unwrap_or("");
    if host.is_empty() || host.starts_with(':') {
        return Err(format!("{expected}: the host is missing"));
    }
    if let Some(db) = authority.split_once('/').map(|(_, db)| db) {
        let db = db.split('?').next().unwrap_or("");
        if !db.is_empty() && db.parse::<u16>().is_err() {
            return Err(format!(
                "{expected}: the path is a database number, not {db:?}"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_userinfo() {
        assert_eq!(
            redact_url("redis://127.0.0.1:6379/0"),
            "redis://127.0.0.1:6379/0"
        );
        assert_eq!(
            redact_url("redis://:s3cret@host:6379/0"),
            "redis://***@host:6379/0"
        );
        assert_eq!(
            redact_url("rediss://user:p@ss@host/1"),
            "rediss://***@host/1"
        );
        assert_eq!(redact_url("redis://:pa/ss@host/1"), "redis://***@host/1");
        assert_eq!(
            redact_url("redis://host/0?password=s3cret"),
            "redis://host/0?***"
        );
        assert_eq!(redact_url(":s3cret@host"), "(not a URL)");
    }

    #[test]
    fn store_urls_need_a_redis_scheme_and_a_host() {
        for good in [
            "redis://127.0.0.1:6379/0",
            "redis://redis",
            "rediss://:s3cret@redis.internal:6380/2",
        ] {
            assert_eq!(check_store_url(good), Ok(()), "{good}");
        }
        for bad in [
            "http://:s3cret@host/0",
            "127.0.0.1:6379",
            "redis://",
            "redis://:s3cret@/0",
            "redis://host/zero",
        ] {
            let error = check_store_url(bad).unwrap_err();
            assert!(error.contains("redis://127.0.0.1:6379/0"), "{bad}: {error}");
            assert!(!error.contains("s3cret"), "{bad}: {error}");
        }
    }
}
