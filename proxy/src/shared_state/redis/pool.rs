//! Connections to Redis: a fixed number of multiplexed connections used in
//! turn, each reopened when it breaks, and the backend's health, which
//! paces reopening with exponential backoff so an outage costs a request a
//! fast `unavailable`, not a connect timeout. [`Health`] is pure state over
//! instants passed in, unit-tested without sleeping.
//!
//! Nothing runs while idle: a connection is reopened by the first call that
//! needs it once its backoff has passed (and once, eagerly, at start).

use super::super::SharedError;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client};
use std::sync::atomic::{AtomicUsize, Ordering};
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

    /// A connect or a command worked.
    pub fn up(&mut self, now: Instant) {
        if self.state != State::Up {
            self.state = State::Up;
            self.since = now;
        }
        self.failed_connects = 0;
        self.retry_at = None;
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

    /// A command failed (a broken connection is reopened at once; a slow
    /// one is kept).
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

/// One connection slot.
#[derive(Default)]
struct Slot {
    conn: Mutex<Option<MultiplexedConnection>>,
    /// Held while (re)opening this slot's connection.
    connecting: tokio::sync::Mutex<()>,
}

/// A connection lent for one command, and which slot it came from.
pub struct Lent {
    pub conn: MultiplexedConnection,
    slot: usize,
}

pub struct Pool {
    client: Client,
    settings: PoolSettings,
    slots: Box<[Slot]>,
    next: AtomicUsize,
    health: Arc<Mutex<Health>>,
}

impl Pool {
    pub fn new(client: Client, settings: PoolSettings) -> Pool {
        let slots = (0..settings.size.max(1)).map(|_| Slot::default()).collect();
        Pool {
            client,
            settings,
            slots,
            next: AtomicUsize::new(0),
            health: Arc::new(Mutex::new(Health::new(Instant::now()))),
        }
    }

    pub fn health(&self) -> Health {
        self.health.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn with_health<T>(&self, f: impl FnOnce(&mut Health) -> T) -> T {
        f(&mut self.health.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// How many slots hold a connection.
    pub fn open(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| s.conn.lock().unwrap_or_else(|e| e.into_inner()).is_some())
            .count()
    }

    pub fn size(&self) -> usize {
        self.slots.len()
    }

    /// The next slot's connection, opening it if needed within `timeout`;
    /// on failure also the metrics' reason: `unavailable` (down, waiting to
    /// reconnect) or `connection` (this attempt to connect failed).
    pub async fn get(&self, timeout: Duration) -> Result<Lent, (SharedError, &'static str)> {
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        let slot = &self.slots[index];
        if let Some(conn) = slot.conn.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            return Ok(Lent { conn, slot: index });
        }
        if let Err(wait) = self.with_health(|h| h.may_connect(Instant::now())) {
            let last = self.health().last_error.unwrap_or_default();
            let why = format!("redis is down (reconnecting in {} ms): {last}", wait.as_millis());
            return Err((SharedError::Unavailable(why), "unavailable"));
        }
        // One connect per slot at a time; others wait for its outcome
        // (within their own time).
        let started = Instant::now();
        let Ok(_connecting) = tokio::time::timeout(timeout, slot.connecting.lock()).await else {
            let why = "redis: still connecting".to_string();
            return Err((SharedError::Unavailable(why), "unavailable"));
        };
        // Another call may have opened it meanwhile, or just failed to.
        if let Some(conn) = slot.conn.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            return Ok(Lent { conn, slot: index });
        }
        if self.with_health(|h| h.may_connect(Instant::now())).is_err() {
            let last = self.health().last_error.unwrap_or_default();
            return Err((SharedError::Unavailable(format!("redis is down: {last}")), "unavailable"));
        }
        let timeout = timeout.saturating_sub(started.elapsed());
        let conn = self
            .connect(timeout.min(self.settings.connect_timeout))
            .await
            .map_err(|e| (e, "connection"))?;
        *slot.conn.lock().unwrap_or_else(|e| e.into_inner()) = Some(conn.clone());
        Ok(Lent { conn, slot: index })
    }

    async fn connect(&self, timeout: Duration) -> Result<MultiplexedConnection, SharedError> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(None);
        let attempt = self.client.get_multiplexed_async_connection_with_config(&config);
        let error = match tokio::time::timeout(timeout, attempt).await {
            Ok(Ok(conn)) => {
                self.with_health(|h| h.up(Instant::now()));
                return Ok(conn);
            }
            Ok(Err(e)) => format!("cannot connect: {e}"),
            Err(_) => format!("cannot connect within {} ms", timeout.as_millis()),
        };
        tracing::warn!(%error, "shared state: redis connection failed");
        self.with_health(|h| h.connect_failed(Instant::now(), error.clone()));
        Err(SharedError::Unavailable(format!("redis: {error}")))
    }

    /// A command on `lent` worked.
    pub fn worked(&self) {
        if self.with_health(|h| h.state != State::Up) {
            self.with_health(|h| h.up(Instant::now()));
        }
    }

    /// A command on `lent` failed with `error`; `broken` drops its
    /// connection so the next call on the slot reopens it.
    pub fn failed(&self, lent: &Lent, error: &str, broken: bool) {
        if broken {
            *self.slots[lent.slot].conn.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
        self.with_health(|h| h.down(Instant::now(), error.to_string()));
    }

    /// Open every slot's connection (at start, so the first requests do
    /// not pay for it and the admin listener shows the state at once).
    pub async fn warm(&self) {
        for _ in 0..self.slots.len() {
            if self.get(self.settings.connect_timeout).await.is_err() {
                return;
            }
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
        h.up(now);
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
        h.up(t0);
        let later = t0 + Duration::from_secs(3);
        h.down(later, "connection reset".into());
        assert_eq!((h.state, h.since), (State::Down, later));
        assert_eq!(h.last_error.as_deref(), Some("connection reset"));
        assert!(h.may_connect(later).is_ok());
        h.down(later + Duration::from_secs(1), "again".into());
        assert_eq!(h.since, later, "down since the first failure");
    }
}
