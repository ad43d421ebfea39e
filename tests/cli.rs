//! The `sluice` binary as a user drives it: `sluice check` on good and bad
//! configurations, and curl through a running gateway.

mod common;

use common::*;
use std::process::Command;

fn check(work: &Workdir) -> (bool, String, String) {
    check_path(&work.config_path())
}

/// `sluice check --config <config>`: whether it passed, stdout, stderr.
fn check_path(config: &std::path::Path) -> (bool, String, String) {
    let out = Command::new(binary())
        .args(["check", "--config"])
        .arg(config)
        .output()
        .expect("run sluice check");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `examples/<name>` in the repository.
fn example(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name)
}

/// `sluice check` of `examples/<name>`, which must pass: its stdout.
fn check_example(name: &str) -> String {
    let (ok, stdout, stderr) = check_path(&example(name));
    assert!(ok, "{stderr}");
    stdout
}

const CLUSTER: &str = "[[clusters]]\nname = \"app\"\nendpoints = [\"127.0.0.1:9\"]\n\n";

#[test]
fn check_accepts_a_good_config_and_lists_what_it_loaded() {
    let body = format!(
        "{CLUSTER}[[routes]]\nname = \"main\"\ncluster = \"app\"\n[[routes.filters]]\nplugin = \"probe\"\nconfig = {{ tag = \"x\" }}\n[[routes.filters]]\nplugin = \"header-rewrite\"\nconfig.request.set = {{ a = \"b\" }}\n"
    );
    let work = Workdir::new(&body, &[("probe-filter", "probe")]);
    let (ok, stdout, stderr) = check(&work);
    assert!(ok, "check failed: {stderr}");
    assert!(stdout.contains(": OK"), "{stdout}");
    assert!(stdout.contains("plugin probe"), "{stdout}");
    assert!(
        stdout.contains("plugin header-rewrite") && stdout.contains("built-in"),
        "{stdout}"
    );
    assert!(
        stdout.contains("route main") && stdout.contains("probe → header-rewrite"),
        "{stdout}"
    );
}

#[test]
fn check_names_file_line_and_key_of_an_unknown_cluster() {
    let body = format!("{CLUSTER}[[routes]]\nname = \"main\"\ncluster = \"missing\"\n");
    let work = Workdir::new(&body, &[]);
    let (ok, _, stderr) = check(&work);
    assert!(!ok);
    // The generated header is 8 lines, the cluster 4: the route's cluster is line 14.
    let expected = format!(
        "{}:14: routes[0].cluster: unknown cluster `missing` (defined: app)",
        work.config_path().display()
    );
    assert!(stderr.contains(&expected), "got: {stderr}\nwanted: {expected}");
}

#[test]
fn check_reports_a_missing_plugin() {
    let body = format!("{CLUSTER}[[routes]]\ncluster = \"app\"\n[[routes.filters]]\nplugin = \"nosuch\"\n");
    let work = Workdir::new(&body, &[("probe-filter", "probe")]);
    let (ok, _, stderr) = check(&work);
    assert!(!ok);
    assert!(
        stderr.contains(":15: routes[0].filters[0].plugin: unknown plugin `nosuch`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("available: auth, authz, header-rewrite, probe, rate-limit, traffic-split"),
        "{stderr}"
    );
}

#[test]
fn check_reports_a_filter_rejecting_its_config() {
    let body = format!(
        "{CLUSTER}[[routes]]\nname = \"api\"\ncluster = \"app\"\n[[routes.filters]]\nplugin = \"probe\"\nconfig = {{ respond = {{ status = 42 }} }}\n"
    );
    let work = Workdir::new(&body, &[("probe-filter", "probe")]);
    let (ok, _, stderr) = check(&work);
    assert!(!ok);
    assert!(
        stderr.contains("route `api`, plugin `probe` rejected its config: respond.status: 42 is not in 200..=599"),
        "{stderr}"
    );
}

#[test]
fn check_reports_a_corrupt_plugin_file() {
    let body = format!("{CLUSTER}[[routes]]\ncluster = \"app\"\n[[routes.filters]]\nplugin = \"broken\"\n");
    let work = Workdir::new(&body, &[]);
    std::fs::write(work.dir.path().join("plugins/broken.wasm"), b"\0asm garbage").unwrap();
    let (ok, _, stderr) = check(&work);
    assert!(!ok);
    assert!(
        stderr.contains("plugin `broken`") && stderr.contains("failed to load"),
        "{stderr}"
    );
}

#[test]
fn run_refuses_a_bad_config() {
    let work = Workdir::new("[[routes]]\ncluster = \"none\"\n", &[]);
    let out = Command::new(binary())
        .args(["run", "--config"])
        .arg(work.config_path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("routes[0].cluster"));
}

/// curl, as a user would run it, over HTTP/1.1 and HTTP/2 through a
/// two-filter chain, on a sidecar-style single thread (`--threads 1`, the
/// current-thread runtime the benchmarks use).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_through_a_two_filter_chain() {
    let up = Upstream::start("app").await;
    let body = format!(
        "[[clusters]]\nname = \"app\"\nendpoints = [\"{}\"]\n\n[[routes]]\ncluster = \"app\"\n[[routes.filters]]\nplugin = \"probe\"\nconfig = {{ request_headers = {{ \"x-probe\" = \"on\" }}, tag = \"curl\" }}\n[[routes.filters]]\nplugin = \"header-rewrite\"\nconfig.response = {{ set = {{ \"x-rewritten\" = \"yes\" }} }}\n",
        up.addr
    );
    let proxy = start_binary_with(&body, &[("probe-filter", "probe")], &["--threads", "1"]);
    for (flag, status_line) in [("--http1.1", "http/1.1 200"), ("--http2-prior-knowledge", "http/2 200")] {
        let out = tokio::process::Command::new("curl")
            .args(["-sS", "-i", flag, "-d", "hello=world"])
            .arg(format!("http://{}/form?x=1", proxy.addr))
            .output()
            .await
            .expect("curl must be installed");
        assert!(
            out.status.success(),
            "curl failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).to_lowercase();
        // Each flag negotiated the protocol it asks for.
        assert!(text.starts_with(status_line), "{flag}: {text}");
        assert!(text.contains("x-probe-tag: curl"), "{text}");
        assert!(text.contains("x-rewritten: yes"), "{text}");
        assert!(text.contains(r#"["x-probe","on"]"#), "{text}");
        assert!(
            text.contains(r#""path":"/form?x=1""#) && text.contains(r#""method":"post""#),
            "{text}"
        );
    }
}

/// The README's gateway config loads, with all four built-ins on one route.
#[test]
fn example_gateway_config_checks() {
    let (_dir, config) = example_copy("");
    let (ok, stdout, stderr) = check_path(&config);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("auth → rate-limit → header-rewrite → traffic-split"),
        "{stdout}"
    );
    assert!(stdout.contains("[authz]"), "{stdout}");
}

/// `examples/gateway.toml` in a temporary directory with its plugins
/// directory pointing back at `examples/plugins`, `extra` appended to the
/// top-level settings, and the development certificates its TLS listener
/// names written by `sluice certs dev` (as the README's `--dev-certs` does).
fn example_copy(extra: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let text = std::fs::read_to_string(example("gateway.toml")).expect("example config");
    let dir = tempfile::tempdir().expect("tempdir");
    let text = text.replace(
        "plugins_dir = \"plugins\"",
        &format!("plugins_dir = {:?}\n{extra}", example("plugins").display().to_string()),
    );
    let config = dir.path().join("gateway.toml");
    std::fs::write(&config, text).expect("write config");
    let out = Command::new(binary())
        .args(["certs", "dev", "--out"])
        .arg(dir.path().join("certs"))
        .output()
        .expect("run sluice certs dev");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    (dir, config)
}

/// The example gateway's five filter entries, at the default sandbox
/// settings, fit a 320 MiB pod: `check` passes with that memory budget and
/// refuses a smaller one, naming the biggest filter entries.
#[test]
fn example_gateway_fits_a_320_mib_budget() {
    for (budget, fits) in [("320MiB", true), ("256MiB", false)] {
        let (_dir, config) = example_copy(&format!("\n[sandbox]\nmemory_budget = \"{budget}\""));
        let (ok, _, stderr) = check_path(&config);
        assert_eq!(ok, fits, "{budget}: {stderr}");
        if !fits {
            assert!(
                stderr.contains("320 MiB bytes of Wasm memory")
                    && stderr.contains("over the memory budget of 256 MiB ([sandbox] memory_budget)")
                    && stderr.contains("routes[0].filters[0] (auth) 64 MiB"),
                "{stderr}"
            );
        }
    }
}

/// `examples/filter-platform.toml` loads with the two example filters in
/// its plugins directory (as docs/filter-platform.md copies them there):
/// `check` instantiates both and runs their `init` on the route's config.
#[test]
fn example_filter_platform_checks() {
    let example = example("filter-platform.toml");
    let dir = tempfile::tempdir().expect("tempdir");
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).expect("plugins dir");
    for name in ["ext-authz", "card-mask"] {
        std::fs::copy(test_filter(name), plugins.join(format!("{name}.wasm"))).expect("copy filter");
    }
    let config = dir.path().join("filter-platform.toml");
    std::fs::copy(&example, &config).expect("copy example");
    let (ok, stdout, stderr) = check_path(&config);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("ext-authz") && stdout.contains("card-mask"), "{stdout}");
}

/// `examples/shared-state.toml` (docs/shared-state.md, "Try it") loads:
/// the Redis backend settings and the rate-limit filter's outage keys
/// validate (`check` does not connect to Redis).
#[test]
fn example_shared_state_checks() {
    let stdout = check_example("shared-state.toml");
    assert!(
        stdout.contains("route api") && stdout.contains("[rate-limit]"),
        "{stdout}"
    );
}

/// `examples/sidecar.toml` loads, shows its interception listeners and
/// route directions, and its redirection rules print without privileges.
#[test]
fn example_sidecar_checks_and_prints_its_rules() {
    let example = example("sidecar.toml");
    let stdout = check_example("sidecar.toml");
    assert!(
        stdout.contains("(intercepts inbound)") && stdout.contains("(intercepts outbound)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("(outbound)") && stdout.contains("cluster original-destination"),
        "{stdout}"
    );
    let out = Command::new(binary())
        .args(["iptables", "--dry-run", "--config"])
        .arg(&example)
        .output()
        .expect("run sluice iptables --dry-run");
    let script = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        script.contains("REDIRECT --to-ports 15006") && script.contains("REDIRECT --to-ports 15001"),
        "{script}"
    );
}
