//! Body phases end to end: a request body rewritten by one filter
//! (`body-rewrite`, a test filter) and a response body by another (the
//! `card-mask` example), framing fixed by the host; the size limits (413 for
//! a request, the failure policy for a response, the whole body passed on
//! untouched when the filter fails open).

use crate::common::*;
use serde_json::Value;
use sha2::{Digest, Sha256};

const CARD: &str = "4111111111111111";

fn config(upstream: std::net::SocketAddr) -> String {
    format!(
        r#"[[clusters]]
name = "app"
endpoints = ["{upstream}"]

[[routes]]
name = "rewrite"
path_prefix = "/rewrite"
cluster = "app"
[[routes.filters]]
plugin = "card-mask"
[[routes.filters]]
plugin = "body-rewrite"
max_body_bytes = "64KiB"

[[routes]]
name = "open"
hosts = ["open.test"]
path_prefix = "/"
cluster = "app"
[[routes.filters]]
plugin = "card-mask"
max_body_bytes = "1KiB"
on_failure = "fail_open"

[[routes]]
name = "closed"
hosts = ["closed.test"]
path_prefix = "/"
cluster = "app"
[[routes.filters]]
plugin = "card-mask"
max_body_bytes = "1KiB"
"#
    )
}

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

/// A request body is read whole, upper-cased by `body-rewrite` (which also
/// sets a request header in its body phase) and sent upstream with its new
/// length; the response body, a JSON echo naming a card number in its path,
/// comes back with the number masked by `card-mask` and a matching
/// `content-length`. A body that says `deny` is answered by the filter; one
/// over `max_body_bytes` gets 413 and never reaches the upstream. A
/// response over a filter's limit follows its failure policy: fail-open
/// passes the whole body on untouched, fail-closed fails the response.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_phase_rewrite() {
    let up = Upstream::start("app").await;
    let proxy = start_binary(
        &config(up.addr),
        &[("card-mask", "card-mask"), ("body-rewrite", "body-rewrite")],
    );
    for (client, protocol) in [(h1(), "h1"), (h2(), "h2c")] {
        let url = format!("http://{}/rewrite/{CARD}", proxy.addr);
        let resp = client.post(&url).body("hello, body phase").send().await.unwrap();
        assert_eq!(resp.status(), 200, "{protocol}");
        let length: usize = resp.headers()["content-length"].to_str().unwrap().parse().unwrap();
        let text = resp.text().await.unwrap();
        assert_eq!(
            length,
            text.len(),
            "{protocol}: content-length fixed for the masked body"
        );
        assert!(
            !text.contains(CARD),
            "{protocol}: the card number reached the client: {text}"
        );
        assert!(text.contains("************1111"), "{protocol}: {text}");
        let echo: Value = serde_json::from_str(&text).expect("the masked body is still JSON");
        assert_eq!(echo["body_len"], 17, "{protocol}");
        assert_eq!(echo["body_sha256"], sha256_hex(b"HELLO, BODY PHASE"), "{protocol}");
        assert_eq!(echoed(&echo, "x-body-seen"), ["17"], "{protocol}");
        assert_eq!(echoed(&echo, "content-length"), ["17"], "{protocol}");

        // The filter answers in its body phase; the upstream is not asked.
        let resp = client.post(&url).body("please deny this").send().await.unwrap();
        assert_eq!(resp.status(), 422, "{protocol}");
        assert_eq!(resp.text().await.unwrap(), "denied by the body filter\n");

        // Over max_body_bytes (64 KiB): 413.
        let resp = client.post(&url).body(vec![b'a'; 65 * 1024]).send().await.unwrap();
        assert_eq!(resp.status(), 413, "{protocol}");
    }

    // A response over the 1 KiB limit: fail-open passes all 100 000 bytes
    // on, in order (what was read to decide put back in front);
    // fail-closed fails it.
    let client = h1();
    let url = format!("http://{}/pattern/100000", proxy.addr);
    let resp = client.get(&url).header("host", "open.test").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.bytes().await.unwrap();
    let expected: Vec<u8> = (0..100_000).map(sluice_test_support::upstream::pattern_byte).collect();
    assert_eq!(body.len(), expected.len());
    assert!(body == expected, "the passed-on body is not the upstream's, in order");
    let resp = client.get(&url).header("host", "closed.test").send().await.unwrap();
    assert_eq!(resp.status(), 500);
    // A small response on the same routes goes through the body phase.
    let resp = client
        .get(format!("http://{}/download/10", proxy.addr))
        .header("host", "closed.test")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.unwrap().len(), 10);
    let log = proxy.log.lock().unwrap().join("\n");
    assert!(
        log.contains("response body over its max_body_bytes"),
        "the failure was not logged"
    );
}
