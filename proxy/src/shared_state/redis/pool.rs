//! Connections to Redis: a fixed number of multiplexed connections used in
//! turn, each reopened when it breaks, and the backend's health, which
//! paces reopening with exponential backoff so an outage costs a request a
//! fast `unavailable`, not a connect timeout. [`Health`] is pure state over
//! instants passed in, unit-tested without sleeping.
//!
//! Nothing runs while idle: a connection is reopened, in a background task
//! with the full connect timeout, by the first call that needs it once the
//! backoff has passed (and eagerly at start). Three timeouts in a row on a
//! connection drop it as dead.

use super::super::SharedError;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The first wait before reconnecting after a failed attempt.
pub const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// The longest wait between attempts.
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// What the backend looks like from here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Not yet tried.
    Starting,
    /// The last connect or command worked.
    Up,
    /// The last connect or command failed.
    Down,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Up => "up",
            State::Down => "down",
        }
    }
}

/// The backend's health and the reconnect schedule.
#[derive(Debug, Clone)]
pub struct Health {
    pub state: State,
    /// Since when `state` holds.
    pub since: Instant,
    /// Connect attempts that failed in a row.
    pub failed_connects: u32,
    pub last_error: Option<String>,
    /// No connect attempt before this.
    pub retry_at: Option<Instant>,
}

impl Health {
    pub fn new(now: Instant) -> Health {
        Health {
            state: State::Starting,
            since: now,
            failed_connects: 0,
            last_error: None,
            retry_at: None,
        }
    }

    /// Whether a connect may be attempted at `now`; if not, how long until
    /// one may.
    pub fn may_connect(&self, now: Instant) -> Result<(), Duration> {
        match self.retry_at {
            Some(at) if at > now => Err(at - now),
            _ => Ok(()),
        }
    }

    /// A connect worked: up, and the backoff starts over.
    pub fn connected(&mut self, now: Instant) {
        self.answered(now);
        self.failed_connects = 0;
        self.retry_at = None;
    }

    /// A command was answered: up (a backoff for connecting holds, as
    /// connects may still fail, e.g. at Redis's `maxclients`).
    pub fn answered(&mut self, now: Instant) {
        if self.state != State::Up {
            self.state = State::Up;
            self.since = now;
        }
    }

    /// A connect attempt failed: the next waits `BACKOFF_MIN × 2^(n-1)`,
    /// at most [`BACKOFF_MAX`], after the n-th failure in a row.
    pub fn connect_failed(&mut self, now: Instant, error: String) {
        self.failed_connects = self.failed_connects.saturating_add(1);
        let doublings = (self.failed_connects - 1).min(16);
        let wait = BACKOFF_MIN.saturating_mul(1 << doublings).min(BACKOFF_MAX);
        self.retry_at = Some(now + wait);
        self.down(now, error);
    }

    /// A command failed: down (reconnecting a broken connection is not
    /// delayed).
    pub fn down(&mut self, now: Instant, error: String) {
        if self.state != State::Down {
            self.state = State::Down;
            self.since = now;
        }
        self.last_error = Some(error);
    }
}

/// Connection settings for the pool.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub size: usize,
    pub connect_timeout: Duration,
}

/// Timeouts in a row, with no answer between them, after which a slot's
/// connection is taken for dead (a host gone without a reset leaves the
/// socket open for many minutes) and the backend for down.
pub const DEAD_AFTER_TIMEOUTS: u32 = 3;

/// A connection and the number that tells it from its successors.
type Numbered = (u64, MultiplexedConnection);

/// One connection slot.
#[derive(Default)]
struct Slot {
    conn: Mutex<Option<Numbered>>,
    /// Held by the task (re)opening this slot's connection.
    connecting: Arc<tokio::sync::Mutex<()>>,
    /// Timeouts in a row on the current connection.
    timeouts: AtomicU32,
}

impl Slot {
    fn current(&self) -> Option<Numbered> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// A connection lent for one command, and where it came from.
pub struct Lent {
    pub conn: MultiplexedConnection,
    slot: usize,
    number: u64,
}

/// What reopening needs, shared with the task that does it.
struct Shared {
    client: Client,
    connect_timeout: Duration,
    slots: Box<[Slot]>,
    health: Mutex<Health>,
    numbers: AtomicU64,
}

impl Shared {
    fn with_health<T>(&self, f: impl FnOnce(&mut Health) -> T) -> T {
        f(&mut self.health.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Open slot `index`'s connection, with the full connect timeout.
    async fn connect(&self, index: usize) {
        let timeout = self.connect_timeout;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(None);
        let attempt = self.client.get_multiplexed_async_connection_with_config(&config);
        let error = match tokio::time::timeout(timeout, attempt).await {
            Ok(Ok(conn)) => {
                let number = self.numbers.fetch_add(1, Ordering::Relaxed);
                let slot = &self.slots[index];
                slot.timeouts.store(0, Ordering::Relaxed);
                *slot.conn.lock().unwrap_or_else(|e| e.into_inner()) = Some((number, conn));
                self.with_health(|h| h.connected(Instant::now()));
                return;
            }
            Ok(Err(e)) => format!("cannot connect: {e}"),
            Err(_) => format!("cannot connect within {} ms", timeout.as_millis()),
        };
        tracing::warn!(%error, "shared state: redis connection failed");
        self.with_health(|h| h.connect_failed(Instant::now(), error));
    }
}

pub struct Pool {
    shared: Arc<Shared>,
    next: AtomicUsize,
}

impl Pool {
    pub fn new(client: Client, settings: PoolSettings) -> Pool {
        let slots = (0..settings.size.max(1)).map(|_| Slot::default()).collect();
        Pool {
            shared: Arc::new(Shared {
                client,
                connect_timeout: settings.connect_timeout,
                slots,
                health: Mutex::new(Health::new(Instant::now())),
                numbers: AtomicU64::new(0),
            }),
            next: AtomicUsize::new(0),
        }
    }

    pub fn health(&self) -> Health {
        self.shared.health.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// How many slots hold a connection.
    pub fn open(&self) -> usize {
        self.shared.slots.iter().filter(|s| s.current().is_some()).count()
    }

    pub fn size(&self) -> usize {
        self.shared.slots.len()
    }

    fn unavailable(&self, what: &str) -> (SharedError, &'static str) {
        let last = self.health().last_error.unwrap_or_default();
        (SharedError::Unavailable(format!("redis {what}: {last}")), "unavailable")
    }

    /// A connection: the next slot's, or another open one's if that slot
    /// is empty (its reopening is started meanwhile). While the backend is
    /// down calls fail at once; while it is starting or was up, a call
    /// waits up to `timeout` for the connect it started.
    pub async fn get(&self, timeout: Duration) -> Result<Lent, (SharedError, &'static str)> {
        let slots = &self.shared.slots;
        let index = self.next.fetch_add(1, Ordering::Relaxed) % slots.len();
        if let Some((number, conn)) = slots[index].current() {
            return Ok(Lent {
                conn,
                slot: index,
                number,
            });
        }
        self.reopen(index);
        let open = (1..slots.len())
            .map(|i| (index + i) % slots.len())
            .find_map(|i| slots[i].current().map(|c| (i, c)));
        if let Some((slot, (number, conn))) = open {
            return Ok(Lent { conn, slot, number });
        }
        if let Err(wait) = self.shared.with_health(|h| h.may_connect(Instant::now())) {
            return Err(self.unavailable(&format!("is down (reconnecting in {} ms)", wait.as_millis())));
        }
        if self.health().state == State::Down {
            return Err(self.unavailable("is down (reconnecting)"));
        }
        // Wait for the connect to end, then look again.
        let _ = tokio::time::timeout(timeout, slots[index].connecting.lock()).await;
        match slots[index].current() {
            Some((number, conn)) => Ok(Lent {
                conn,
                slot: index,
                number,
            }),
            None => Err(self.unavailable("is not connected")),
        }
    }

    /// Start reopening slot `index` in the background, unless that is
    /// under way or the backoff says not yet.
    fn reopen(&self, index: usize) {
        if self.shared.with_health(|h| h.may_connect(Instant::now())).is_err() {
            return;
        }
        let Ok(guard) = self.shared.slots[index].connecting.clone().try_lock_owned() else {
            return;
        };
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let _guard = guard;
            if shared.slots[index].current().is_none() {
                shared.connect(index).await;
            }
        });
    }

    /// A command on `lent` was answered.
    pub fn worked(&self, lent: &Lent) {
        self.shared.slots[lent.slot].timeouts.store(0, Ordering::Relaxed);
        if self.health().state != State::Up {
            self.shared.with_health(|h| h.answered(Instant::now()));
        }
    }

    /// A command on `lent` failed with `error`; `broken` drops its
    /// connection (the next call reopens it). So do
    /// [`DEAD_AFTER_TIMEOUTS`] timeouts in a row, which also start the
    /// backoff: the host may be gone.
    pub fn failed(&self, lent: &Lent, error: &str, broken: bool, timed_out: bool) {
        let slot = &self.shared.slots[lent.slot];
        let dead = timed_out && slot.timeouts.fetch_add(1, Ordering::Relaxed) + 1 >= DEAD_AFTER_TIMEOUTS;
        if broken || dead {
            let mut conn = slot.conn.lock().unwrap_or_else(|e| e.into_inner());
            // Not a newer connection opened since this one was lent.
            if conn.as_ref().is_some_and(|(number, _)| *number == lent.number) {
                *conn = None;
            }
        }
        let now = Instant::now();
        if dead {
            self.shared.with_health(|h| h.connect_failed(now, error.to_string()));
        } else {
            self.shared.with_health(|h| h.down(now, error.to_string()));
        }
    }

    /// Open every slot's connection (at start, so the first requests do
    /// not pay for it and the admin listener shows the state at once).
    pub async fn warm(&self) {
        for index in 0..self.shared.slots.len() {
            self.reopen(index);
        }
        for slot in self.shared.slots.iter() {
            let _ = slot.connecting.lock().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_and_resets_when_up() {
        let t0 = Instant::now();
        let mut h = Health::new(t0);
        assert_eq!(h.state, State::Starting);
        assert!(h.may_connect(t0).is_ok());
        h.connect_failed(t0, "refused".into());
        assert_eq!(h.state, State::Down);
        assert_eq!(h.may_connect(t0), Err(BACKOFF_MIN));
        assert!(h.may_connect(t0 + BACKOFF_MIN).is_ok());
        let mut waits = Vec::new();
        let mut now = t0;
        for _ in 0..8 {
            now += Duration::from_secs(10);
            h.connect_failed(now, "refused".into());
            waits.push(h.retry_at.map(|at| at - now));
        }
        let ms: Vec<u128> = waits.iter().map(|w| w.map_or(0, |w| w.as_millis())).collect();
        assert_eq!(ms, [200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
        now += Duration::from_secs(10);
        h.connected(now);
        assert_eq!(h.state, State::Up);
        assert_eq!(h.since, now);
        assert!(h.may_connect(now).is_ok());
        h.connect_failed(now, "refused".into());
        assert_eq!(h.retry_at, Some(now + BACKOFF_MIN), "backoff starts over");
    }

    #[test]
    fn a_failed_command_marks_down_without_delaying_a_reconnect() {
        let t0 = Instant::now();
        let mut h = Health::new(t0);
        h.connected(t0);
        let later = t0 + Duration::from_secs(3);
        h.down(later, "connection reset".into());
        assert_eq!((h.state, h.since), (State::Down, later));
        assert_eq!(h.last_error.as_deref(), Some("connection reset"));
        assert!(h.may_connect(later).is_ok());
        h.down(later + Duration::from_secs(1), "again".into());
        assert_eq!(h.since, later, "down since the first failure");
        h.connect_failed(later, "max clients".into());
        h.answered(later);
        assert_eq!(h.state, State::Up);
        assert!(
            h.may_connect(later).is_err(),
            "an answer elsewhere keeps the connect backoff"
        );
    }
}
