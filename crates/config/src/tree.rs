//! The layered configuration document, before it is given types.
//!
//! `gateway.toml`, then `gateway.d/*.toml` in name order, then `POSTERN_*`
//! environment variables are merged into one tree (tables merged, everything
//! else replaced), the way Domino REST API layers config.json, keepconfig.d and
//! the environment. Every node keeps the [`Origin`] of the layer that set it,
//! so an error in an overlay names the overlay, not the main file.

use std::sync::Arc;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use crate::diag::{Diagnostics, Origin};

#[derive(Debug, Clone)]
pub enum Value {
    String(String),
    Integer(i64),
    /// An integer TOML accepts but that does not fit 64 bits.
    IntegerOutOfRange,
    Float,
    Boolean(bool),
    Datetime,
    Array(Vec<Node>),
    Table(Table),
}

impl Value {
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::String(_) => "a string",
            Value::Integer(_) | Value::IntegerOutOfRange => "an integer",
            Value::Float => "a float",
            Value::Boolean(_) => "a boolean",
            Value::Datetime => "a datetime",
            Value::Array(_) => "an array",
            Value::Table(_) => "a table",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Node {
    pub value: Value,
    pub origin: Origin,
}

#[derive(Debug, Clone)]
pub struct Key {
    pub name: String,
    pub origin: Origin,
}

/// A table in key order.
#[derive(Debug, Clone, Default)]
pub struct Table {
    pub entries: Vec<(Key, Node)>,
}

impl Table {
    pub fn get(&self, name: &str) -> Option<&Node> {
        self.entries
            .iter()
            .find(|(k, _)| k.name == name)
            .map(|(_, n)| n)
    }

    fn position_ignoring_case(&self, name: &str) -> Option<usize> {
        self.entries
            .iter()
            .position(|(k, _)| k.name.eq_ignore_ascii_case(name))
    }

    /// Lays `overlay` over this table: tables merge key by key, anything else
    /// (including arrays) is replaced whole.
    pub fn merge(&mut self, overlay: Table) {
        for (key, node) in overlay.entries {
            match self.entries.iter_mut().find(|(k, _)| k.name == key.name) {
                Some((_, existing)) => match (&mut existing.value, node.value) {
                    (Value::Table(mine), Value::Table(theirs)) => mine.merge(theirs),
                    (slot, value) => {
                        *slot = value;
                        existing.origin = node.origin;
                    }
                },
                None => self.entries.push((key, node)),
            }
        }
    }
}

/// Parses one TOML file into a tree whose origins point into it.
pub fn parse_file(path: &Arc<str>, text: &str, diags: &mut Diagnostics) -> Option<Table> {
    match DeTable::parse(text) {
        Ok(table) => Some(convert_table(path, text, table.into_inner())),
        Err(e) => {
            let offset = e.span().map_or(0, |s| s.start);
            let origin = Origin::in_file(path, text, offset);
            let message = e.message().trim().to_string();
            diags.error_with_help(
                &origin,
                format!("this is not valid TOML: {message}"),
                "see https://toml.io for the syntax; strings need quotes, e.g. url = \"http://127.0.0.1:8880\"",
            );
            None
        }
    }
}

fn convert_table(path: &Arc<str>, text: &str, table: DeTable<'_>) -> Table {
    let entries = table
        .into_iter()
        .map(|(key, value)| {
            let key = Key {
                origin: Origin::in_file(path, text, key.span().start),
                name: key.into_inner().into_owned(),
            };
            (key, convert_node(path, text, value))
        })
        .collect();
    Table { entries }
}

fn convert_node(path: &Arc<str>, text: &str, node: Spanned<DeValue<'_>>) -> Node {
    let origin = Origin::in_file(path, text, node.span().start);
    let value = match node.into_inner() {
        DeValue::String(s) => Value::String(s.into_owned()),
        DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
            Ok(n) => Value::Integer(n),
            Err(_) => Value::IntegerOutOfRange,
        },
        // No setting takes a float or a datetime; only the type is kept, for errors.
        DeValue::Float(_) => Value::Float,
        DeValue::Boolean(b) => Value::Boolean(b),
        DeValue::Datetime(_) => Value::Datetime,
        DeValue::Array(items) => Value::Array(
            items
                .iter()
                .cloned()
                .map(|item| convert_node(path, text, item))
                .collect(),
        ),
        DeValue::Table(t) => Value::Table(convert_table(path, text, t)),
    };
    Node { value, origin }
}

/// Applies `POSTERN_<SECTION>__<KEY>=value` overrides.
///
/// Segments are separated by `__` and matched to existing keys ignoring case;
/// within an array of tables (`[[listeners]]`, `[[routes]]`) a segment picks
/// the element by its `name`, so `POSTERN_LISTENERS__HTTPS__ADDRESS` moves the
/// listener called "https". The value is read as a TOML value when it is one
/// (`4`, `true`, `["a", "b"]`) and as a plain string otherwise.
pub fn apply_env(root: &mut Table, vars: &[(String, String)], diags: &mut Diagnostics) {
    let mut vars: Vec<_> = vars
        .iter()
        .filter(|(k, _)| k.starts_with("POSTERN_") && k.contains("__"))
        .collect();
    // Deterministic order, so two overrides of the same key always resolve alike.
    vars.sort();
    for (variable, raw) in vars {
        let origin = Origin::Env {
            variable: Arc::from(variable.as_str()),
        };
        let segments: Vec<String> = variable["POSTERN_".len()..]
            .split("__")
            .map(|s| s.to_ascii_lowercase())
            .collect();
        if segments.iter().any(|s| s.is_empty()) {
            diags.error_with_help(
                &origin,
                "this override has an empty name segment",
                "write POSTERN_<SECTION>__<KEY>, e.g. POSTERN_GATEWAY__THREADS=4",
            );
            continue;
        }
        let value = parse_env_value(raw, &origin);
        if let Err(message) = set_path(root, &segments, value, &origin) {
            diags.error_with_help(
                &origin,
                message,
                "write POSTERN_<SECTION>__<KEY>, e.g. POSTERN_GATEWAY__THREADS=4 or POSTERN_LISTENERS__HTTPS__ADDRESS=0.0.0.0:443",
            );
        }
    }
}

fn parse_env_value(raw: &str, origin: &Origin) -> Node {
    let value = match DeValue::parse(raw) {
        Ok(parsed) if !matches!(parsed.get_ref(), DeValue::Table(_)) => {
            // Re-root the parsed value's origins at the variable.
            let path: Arc<str> = Arc::from("<env>");
            let mut node = convert_node(&path, raw, parsed);
            reorigin(&mut node, origin);
            return node;
        }
        _ => Value::String(raw.to_string()),
    };
    Node {
        value,
        origin: origin.clone(),
    }
}

fn reorigin(node: &mut Node, origin: &Origin) {
    node.origin = origin.clone();
    match &mut node.value {
        Value::Array(items) => items.iter_mut().for_each(|n| reorigin(n, origin)),
        Value::Table(t) => t.entries.iter_mut().for_each(|(k, n)| {
            k.origin = origin.clone();
            reorigin(n, origin);
        }),
        _ => {}
    }
}

/// Keys whose value is an array of tables, selected by `name` in overrides.
const ARRAYS_OF_TABLES: [&str; 2] = ["listeners", "routes"];

fn set_path(
    table: &mut Table,
    segments: &[String],
    value: Node,
    origin: &Origin,
) -> Result<(), String> {
    let (first, rest) = segments.split_first().expect("segments is never empty");
    let index = match table.position_ignoring_case(first) {
        Some(i) => i,
        // An array of tables is picked from by name: a missing one has no
        // entry of that name, and must not become a plain table.
        None if ARRAYS_OF_TABLES.contains(&first.as_str()) => {
            let selector = rest.first().map_or("", String::as_str);
            return Err(format!(
                "there is no [[{first}]] entry with name = {selector:?}"
            ));
        }
        None => {
            table.entries.push((
                Key {
                    name: first.clone(),
                    origin: origin.clone(),
                },
                Node {
                    value: Value::Table(Table::default()),
                    origin: origin.clone(),
                },
            ));
            table.entries.len() - 1
        }
    };
    let slot = &mut table.entries[index].1;
    if rest.is_empty() {
        *slot = value;
        return Ok(());
    }
    match &mut slot.value {
        Value::Table(inner) => set_path(inner, rest, value, origin),
        Value::Array(items) => {
            let (selector, rest) = rest.split_first().expect("checked non-empty");
            let element = items.iter_mut().find(|item| match &item.value {
                Value::Table(t) => matches!(
                    t.get("name").map(|n| &n.value),
                    Some(Value::String(name)) if name.eq_ignore_ascii_case(selector)
                ),
                _ => false,
            });
            match (element, rest.is_empty()) {
                (Some(Node { value: Value::Table(t), .. }), false) => set_path(t, rest, value, origin),
                (Some(_), true) => Err(format!(
                    "cannot replace the whole element {selector:?} of [[{first}]]; name one of its keys"
                )),
                (None, _) => Err(format!("there is no [[{first}]] entry with name = {selector:?}")),
                (Some(_), false) => unreachable!("elements matched by name are tables"),
            }
        }
        other => Err(format!(
            "{first} is {}, not a table, so it has no key {:?}",
            other.type_name(),
            rest[0]
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Table {
        let mut diags = Diagnostics::default();
        let path: Arc<str> = Arc::from("t.toml");
        parse_file(&path, text, &mut diags).expect("valid toml")
    }

    #[test]
    fn overlays_merge_tables_and_replace_arrays() {
        let mut base = parse("[gateway]\nthreads = 2\ntrusted_proxies = [\"10.0.0.0/8\"]\n");
        base.merge(parse("[gateway]\ntrusted_proxies = []\n"));
        let Value::Table(gateway) = &base.get("gateway").unwrap().value else {
            panic!("gateway is a table")
        };
        assert!(matches!(
            gateway.get("threads").unwrap().value,
            Value::Integer(2)
        ));
        assert!(
            matches!(&gateway.get("trusted_proxies").unwrap().value, Value::Array(a) if a.is_empty())
        );
    }

    #[test]
    fn env_overrides_reach_array_elements_by_name() {
        let mut root = parse("[[listeners]]\nname = \"https\"\naddress = \"0.0.0.0:443\"\n");
        let mut diags = Diagnostics::default();
        let vars = vec![
            (
                "POSTERN_LISTENERS__HTTPS__ADDRESS".to_string(),
                "127.0.0.1:8443".to_string(),
            ),
            ("POSTERN_GATEWAY__THREADS".to_string(), "4".to_string()),
            ("POSTERN_CONFIG".to_string(), "ignored.toml".to_string()),
        ];
        apply_env(&mut root, &vars, &mut diags);
        assert!(diags.is_empty(), "{diags}");
        let Value::Array(listeners) = &root.get("listeners").unwrap().value else {
            panic!()
        };
        let Value::Table(https) = &listeners[0].value else {
            panic!()
        };
        let address = https.get("address").unwrap();
        assert!(matches!(&address.value, Value::String(s) if s == "127.0.0.1:8443"));
        assert_eq!(
            address.origin.to_string(),
            "environment variable POSTERN_LISTENERS__HTTPS__ADDRESS"
        );
        let Value::Table(gateway) = &root.get("gateway").unwrap().value else {
            panic!()
        };
        assert!(matches!(
            gateway.get("threads").unwrap().value,
            Value::Integer(4)
        ));
    }

    #[test]
    fn env_override_of_a_missing_array_element_is_an_error() {
        let mut root = parse("[[routes]]\nname = \"api\"\n");
        let mut diags = Diagnostics::default();
        let vars = vec![("POSTERN_ROUTES__NOPE__DENY".to_string(), "true".to_string())];
        apply_env(&mut root, &vars, &mut diags);
        assert!(
            diags
                .to_string()
                .contains("no [[routes]] entry with name = \"nope\""),
            "{diags}"
        );
    }

    #[test]
    fn toml_syntax_errors_name_line_and_column() {
        let mut diags = Diagnostics::default();
        let path: Arc<str> = Arc::from("bad.toml");
        assert!(parse_file(&path, "[gateway]\nthreads = = 2\n", &mut diags).is_none());
        let text = diags.to_string();
        assert!(text.starts_with("bad.toml:2:"), "{text}");
        assert!(text.contains("not valid TOML"), "{text}");
    }
}
