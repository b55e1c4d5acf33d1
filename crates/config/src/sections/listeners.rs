//! `[[listeners]]`: the addresses the gateway binds, and what each serves.

use std::net::SocketAddr;

use super::Reader;
use crate::diag::Origin;
use crate::fields::Fields;
use crate::model::{Listener, ListenerKind};
use crate::tree::Table;

pub const LISTENER_KEYS: &[&str] = &["name", "address", "tls", "redirect_https"];

impl Reader<'_> {
    pub(super) fn listeners(&mut self, tables: &[(&Table, &Origin)]) -> Vec<Listener> {
        let mut listeners = Vec::new();
        for (i, (table, origin)) in tables.iter().enumerate() {
            let section = format!("[[listeners]] #{}", i + 1);
            let mut f = Fields::new(table, section, LISTENER_KEYS);
            let name = f.required_string("name", origin, "name = \"https\"", self.diags);
            let address =
                f.required_string("address", origin, "address = \"0.0.0.0:443\"", self.diags);
            let tls = f.boolean("tls", self.diags);
            let redirect = f.boolean("redirect_https", self.diags);
            f.finish(self.diags);

            let address = address.and_then(|(text, at)| match text.parse::<SocketAddr>() {
                Ok(a) => Some(a),
                Err(_) => {
                    self.diags.error_with_help(
                        at,
                        format!("listener address {text:?} is not IP:PORT"),
                        "write e.g. \"0.0.0.0:443\", \"127.0.0.1:9000\" or \"[::]:443\"",
                    );
                    None
                }
            });
            let kind = match (tls.map(|t| t.0), redirect) {
                (Some(true), Some((true, at))) => {
                    self.diags.error_with_help(
                        at,
                        "a listener cannot both terminate TLS and redirect to https",
                        "set `redirect_https = true` on the plain-HTTP listener only",
                    );
                    ListenerKind::Tls
                }
                (Some(true), _) => ListenerKind::Tls,
                (_, Some((true, _))) => ListenerKind::RedirectHttps,
                _ => ListenerKind::Plain,
            };
            if let (Some((name, _)), None) = (name, address) {
                self.refused.listeners.insert(name.to_string());
            }
            if let (Some((name, _)), Some(address)) = (name, address) {
                listeners.push(Listener {
                    name: name.to_string(),
                    address,
                    kind,
                    origin: (*origin).clone(),
                });
            }
        }
        listeners
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;

    #[test]
    fn listeners_are_read_in_order_with_their_kind() {
        let dir = Dir::new();
        let text = "[[listeners]]\nname = \"http\"\naddress = \"127.0.0.1:8080\"\nredirect_https = true\n\n[[tls.certificates]]\nserver_names = [\"localhost\"]\ncert = \"cert.pem\"\nkey = \"key.pem\"\n\n[[listeners]]\nname = \"https\"\naddress = \"[::1]:8443\"\ntls = true\n\n[[listeners]]\nname = \"ops\"\naddress = \"127.0.0.1:9180\"\n";
        dir.write("cert.pem", "x").write("key.pem", "x");
        let config = accepted(dir.load(text, &[]), "three listeners").config;
        let got: Vec<_> = config
            .listeners
            .iter()
            .map(|l| (l.name.as_str(), l.address.to_string(), l.kind))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "http",
                    "127.0.0.1:8080".to_string(),
                    ListenerKind::RedirectHttps
                ),
                ("https", "[::1]:8443".to_string(), ListenerKind::Tls),
                ("ops", "127.0.0.1:9180".to_string(), ListenerKind::Plain),
            ]
        );
        assert_eq!(
            config.listeners[1].origin.to_string(),
            dir.origin("gateway.toml", text, "[[listeners]]\nname = \"https\"")
        );
    }

    #[test]
    fn unknown_keys_in_listeners() {
        run_cases(vec![
            case(
                "[[listeners]], near",
                plain("[[listeners]]\nname = \"alt\"\naddress = \"127.0.0.1:9001\"\nadress = \"127.0.0.1:9001\"\n"),
                "adress =",
                "unknown key `adress` in [[listeners]] #1",
                Some("did you mean `address`?"),
            ),
            case(
                "[[listeners]], far",
                plain("[[listeners]]\nname = \"alt\"\naddress = \"127.0.0.1:9001\"\nproxy_protocol = true\n"),
                "proxy_protocol",
                "unknown key `proxy_protocol` in [[listeners]] #1",
                Some("name, address, tls, redirect_https"),
            ),
        ]);
    }

    #[test]
    fn listener_problems() {
        run_cases(vec![
            case(
                "address without a port",
                plain("[[listeners]]\nname = \"alt\"\naddress = \"127.0.0.1\"\n"),
                "address = |\"127.0.0.1\"",
                "listener address \"127.0.0.1\" is not IP:PORT",
                Some("\"0.0.0.0:443\""),
            ),
            case(
                "address with a host name",
                plain("[[listeners]]\nname = \"alt\"\naddress = \"localhost:80\"\n"),
                "address = |\"localhost:80\"",
                "listener address \"localhost:80\" is not IP:PORT",
                Some("\"127.0.0.1:9000\""),
            ),
            case(
                "listener without a name",
                plain("[[listeners]]\naddress = \"127.0.0.1:9001\"\n"),
                "|[[listeners]]",
                "[[listeners]] #1 needs `name`",
                Some("name = \"https\""),
            ),
            case(
                "listener without an address",
                plain("[[listeners]]\nname = \"alt\"\n"),
                "|[[listeners]]",
                "[[listeners]] #1 needs `address`",
                Some("address = \"0.0.0.0:443\""),
            ),
            case(
                "tls and redirect_https together",
                with_cert(
                    "[[listeners]]\nname = \"both\"\naddress = \"127.0.0.1:8444\"\ntls = true\nredirect_https = true\n",
                    "cert.pem",
                    "key.pem",
                ),
                "redirect_https = |true",
                "a listener cannot both terminate TLS and redirect to https",
                Some("plain-HTTP listener only"),
            )
            .with_files(&["cert.pem", "key.pem"]),
        ]);
    }
}
