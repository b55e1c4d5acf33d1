//! `[gateway]`: process-wide settings.

use std::path::PathBuf;

use postern_policy::source::Allowlist;

use super::Reader;
use crate::fields::{as_table, Fields};
use crate::model::*;
use crate::tree::Node;

pub const GATEWAY_KEYS: &[&str] = &[
    "threads",
    "trusted_proxies",
    "access_log",
    "max_header_size",
    "max_body_size",
    "request_buffer",
    "upgrade_socket",
    "client_header_timeout",
    "client_body_timeout",
    "keepalive_timeout",
    "shared_store",
    "resolver",
];

impl Reader<'_> {
    pub(super) fn gateway(&mut self, node: Option<&Node>) -> Gateway {
        let mut gateway = Gateway {
            threads: DEFAULT_THREADS,
            trusted_proxies: Allowlist::default(),
            access_log: AccessLog::Stdout,
            max_header_size: DEFAULT_MAX_HEADER_SIZE,
            max_body_size: None,
            request_buffer: DEFAULT_REQUEST_BUFFER,
            upgrade_socket: PathBuf::from(DEFAULT_UPGRADE_SOCKET),
            client_timeouts: ClientTimeouts::default(),
            shared_store: None,
            resolver: Vec::new(),
        };
        let Some(table) = as_table(node, "[gateway]", self.diags) else {
            return gateway;
        };
        let mut f = Fields::new(table, "[gateway]", GATEWAY_KEYS);
        if let Some((threads, origin)) = f.integer("threads", self.diags) {
            if (1..=1024).contains(&threads) {
                gateway.threads = threads as usize;
            } else {
                self.diags.error_with_help(
                    origin,
                    format!("`threads` = {threads} is out of range"),
                    "use 1 to 1024; one per CPU core is a good start",
                );
            }
        }
        if let Some((entries, _)) = f.strings("resolver", self.diags) {
            for (entry, at) in entries {
                match entry.parse::<std::net::SocketAddr>() {
                    Ok(address) => gateway.resolver.push(address),
                    Err(_) => self.diags.error_with_help(
                        at,
                        format!("`resolver` entry {entry:?} is not an IP address and port"),
                        "write e.g. resolver = [\"127.0.0.1:53\"]",
                    ),
                }
            }
        }
        if let Some((entries, _)) = f.strings("trusted_proxies", self.diags) {
            gateway.trusted_proxies = self.allowlist(&entries, "trusted_proxies");
        }
        if let Some(size) = f.size("max_header_size", self.diags) {
            if size < 1024 {
                self.diags.error_with_help(
                    &table.get("max_header_size").expect("read above").origin,
                    "`max_header_size` below 1KB would refuse ordinary browsers",
                    "use e.g. \"32KB\" (the default)",
                );
            }
            gateway.max_header_size = size;
        }
        gateway.max_body_size = f.size("max_body_size", self.diags);
        if let Some(size) = f.size("request_buffer", self.diags) {
            gateway.request_buffer = size;
        }
        if let Some((log, at)) = f.string("access_log", self.diags) {
            gateway.access_log = match log {
                "stdout" => AccessLog::Stdout,
                "off" => AccessLog::Off,
                "" => {
                    self.diags.error_with_help(
                        at,
                        "`access_log` is empty",
                        "use \"stdout\", \"off\" or a file path",
                    );
                    AccessLog::Stdout
                }
                path => AccessLog::File(self.base_dir.join(path)),
            };
        }
        if let Some((socket, at)) = f.string("upgrade_socket", self.diags) {
            if socket.is_empty() {
                self.diags.error_with_help(
                    at,
                    "`upgrade_socket` is empty",
                    format!("use a path such as {DEFAULT_UPGRADE_SOCKET:?} (the default)"),
                );
            } else {
                gateway.upgrade_socket = self.base_dir.join(socket);
            }
        }
        gateway.client_timeouts = ClientTimeouts {
            header: f.duration(
                "client_header_timeout",
                DEFAULT_CLIENT_HEADER_TIMEOUT,
                self.diags,
            ),
            body: f.duration(
                "client_body_timeout",
                DEFAULT_CLIENT_BODY_TIMEOUT,
                self.diags,
            ),
            keepalive: f.duration("keepalive_timeout", DEFAULT_KEEPALIVE_TIMEOUT, self.diags),
        };
        if let Some((url, at)) = f.string("shared_store", self.diags) {
            match StoreUrl::new(url) {
                Ok(url) => gateway.shared_store = Some(url),
                Err(message) => self.diags.error_with_help(
                    at,
                    message,
                    "write redis://[:PASSWORD@]HOST:PORT/DB (rediss:// for TLS); leave it out to limit per instance",
                ),
            }
        }
        f.finish(self.diags);
        gateway
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::testing::*;

    #[test]
    fn defaults_apply_when_the_section_is_absent() {
        let dir = Dir::new();
        let gateway = accepted(dir.load(&plain(""), &[]), "no [gateway]")
            .config
            .gateway;
        assert_eq!(gateway.threads, DEFAULT_THREADS);
        assert_eq!(gateway.max_header_size, DEFAULT_MAX_HEADER_SIZE);
        assert_eq!(gateway.max_body_size, None);
        assert_eq!(gateway.request_buffer, 64 * 1024);
        assert_eq!(gateway.access_log, AccessLog::Stdout);
        assert_eq!(
            gateway.upgrade_socket,
            PathBuf::from(DEFAULT_UPGRADE_SOCKET)
        );
        assert_eq!(gateway.client_timeouts, ClientTimeouts::default());
        assert_eq!(gateway.client_timeouts.header, Duration::from_secs(10));
        assert!(gateway.resolver.is_empty());
    }

    #[test]
    fn values_are_read_and_paths_taken_from_the_config_directory() {
        let dir = Dir::new();
        let text = plain(
            "[gateway]\nthreads = 8\ntrusted_proxies = [\"10.0.0.0/8\"]\naccess_log = \"logs/access.log\"\nmax_header_size = \"64KB\"\nmax_body_size = \"1MB\"\nrequest_buffer = \"0\"\nupgrade_socket = \"run/up.sock\"\nclient_header_timeout = \"5s\"\nclient_body_timeout = \"30s\"\nkeepalive_timeout = \"2m\"\nresolver = [\"127.0.0.1:5353\", \"[::1]:53\"]\n",
        );
        let gateway = accepted(dir.load(&text, &[]), "full [gateway]")
            .config
            .gateway;
        assert_eq!(gateway.threads, 8);
        assert!(gateway
            .trusted_proxies
            .contains("10.1.2.3".parse().unwrap()));
        assert_eq!(
            gateway.access_log,
            AccessLog::File(dir.path().join("logs/access.log"))
        );
        assert_eq!(gateway.max_header_size, 64 * 1024);
        assert_eq!(gateway.max_body_size, Some(1 << 20));
        assert_eq!(gateway.request_buffer, 0);
        assert_eq!(gateway.upgrade_socket, dir.path().join("run/up.sock"));
        assert_eq!(
            gateway.resolver,
            [
                "127.0.0.1:5353".parse().unwrap(),
                "[::1]:53".parse().unwrap()
            ]
        );
        assert_eq!(
            gateway.client_timeouts,
            ClientTimeouts {
                header: Duration::from_secs(5),
                body: Duration::from_secs(30),
                keepalive: Duration::from_secs(120),
            }
        );
    }

    #[test]
    fn unknown_keys_in_gateway() {
        run_cases(vec![
            case(
                "[gateway], near",
                plain("[gateway]\nthread = 2\n"),
                "thread = 2",
                "unknown key `thread` in [gateway]",
                Some("did you mean `threads`?"),
            ),
            case(
                "[gateway], far",
                plain("[gateway]\nworkers_per_core = 2\n"),
                "workers_per_core",
                "unknown key `workers_per_core` in [gateway]",
                Some("the keys of [gateway] are: threads, trusted_proxies"),
            ),
        ]);
    }

    #[test]
    fn bad_values_in_gateway() {
        run_cases(vec![
            case(
                "resolver without a port",
                plain("[gateway]\nresolver = [\"127.0.0.1\"]\n"),
                "|\"127.0.0.1\"",
                "`resolver` entry \"127.0.0.1\" is not an IP address and port",
                Some("resolver = [\"127.0.0.1:53\"]"),
            ),
            case(
                "threads = \"two\"",
                plain("[gateway]\nthreads = \"two\"\n"),
                "threads = |\"two\"",
                "`threads` in [gateway] must be an integer, not a string",
                None,
            ),
            case(
                "threads = 0",
                plain("[gateway]\nthreads = 0\n"),
                "threads = |0",
                "`threads` = 0 is out of range",
                Some("use 1 to 1024"),
            ),
            case(
                "threads = -1",
                plain("[gateway]\nthreads = -1\n"),
                "threads = |-1",
                "`threads` = -1 is out of range",
                Some("use 1 to 1024"),
            ),
            case(
                "threads = 1025",
                plain("[gateway]\nthreads = 1025\n"),
                "threads = |1025",
                "`threads` = 1025 is out of range",
                Some("one per CPU core"),
            ),
            case(
                "trusted_proxies: not a CIDR",
                plain("[gateway]\ntrusted_proxies = [\"not-a-cidr\"]\n"),
                "|\"not-a-cidr\"",
                "`trusted_proxies`: \"not-a-cidr\"",
                Some("write CIDRs such as \"10.0.0.0/8\""),
            ),
            case(
                "max_header_size below 1KB",
                plain("[gateway]\nmax_header_size = \"512\"\n"),
                "max_header_size = |\"512\"",
                "`max_header_size` below 1KB would refuse ordinary browsers",
                Some("\"32KB\" (the default)"),
            ),
            case(
                "access_log empty",
                plain("[gateway]\naccess_log = \"\"\n"),
                "access_log = |\"\"",
                "`access_log` is empty",
                Some("\"stdout\", \"off\" or a file path"),
            ),
            case(
                "upgrade_socket empty",
                plain("[gateway]\nupgrade_socket = \"\"\n"),
                "upgrade_socket = |\"\"",
                "`upgrade_socket` is empty",
                Some("\"/tmp/postern-upgrade.sock\" (the default)"),
            ),
            case(
                "keepalive_timeout of zero",
                plain("[gateway]\nkeepalive_timeout = \"0s\"\n"),
                "keepalive_timeout = |\"0s\"",
                "`keepalive_timeout` must be longer than zero",
                None,
            ),
        ]);
    }

    #[test]
    fn shared_store_is_read_and_never_shown_with_its_password() {
        let dir = Dir::new();
        let text = plain("[gateway]\nshared_store = \"redis://:s3cret@redis.internal:6379/0\"\n");
        let gateway = accepted(dir.load(&text, &[]), "shared_store")
            .config
            .gateway;
        let url = gateway.shared_store.expect("read");
        assert_eq!(url.secret(), "redis://:s3cret@redis.internal:6379/0");
        assert_eq!(url.shown(), "redis://***@redis.internal:6379/0");
        assert!(!format!("{url:?}").contains("s3cret"));

        let text = plain("[gateway]\nshared_store = \"http://:s3cret@redis.internal/0\"\n");
        let diags = rejected(dir.load(&text, &[]), "http:// store");
        assert_error_at(
            &diags,
            &dir.origin("gateway.toml", &text, "shared_store = |\""),
            "shared_store \"http://***@redis.internal/0\": expected a URL such as \"redis://127.0.0.1:6379/0\"",
            Some("leave it out to limit per instance"),
        );
        assert!(!diags.to_string().contains("s3cret"), "{diags}");
    }

    #[test]
    fn a_huge_integer_is_out_of_range_not_a_string() {
        let dir = Dir::new();
        let text = plain("[gateway]\nthreads = 99999999999999999999\n");
        let diags = rejected(dir.load(&text, &[]), "huge threads");
        assert_error_at(
            &diags,
            &dir.origin("gateway.toml", &text, "threads = |9"),
            "out of range",
            None,
        );
        assert!(!diags.to_string().contains("string"), "{diags}");
    }
}
