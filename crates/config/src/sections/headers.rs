//! Response headers the gateway sets or removes: `[tls] hsts` and a route's
//! `response_headers` / `remove_response_headers`. Parsed into `http` types
//! here, once, so a bad name or value is a `postern check` error at its
//! place and nothing is parsed per request.

use http::{HeaderName, HeaderValue};

use super::Reader;
use crate::diag::Origin;
use crate::tree::{Table, Value};

/// Headers that frame the message or belong to one connection: Pingora
/// writes them from the body it sends, so setting or removing them would
/// corrupt the response or the connection.
const FRAMING_HEADERS: &[&str] = &[
    "connection",
    "content-length",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

impl Reader<'_> {
    /// `hsts`: None for `""` (off).
    pub(super) fn hsts(&mut self, written: &str, origin: &Origin) -> Option<HeaderValue> {
        if written.is_empty() {
            return None;
        }
        let has_max_age = written.split(';').any(|directive| {
            let directive = directive.trim();
            directive.len() > "max-age=".len()
                && directive[.."max-age=".len()].eq_ignore_ascii_case("max-age=")
                && directive["max-age=".len()..]
                    .trim_matches('"')
                    .bytes()
                    .all(|b| b.is_ascii_digit())
        });
        match HeaderValue::from_str(written) {
            Ok(value) if has_max_age => Some(value),
            _ => {
                self.diags.error_with_help(
                    origin,
                    format!("`hsts` = {written:?} is not a Strict-Transport-Security value"),
                    "write \"max-age=31536000\" (seconds), optionally followed by \"; includeSubDomains\"; \"\" turns the header off",
                );
                None
            }
        }
    }

    /// `response_headers = { "X-Frame-Options" = "DENY" }`.
    pub(super) fn response_headers(&mut self, table: &Table) -> Vec<(HeaderName, HeaderValue)> {
        let mut headers: Vec<(HeaderName, HeaderValue)> = Vec::new();
        for (key, node) in &table.entries {
            let Some(name) = self.response_header_name(&key.name, &key.origin, "response_headers")
            else {
                continue;
            };
            let Value::String(written) = &node.value else {
                self.diags.error(
                    &node.origin,
                    format!(
                        "response_headers.{:?} must be a string, not {}",
                        key.name,
                        node.value.type_name()
                    ),
                );
                continue;
            };
            let Ok(value) = HeaderValue::from_str(written) else {
                self.diags.error_with_help(
                    &node.origin,
                    format!("response_headers.{:?} = {written:?} is not a header value", key.name),
                    "use visible ASCII characters and spaces only; no line breaks or control characters",
                );
                continue;
            };
            if headers.iter().any(|(seen, _)| *seen == name) {
                self.diags.error_with_help(
                    &key.origin,
                    format!("response_headers sets {:?} twice", key.name),
                    "header names are case-insensitive: keep one of them",
                );
                continue;
            }
            headers.push((name, value));
        }
        headers
    }

    /// `remove_response_headers = ["Server", "X-Powered-By"]`.
    pub(super) fn remove_response_headers(&mut self, names: &[(&str, &Origin)]) -> Vec<HeaderName> {
        let mut removed: Vec<HeaderName> = Vec::new();
        for (written, origin) in names {
            if let Some(name) =
                self.response_header_name(written, origin, "remove_response_headers")
            {
                if !removed.contains(&name) {
                    removed.push(name);
                }
            }
        }
        removed
    }

    fn response_header_name(
        &mut self,
        written: &str,
        origin: &Origin,
        key: &str,
    ) -> Option<HeaderName> {
        let Ok(name) = HeaderName::from_bytes(written.as_bytes()) else {
            self.diags.error_with_help(
                origin,
                format!("`{key}`: {written:?} is not a header name"),
                "use letters, digits and '-', as in \"X-Frame-Options\"",
            );
            return None;
        };
        if FRAMING_HEADERS.contains(&name.as_str()) {
            self.diags.error_with_help(
                origin,
                format!("`{key}`: {written:?} frames the response or belongs to the connection, so the gateway manages it"),
                format!("remove {written:?} from `{key}`; Postern writes it from the body it sends"),
            );
            return None;
        }
        Some(name)
    }
}

#[cfg(test)]
mod tests {
    use crate::model::DEFAULT_HSTS;
    use crate::testing::*;

    fn route(body: &str) -> String {
        plain(&format!(
            "[[routes]]\nname = \"r\"\nupstream = \"data\"\n{body}\n"
        ))
    }

    #[test]
    fn response_headers_are_read_lower_cased_in_order() {
        let dir = Dir::new();
        let text = route("response_headers = { \"X-Frame-Options\" = \"DENY\", \"Content-Security-Policy\" = \"default-src 'self'\" }\nremove_response_headers = [\"Server\", \"X-Powered-By\", \"server\"]");
        let routes = accepted(dir.load(&text, &[]), "headers").config.routes;
        let set: Vec<(&str, &str)> = routes[0]
            .response_headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.to_str().unwrap()))
            .collect();
        assert_eq!(
            set,
            [
                ("x-frame-options", "DENY"),
                ("content-security-policy", "default-src 'self'")
            ]
        );
        let removed: Vec<&str> = routes[0]
            .remove_response_headers
            .iter()
            .map(|n| n.as_str())
            .collect();
        assert_eq!(removed, ["server", "x-powered-by"]);
    }

    #[test]
    fn routes_change_no_headers_by_default() {
        let loaded = accepted(Dir::new().load(&route(""), &[]), "plain route");
        let r = &loaded.config.routes[0];
        assert!(r.response_headers.is_empty() && r.remove_response_headers.is_empty());
    }

    #[test]
    fn hsts_defaults_to_a_year_and_empty_turns_it_off() {
        let config = accepted(Dir::new().load(&plain(""), &[]), "default").config;
        assert_eq!(config.tls.hsts.unwrap(), DEFAULT_HSTS);
        let text = plain("[tls]\nhsts = \"max-age=600; includeSubDomains\"\n");
        let config = accepted(Dir::new().load(&text, &[]), "custom").config;
        assert_eq!(config.tls.hsts.unwrap(), "max-age=600; includeSubDomains");
        let config = accepted(Dir::new().load(&plain("[tls]\nhsts = \"\"\n"), &[]), "off").config;
        assert!(config.tls.hsts.is_none());
    }

    #[test]
    fn bad_header_settings() {
        run_cases(vec![
            case(
                "header name with a space",
                route("response_headers = { \"X Frame\" = \"DENY\" }"),
                "|\"X Frame\"",
                "`response_headers`: \"X Frame\" is not a header name",
                Some("\"X-Frame-Options\""),
            ),
            case(
                "header value with a line break",
                route("response_headers = { \"X-A\" = \"a\\nb\" }"),
                "\"X-A\" = |\"a\\nb\"",
                "response_headers.\"X-A\" = \"a\\nb\" is not a header value",
                Some("no line breaks"),
            ),
            case(
                "header value that is not a string",
                route("response_headers = { \"X-A\" = 1 }"),
                "\"X-A\" = |1",
                "response_headers.\"X-A\" must be a string, not an integer",
                None,
            ),
            case(
                "the same header twice",
                route("response_headers = { \"X-A\" = \"1\", \"x-a\" = \"2\" }"),
                "|\"x-a\"",
                "response_headers sets \"x-a\" twice",
                Some("case-insensitive"),
            ),
            case(
                "Content-Length set",
                route("response_headers = { \"Content-Length\" = \"5\" }"),
                "|\"Content-Length\"",
                "`response_headers`: \"Content-Length\" frames the response or belongs to the connection",
                Some("remove \"Content-Length\" from `response_headers`"),
            ),
            case(
                "Connection set",
                route("response_headers = { \"Connection\" = \"close\" }"),
                "|\"Connection\"",
                "`response_headers`: \"Connection\" frames the response",
                None,
            ),
            case(
                "Transfer-Encoding removed",
                route("remove_response_headers = [\"Server\", \"Transfer-Encoding\"]"),
                "|\"Transfer-Encoding\"",
                "`remove_response_headers`: \"Transfer-Encoding\" frames the response",
                Some("remove \"Transfer-Encoding\" from `remove_response_headers`"),
            ),
            case(
                "removed name that is not a header name",
                route("remove_response_headers = [\"X:Y\"]"),
                "|\"X:Y\"",
                "`remove_response_headers`: \"X:Y\" is not a header name",
                None,
            ),
            case(
                "response_headers that is not a table",
                route("response_headers = [\"X-A\"]"),
                "response_headers = |[",
                "`response_headers` in [[routes]] \"r\" must be a table",
                None,
            ),
            case(
                "hsts without max-age",
                plain("[tls]\nhsts = \"includeSubDomains\"\n"),
                "hsts = |\"includeSubDomains\"",
                "`hsts` = \"includeSubDomains\" is not a Strict-Transport-Security value",
                Some("\"max-age=31536000\""),
            ),
            case(
                "hsts with a line break",
                plain("[tls]\nhsts = \"max-age=1\\r\\nX: y\"\n"),
                "hsts = |\"max-age=1",
                "is not a Strict-Transport-Security value",
                Some("\"\" turns the header off"),
            ),
        ]);
    }
}
