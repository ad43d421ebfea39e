//! A filter that misbehaves on purpose, chosen by `mode`, in its request
//! phase. The sandbox tests run each mode under each failure policy.
//!
//! Modes that fail the call: `loop` (spins forever), `host_call_loop` (calls
//! the host forever), `allocate` (grows memory until the cap), `panic`,
//! `stack_overflow`, `huge_body` (a 100 MB local response). Modes where the
//! host refuses each call and the filter carries on, reporting the first
//! refusal in `x-hostile-error` on the request: `many_headers` (100,000
//! headers; how many the host accepted goes in `x-hostile-accepted`), `invalid_headers` (bad names and CR/LF/NUL values),
//! `shared_huge_keys` (1 MB shared-state keys, 1,000 times), `fill_shared`
//! (200 values of 64 KiB under fresh keys per request, every call within the
//! per-call limits: only the plugin's quota stops it; the writes the host
//! accepted go in `x-hostile-accepted`), `grow` (grows its memory by 12 MiB,
//! touching it, then carries on: instances that grew). `capabilities`
//! tries the filesystem, a socket to `target`, the environment and stdio,
//! and reports what it got in `x-cap-*` request headers. `log_flood` logs
//! 10,000 info lines of 4 KiB each, then carries on and sets
//! `x-hostile-logged: 10000` (the host's log budget must contain it).
//! Before failing, every mode first sets `x-hostile-touched: yes` on the
//! request, so tests can see that a fail-open skip discarded the filter's
//! changes.

use serde::Deserialize;
use sluice_sdk::{Action, Config, Filter, HostError, LocalResponse, LogLevel, Phases, Request, shared};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    mode: String,
    /// `capabilities` mode: an address to try to connect to.
    target: Option<String>,
}

pub struct Hostile {
    mode: String,
    target: String,
}

fn recurse(depth: u64, sink: &mut [u64; 64]) -> u64 {
    sink[(depth % 64) as usize] = depth;
    if depth == u64::MAX {
        return 0;
    }
    // Not a tail call: each level keeps its frame.
    recurse(depth + 1, sink) + sink[(depth % 7) as usize]
}

fn note(first: &mut Option<HostError>, result: Result<(), HostError>) {
    if let Err(e) = result {
        first.get_or_insert(e);
    }
}

impl Filter for Hostile {
    fn create(config: &Config) -> Result<Self, String> {
        let s: Settings = config.parse()?;
        Ok(Hostile {
            mode: s.mode,
            target: s.target.unwrap_or_else(|| "127.0.0.1:80".into()),
        })
    }

    fn phases(&self) -> Phases {
        Phases::REQUEST
    }

    fn on_request_headers(&mut self, req: &mut Request) -> Action {
        let _ = req.set_header("x-hostile-touched", "yes");
        let mut first: Option<HostError> = None;
        match self.mode.as_str() {
            "loop" => {
                let mut x: u64 = 1;
                loop {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
            }
            "host_call_loop" => loop {
                std::hint::black_box(req.header("host"));
            },
            "allocate" => {
                // Reserve without touching: memory grows fast, up to the cap.
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(Vec::with_capacity(1 << 20));
                    std::hint::black_box(&hoard);
                }
            }
            "panic" => panic!("hostile filter panics on purpose"),
            "stack_overflow" => {
                let mut sink = [0u64; 64];
                std::hint::black_box(recurse(0, &mut sink));
            }
            "huge_body" => {
                return Action::Respond(LocalResponse::new(200).body(vec![b'x'; 100 << 20]));
            }
            "many_headers" => {
                let mut accepted = 0;
                for i in 0..100_000 {
                    let r = req.append_header("x-flood", i.to_string());
                    accepted += usize::from(r.is_ok());
                    note(&mut first, r);
                }
                // The flood fills the request up to the limit: make room to
                // report what the host accepted.
                let _ = req.remove_header("x-flood");
                let _ = req.set_header("x-hostile-accepted", accepted.to_string());
            }
            "invalid_headers" => {
                for (name, value) in [
                    ("bad name", &b"v"[..]),
                    ("x-ok", &b"line\r\nInjected: yes"[..]),
                    ("x-nul", &b"a\0b"[..]),
                    ("", &b"v"[..]),
                    ("x-\u{7f}", &b"v"[..]),
                ] {
                    let r = req.set_header(name, value);
                    note(&mut first, r);
                }
            }
            "fill_shared" => {
                let value = vec![b'v'; 64 * 1024];
                let mut accepted = 0;
                for _ in 0..200 {
                    let key = format!("hog-{:016x}", sluice_sdk::random::next_u64());
                    let r = shared::set(&key, &value, None);
                    accepted += usize::from(r.is_ok());
                    note(&mut first, r);
                }
                let _ = req.set_header("x-hostile-accepted", accepted.to_string());
            }
            "grow" => {
                let hoard = vec![1u8; 12 << 20];
                let _ = req.set_header("x-hostile-grew", std::hint::black_box(&hoard).len().to_string());
            }
            "shared_huge_keys" => {
                let key = "k".repeat(1 << 20);
                for _ in 0..1000 {
                    let r = shared::set(&key, b"v", None);
                    note(&mut first, r);
                    let r = shared::increment(&key, 1, None).map(|_| ());
                    note(&mut first, r);
                }
            }
            "capabilities" => {
                let verdict = |allowed: bool| if allowed { "allowed" } else { "denied" };
                let fs = std::fs::read_dir("/").is_ok() || std::fs::read_to_string("/etc/hostname").is_ok();
                let net = std::net::TcpStream::connect(self.target.as_str()).is_ok();
                let _ = req.set_header("x-cap-fs", verdict(fs));
                let _ = req.set_header("x-cap-net", verdict(net));
                let _ = req.set_header("x-cap-env", std::env::vars().count().to_string());
                println!("HOSTILE-STDOUT-MARKER");
                eprintln!("HOSTILE-STDERR-MARKER");
            }
            "log_flood" => {
                const LINES: usize = 10_000;
                let mut line = "x".repeat(4096);
                for i in 0..LINES {
                    let n = i.to_string();
                    line.replace_range(..n.len(), &n);
                    sluice_sdk::log::log(LogLevel::Info, &line);
                }
                let _ = req.set_header("x-hostile-logged", LINES.to_string());
            }
            other => return Action::respond(500, format!("unknown mode {other}\n")),
        }
        if let Some(e) = first {
            let text = format!("{e:?}");
            let _ = req.set_header("x-hostile-error", text);
        }
        Action::Continue
    }
}

sluice_sdk::export_filter!(Hostile);
