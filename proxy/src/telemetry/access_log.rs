//! The access log: one line per request, as `key=value` text or JSON,
//! written by a dedicated thread so a slow disk or pipe never stalls the
//! request path (lines are dropped and counted when the writer falls
//! behind). Values of credential headers never reach it.

use crate::config::{AccessLogConfig, AccessLogFormat, LogDestination};
use prometheus_client::metrics::counter::Counter;
use serde_json::{Map, Value};
use std::io::Write;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::SystemTime;

/// Lines buffered between the request path and the writer thread.
const QUEUE: usize = 8192;

/// What one access log line says about a request.
#[derive(Debug, Default)]
pub struct Entry<'a> {
    pub time: Option<SystemTime>,
    pub client: String,
    pub method: &'a str,
    pub authority: &'a str,
    pub path: &'a str,
    /// The path and query sent upstream, when it differs from `path`.
    pub forwarded_path: Option<&'a str>,
    pub protocol: &'a str,
    /// The TLS version, on a TLS connection.
    pub tls: Option<&'a str>,
    /// The client certificate's identity (SPIFFE ID, else first DNS SAN,
    /// else subject), under mutual TLS.
    pub peer: Option<&'a str>,
    /// Sidecar mode: `inbound` or `outbound`.
    pub direction: Option<&'a str>,
    /// Sidecar mode: where the client was connecting before redirection.
    pub original_dst: Option<String>,
    pub status: u16,
    pub duration_ms: f64,
    pub route: &'a str,
    pub cluster: &'a str,
    pub upstream: String,
    /// Tries sent upstream (0 when the request never got that far).
    pub attempts: u32,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub request_id: &'a str,
    pub trace_id: &'a str,
    /// Configured request headers, values already redacted.
    pub headers: Vec<(&'a str, &'a str)>,
}

/// A running access log.
#[derive(Debug)]
pub struct AccessLog {
    config: AccessLogConfig,
    lines: SyncSender<String>,
    dropped: Counter,
}

impl AccessLog {
    /// Open the destination and start the writer thread.
    pub fn start(config: AccessLogConfig, dropped: Counter) -> std::io::Result<AccessLog> {
        let out: Box<dyn Write + Send> = match &config.destination {
            LogDestination::Stdout => Box::new(std::io::stdout()),
            LogDestination::Stderr => Box::new(std::io::stderr()),
            LogDestination::File(path) => Box::new(std::fs::OpenOptions::new().create(true).append(true).open(path)?),
        };
        let (lines, rx) = sync_channel(QUEUE);
        std::thread::Builder::new()
            .name("sluice-access-log".into())
            .spawn(move || write_lines(rx, out))?;
        Ok(AccessLog { config, lines, dropped })
    }

    /// The request headers the log wants (lower-case names).
    pub fn headers(&self) -> &[String] {
        &self.config.headers
    }

    /// Whether a header's value must be replaced by `[redacted]`.
    pub fn redacts(&self, name: &str) -> bool {
        self.config.redact.iter().any(|r| r == name)
    }

    /// Queue one line.
    pub fn write(&self, entry: &Entry<'_>) {
        let line = match self.config.format {
            AccessLogFormat::Json => json_line(entry),
            AccessLogFormat::Text => text_line(entry),
        };
        match self.lines.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.dropped.inc();
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

fn write_lines(rx: Receiver<String>, out: Box<dyn Write + Send>) {
    let mut out = std::io::BufWriter::new(out);
    while let Ok(line) = rx.recv() {
        let _ = out.write_all(line.as_bytes());
        // Flush once the queue is empty: batches under load, prompt when idle.
        while let Ok(more) = rx.try_recv() {
            let _ = out.write_all(more.as_bytes());
        }
        let _ = out.flush();
    }
}

fn time_text(entry: &Entry<'_>) -> String {
    humantime::format_rfc3339_millis(entry.time.unwrap_or_else(SystemTime::now)).to_string()
}

fn json_line(e: &Entry<'_>) -> String {
    let mut m = Map::new();
    m.insert("time".into(), time_text(e).into());
    m.insert("client".into(), e.client.clone().into());
    m.insert("method".into(), e.method.into());
    m.insert("authority".into(), e.authority.into());
    m.insert("path".into(), e.path.into());
    if let Some(forwarded) = e.forwarded_path {
        m.insert("forwarded_path".into(), forwarded.into());
    }
    m.insert("protocol".into(), e.protocol.into());
    if let Some(tls) = e.tls {
        m.insert("tls".into(), tls.into());
    }
    if let Some(peer) = e.peer {
        m.insert("peer".into(), peer.into());
    }
    if let Some(direction) = e.direction {
        m.insert("direction".into(), direction.into());
    }
    if let Some(original) = &e.original_dst {
        m.insert("original_dst".into(), original.clone().into());
    }
    m.insert("status".into(), e.status.into());
    m.insert("duration_ms".into(), ((e.duration_ms * 1000.0).round() / 1000.0).into());
    m.insert("route".into(), e.route.into());
    m.insert("cluster".into(), e.cluster.into());
    m.insert("upstream".into(), e.upstream.clone().into());
    m.insert("attempts".into(), e.attempts.into());
    m.insert("bytes_in".into(), e.bytes_in.into());
    m.insert("bytes_out".into(), e.bytes_out.into());
    m.insert("request_id".into(), e.request_id.into());
    m.insert("trace_id".into(), e.trace_id.into());
    if !e.headers.is_empty() {
        let headers: Map<String, Value> = e.headers.iter().map(|(k, v)| (k.to_string(), (*v).into())).collect();
        m.insert("headers".into(), headers.into());
    }
    let mut line = Value::Object(m).to_string();
    line.push('\n');
    line
}

/// logfmt: `key=value`, values quoted (with `\"` and `\\` escaped) when they
/// contain spaces, quotes, `=` or control bytes; empty values as `""`.
fn text_line(e: &Entry<'_>) -> String {
    let mut line = String::with_capacity(256);
    let mut field = |key: &str, value: &str| {
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(key);
        line.push('=');
        let plain = !value.is_empty()
            && value
                .bytes()
                .all(|b| b > b' ' && b != b'"' && b != b'=' && b != b'\\' && b < 0x7f);
        if plain {
            line.push_str(value);
        } else {
            line.push('"');
            for c in value.chars() {
                match c {
                    '"' => line.push_str("\\\""),
                    '\\' => line.push_str("\\\\"),
                    c if c.is_control() => line.push_str(&format!("\\u{{{:x}}}", c as u32)),
                    c => line.push(c),
                }
            }
            line.push('"');
        }
    };
    field("time", &time_text(e));
    field("client", &e.client);
    field("method", e.method);
    field("authority", e.authority);
    field("path", e.path);
    if let Some(forwarded) = e.forwarded_path {
        field("forwarded_path", forwarded);
    }
    field("protocol", e.protocol);
    if let Some(tls) = e.tls {
        field("tls", tls);
    }
    if let Some(peer) = e.peer {
        field("peer", peer);
    }
    if let Some(direction) = e.direction {
        field("direction", direction);
    }
    if let Some(original) = &e.original_dst {
        field("original_dst", original);
    }
    field("status", &e.status.to_string());
    field("duration_ms", &format!("{:.3}", e.duration_ms));
    field("route", e.route);
    field("cluster", e.cluster);
    field("upstream", &e.upstream);
    field("attempts", &e.attempts.to_string());
    field("bytes_in", &e.bytes_in.to_string());
    field("bytes_out", &e.bytes_out.to_string());
    field("request_id", e.request_id);
    field("trace_id", e.trace_id);
    for (name, value) in &e.headers {
        field(&format!("header.{name}"), value);
    }
    line.push('\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry<'static> {
        Entry {
            time: Some(std::time::UNIX_EPOCH),
            client: "10.0.0.1:5000".into(),
            method: "GET",
            authority: "a.test",
            path: "/x?q=a b",
            protocol: "HTTP/1.1",
            tls: None,
            peer: None,
            status: 200,
            duration_ms: 1.23456,
            route: "api",
            upstream: "127.0.0.1:9000".into(),
            headers: vec![("user-agent", "curl/8 \"x\"")],
            ..Entry::default()
        }
    }

    #[test]
    fn text_is_logfmt_with_quoting() {
        let line = text_line(&entry());
        assert!(
            line.starts_with("time=1970-01-01T00:00:00.000Z client=10.0.0.1:5000 method=GET"),
            "{line}"
        );
        assert!(line.contains(r#"path="/x?q=a b""#), "{line}");
        assert!(line.contains(r#"cluster="""#), "{line}");
        assert!(line.contains(r#"header.user-agent="curl/8 \"x\"""#), "{line}");
        assert!(line.contains("duration_ms=1.235"), "{line}");
        assert!(line.ends_with('\n'));
    }

    #[test]
    fn json_parses_back() {
        let v: Value = serde_json::from_str(&json_line(&entry())).unwrap();
        assert_eq!(v["status"], 200);
        assert_eq!(v["duration_ms"], 1.235);
        assert_eq!(v["headers"]["user-agent"], "curl/8 \"x\"");
    }
}
