//! The filter platform end to end: filter calls that yield instead of
//! holding a worker (this file), outbound calls from filters, remote
//! documents and body phases (`filter_platform/*.rs`).

#[path = "filter_platform/body.rs"]
mod body;
mod common;
#[path = "filter_platform/jwks.rs"]
mod jwks;
#[path = "filter_platform/outbound.rs"]
mod outbound;

use common::*;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Good requests that must complete inside one spinning request.
const GOOD_INSIDE: usize = 10;

/// With one worker thread, a filter spinning to a long CPU deadline (500 ms,
/// on every request) does not stall the worker: requests on another route
/// complete, over HTTP/1.1 and over an HTTP/2 connection opened before the
/// spinning began, *while* a spinning request is in flight (its start and
/// end bracket them), and the HTTP/2 connection is never sent GOAWAY.
/// Before filter calls yielded, the worker ran the spin to its deadline and
/// nothing else on it could finish in between.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn spinning_filter_does_not_block_worker() {
    let up = Upstream::start("app").await;
    let body = format!(
        "[[clusters]]\nname = \"app\"\nendpoints = [\"{}\"]\n\n\
         [[routes]]\nname = \"good\"\npath_prefix = \"/good\"\ncluster = \"app\"\n\n\
         [[routes]]\nname = \"spin\"\npath_prefix = \"/spin\"\ncluster = \"app\"\n\
         [[routes.filters]]\nplugin = \"hostile\"\ndeadline = \"500ms\"\nconfig = {{ mode = \"loop\" }}\n",
        up.addr
    );
    let proxy = start_binary_with(&body, &[("hostile", "hostile")], &["--threads", "1"]);

    // One HTTP/2 connection, opened now and used throughout.
    let tcp = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let (h2_client, connection) = h2::client::handshake(tcp).await.unwrap();
    let connection = tokio::spawn(connection);
    let h2_get = |mut client: h2::client::SendRequest<bytes::Bytes>| async move {
        let request = http::Request::get(format!("http://{}/good/h2", proxy.addr))
            .body(())
            .unwrap();
        client = client.ready().await.expect("h2 connection usable");
        let (response, _) = client.send_request(request, true).expect("h2 stream opened");
        response.await.expect("h2 response").status().as_u16()
    };
    assert_eq!(h2_get(h2_client.clone()).await, 200);
    let h1 = h1();
    let good = format!("http://{}/good/h1", proxy.addr);
    assert_eq!(h1.get(&good).send().await.unwrap().status(), 200);

    // Spinning requests one after another, each recording its interval.
    let spins: Arc<Mutex<Vec<(Instant, Instant, u16)>>> = Arc::default();
    let spinner = {
        let (spins, url) = (spins.clone(), format!("http://{}/spin", proxy.addr));
        tokio::spawn(async move {
            let client = common::h1();
            for _ in 0..4 {
                let started = Instant::now();
                let status = client.get(&url).send().await.unwrap().status().as_u16();
                spins.lock().unwrap().push((started, Instant::now(), status));
            }
        })
    };
    // Good requests meanwhile, alternating HTTP/1.1 and HTTP/2, each
    // recording its interval and protocol.
    let mut goods: Vec<(Instant, Instant, &str)> = Vec::new();
    while !spinner.is_finished() {
        let started = Instant::now();
        assert_eq!(h1.get(&good).send().await.unwrap().status(), 200);
        goods.push((started, Instant::now(), "h1"));
        let started = Instant::now();
        assert_eq!(h2_get(h2_client.clone()).await, 200);
        goods.push((started, Instant::now(), "h2"));
    }
    spinner.await.unwrap();

    let spins = spins.lock().unwrap().clone();
    assert_eq!(spins.len(), 4);
    for (started, ended, status) in &spins {
        assert_eq!(*status, 504, "the spinning filter hit its deadline");
        assert!(
            ended.duration_since(*started) >= Duration::from_millis(500),
            "a spin ended early"
        );
    }
    // Inside at least one spinning request's interval, good requests of
    // both protocols started and finished.
    let best = spins
        .iter()
        .map(|(s, e, _)| {
            let inside: Vec<&str> = goods
                .iter()
                .filter(|(gs, ge, _)| gs > s && ge < e)
                .map(|(_, _, p)| *p)
                .collect();
            (
                inside.iter().filter(|p| **p == "h1").count(),
                inside.iter().filter(|p| **p == "h2").count(),
            )
        })
        .max_by_key(|&(h1, h2)| h1.min(h2))
        .unwrap();
    assert!(
        best.0 >= GOOD_INSIDE && best.1 >= GOOD_INSIDE,
        "only {} HTTP/1.1 and {} HTTP/2 good requests completed inside one spinning request",
        best.0,
        best.1
    );
    // The HTTP/2 connection is still open: no GOAWAY, no error.
    assert!(
        !connection.is_finished(),
        "the HTTP/2 connection ended: {:?}",
        connection.await
    );
    assert_eq!(h2_get(h2_client).await, 200);
}
