//! The route table `postern check` prints: what each listener serves, and each
//! route's match, target and policy, in the order routes are chosen.

use std::fmt::Write;

use postern_config::{ListenerKind, Route, RouteTarget};

use crate::snapshot::Snapshot;

pub fn render(snapshot: &Snapshot) -> String {
    let config = &snapshot.config;
    let mut out = String::new();
    out.push_str("listeners:\n");
    for l in &config.listeners {
        let what = match l.kind {
            ListenerKind::Tls => "tls",
            ListenerKind::Plain => "plain http",
            ListenerKind::RedirectHttps => "redirects to https",
        };
        let _ = writeln!(out, "  {:<10} {:<22} {what}", l.name, l.address.to_string());
    }
    if !config.tls.certificates.is_empty() {
        let _ = writeln!(
            out,
            "certificates (min TLS {}):",
            config.tls.min_version.as_str()
        );
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        for (c, loaded) in config
            .tls
            .certificates
            .iter()
            .zip(snapshot.certificates.loaded())
        {
            let names: Vec<String> = c.server_names.iter().map(|n| n.to_string()).collect();
            let days = (loaded.not_after - now) / 86_400;
            let _ = writeln!(
                out,
                "  {:<40} {} (expires in {days} days)",
                names.join(", "),
                c.display_path()
            );
        }
    }
    out.push_str("upstreams (servers: as written -> the addresses they resolve to):\n");
    for u in snapshot.upstreams() {
        let balance = match &u.pool.hash_key {
            Some(key) => format!("{} {key}", u.pool.balance.as_str()),
            None => u.pool.balance.as_str().to_string(),
        };
        let _ = writeln!(out, "  {} ({balance})", u.name);
        let servers = u.pool.current();
        for entry in &u.entries {
            let addresses: Vec<String> = servers
                .servers
                .iter()
                .filter(|s| s.url == entry.url)
                .map(|s| s.address.to_string())
                .collect();
            let _ = writeln!(out, "    {:<40} -> {}", entry.url, addresses.join(", "));
        }
    }
    out.push_str("routes (most specific host first, then longest prefix):\n");
    let mut routes: Vec<&Route> = config.routes.iter().collect();
    routes.sort_by_key(|r| {
        let host_rank = match &r.host {
            Some(h) if !h.is_wildcard() => 0,
            Some(_) => 1,
            None => 2,
        };
        let segments = r.path_prefix.split('/').filter(|s| !s.is_empty()).count();
        (
            host_rank,
            r.host.as_ref().map(|h| h.to_string()),
            std::cmp::Reverse(segments),
        )
    });
    // Wide enough for the longest route name, so columns stay aligned.
    let name_width = routes
        .iter()
        .map(|r| r.name.len())
        .max()
        .unwrap_or(4)
        .max(14);
    let _ = writeln!(
        out,
        "  {:<name_width$} {:<22} {:<18} {:<34} {:<24} LISTENERS",
        "NAME", "HOST", "PATH", "TARGET", "POLICY"
    );
    for r in routes {
        let host = r
            .host
            .as_ref()
            .map_or_else(|| "*".to_string(), |h| h.to_string());
        let target = match &r.target {
            RouteTarget::Upstream(u) => match config.upstream(u) {
                Some(up) if up.servers.len() > 1 => {
                    format!("{u} ({} servers)", up.servers.len())
                }
                Some(up) => format!("{u} {}", up.url),
                None => u.to_string(),
            },
            RouteTarget::Nothing => "-".to_string(),
            RouteTarget::Service(service) => format!("service {}", service.name()),
        };
        let path = if r.strip_prefix {
            format!("{} (stripped)", r.path_prefix)
        } else {
            r.path_prefix.clone()
        };
        let mut policy = Vec::new();
        if r.deny {
            policy.push("deny".to_string());
        }
        if let Some(allow) = &r.allow {
            policy.push(format!("allow {allow}"));
        }
        if !r.deny {
            for auth in &r.auth {
                let kind = config.authenticator(auth).map_or("?", |a| a.kind.name());
                policy.push(format!("{kind} {auth}"));
            }
            if r.require.is_some() {
                policy.push("require".to_string());
            }
        }
        if policy.is_empty() {
            policy.push("open".to_string());
        }
        let listeners = r
            .listeners
            .as_ref()
            .map_or_else(|| "all".to_string(), |l| l.join(","));
        let _ = writeln!(
            out,
            "  {:<name_width$} {:<22} {:<18} {:<34} {:<24} {listeners}",
            r.name,
            host,
            path,
            target,
            policy.join("; ")
        );
    }
    out
}
