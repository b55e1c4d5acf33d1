//! Reading the keys of one [`Table`] as typed values.
//!
//! Each section reader names the keys it takes, reads them one by one, and
//! calls [`Fields::finish`]: whatever it did not read is an unknown key,
//! reported with the nearest known key as the likely fix. A value of the
//! wrong type is reported where it was written and read as absent, so the
//! section's default applies and reading goes on to find further mistakes.

use std::collections::HashSet;
use std::time::Duration;

use crate::diag::{nearest, Diagnostics, Origin};
use crate::duration::parse_duration;
use crate::size::parse_size;
use crate::tree::{Node, Table, Value};

/// The keys of one table, read one by one; what is left over is unknown.
pub struct Fields<'a> {
    table: &'a Table,
    section: String,
    known: &'static [&'static str],
    read: HashSet<&'static str>,
}

impl<'a> Fields<'a> {
    /// `section` names the table in messages ("[gateway]", "[[routes]] \"api\"").
    pub fn new(
        table: &'a Table,
        section: impl Into<String>,
        known: &'static [&'static str],
    ) -> Self {
        Fields {
            table,
            section: section.into(),
            known,
            read: HashSet::new(),
        }
    }

    /// The raw node of `key`, for values read by a reader of their own.
    pub fn node(&mut self, key: &'static str) -> Option<&'a Node> {
        debug_assert!(self.known.contains(&key), "{key} missing from known keys");
        self.read.insert(key);
        self.table.get(key)
    }

    fn typed<T>(
        &mut self,
        key: &'static str,
        want: &str,
        diags: &mut Diagnostics,
        pick: impl Fn(&'a Value) -> Option<T>,
    ) -> Option<(T, &'a Origin)> {
        let node = self.node(key)?;
        match pick(&node.value) {
            Some(v) => Some((v, &node.origin)),
            None => {
                diags.error(
                    &node.origin,
                    format!(
                        "`{key}` in {} must be {want}, not {}",
                        self.section,
                        node.value.type_name()
                    ),
                );
                None
            }
        }
    }

    pub fn string(
        &mut self,
        key: &'static str,
        diags: &mut Diagnostics,
    ) -> Option<(&'a str, &'a Origin)> {
        self.typed(key, "a string", diags, |v| match v {
            Value::String(s) => Some(s.as_str()),
            _ => None,
        })
    }

    /// A string that must be there: missing is reported at `at`, the table.
    pub fn required_string(
        &mut self,
        key: &'static str,
        at: &Origin,
        example: &str,
        diags: &mut Diagnostics,
    ) -> Option<(&'a str, &'a Origin)> {
        if self.table.get(key).is_none() {
            self.read.insert(key);
            diags.error_with_help(
                at,
                format!("{} needs `{key}`", self.section),
                format!("add e.g. {example}"),
            );
            return None;
        }
        self.string(key, diags)
    }

    pub fn boolean(
        &mut self,
        key: &'static str,
        diags: &mut Diagnostics,
    ) -> Option<(bool, &'a Origin)> {
        self.typed(key, "true or false", diags, |v| match v {
            Value::Boolean(b) => Some(*b),
            _ => None,
        })
    }

    pub fn integer(
        &mut self,
        key: &'static str,
        diags: &mut Diagnostics,
    ) -> Option<(i64, &'a Origin)> {
        if let Some(Node {
            value: Value::IntegerOutOfRange,
            origin,
        }) = self.table.get(key)
        {
            self.read.insert(key);
            diags.error(
                origin,
                format!("`{key}` in {} is out of range", self.section),
            );
            return None;
        }
        self.typed(key, "an integer", diags, |v| match v {
            Value::Integer(i) => Some(*i),
            _ => None,
        })
    }

    /// An integer in `range`, or `default` (after an error) when it is not.
    pub fn integer_in(
        &mut self,
        key: &'static str,
        range: std::ops::RangeInclusive<i64>,
        default: u32,
        diags: &mut Diagnostics,
    ) -> u32 {
        match self.integer(key, diags) {
            None => default,
            Some((n, _)) if range.contains(&n) => n as u32,
            Some((n, at)) => {
                diags.error_with_help(
                    at,
                    format!("`{key}` = {n} is out of range"),
                    format!("use {} to {}", range.start(), range.end()),
                );
                default
            }
        }
    }

    pub fn strings(
        &mut self,
        key: &'static str,
        diags: &mut Diagnostics,
    ) -> Option<(Vec<(&'a str, &'a Origin)>, &'a Origin)> {
        let section = self.section.clone();
        let (items, origin) = self.typed(key, "an array of strings", diags, |v| match v {
            Value::Array(items) => Some(items),
            _ => None,
        })?;
        let mut out = Vec::new();
        for item in items {
            match &item.value {
                Value::String(s) => out.push((s.as_str(), &item.origin)),
                other => diags.error(
                    &item.origin,
                    format!(
                        "`{key}` in {section} must hold strings, not {}",
                        other.type_name()
                    ),
                ),
            }
        }
        Some((out, origin))
    }

    pub fn tables(
        &mut self,
        key: &'static str,
        diags: &mut Diagnostics,
    ) -> Vec<(&'a Table, &'a Origin)> {
        let section = self.section.clone();
        let Some((items, _)) = self.typed(key, "an array of tables", diags, |v| match v {
            Value::Array(items) => Some(items),
            _ => None,
        }) else {
            return Vec::new();
        };
        items
            .iter()
            .filter_map(|item| match &item.value {
                Value::Table(t) => Some((t, &item.origin)),
                other => {
                    diags.error(
                        &item.origin,
                        format!(
                            "`{key}` in {section} must hold tables, not {}",
                            other.type_name()
                        ),
                    );
                    None
                }
            })
            .collect()
    }

    pub fn table(
        &mut self,
        key: &'static str,
        diags: &mut Diagnostics,
    ) -> Option<(&'a Table, &'a Origin)> {
        self.typed(key, "a table", diags, |v| match v {
            Value::Table(t) => Some(t),
            _ => None,
        })
    }

    /// A size such as "512KB" (see [`parse_size`]).
    pub fn size(&mut self, key: &'static str, diags: &mut Diagnostics) -> Option<u64> {
        let (text, origin) = self.string(key, diags)?;
        match parse_size(text) {
            Ok(size) => Some(size),
            Err(message) => {
                diags.error(origin, format!("`{key}`: {message}"));
                None
            }
        }
    }

    /// A timeout or interval: longer than zero, `default` when absent or bad.
    pub fn duration(
        &mut self,
        key: &'static str,
        default: Duration,
        diags: &mut Diagnostics,
    ) -> Duration {
        self.read_duration(key, default, false, diags)
    }

    /// A tolerance (a leeway, a cache lifetime): like [`Fields::duration`],
    /// but zero is allowed and means "none".
    pub fn tolerance(
        &mut self,
        key: &'static str,
        default: Duration,
        diags: &mut Diagnostics,
    ) -> Duration {
        self.read_duration(key, default, true, diags)
    }

    fn read_duration(
        &mut self,
        key: &'static str,
        default: Duration,
        zero_allowed: bool,
        diags: &mut Diagnostics,
    ) -> Duration {
        match self.string(key, diags) {
            Some((text, origin)) => match parse_duration(text) {
                Ok(d) if d.is_zero() && !zero_allowed => {
                    diags.error(origin, format!("`{key}` must be longer than zero"));
                    default
                }
                Ok(d) => d,
                Err(message) => {
                    diags.error(origin, format!("`{key}`: {message}"));
                    default
                }
            },
            None => default,
        }
    }

    /// Reports keys nobody read, with the nearest known key as the fix.
    pub fn finish(self, diags: &mut Diagnostics) {
        for (key, _) in &self.table.entries {
            if self.read.contains(key.name.as_str()) {
                continue;
            }
            let message = format!("unknown key `{}` in {}", key.name, self.section);
            match nearest(&key.name, self.known.iter().copied()) {
                Some(near) => {
                    diags.error_with_help(&key.origin, message, format!("did you mean `{near}`?"))
                }
                None => diags.error_with_help(
                    &key.origin,
                    message,
                    format!(
                        "the keys of {} are: {}",
                        self.section,
                        self.known.join(", ")
                    ),
                ),
            }
        }
    }
}

/// `node` as a table, or an error naming `section` when it is something else.
pub fn as_table<'a>(
    node: Option<&'a Node>,
    section: &str,
    diags: &mut Diagnostics,
) -> Option<&'a Table> {
    let node = node?;
    match &node.value {
        Value::Table(t) => Some(t),
        other => {
            diags.error(
                &node.origin,
                format!("{section} must be a table, not {}", other.type_name()),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::tree::parse_file;

    const KEYS: &[&str] = &[
        "threads",
        "trusted_proxies",
        "on",
        "limit",
        "timeout",
        "leeway",
        "items",
        "nested",
    ];

    fn table(text: &str) -> Table {
        let mut diags = Diagnostics::default();
        let path: Arc<str> = Arc::from("t.toml");
        parse_file(&path, text, &mut diags).expect("valid TOML")
    }

    /// Each finding as "ORIGIN: MESSAGE [help: HELP]", in order.
    fn lines(diags: &Diagnostics) -> Vec<String> {
        diags
            .iter()
            .map(|d| match &d.help {
                Some(help) => format!("{}: {} [help: {help}]", d.origin, d.message),
                None => format!("{}: {}", d.origin, d.message),
            })
            .collect()
    }

    #[test]
    fn values_of_the_right_type_are_read_with_their_origin() {
        let t = table("threads = 4\non = true\nitems = [\"a\", \"b\"]\nlimit = \"10MB\"\n");
        let mut diags = Diagnostics::default();
        let mut f = Fields::new(&t, "[s]", KEYS);
        let (threads, at) = f.integer("threads", &mut diags).unwrap();
        assert_eq!((threads, at.to_string().as_str()), (4, "t.toml:1:11"));
        assert_eq!(f.boolean("on", &mut diags).map(|b| b.0), Some(true));
        let (items, _) = f.strings("items", &mut diags).unwrap();
        let items: Vec<_> = items.iter().map(|(s, o)| (*s, o.to_string())).collect();
        assert_eq!(
            items,
            [
                ("a", "t.toml:3:10".to_string()),
                ("b", "t.toml:3:15".to_string())
            ]
        );
        assert_eq!(f.size("limit", &mut diags), Some(10 << 20));
        f.finish(&mut diags);
        assert!(diags.is_empty(), "{diags}");
    }

    #[test]
    fn a_wrong_type_is_reported_at_the_value_and_read_as_absent() {
        let t = table("threads = \"two\"\non = \"yes\"\nitems = [\"a\", 1]\nnested = 3\n");
        let mut diags = Diagnostics::default();
        let mut f = Fields::new(&t, "[s]", KEYS);
        assert!(f.integer("threads", &mut diags).is_none());
        assert!(f.boolean("on", &mut diags).is_none());
        let (items, _) = f.strings("items", &mut diags).unwrap();
        assert_eq!(items.len(), 1, "the string is kept, the integer refused");
        assert!(f.table("nested", &mut diags).is_none());
        f.finish(&mut diags);
        assert_eq!(
            lines(&diags),
            [
                "t.toml:1:11: `threads` in [s] must be an integer, not a string",
                "t.toml:2:6: `on` in [s] must be true or false, not a string",
                "t.toml:3:15: `items` in [s] must hold strings, not an integer",
                "t.toml:4:10: `nested` in [s] must be a table, not an integer",
            ]
        );
    }

    #[test]
    fn an_integer_beyond_64_bits_is_out_of_range_not_a_string() {
        let t = table("threads = 99999999999999999999\n");
        let mut diags = Diagnostics::default();
        let mut f = Fields::new(&t, "[s]", KEYS);
        assert!(f.integer("threads", &mut diags).is_none());
        f.finish(&mut diags);
        assert_eq!(
            lines(&diags),
            ["t.toml:1:11: `threads` in [s] is out of range"]
        );
    }

    #[test]
    fn integers_outside_their_range_fall_back_to_the_default() {
        let t = table("threads = 0\nlimit = 7\n");
        let mut diags = Diagnostics::default();
        let mut f = Fields::new(&t, "[s]", KEYS);
        assert_eq!(f.integer_in("threads", 1..=100, 3, &mut diags), 3);
        assert_eq!(f.integer_in("limit", 1..=100, 3, &mut diags), 7);
        assert_eq!(f.integer_in("on", 1..=100, 3, &mut diags), 3, "absent");
        assert_eq!(
            lines(&diags),
            ["t.toml:1:11: `threads` = 0 is out of range [help: use 1 to 100]"]
        );
    }

    #[test]
    fn a_missing_required_string_is_reported_at_the_table() {
        let t = table("on = true\n");
        let mut diags = Diagnostics::default();
        let mut f = Fields::new(&t, "[s]", KEYS);
        let at = Origin::file_start(&Arc::from("t.toml"));
        assert!(f
            .required_string("threads", &at, "threads = \"x\"", &mut diags)
            .is_none());
        let _ = f.boolean("on", &mut diags);
        f.finish(&mut diags);
        assert_eq!(
            lines(&diags),
            ["t.toml:1:1: [s] needs `threads` [help: add e.g. threads = \"x\"]"]
        );
    }

    #[test]
    fn durations_refuse_zero_unless_they_are_tolerances() {
        let t = table("timeout = \"0s\"\nleeway = \"0s\"\nlimit = \"2\"\n");
        let mut diags = Diagnostics::default();
        let mut f = Fields::new(&t, "[s]", KEYS);
        let default = Duration::from_secs(9);
        assert_eq!(f.duration("timeout", default, &mut diags), default);
        assert_eq!(f.tolerance("leeway", default, &mut diags), Duration::ZERO);
        assert_eq!(f.duration("limit", default, &mut diags), default);
        assert_eq!(f.duration("on", default, &mut diags), default, "absent");
        assert_eq!(
            lines(&diags),
            [
                "t.toml:1:11: `timeout` must be longer than zero",
                "t.toml:3:9: `limit`: \"2\" has no unit; write e.g. \"500ms\", \"2s\", \"5m\" or \"1h\"",
            ]
        );
    }

    #[test]
    fn sizes_that_do_not_parse_name_the_key() {
        let t = table("limit = \"ten MB\"\n");
        let mut diags = Diagnostics::default();
        let mut f = Fields::new(&t, "[s]", KEYS);
        assert_eq!(f.size("limit", &mut diags), None);
        assert_eq!(
            lines(&diags),
            ["t.toml:1:9: `limit`: \"ten MB\" does not start with a whole number; write e.g. \"512KB\" or \"10MB\""]
        );
    }

    #[test]
    fn unknown_keys_get_the_nearest_known_key_or_the_whole_list() {
        let t = table("thread = 2\ncolour = \"red\"\n");
        let mut diags = Diagnostics::default();
        Fields::new(&t, "[s]", KEYS).finish(&mut diags);
        assert_eq!(
            lines(&diags),
            [
                "t.toml:1:1: unknown key `thread` in [s] [help: did you mean `threads`?]",
                "t.toml:2:1: unknown key `colour` in [s] [help: the keys of [s] are: threads, trusted_proxies, on, limit, timeout, leeway, items, nested]",
            ]
        );
    }

    #[test]
    fn arrays_of_tables_keep_only_the_tables() {
        let t = table("items = [{ a = 1 }, 2]\n");
        let mut diags = Diagnostics::default();
        let mut f = Fields::new(&t, "[s]", KEYS);
        assert_eq!(f.tables("items", &mut diags).len(), 1);
        assert_eq!(
            lines(&diags),
            ["t.toml:1:21: `items` in [s] must hold tables, not an integer"]
        );
    }

    #[test]
    fn a_section_that_is_not_a_table_is_named() {
        let t = table("gateway = 3\n");
        let mut diags = Diagnostics::default();
        assert!(as_table(t.get("gateway"), "[gateway]", &mut diags).is_none());
        assert!(as_table(None, "[gateway]", &mut diags).is_none());
        assert_eq!(
            lines(&diags),
            ["t.toml:1:11: [gateway] must be a table, not an integer"]
        );
    }
}
