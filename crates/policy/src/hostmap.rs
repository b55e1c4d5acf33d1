//! Host dispatch, written once: the most specific [`HostPattern`] that
//! matches a host wins (an exact name, then a wildcard, then the default).
//!
//! The router (routes by host), the certificate table (certificates by SNI)
//! and the https redirect (hosts some certificate serves) all look hosts up
//! here, so they cannot disagree about which pattern a host falls under.

use std::borrow::Cow;
use std::collections::HashMap;

use crate::host::HostPattern;

/// Values keyed by host pattern, with an optional default for other hosts.
#[derive(Debug, Clone)]
pub struct HostMap<T> {
    exact: HashMap<String, T>,
    /// Keyed by the suffix after "*" (".example.com").
    wildcard: HashMap<String, T>,
    default: Option<T>,
}

impl<T> Default for HostMap<T> {
    fn default() -> Self {
        HostMap {
            exact: HashMap::new(),
            wildcard: HashMap::new(),
            default: None,
        }
    }
}

impl<T> HostMap<T> {
    /// An empty map: every host is unknown.
    pub fn new() -> Self {
        Self::default()
    }

    /// The value for `pattern` (`None`: the default), created by `make` if
    /// absent. The first value stored for a pattern keeps it.
    pub fn entry(&mut self, pattern: Option<&HostPattern>, make: impl FnOnce() -> T) -> &mut T {
        match pattern {
            None => self.default.get_or_insert_with(make),
            Some(HostPattern::Exact(name)) => self.exact.entry(name.clone()).or_insert_with(make),
            Some(HostPattern::Wildcard { suffix }) => {
                self.wildcard.entry(suffix.clone()).or_insert_with(make)
            }
        }
    }

    /// Every stored value, the default last.
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.exact
            .values_mut()
            .chain(self.wildcard.values_mut())
            .chain(self.default.as_mut())
    }

    /// What hosts with no exact or wildcard entry get, if anything.
    pub fn default_value(&self) -> Option<&T> {
        self.default.as_ref()
    }

    /// The value of the most specific pattern matching `host`: exact, then
    /// wildcard, then the default.
    pub fn get(&self, host: &str) -> Option<&T> {
        self.get_named(host).or(self.default.as_ref())
    }

    /// Like [`HostMap::get`], without falling back to the default.
    pub fn get_named(&self, host: &str) -> Option<&T> {
        let host = lookup_form(host);
        if let Some(value) = self.exact.get(host.as_ref()) {
            return Some(value);
        }
        // A wildcard stands for exactly the first label, which is not empty.
        let suffix = host
            .find('.')
            .filter(|&dot| dot > 0)
            .map(|dot| &host[dot..]);
        suffix.and_then(|s| self.wildcard.get(s))
    }
}

/// The form hosts are compared in: ASCII lowercase, without one trailing
/// dot, as [`crate::host::normalize_host`] and [`HostPattern::parse`] leave
/// them. Already normalised hosts (every `Host` the gateway routes on) are
/// borrowed as they are; only an SNI name may need the copy.
fn lookup_form(host: &str) -> Cow<'_, str> {
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(s: &str) -> HostPattern {
        HostPattern::parse(s).unwrap()
    }

    fn map() -> HostMap<&'static str> {
        let mut map = HostMap::new();
        *map.entry(Some(&pattern("api.example.com")), || "") = "exact";
        *map.entry(Some(&pattern("*.example.com")), || "") = "wildcard";
        *map.entry(None, || "") = "default";
        map
    }

    #[test]
    fn exact_then_wildcard_then_default() {
        let map = map();
        assert_eq!(map.get("api.example.com"), Some(&"exact"));
        assert_eq!(map.get("www.example.com"), Some(&"wildcard"));
        assert_eq!(map.get("example.org"), Some(&"default"));
        assert_eq!(map.get_named("example.org"), None);
        assert_eq!(map.get_named("www.example.com"), Some(&"wildcard"));
    }

    #[test]
    fn a_wildcard_is_exactly_one_non_empty_label() {
        let map = map();
        for host in ["example.com", ".example.com", "a.b.example.com"] {
            assert_eq!(map.get_named(host), None, "{host:?}");
        }
    }

    #[test]
    fn one_trailing_dot_and_case_are_normalised() {
        let map = map();
        assert_eq!(map.get_named("API.Example.com."), Some(&"exact"));
        assert_eq!(map.get_named("WWW.example.com."), Some(&"wildcard"));
        assert_eq!(map.get_named("api.example.com.."), None);
    }

    #[test]
    fn the_first_value_for_a_pattern_keeps_it() {
        let mut map = HostMap::new();
        map.entry(Some(&pattern("a.example")), || 1);
        map.entry(Some(&pattern("A.example.")), || 2);
        assert_eq!(map.get("a.example"), Some(&1));
        assert_eq!(HostMap::<u8>::new().get("a.example"), None);
    }
}
