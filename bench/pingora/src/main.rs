//! The `pingora` target of bench/compare.py: a reverse proxy built on
//! Pingora that sends every request to one HTTP/1.1 upstream, over pooled
//! keep-alive connections, adding `X-Forwarded-For`.
//!
//! ```text
//! sluice-bench-pingora [--h1 ADDR] [--h2c ADDR] [--upstream ADDR] [--threads N]
//! ```
//!
//! Defaults (the ports of compare.py): `--h1 127.0.0.1:18100`,
//! `--h2c 127.0.0.1:18101`, `--upstream 127.0.0.1:19100`, one worker
//! thread. Each flag can also come from the environment (`PINGORA_H1`,
//! `PINGORA_H2C`, `PINGORA_UPSTREAM`, `PINGORA_THREADS`); a flag wins.
//!
//! Both addresses belong to one proxy service, so one worker thread serves
//! both. Pingora's h2c switch is per service: each connection on either
//! address is peeked for the HTTP/2 preface and served as h2c when it has
//! one, HTTP/1.1 otherwise. SIGTERM exits at once (no grace period); there
//! is no access log and no logger, so nothing is written per request.

use std::env;
use std::process::exit;

use async_trait::async_trait;
use pingora_core::Result;
use pingora_core::apps::HttpServerOptions;
use pingora_core::server::Server;
use pingora_core::server::configuration::ServerConf;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_http::RequestHeader;
use pingora_proxy::{ProxyHttp, Session, http_proxy_service};

/// Where to listen and where to send requests.
struct Args {
    h1: String,
    h2c: String,
    upstream: String,
    threads: usize,
}

impl Args {
    fn parse() -> Args {
        let from_env = |key: &str, default: &str| env::var(key).unwrap_or_else(|_| default.to_string());
        let mut args = Args {
            h1: from_env("PINGORA_H1", "127.0.0.1:18100"),
            h2c: from_env("PINGORA_H2C", "127.0.0.1:18101"),
            upstream: from_env("PINGORA_UPSTREAM", "127.0.0.1:19100"),
            threads: from_env("PINGORA_THREADS", "1")
                .parse()
                .unwrap_or_else(|_| usage("PINGORA_THREADS")),
        };
        let mut it = env::args().skip(1);
        while let Some(flag) = it.next() {
            let value = it.next().unwrap_or_else(|| usage(&flag));
            match flag.as_str() {
                "--h1" => args.h1 = value,
                "--h2c" => args.h2c = value,
                "--upstream" => args.upstream = value,
                "--threads" => args.threads = value.parse().unwrap_or_else(|_| usage(&flag)),
                _ => usage(&flag),
            }
        }
        args
    }
}

fn usage(what: &str) -> ! {
    eprintln!("bad or incomplete argument: {what}");
    eprintln!("usage: sluice-bench-pingora [--h1 ADDR] [--h2c ADDR] [--upstream ADDR] [--threads N]");
    exit(2)
}

/// Every request goes to the one upstream over cleartext HTTP/1.1.
struct Forward {
    upstream: String,
}

#[async_trait]
impl ProxyHttp for Forward {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        // The same address, no TLS and no SNI each time: Pingora keys its
        // connection pool on these, so upstream connections are reused.
        Ok(Box::new(HttpPeer::new(self.upstream.as_str(), false, String::new())))
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        _ctx: &mut (),
    ) -> Result<()> {
        // As nginx's $proxy_add_x_forwarded_for: the values received, joined
        // with ", ", then the client's address.
        let Some(client) = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip().to_string())
        else {
            return Ok(());
        };
        let mut chain: Vec<&str> = upstream_request
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        chain.push(&client);
        let value = chain.join(", ");
        upstream_request.insert_header("x-forwarded-for", value)
    }
}

fn main() {
    let args = Args::parse();
    let conf = ServerConf {
        threads: args.threads,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(0),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut proxy = http_proxy_service(
        &server.configuration,
        Forward {
            upstream: args.upstream,
        },
    );
    proxy.add_tcp(&args.h1);
    proxy.add_tcp(&args.h2c);
    if let Some(app) = proxy.app_logic_mut() {
        // HttpServerOptions is non-exhaustive: start from its default.
        let mut options = HttpServerOptions::default();
        options.h2c = true;
        app.server_options = Some(options);
    }
    server.add_service(proxy);
    server.run_forever();
}
