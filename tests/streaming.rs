//! Bodies stream through the real `sluice` binary: a 50 MB upload and a
//! 50 MB download pass intact over HTTP/1.1 and HTTP/2, and the proxy's
//! peak memory grows by far less than the body size.

mod common;

use common::*;
use futures_util::StreamExt;
use serde_json::Value;
use sha2::{Digest, Sha256};

const SIZE: usize = 50 * 1024 * 1024;
/// Allowed growth of the proxy's peak RSS while moving 2 × 50 MB per
/// protocol: well under one body, so anything that buffers a body fails.
const MAX_GROWTH_KIB: u64 = 20 * 1024;

fn chunk(i: usize) -> Vec<u8> {
    (0..64 * 1024).map(|j| ((i * 31 + j) % 251) as u8).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_megabytes_each_way_with_bounded_memory() {
    let up = Upstream::start("bulk").await;
    let body = format!(
        "[[clusters]]\nname = \"bulk\"\nendpoints = [\"{}\"]\n\n[[routes]]\ncluster = \"bulk\"\ntimeout = \"60s\"\n[[routes.filters]]\nplugin = \"header-rewrite\"\nconfig.response = {{ set = {{ \"x-through\" = \"sluice\" }} }}\n",
        up.addr
    );
    let proxy = start_binary(&body, &[]);
    let pid = proxy.child.id();
    let url = |p: &str| format!("http://{}{p}", proxy.addr);

    // Warm up (first connection, instance pool, allocator) before the baseline.
    for client in [h1(), h2()] {
        let r = client.post(url("/warm")).body(vec![0u8; 1 << 20]).send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
    }
    let baseline = proc_status_kib(pid, "VmRSS");
    // Reset the peak (VmHWM) so start-up, e.g. compiling plugins, is not in it.
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("reset VmHWM");
    assert!(proc_status_kib(pid, "VmHWM") <= baseline + 1024);

    for client in [h1(), h2()] {
        // Upload: generated chunk by chunk, hashed on both ends.
        let mut expected = Sha256::new();
        let chunks: Vec<Vec<u8>> = (0..SIZE / (64 * 1024)).map(chunk).collect();
        for c in &chunks {
            expected.update(c);
        }
        let stream = futures_util::stream::iter(chunks.into_iter().map(Ok::<_, std::io::Error>));
        let resp = client
            .post(url("/upload"))
            .body(reqwest::Body::wrap_stream(stream))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["x-through"], "sluice");
        let echo: Value = resp.json().await.unwrap();
        assert_eq!(echo["body_len"], SIZE);
        let digest: String = expected.finalize().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(echo["body_sha256"], digest);

        // Download: counted as it arrives.
        let resp = client.get(url(&format!("/download/{SIZE}"))).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["x-through"], "sluice");
        let mut received = 0usize;
        let mut stream = resp.bytes_stream();
        while let Some(piece) = stream.next().await {
            let piece = piece.unwrap();
            assert!(piece.iter().all(|b| *b == b'x'));
            received += piece.len();
        }
        assert_eq!(received, SIZE);
    }

    let peak = proc_status_kib(pid, "VmHWM");
    let growth = peak.saturating_sub(baseline);
    println!("proxy RSS baseline {baseline} KiB, peak {peak} KiB, growth {growth} KiB");
    assert!(
        growth < MAX_GROWTH_KIB,
        "proxy peak RSS grew by {growth} KiB moving 200 MB (baseline {baseline} KiB)"
    );
}
