//! Hot reload through the real proxy: plugin files replaced under load
//! (editor renames, in-place copies, corrupt and truncated files), a
//! Kubernetes ConfigMap-style `..data` symlink swap, deleted files, new
//! files, bad config files and SIGHUP.

mod common;

use common::*;
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

fn v1() -> Vec<u8> {
    std::fs::read(test_filter("version-1")).unwrap()
}
fn v2() -> Vec<u8> {
    std::fs::read(test_filter("version-2")).unwrap()
}

/// Write like an editor: a temporary file renamed over the target.
fn write_renamed(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("wasm.swp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Poll `probe` every 10 ms until it returns true or `limit` passes.
async fn wait_until<F, Fut>(limit: Duration, mut probe: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while started.elapsed() < limit {
        if probe().await {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

async fn version(client: &reqwest::Client, url: &str) -> Option<String> {
    let r = client.get(url).send().await.ok()?;
    r.headers()
        .get("x-filter-version")
        .map(|v| v.to_str().unwrap_or("?").to_string())
}

fn route_with(plugin: &str, upstream: std::net::SocketAddr) -> String {
    format!(
        "[admin]\naddress = \"127.0.0.1:0\"\n\n[[clusters]]\nname = \"app\"\nendpoints = [\"{upstream}\"]\n\n[[routes]]\nname = \"main\"\ncluster = \"app\"\n[[routes.filters]]\nplugin = \"{plugin}\"\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reload_under_load_loses_nothing() {
    let up = Upstream::start("app").await;
    let proxy = start(&route_with("versioned", up.addr), &[("version-1", "versioned")]).await;
    let plugin = proxy.work.dir.path().join("plugins/versioned.wasm");
    let url = proxy.url("/");
    let stop = Arc::new(AtomicBool::new(false));

    // Steady load: 4 HTTP/1.1 and 4 HTTP/2 loops.
    let mut workers = Vec::new();
    for i in 0..8 {
        let client = if i % 2 == 0 { h1() } else { h2() };
        let (url, stop) = (url.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let (mut ok, mut failures, mut seen) = (0u32, Vec::new(), std::collections::BTreeSet::new());
            while !stop.load(Ordering::Relaxed) {
                match client.get(&url).send().await {
                    Ok(r) if r.status() == 200 => {
                        let v = r
                            .headers()
                            .get("x-filter-version")
                            .map(|v| v.to_str().unwrap().to_string());
                        match v.as_deref() {
                            Some("1") | Some("2") => {
                                seen.insert(v.unwrap());
                                ok += 1;
                            }
                            other => failures.push(format!("bad version {other:?}")),
                        }
                        let _ = r.bytes().await;
                    }
                    Ok(r) => failures.push(format!("status {}", r.status())),
                    Err(e) => failures.push(format!("error {e}")),
                }
            }
            (ok, failures, seen)
        }));
    }

    let (good1, good2) = (v1(), v2());
    let truncated = &good2[..good2.len() / 2];
    let mut swaps = 0;
    for i in 0..24 {
        let next = if i % 2 == 0 { &good2 } else { &good1 };
        if i % 3 == 0 {
            std::fs::write(&plugin, next).unwrap(); // in place, like cp
        } else {
            write_renamed(&plugin, next);
        }
        swaps += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
        if i % 5 == 2 {
            write_renamed(&plugin, b"\0asm\x0d\0\x01\0 definitely not a component");
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        if i % 5 == 4 {
            std::fs::write(&plugin, truncated).unwrap();
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }
    // The last valid version (v2 after a v1) must serve within 1 s of its write.
    write_renamed(&plugin, &good1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    write_renamed(&plugin, &good2);
    let written = Instant::now();
    let client = h1();
    let took = wait_until(Duration::from_secs(5), || async {
        version(&client, &url).await.as_deref() == Some("2")
    })
    .await;
    let took = took.map(|_| written.elapsed());
    stop.store(true, Ordering::Relaxed);

    let mut total = 0;
    let mut versions = std::collections::BTreeSet::new();
    for w in workers {
        let (ok, failures, seen) = w.await.unwrap();
        assert!(failures.is_empty(), "failed requests during reload: {failures:?}");
        total += ok;
        versions.extend(seen);
    }
    println!("{total} requests, {swaps} swaps, last version served {took:?} after its write");
    assert!(total > 200, "too little load to mean anything: {total}");
    assert_eq!(versions.into_iter().collect::<Vec<_>>(), ["1", "2"]);
    assert!(
        took.is_some_and(|t| t < Duration::from_secs(1)),
        "last version served after {took:?}"
    );
    assert!(
        proxy.running.metrics.reloads("success") >= 20,
        "reloads: {}",
        proxy.running.metrics.encode()
    );
    // Corrupt and truncated files were reported (and never served: every
    // response above carried a valid version).
    assert!(
        proxy.running.metrics.reloads("failure") >= 5,
        "bad files not counted: {}",
        proxy.running.metrics.encode()
    );
}

#[tokio::test]
async fn configmap_symlink_swap() {
    let up = Upstream::start("app").await;
    // Lay the plugins directory out like a mounted ConfigMap:
    //   versioned.wasm -> ..data/versioned.wasm, ..data -> ..2026_11_25_1
    let work = Workdir::new(&route_with("versioned", up.addr), &[]);
    let plugins = work.dir.path().join("plugins");
    std::fs::create_dir(plugins.join("..2026_11_25_1")).unwrap();
    std::fs::write(plugins.join("..2026_11_25_1/versioned.wasm"), v1()).unwrap();
    std::os::unix::fs::symlink("..2026_11_25_1", plugins.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/versioned.wasm", plugins.join("versioned.wasm")).unwrap();
    let proxy = start_workdir(work).await;
    let client = h1();
    let url = proxy.url("/");
    assert_eq!(version(&client, &url).await.as_deref(), Some("1"));

    // The kubelet's update: new files in a fresh dir, ..data_tmp pointing at
    // it, renamed over ..data in one step.
    std::fs::create_dir(plugins.join("..2026_11_25_2")).unwrap();
    std::fs::write(plugins.join("..2026_11_25_2/versioned.wasm"), v2()).unwrap();
    std::os::unix::fs::symlink("..2026_11_25_2", plugins.join("..data_tmp")).unwrap();
    std::fs::rename(plugins.join("..data_tmp"), plugins.join("..data")).unwrap();
    std::fs::remove_dir_all(plugins.join("..2026_11_25_1")).unwrap();
    let took = wait_until(Duration::from_secs(5), || async {
        version(&client, &url).await.as_deref() == Some("2")
    })
    .await;
    assert!(took.is_some(), "symlink swap not picked up");
    assert_eq!(proxy.running.current.load().plugins.errors.len(), 0);
}

#[tokio::test]
async fn deleted_plugin_keeps_last_good_version_and_is_reported() {
    let up = Upstream::start("app").await;
    let proxy = start(&route_with("versioned", up.addr), &[("version-1", "versioned")]).await;
    std::fs::remove_file(proxy.work.dir.path().join("plugins/versioned.wasm")).unwrap();
    let admin = proxy.running.admin.unwrap();
    let client = h1();
    let reported = wait_until(Duration::from_secs(5), || async {
        let Ok(r) = client.get(format!("http://{admin}/plugins")).send().await else {
            return false;
        };
        let body: Value = r.json().await.unwrap_or_default();
        body["plugins"].as_array().is_some_and(|ps| {
            ps.iter()
                .any(|p| p["name"] == "versioned" && p["last_error"].as_str().is_some_and(|e| e.contains("removed")))
        })
    })
    .await;
    assert!(reported.is_some(), "deletion not reported on /plugins");
    for _ in 0..5 {
        assert_eq!(version(&client, &proxy.url("/")).await.as_deref(), Some("1"));
    }
}

#[tokio::test]
async fn new_plugin_file_is_available_to_a_route_that_names_it() {
    let up = Upstream::start("app").await;
    let proxy = start(&route_with("versioned", up.addr), &[("version-1", "versioned")]).await;
    // The config now names a plugin that is not there yet: rejected whole.
    let config = proxy.work.config_path();
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("plugin = \"versioned\"", "plugin = \"newcomer\"")).unwrap();
    let metrics = proxy.running.metrics.clone();
    let rejected = wait_until(Duration::from_secs(5), || {
        let m = metrics.clone();
        async move { m.reloads("failure") >= 1 }
    })
    .await;
    assert!(rejected.is_some(), "config naming a missing plugin was not rejected");
    let client = h1();
    assert_eq!(
        version(&client, &proxy.url("/")).await.as_deref(),
        Some("1"),
        "old generation must keep serving"
    );
    // Dropping the file in completes it.
    std::fs::write(proxy.work.dir.path().join("plugins/newcomer.wasm"), v2()).unwrap();
    let took = wait_until(Duration::from_secs(5), || async {
        version(&client, &proxy.url("/")).await.as_deref() == Some("2")
    })
    .await;
    assert!(took.is_some(), "new plugin not picked up");
}

#[tokio::test]
async fn bad_config_is_rejected_and_the_running_generation_keeps_serving() {
    let up = Upstream::start("app").await;
    let proxy = start(&route_with("versioned", up.addr), &[("version-1", "versioned")]).await;
    let config = proxy.work.config_path();
    let good = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, good.replace("cluster = \"app\"", "cluster = \"nowhere\"")).unwrap();
    let metrics = proxy.running.metrics.clone();
    let rejected = wait_until(Duration::from_secs(5), || {
        let m = metrics.clone();
        async move { m.reloads("failure") >= 1 }
    })
    .await;
    assert!(rejected.is_some());
    let generation = proxy.running.current.load().id;
    let client = h2();
    assert_eq!(version(&client, &proxy.url("/")).await.as_deref(), Some("1"));
    // A good edit after the bad one is applied.
    std::fs::write(
        &config,
        good.replace("name = \"main\"", "name = \"main\"\npath_prefix = \"/v\""),
    )
    .unwrap();
    let applied = wait_until(Duration::from_secs(5), || async {
        client
            .get(proxy.url("/other"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 404)
    })
    .await;
    assert!(applied.is_some(), "good config after a bad one not applied");
    assert!(proxy.running.current.load().id > generation);
    assert_eq!(version(&client, &proxy.url("/v")).await.as_deref(), Some("1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_config() {
    let up = Upstream::start("app").await;
    let body = format!("[reload]\nwatch = false\n\n{}", route_with("versioned", up.addr));
    let proxy = start_binary(&body, &[("version-1", "versioned")]);
    let url = format!("http://{}/", proxy.addr);
    let client = h1();
    assert_eq!(version(&client, &url).await.as_deref(), Some("1"));
    // With watching off, a changed plugin waits for SIGHUP.
    std::fs::write(proxy.work.dir.path().join("plugins/versioned.wasm"), v2()).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        version(&client, &url).await.as_deref(),
        Some("1"),
        "reloaded without SIGHUP"
    );
    let status = std::process::Command::new("kill")
        .args(["-HUP", &proxy.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let took = wait_until(Duration::from_secs(5), || async {
        version(&client, &url).await.as_deref() == Some("2")
    })
    .await;
    assert!(took.is_some(), "SIGHUP did not reload");
}

fn sighup(proxy: &BinaryProxy) {
    let status = std::process::Command::new("kill")
        .args(["-HUP", &proxy.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// A reload applies what it can while running — `[limits]`, `[log] level`,
/// `[access_log]` — and keeps the running listeners, admin address and
/// cache directory, naming them in its log line; `/config` shows what is in
/// force, not what the file says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_reports_settings_that_wait_for_restart() {
    let up = Upstream::start("app").await;
    let body = format!(
        "[admin]\naddress = \"127.0.0.1:0\"\n\n[log]\nlevel = \"info\"\n\n[reload]\nwatch = false\n\n\
         [[clusters]]\nname = \"app\"\nendpoints = [\"{}\"]\n\n[[routes]]\nname = \"app\"\npath_prefix = \"/app\"\ncluster = \"app\"\n",
        up.addr
    );
    let proxy = start_binary(&body, &[]);
    let admin = proxy.admin.expect("admin address");
    let client = h1();
    let url = |path: &str| format!("http://{}{path}", proxy.addr);
    // At `info`, a request without a route is not logged (it is at debug).
    assert_eq!(client.get(url("/nothing")).send().await.unwrap().status(), 404);
    let resp = client.get(url("/app")).send().await.unwrap();
    assert!(resp.headers().get("connection").is_none());

    let config_path = proxy.work.config_path();
    let access_log = proxy.work.dir.path().join("access.log");
    let edited = std::fs::read_to_string(&config_path)
        .unwrap()
        .replace(
            "address = \"127.0.0.1:0\"\n\n[admin]",
            "address = \"127.0.0.1:1\"\n\n[admin]",
        )
        .replace(
            "[admin]\naddress = \"127.0.0.1:0\"",
            "[admin]\naddress = \"127.0.0.1:2\"",
        )
        .replace("cache_dir = ", "cache_dir = \"elsewhere\"\n#")
        .replace("level = \"info\"", "level = \"debug\"")
        + &format!(
            "\n[limits]\nmax_requests_per_connection = 1\n\n[access_log]\npath = {:?}\n",
            access_log.display().to_string()
        );
    std::fs::write(&config_path, &edited).unwrap();
    sighup(&proxy);
    let reloaded = wait_until(Duration::from_secs(30), || async {
        !proxy.log_lines_with("reloaded").is_empty()
    })
    .await;
    assert!(reloaded.is_some(), "no reload logged");
    let line = proxy.log_lines_with("reloaded").remove(0);
    assert!(
        line.contains("restart_required=listeners, admin.address, cache_dir"),
        "{line}"
    );

    // `/config` on the admin address still in use shows what is in force.
    let config: Value = client
        .get(format!("http://{admin}/config"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(config["listeners"][0]["address"], "127.0.0.1:0", "{config}");
    assert_eq!(config["admin"], "127.0.0.1:0", "{config}");
    assert!(
        !config["cache_dir"].as_str().unwrap_or("").ends_with("elsewhere"),
        "{config}"
    );
    assert_eq!(config["log_level"], "debug", "{config}");
    assert_eq!(config["limits"]["max_requests_per_connection"], 1, "{config}");
    assert_eq!(
        config["access_log"]["path"],
        access_log.display().to_string(),
        "{config}"
    );

    // And each live setting is in force: the limit closes connections, the
    // access log writes to its new file, debug lines are logged.
    let fresh = h1();
    let resp = fresh.get(url("/app")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["connection"], "close");
    assert_eq!(fresh.get(url("/nothing")).send().await.unwrap().status(), 404);
    let logged = wait_until(Duration::from_secs(30), || async {
        std::fs::read_to_string(&access_log).is_ok_and(|t| t.contains("path=/app"))
    })
    .await;
    assert!(logged.is_some(), "the new access log got no line");
    let debug = wait_until(Duration::from_secs(30), || async {
        !proxy.log_lines_with("request failed").is_empty()
    })
    .await;
    assert!(debug.is_some(), "log level debug not applied");
    assert_eq!(
        proxy.log_lines_with("request failed").len(),
        1,
        "logged at info before the reload"
    );
}

/// A changed `plugins_dir` is loaded from, and the watcher moves with it: a
/// plugin changed in the new directory is picked up without a signal.
#[tokio::test]
async fn watcher_follows_a_changed_plugins_dir() {
    let up = Upstream::start("app").await;
    let proxy = start(&route_with("versioned", up.addr), &[("version-1", "versioned")]).await;
    let client = h2();
    assert_eq!(version(&client, &proxy.url("/")).await.as_deref(), Some("1"));
    let moved = proxy.work.dir.path().join("plugins2");
    std::fs::create_dir(&moved).unwrap();
    std::fs::write(moved.join("versioned.wasm"), v2()).unwrap();
    let config = proxy.work.config_path();
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("plugins_dir = \"plugins\"", "plugins_dir = \"plugins2\""),
    )
    .unwrap();
    let moved_over = wait_until(Duration::from_secs(10), || async {
        version(&client, &proxy.url("/")).await.as_deref() == Some("2")
    })
    .await;
    assert!(moved_over.is_some(), "the new plugins_dir was not loaded");
    // Now only the new directory is watched.
    write_renamed(&moved.join("versioned.wasm"), &v1());
    let followed = wait_until(Duration::from_secs(10), || async {
        version(&client, &proxy.url("/")).await.as_deref() == Some("1")
    })
    .await;
    assert!(followed.is_some(), "a change in the new plugins_dir was not picked up");
}

/// On one thread (`--threads 1`), a reload whose filter takes most of a
/// second in `init` runs beside the serving worker: requests keep completing
/// while that `init` is still running (seen by its "done" line not yet
/// logged when they have all answered).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_with_a_slow_filter_init_does_not_stall_requests() {
    let up = Upstream::start("app").await;
    let body = format!(
        "[reload]\nwatch = false\n\n[[clusters]]\nname = \"app\"\nendpoints = [\"{}\"]\n\n\
         [[routes]]\nname = \"good\"\npath_prefix = \"/good\"\ncluster = \"app\"\n",
        up.addr
    );
    let proxy = start_binary_with(&body, &[("probe-filter", "probe")], &["--threads", "1"]);
    let client = h1();
    let url = format!("http://{}/good", proxy.addr);
    assert_eq!(client.get(&url).send().await.unwrap().status(), 200);
    let config = proxy.work.config_path();
    let slow = "\n[[routes]]\nname = \"slow\"\npath_prefix = \"/slow\"\ncluster = \"app\"\n[[routes.filters]]\n\
                plugin = \"probe\"\nconfig = { init_spin_ms = 800, init_log = \"SLOW-INIT\" }\n";
    let text = std::fs::read_to_string(&config).unwrap() + slow;
    std::fs::write(&config, text).unwrap();
    sighup(&proxy);
    let started = wait_until(Duration::from_secs(30), || async {
        !proxy.log_lines_with("SLOW-INIT").is_empty()
    })
    .await;
    assert!(started.is_some(), "the slow init never started");
    for _ in 0..5 {
        assert_eq!(client.get(&url).send().await.unwrap().status(), 200);
    }
    assert!(
        proxy.log_lines_with("SLOW-INIT done").is_empty(),
        "requests waited for the reload's filter init"
    );
    let done = wait_until(Duration::from_secs(30), || async {
        client
            .get(format!("http://{}/slow", proxy.addr))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    assert!(done.is_some(), "the reload with the slow filter never finished");
}

/// A plugins directory that does not exist at start is watched once it
/// appears (the maintenance tick notices it): a plugin later replaced in it
/// is picked up without a signal.
#[tokio::test]
async fn a_plugins_dir_created_after_start_is_watched() {
    let up = Upstream::start("app").await;
    let work = Workdir::new(
        &format!(
            "[[clusters]]\nname = \"app\"\nendpoints = [\"{}\"]\n\n[[routes]]\nname = \"main\"\ncluster = \"app\"\n",
            up.addr
        ),
        &[],
    );
    let config = work.config_path();
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("plugins_dir = \"plugins\"", "plugins_dir = \"later\"");
    std::fs::write(&config, &text).unwrap();
    let proxy = start_workdir(work).await;
    let later = proxy.work.dir.path().join("later");
    std::fs::create_dir(&later).unwrap();
    std::fs::write(later.join("versioned.wasm"), v1()).unwrap();
    // Name the plugin from the config (the config's directory is watched).
    std::fs::write(
        &config,
        text.replace(
            "cluster = \"app\"\n",
            "cluster = \"app\"\n[[routes.filters]]\nplugin = \"versioned\"\n",
        ),
    )
    .unwrap();
    let client = h2();
    let loaded = wait_until(Duration::from_secs(30), || async {
        version(&client, &proxy.url("/")).await.as_deref() == Some("1")
    })
    .await;
    assert!(loaded.is_some(), "the plugin in the new directory was not loaded");
    // Past the maintenance tick (5 s), which starts watching the directory,
    // and past any reload still pending from the config edit: from now on
    // only a watch on the new directory can see a change there.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(version(&client, &proxy.url("/")).await.as_deref(), Some("1"));
    write_renamed(&later.join("versioned.wasm"), &v2());
    let followed = wait_until(Duration::from_secs(30), || async {
        version(&client, &proxy.url("/")).await.as_deref() == Some("2")
    })
    .await;
    assert!(
        followed.is_some(),
        "a plugin changed in the new directory was not picked up"
    );
}
