//! The backoff's rules, run once against one instance's own backoff and once against two
//! instances sharing a real `redis-server` (`scripts/install-deps --tests` installs it), with
//! every step alternating between the two: the same answers either way, so a guesser spread
//! over replicas meets what it would meet at one.

use std::net::{IpAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use postern_auth::backoff::{BackoffGate, BackoffPolicy, Scope, SharedBackoff};
use postern_limits::{SharedStore, StoreHealth, StoreOptions};

/// A `redis-server` on a free loopback port, without persistence, killed on drop.
struct Redis {
    port: u16,
    child: Option<Child>,
}

impl Redis {
    fn start() -> Redis {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (scripts/install-deps --tests installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Redis {
            port,
            child: Some(child),
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One gateway instance (local) or two sharing Redis, taking turns step by step.
struct Instances {
    gates: Vec<BackoffGate>,
    turn: AtomicUsize,
    stores: Vec<Arc<SharedStore>>,
    redis: Option<Redis>,
}

const HASHES: [&str; 2] = ["$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA", "$2y$05$x"];

impl Instances {
    fn local(policy: BackoffPolicy) -> Instances {
        Instances {
            gates: vec![BackoffGate::new(policy, None)],
            turn: AtomicUsize::new(0),
            stores: Vec::new(),
            redis: None,
        }
    }

    async fn shared(policy: BackoffPolicy) -> Instances {
        let redis = Redis::start();
        let mut gates = Vec::new();
        let mut stores = Vec::new();
        // The same accounts, listed in another order on each instance.
        for hashes in [HASHES, [HASHES[1], HASHES[0]]] {
            let store = SharedStore::connect(&redis.url(), options()).await.unwrap();
            assert_eq!(store.health(), StoreHealth::Healthy);
            let shared = SharedBackoff::new(Arc::clone(&store), "ops", hashes);
            gates.push(BackoffGate::new(policy, Some(shared)));
            stores.push(store);
        }
        Instances {
            gates,
            turn: AtomicUsize::new(0),
            stores,
            redis: Some(redis),
        }
    }

    /// The instance whose turn it is.
    fn next(&self) -> &BackoffGate {
        &self.gates[self.turn.fetch_add(1, Ordering::Relaxed) % self.gates.len()]
    }

    async fn fail(&self, ip: IpAddr, user: Option<&str>) {
        self.next().fail(ip, user).await;
    }

    async fn wait(&self, ip: IpAddr, user: Option<&str>) -> Option<(Duration, Scope)> {
        self.next().check(ip, user).await.wait
    }

    /// A user who got in: checked, then let through, on one instance.
    async fn succeed(&self, ip: IpAddr, user: &str) {
        let gate = self.next();
        let standing = gate.check(ip, Some(user)).await;
        gate.succeed(ip, user, &standing).await;
    }

    /// No instance's shared store erred: every answer above came from Redis.
    fn assert_shared_throughout(&self) {
        for store in &self.stores {
            assert_eq!(store.errors(), 0, "{:?}", store.health());
        }
    }
}

fn options() -> StoreOptions {
    StoreOptions {
        retry_every: Duration::from_millis(100),
        // Generous: the machine running the tests may be busy, and a slow answer would
        // silently fall back to the local backoff.
        timeout: Duration::from_millis(500),
        ..StoreOptions::default()
    }
}

/// The source's ceiling is 3 × SOURCE_CEILING = 12 failures.
fn policy() -> BackoffPolicy {
    BackoffPolicy {
        max_failures: 3,
        initial: Duration::from_secs(10),
        max: Duration::from_secs(80),
    }
}

const ADMIN: Option<&str> = Some("admin");

/// A wait of about `expected` (Redis counts in milliseconds, and time passes).
fn about(wait: Option<(Duration, Scope)>, expected: Duration, scope: Scope) -> bool {
    wait.is_some_and(|(w, s)| {
        s == scope && w <= expected && w + Duration::from_millis(500) > expected
    })
}

/// Runs `rules` against one local instance, then against two sharing Redis.
macro_rules! both {
    ($name:ident, $policy:expr, $rules:expr) => {
        mod $name {
            use super::*;

            #[tokio::test]
            async fn local() {
                let instances = Instances::local($policy);
                $rules(&instances).await;
            }

            #[tokio::test]
            async fn shared_by_two_instances() {
                let instances = Instances::shared($policy).await;
                $rules(&instances).await;
                instances.assert_shared_throughout();
            }
        }
    };
}

async fn engages_after_max_failures(b: &Instances) {
    let ip: IpAddr = "203.0.113.9".parse().unwrap();
    b.fail(ip, ADMIN).await;
    b.fail(ip, ADMIN).await;
    assert_eq!(b.wait(ip, ADMIN).await, None);
    assert_eq!(b.wait(ip, ADMIN).await, None, "on every instance");
    b.fail(ip, ADMIN).await;
    for _ in 0..2 {
        let wait = b.wait(ip, ADMIN).await;
        assert!(
            about(wait, Duration::from_secs(10), Scope::User),
            "{wait:?}"
        );
    }
}
both!(engages, policy(), engages_after_max_failures);

async fn doubles_up_to_the_cap(b: &Instances) {
    let ip: IpAddr = "203.0.113.10".parse().unwrap();
    for _ in 0..3 {
        b.fail(ip, ADMIN).await;
    }
    for window in [20, 40, 80, 80] {
        b.fail(ip, ADMIN).await;
        let wait = b.wait(ip, ADMIN).await;
        let expected = Duration::from_secs(window);
        assert!(
            about(wait, expected, Scope::User),
            "{wait:?}, not {expected:?}"
        );
    }
}
both!(doubles, policy(), doubles_up_to_the_cap);

async fn success_resets_and_sources_are_separate(b: &Instances) {
    let a: IpAddr = "198.51.100.1".parse().unwrap();
    let other: IpAddr = "198.51.100.2".parse().unwrap();
    for _ in 0..3 {
        b.fail(a, ADMIN).await;
    }
    assert!(b.wait(a, ADMIN).await.is_some());
    assert_eq!(b.wait(other, ADMIN).await, None);
    b.succeed(a, "admin").await;
    assert_eq!(b.wait(a, ADMIN).await, None);
    assert_eq!(b.wait(a, ADMIN).await, None, "forgiven on every instance");
    b.fail(a, ADMIN).await;
    b.fail(a, ADMIN).await;
    assert_eq!(b.wait(a, ADMIN).await, None, "the count starts again");
}
both!(
    success_resets,
    policy(),
    success_resets_and_sources_are_separate
);

async fn one_user_waiting_leaves_the_others_alone(b: &Instances) {
    let nat: IpAddr = "192.0.2.50".parse().unwrap();
    for _ in 0..5 {
        b.fail(nat, ADMIN).await;
    }
    assert!(b.wait(nat, ADMIN).await.is_some());
    assert_eq!(b.wait(nat, Some("bob")).await, None);
    assert_eq!(b.wait(nat, None).await, None, "the source is not waiting");
    b.fail(nat, Some("bob")).await;
    assert_eq!(
        b.wait(nat, Some("bob")).await,
        None,
        "bob has his own count"
    );
    // User names are compared exactly.
    assert_eq!(b.wait(nat, Some("Admin")).await, None);
}
both!(one_user, policy(), one_user_waiting_leaves_the_others_alone);

async fn many_names_from_one_source_meet_its_ceiling(b: &Instances) {
    let ip: IpAddr = "192.0.2.60".parse().unwrap();
    for i in 0..11 {
        b.fail(ip, Some(&format!("user{i}"))).await;
    }
    assert_eq!(b.wait(ip, Some("user11")).await, None);
    // The 12th failure (3 × SOURCE_CEILING) closes the whole source.
    b.fail(ip, Some("user11")).await;
    for user in [Some("user0"), Some("someone new"), None] {
        let wait = b.wait(ip, user).await;
        assert!(
            about(wait, Duration::from_secs(10), Scope::Source),
            "{user:?}: {wait:?}"
        );
    }
    let elsewhere: IpAddr = "192.0.2.61".parse().unwrap();
    assert_eq!(b.wait(elsewhere, Some("user0")).await, None);
}
both!(
    source_ceiling,
    policy(),
    many_names_from_one_source_meet_its_ceiling
);

async fn nameless_failures_count_towards_the_source_only(b: &Instances) {
    let ip: IpAddr = "192.0.2.70".parse().unwrap();
    for _ in 0..11 {
        b.fail(ip, None).await;
    }
    assert_eq!(b.wait(ip, ADMIN).await, None);
    b.fail(ip, None).await;
    assert!(b.wait(ip, ADMIN).await.is_some());
}
both!(
    nameless,
    policy(),
    nameless_failures_count_towards_the_source_only
);

async fn a_success_takes_its_own_failures_off_the_source_count(b: &Instances) {
    let ip: IpAddr = "192.0.2.80".parse().unwrap();
    // Admin mistypes twice and gets in, three times over: 6 failures, all forgiven.
    for _ in 0..3 {
        b.fail(ip, ADMIN).await;
        b.fail(ip, ADMIN).await;
        b.succeed(ip, "admin").await;
    }
    for i in 0..11 {
        b.fail(ip, Some(&format!("user{i}"))).await;
    }
    assert_eq!(b.wait(ip, None).await, None);
    b.fail(ip, Some("user11")).await;
    assert!(b.wait(ip, None).await.is_some());
    // A success of another user forgives only that user's failures.
    b.succeed(ip, "user0").await;
    assert!(b.wait(ip, None).await.is_some(), "11 failures still count");
}
both!(
    forgiveness,
    policy(),
    a_success_takes_its_own_failures_off_the_source_count
);

async fn ipv6_is_tracked_per_64_and_mapped_v4_as_v4(b: &Instances) {
    for i in 0..3 {
        let ip: IpAddr = format!("2001:db8:1:2::{i}").parse().unwrap();
        b.fail(ip, ADMIN).await;
    }
    let same_64: IpAddr = "2001:db8:1:2:ffff::1".parse().unwrap();
    let other_64: IpAddr = "2001:db8:1:3::1".parse().unwrap();
    assert!(b.wait(same_64, ADMIN).await.is_some());
    assert!(b.wait(other_64, ADMIN).await.is_none());
    let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
    for _ in 0..3 {
        b.fail(mapped, ADMIN).await;
    }
    assert!(b.wait("192.0.2.7".parse().unwrap(), ADMIN).await.is_some());
}
both!(ipv6, policy(), ipv6_is_tracked_per_64_and_mapped_v4_as_v4);

/// Short windows, waited out for real.
fn quick() -> BackoffPolicy {
    BackoffPolicy {
        max_failures: 3,
        initial: Duration::from_millis(200),
        max: Duration::from_millis(400),
    }
}

async fn released_when_the_window_ends_and_quiet_starts_afresh(b: &Instances) {
    let ip: IpAddr = "192.0.2.90".parse().unwrap();
    for _ in 0..3 {
        b.fail(ip, ADMIN).await;
    }
    assert!(b.wait(ip, ADMIN).await.is_some());
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(
        b.wait(ip, ADMIN).await,
        None,
        "released when the window ends"
    );
    // Quiet for longer than the longest wait after the window: forgiven.
    tokio::time::sleep(Duration::from_millis(450)).await;
    b.fail(ip, ADMIN).await;
    assert_eq!(b.wait(ip, ADMIN).await, None, "the count started afresh");
}
both!(
    release,
    quick(),
    released_when_the_window_ends_and_quiet_starts_afresh
);

#[tokio::test]
async fn a_stopped_store_falls_back_to_what_each_instance_saw() {
    let mut instances = Instances::shared(policy()).await;
    let ip: IpAddr = "192.0.2.100".parse().unwrap();
    // Five failures: the first instance saw three, the second two.
    for _ in 0..5 {
        instances.fail(ip, ADMIN).await;
    }
    assert!(instances.gates[1].check(ip, ADMIN).await.wait.is_some());
    instances.redis.as_mut().unwrap().stop();
    // The first answer after the stop already comes from the local backoff.
    let first = instances.gates[0].check(ip, ADMIN).await;
    assert!(first.wait.is_some(), "the first instance saw 3 failures");
    let second = instances.gates[1].check(ip, ADMIN).await;
    assert_eq!(second.wait, None, "the second saw 2");
    for store in &instances.stores {
        assert!(store.errors() >= 1);
        assert!(matches!(store.health(), StoreHealth::Degraded { .. }));
    }
}
