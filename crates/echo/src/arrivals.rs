//! When things reached the echo server, so a test can tell whether a
//! gateway forwarded a request at all, and whether it forwarded a body as it
//! arrived (streaming) or only once it was complete (buffering).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use bytes::Bytes;

/// When the most recent request's head and body bytes arrived.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BodyTimes {
    /// The request head was complete.
    pub head: Option<Instant>,
    /// The first body byte arrived.
    pub first_byte: Option<Instant>,
    /// The last body byte arrived.
    pub last_byte: Option<Instant>,
    /// Body data pieces (frames) the server read.
    pub pieces: u64,
}

/// Everything recorded, shared by every connection of one server.
#[derive(Debug, Default)]
pub(crate) struct Arrivals {
    accepted: Mutex<Vec<Instant>>,
    body_bytes: AtomicU64,
    last: Mutex<BodyTimes>,
    last_body: Mutex<Bytes>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain data: still whole whatever a panicking holder did.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Arrivals {
    pub(crate) fn connection_accepted(&self) {
        lock(&self.accepted).push(Instant::now());
    }

    pub(crate) fn accepted(&self) -> Vec<Instant> {
        lock(&self.accepted).clone()
    }

    pub(crate) fn request_head(&self) {
        *lock(&self.last) = BodyTimes {
            head: Some(Instant::now()),
            ..BodyTimes::default()
        };
    }

    pub(crate) fn body_piece(&self, len: usize) {
        if len == 0 {
            return;
        }
        self.body_bytes.fetch_add(len as u64, Ordering::SeqCst);
        let now = Instant::now();
        let mut last = lock(&self.last);
        last.first_byte.get_or_insert(now);
        last.last_byte = Some(now);
        last.pieces += 1;
    }

    pub(crate) fn body_complete(&self, body: &Bytes) {
        *lock(&self.last_body) = body.clone();
    }

    pub(crate) fn last_body(&self) -> Bytes {
        lock(&self.last_body).clone()
    }

    pub(crate) fn body_bytes(&self) -> u64 {
        self.body_bytes.load(Ordering::SeqCst)
    }

    pub(crate) fn last(&self) -> BodyTimes {
        *lock(&self.last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_pieces_are_timed_per_request() {
        let arrivals = Arrivals::default();
        arrivals.request_head();
        arrivals.body_piece(0);
        assert_eq!(arrivals.last().first_byte, None);
        arrivals.body_piece(3);
        arrivals.body_piece(4);
        let times = arrivals.last();
        assert!(times.head <= times.first_byte && times.first_byte <= times.last_byte);
        assert_eq!((times.pieces, arrivals.body_bytes()), (2, 7));
        arrivals.request_head();
        assert_eq!(arrivals.last().pieces, 0);
        assert_eq!(arrivals.body_bytes(), 7);
    }
}
