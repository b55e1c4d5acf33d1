//! Two `Limiter`s standing for two gateway processes, against a real `redis-server`
//! (`scripts/install-deps --tests` installs it).

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use postern_limits::{Limiter, Policy, SharedStore, StoreHealth, StoreOptions};

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
        let mut redis = Redis { port, child: None };
        redis.restart();
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (scripts/install-deps --tests installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not listen on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes (`STOP`) or thaws (`CONT`) the server: a Redis that accepts but never answers.
    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let status = Command::new("kill").args([signal, &pid]).status().unwrap();
        assert!(status.success());
    }

    fn command(&self, args: &[&str]) -> String {
        let output = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

fn options() -> StoreOptions {
    StoreOptions {
        retry_every: Duration::from_millis(100),
        ..StoreOptions::default()
    }
}

fn policy(rate: &str) -> Policy {
    Policy::new("login", rate.parse().unwrap(), None).unwrap()
}

/// Two processes' limiters of the same policy, each with its own store connection.
async fn two_gateways(redis: &Redis, rate: &str) -> (Limiter, Limiter, Arc<SharedStore>) {
    let a = SharedStore::connect(&redis.url(), options()).await.unwrap();
    let b = SharedStore::connect(&redis.url(), options()).await.unwrap();
    assert_eq!(a.health(), StoreHealth::Healthy);
    (
        Limiter::new(policy(rate), 1000, Some(a.clone())),
        Limiter::new(policy(rate), 1000, Some(b)),
        a,
    )
}

/// How many of `tries` requests, alternating between the two gateways, are let through.
async fn allowed(a: &Limiter, b: &Limiter, key: &str, tries: usize) -> usize {
    let mut allowed = 0;
    for i in 0..tries {
        let limiter = if i % 2 == 0 { a } else { b };
        if limiter.check(key).await.is_allowed() {
            allowed += 1;
        }
    }
    allowed
}

async fn wait_for_health(store: &SharedStore, healthy: bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while (store.health() == StoreHealth::Healthy) != healthy {
        assert!(
            Instant::now() < deadline,
            "health stayed {:?}",
            store.health()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_sharing_redis_enforce_one_combined_limit() {
    let redis = Redis::start();
    let (a, b, store) = two_gateways(&redis, "5/h").await;
    assert_eq!(allowed(&a, &b, "203.0.113.7", 20).await, 5);
    // Another client has its own bucket.
    assert_eq!(allowed(&a, &b, "198.51.100.1", 20).await, 5);
    // Both gateways report the same refusal.
    let refused = b.check("203.0.113.7").await;
    assert!(!refused.is_allowed());
    assert_eq!(store.errors(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buckets_in_redis_expire_and_do_not_hold_the_client_key() {
    let redis = Redis::start();
    let (a, _b, _store) = two_gateways(&redis, "10/m").await;
    assert!(a.check("secret-api-key").await.is_allowed());
    let keys = redis.command(&["KEYS", "*"]);
    assert!(keys.starts_with("postern:limit:login:"), "{keys}");
    assert!(!keys.contains("secret-api-key"), "{keys}");
    // One request out of 10/m: the bucket is full again in 6 s, and goes then.
    let ttl: i64 = redis.command(&["PTTL", &keys]).parse().unwrap();
    assert!((5_000..=6_001).contains(&ttl), "PTTL {ttl}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_redis_falls_back_to_local_limits_and_recovers() {
    let mut redis = Redis::start();
    let (a, b, store) = two_gateways(&redis, "5/h").await;
    assert_eq!(allowed(&a, &b, "client", 4).await, 4);

    redis.stop();
    let started = Instant::now();
    // Every request is still decided, by each gateway's own limit of 5.
    assert_eq!(allowed(&a, &b, "client", 20).await, 10);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(store.errors() >= 1);
    let StoreHealth::Degraded { last_error, .. } = store.health() else {
        panic!("healthy with redis stopped");
    };
    assert!(!last_error.is_empty());

    redis.restart();
    wait_for_health(&store, true).await;
    // The restarted Redis is empty: the two gateways share one fresh bucket of 5 again.
    // (Wait for the second gateway's store too, through its decisions.)
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        redis.command(&["FLUSHALL"]);
        let counted = allowed(&a, &b, "client", 20).await;
        if counted == 5 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not shared again: {counted} allowed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_unreachable_at_start_connects_when_redis_comes_up() {
    let mut redis = Redis::start();
    redis.stop();
    let store = SharedStore::connect(&redis.url(), options()).await.unwrap();
    assert!(matches!(store.health(), StoreHealth::Degraded { .. }));
    let limiter = Limiter::new(policy("2/h"), 100, Some(store.clone()));
    assert!(limiter.check("client").await.is_allowed());
    redis.restart();
    wait_for_health(&store, true).await;
    limiter.check("client").await;
    assert_eq!(redis.command(&["DBSIZE"]), "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_through_two_gateways_get_exactly_the_burst() {
    let redis = Redis::start();
    // What is tested is atomicity in Redis. With the default 50 ms timeout, a
    // loaded machine (the whole suite on two cores) made some of 100 decisions
    // time out, and those rightly fall back to the local bucket: one more
    // allowed request, and a false failure. So this test waits longer.
    let patient = StoreOptions {
        timeout: Duration::from_secs(5),
        ..options()
    };
    let store_a = SharedStore::connect(&redis.url(), patient.clone())
        .await
        .unwrap();
    let store_b = SharedStore::connect(&redis.url(), patient).await.unwrap();
    let a = Limiter::new(policy("7/h"), 1000, Some(store_a.clone()));
    let b = Limiter::new(policy("7/h"), 1000, Some(store_b.clone()));
    let (a, b) = (Arc::new(a), Arc::new(b));
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let limiter = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move { limiter.check("client").await.is_allowed() })
        })
        .collect();
    let mut allowed = 0;
    for task in tasks {
        allowed += usize::from(task.await.unwrap());
    }
    assert_eq!(allowed, 7);
    assert_eq!(
        store_a.errors() + store_b.errors(),
        0,
        "every decision was Redis'"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_stops_answering_costs_one_timeout_then_nothing() {
    let redis = Redis::start();
    let (a, _b, store) = two_gateways(&redis, "3/h").await;
    redis.signal("-STOP");
    let started = Instant::now();
    assert!(a.check("client").await.is_allowed());
    let first = started.elapsed();
    // The 50 ms timeout, with room for a loaded machine; never Redis's own timeouts.
    assert!(first >= Duration::from_millis(50), "{first:?}");
    assert!(first < Duration::from_millis(1000), "{first:?}");
    let StoreHealth::Degraded { last_error, .. } = store.health() else {
        panic!("healthy while redis is frozen");
    };
    assert!(last_error.contains("no answer within"), "{last_error}");
    // Degraded: later decisions do not wait for Redis at all, and they are local ones.
    let started = Instant::now();
    assert_eq!(
        (0..10)
            .filter(|_| a.local().check("other").is_allowed())
            .count(),
        3
    );
    assert!(!a.check("other").await.is_allowed());
    assert!(
        started.elapsed() < Duration::from_millis(50),
        "{:?}",
        started.elapsed()
    );
    redis.signal("-CONT");
    wait_for_health(&store, true).await;
}
