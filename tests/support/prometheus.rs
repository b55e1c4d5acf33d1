//! The Prometheus text exposition format, read back: samples with their
//! labels, `# TYPE` lines, and `promtool check metrics` on a whole scrape.

use std::collections::BTreeMap;
use std::io::{self, Write as _};
use std::process::{Command, Stdio};

/// One sample line of the text exposition format.
#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Every sample in `text`; panics on a line that is not a comment, blank or
/// a well-formed sample.
pub fn samples(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|line| parse_sample(line).unwrap_or_else(|| panic!("unparsable sample {line:?}")))
        .collect()
}

fn parse_sample(line: &str) -> Option<Sample> {
    let name_end = line.find(['{', ' '])?;
    let name = line[..name_end].to_string();
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(after_brace) = rest.strip_prefix('{') {
        let mut chars = after_brace.char_indices().peekable();
        loop {
            // label name up to '='
            let mut label = String::new();
            let mut closed = false;
            for (_, c) in chars.by_ref() {
                match c {
                    '=' => break,
                    '}' if label.is_empty() => {
                        closed = true;
                        break;
                    }
                    ',' | ' ' if label.is_empty() => {}
                    c => label.push(c),
                }
            }
            if closed {
                let consumed = chars.peek().map_or(after_brace.len(), |(i, _)| *i);
                rest = &after_brace[consumed..];
                break;
            }
            if chars.next()?.1 != '"' {
                return None;
            }
            let mut value = String::new();
            loop {
                match chars.next()?.1 {
                    '\\' => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        c => value.push(c),
                    },
                    '"' => break,
                    c => value.push(c),
                }
            }
            labels.insert(label, value);
            match chars.peek()?.1 {
                ',' => {
                    chars.next();
                }
                '}' => {
                    chars.next();
                    let consumed = chars.peek().map_or(after_brace.len(), |(i, _)| *i);
                    rest = &after_brace[consumed..];
                    break;
                }
                _ => return None,
            }
        }
    }
    let mut fields = rest.split_whitespace();
    let value = match fields.next()? {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name,
        labels,
        value,
    })
}

/// The value of the series `name` with exactly these labels.
pub fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let wanted: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    samples
        .iter()
        .find(|s| s.name == name && s.labels == wanted)
        .map(|s| s.value)
}

/// Every series of `name` whose labels include these.
pub fn series<'a>(samples: &'a [Sample], name: &str, labels: &[(&str, &str)]) -> Vec<&'a Sample> {
    samples
        .iter()
        .filter(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect()
}

/// The `# TYPE` of a metric family.
pub fn metric_type<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines().find_map(|l| {
        let mut words = l.strip_prefix("# TYPE ")?.split_whitespace();
        (words.next()? == name).then_some(())?;
        words.next()
    })
}

/// Feeds `text` to `promtool check metrics` and fails on any finding.
pub fn promtool_check(text: &str) {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) if e.kind() == io::ErrorKind::NotFound => panic!(
            "promtool is not installed (Debian package `prometheus`, see scripts/install-deps); \
             it must check the metrics exposition"
        ),
        Err(e) => panic!("cannot run promtool: {e}"),
    };
    child
        .stdin
        .take()
        .expect("promtool stdin")
        .write_all(text.as_bytes())
        .expect("write metrics to promtool");
    let out = child.wait_with_output().expect("promtool output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let findings: Vec<&str> = stdout
        .lines()
        .chain(stderr.lines())
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert!(
        out.status.success() && findings.is_empty(),
        "promtool check metrics: {}\nfindings:\n{}\n--- exposition ---\n{text}",
        out.status,
        findings.join("\n")
    );
}

#[test]
fn samples_keep_labels_escapes_and_infinities() {
    let text = "# HELP x_total Things.\n# TYPE x_total counter\n\
                x_total{a=\"1\",b=\"q\\\"uote\\nline\"} 3\n\
                h_bucket{le=\"+Inf\"} +Inf\n\
                plain 2.5\n";
    let all = samples(text);
    assert_eq!(all.len(), 3, "{all:?}");
    assert_eq!(
        value(&all, "x_total", &[("a", "1"), ("b", "q\"uote\nline")]),
        Some(3.0)
    );
    assert_eq!(
        value(&all, "x_total", &[("a", "1")]),
        None,
        "labels must match exactly"
    );
    assert_eq!(series(&all, "x_total", &[("a", "1")]).len(), 1);
    assert_eq!(
        value(&all, "h_bucket", &[("le", "+Inf")]),
        Some(f64::INFINITY)
    );
    assert_eq!(value(&all, "plain", &[]), Some(2.5));
    assert_eq!(metric_type(text, "x_total"), Some("counter"));
}
