//! What a filter can make the host hold, end to end on the real binary: a
//! filter that fills shared state under fresh keys is stopped by its
//! plugin's quota (it sees `limit-exceeded`, the refusals are counted, the
//! proxy's memory stays bounded) while other routes — one with its own
//! shared-state filter — keep completing requests and lose nothing; a
//! filter that logs in a loop is held to its log budget.

mod common;

use common::*;
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Requests another route must complete while hostile ones are in flight.
const GOOD_DURING: usize = 20;

fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

async fn metrics(proxy: &BinaryProxy) -> String {
    let admin = proxy.admin.expect("admin listener");
    h1().get(format!("http://{admin}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics body")
}

/// Send hostile requests back to back on `path` (checking each with
/// `check`) while `good` paths are requested in turn; returns how many good
/// requests completed while a hostile one was in flight, and how many
/// hostile requests were sent.
async fn hostile_alongside<F>(
    proxy: &BinaryProxy,
    path: &str,
    good: &[&str],
    min_hostile: usize,
    check: F,
) -> (usize, usize)
where
    F: Fn(reqwest::Response) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> + Send + Sync + 'static,
{
    let in_flight = Arc::new(AtomicUsize::new(0));
    let enough = Arc::new(AtomicBool::new(false));
    let hostile = {
        let (in_flight, enough) = (in_flight.clone(), enough.clone());
        let url = format!("http://{}{path}", proxy.addr);
        tokio::spawn(async move {
            let client = h1();
            let mut sent = 0;
            while sent < min_hostile || !enough.load(Ordering::SeqCst) {
                in_flight.fetch_add(1, Ordering::SeqCst);
                let resp = client.get(&url).send().await.expect("hostile request");
                check(resp).await;
                in_flight.fetch_sub(1, Ordering::SeqCst);
                sent += 1;
            }
            sent
        })
    };
    let client = h1();
    let mut during = 0;
    let ceiling = Instant::now() + Duration::from_secs(60);
    'outer: while Instant::now() < ceiling {
        for path in good {
            let resp = client
                .get(format!("http://{}{path}", proxy.addr))
                .send()
                .await
                .expect("good route");
            assert_eq!(resp.status(), 200, "{path} failed while a hostile filter ran");
            resp.bytes().await.expect("good body");
            if in_flight.load(Ordering::SeqCst) > 0 {
                during += 1;
            }
            if during >= GOOD_DURING * good.len() {
                break 'outer;
            }
        }
    }
    enough.store(true, Ordering::SeqCst);
    let sent = hostile.await.expect("hostile requests");
    (during, sent)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_state_quota_contains_a_hog() {
    let up = Upstream::start("app").await;
    let body = format!(
        "[admin]\naddress = \"127.0.0.1:0\"\n\n[shared_state.plugins.hostile]\nmax_bytes = \"8MiB\"\n\n\
         [[clusters]]\nname = \"app\"\nendpoints = [\"{}\"]\n\n\
         [[routes]]\nname = \"hog\"\npath_prefix = \"/hog\"\ncluster = \"app\"\n[[routes.filters]]\nplugin = \"hostile\"\n\
         deadline = \"5s\"\nconfig = {{ mode = \"fill_shared\" }}\n\n\
         [[routes]]\nname = \"limited\"\npath_prefix = \"/limited\"\ncluster = \"app\"\n[[routes.filters]]\nplugin = \"rate-limit\"\n\
         config = {{ headers_on_allowed = true, limits = [{{ name = \"big\", requests = 1000000, per = \"365d\" }}] }}\n\n\
         [[routes]]\nname = \"plain\"\npath_prefix = \"/plain\"\ncluster = \"app\"\n",
        up.addr
    );
    let proxy = start_binary(&body, &[("hostile", "hostile")]);
    let pid = proxy.child.id();
    let client = h1();
    for _ in 0..20 {
        assert_eq!(
            client
                .get(format!("http://{}/plain", proxy.addr))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
    let baseline = proc_status_kib(pid, "VmRSS");

    let accepted = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let (a, r) = (accepted.clone(), refused.clone());
    // 12 requests try 2,400 writes of 64 KiB (150 MiB); the quota is 8 MiB.
    let (during, _) = hostile_alongside(&proxy, "/hog", &["/limited", "/plain"], 12, move |resp| {
        let (a, r) = (a.clone(), r.clone());
        Box::pin(async move {
            assert_eq!(resp.status(), 200);
            let echo: Value = resp.json().await.expect("echo");
            let n: usize = echoed(&echo, "x-hostile-accepted")[0].parse().expect("count");
            a.fetch_add(n, Ordering::SeqCst);
            if echoed(&echo, "x-hostile-error") == ["LimitExceeded"] {
                r.fetch_add(1, Ordering::SeqCst);
            }
        })
    })
    .await;
    assert!(
        during >= 2 * GOOD_DURING,
        "only {during} good requests completed alongside the hog"
    );

    // The filter saw the refusals; the host kept within the quota and counted.
    let accepted = accepted.load(Ordering::SeqCst);
    let each = 64 * 1024 + "hog-0123456789abcdef".len();
    assert!(accepted > 0 && accepted * each <= 8 << 20, "{accepted} writes accepted");
    assert!(
        refused.load(Ordering::SeqCst) > 0,
        "the filter never saw limit-exceeded"
    );
    let text = metrics(&proxy).await;
    let bytes = metric(&text, r#"sluice_shared_state_bytes{plugin="hostile"}"#);
    assert!(bytes > 0.0 && bytes <= (8 << 20) as f64, "{bytes} bytes held");
    assert_eq!(
        metric(&text, r#"sluice_shared_state_entries{plugin="hostile"}"#) as usize,
        accepted
    );
    assert!(metric(&text, r#"sluice_shared_state_refused_total{plugin="hostile"}"#) > 0.0);

    // Nothing was lost from rate-limit's state: its one bucket counted
    // every request the route served.
    let served = metric(
        &text,
        r#"sluice_requests_total{route="limited",cluster="app",status="2xx"}"#,
    ) as u64;
    let resp = client
        .get(format!("http://{}/limited", proxy.addr))
        .send()
        .await
        .unwrap();
    let header = resp.headers()["ratelimit"].to_str().unwrap().to_string();
    let remaining: u64 = header
        .split(';')
        .find_map(|p| p.trim().strip_prefix("r="))
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("no r= in {header}"));
    assert_eq!(remaining, 1_000_000 - served - 1, "{header}");

    // The proxy's memory stayed bounded by the quota, not by what was tried.
    let after = proc_status_kib(pid, "VmRSS");
    eprintln!(
        "hog: {accepted} writes of 64 KiB accepted, {} requests refused; RSS {baseline} KiB before, {after} KiB after",
        refused.load(Ordering::SeqCst)
    );
    assert!(
        after <= baseline + 8 * 1024 + 32 * 1024,
        "RSS {after} KiB, baseline {baseline} KiB"
    );
    assert!(proxy.log_lines_with("panicked").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filter_log_flood_is_contained() {
    let up = Upstream::start("app").await;
    let body = format!(
        "[admin]\naddress = \"127.0.0.1:0\"\n\n[[clusters]]\nname = \"app\"\nendpoints = [\"{}\"]\n\n\
         [[routes]]\nname = \"flood\"\npath_prefix = \"/flood\"\ncluster = \"app\"\n[[routes.filters]]\nplugin = \"hostile\"\n\
         deadline = \"5s\"\nconfig = {{ mode = \"log_flood\" }}\n\n\
         [[routes]]\nname = \"plain\"\npath_prefix = \"/plain\"\ncluster = \"app\"\n",
        up.addr
    );
    let proxy = start_binary(&body, &[("hostile", "hostile")]);
    let started = Instant::now();
    // At least 5 requests, each logging 10,000 lines of 4 KiB (40 MB).
    let (during, sent) = hostile_alongside(&proxy, "/flood", &["/plain"], 5, |resp| {
        Box::pin(async move {
            assert_eq!(resp.status(), 200);
            let echo: Value = resp.json().await.expect("echo");
            assert_eq!(echoed(&echo, "x-hostile-logged"), ["10000"]);
        })
    })
    .await;
    assert!(
        during >= GOOD_DURING,
        "only {during} requests completed alongside the flood"
    );
    let elapsed = started.elapsed().as_secs_f64();

    // What reached the log is the budget: a burst plus the rate over the
    // run, not 50,000 lines.
    let text = metrics(&proxy).await;
    let suppressed = metric(&text, r#"sluice_filter_log_suppressed_total{plugin="hostile"}"#);
    let written = proxy
        .log_lines_with("sluice::filter")
        .iter()
        .filter(|l| l.contains("hostile") && l.contains("xxxx"))
        .count() as f64;
    let budget =
        f64::from(sluice::limits::LOG_BURST) + f64::from(sluice::limits::LOG_LINES_PER_SECOND) * (elapsed + 1.0);
    assert!(
        written <= budget,
        "{written} lines written in {elapsed:.1} s; budget {budget}"
    );
    let tried = 10_000.0 * sent as f64;
    eprintln!("log flood: {tried} lines tried in {elapsed:.1} s, {written} written, {suppressed} suppressed");
    assert!(suppressed >= tried - budget, "{suppressed} of {tried} lines suppressed");
    // Admitted lines the process's writer dropped (stderr too slow) count too.
    let dropped = metric(&text, "sluice_log_dropped_lines_total");
    assert!(
        written + suppressed + dropped >= tried,
        "{written} written + {suppressed} suppressed + {dropped} dropped < {tried}"
    );
    // The suppression is reported in the log, with the plugin's name.
    let ceiling = Instant::now() + Duration::from_secs(30);
    while proxy
        .log_lines_with("filter log lines suppressed")
        .iter()
        .all(|l| !l.contains("hostile"))
    {
        assert!(Instant::now() < ceiling, "no suppression line logged");
        // A later line from the plugin (or the periodic check) reports it.
        let _ = h1().get(format!("http://{}/flood", proxy.addr)).send().await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(proxy.log_lines_with("panicked").is_empty());
}
