//! `sluice iptables` with the real binary. `--dry-run` prints the rules
//! without privileges. As root, in a fresh network namespace (`unshare -n`),
//! the rules apply twice to the same result, match what the dry run's
//! script does, and go away on `--remove`, with iptables and with nftables.
//! The root part prints `skipped:` when not root or a tool is missing,
//! unless `SLUICE_REQUIRE_ROOT_TESTS=1`.

mod common;

use common::binary;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Both interception listeners, the admin port, a mark and excluded
/// networks of both families.
const CONFIG: &str = r#"
[[listeners]]
name = "inbound"
address = "0.0.0.0:15006"
intercept = "inbound"

[[listeners]]
name = "outbound"
address = "127.0.0.1:15001"
intercept = "outbound"

[admin]
address = "127.0.0.1:15020"

[sidecar]
mark = 1337
exclude_inbound_ports = [22]
exclude_outbound_cidrs = ["10.9.0.0/16", "fd00::/8"]
"#;

/// Run in a fresh network namespace with `$SLUICE`, `$CONFIG` and `$MODE`
/// (empty or `--nftables`); prints sections headed `=== name`.
const SCRIPT: &str = r#"set -e
dump() {
    if [ -n "$MODE" ]; then
        echo "=== $1"; nft list ruleset
    else
        echo "=== $1-v4"; iptables -t nat -S
        echo "=== $1-v6"; ip6tables -t nat -S
    fi
}
if [ "$DRY" = 1 ]; then
    rules=$("$SLUICE" iptables --config "$CONFIG" --dry-run $MODE)
    printf '%s\n' "$rules" | sh -e
    dump script
    exit 0
fi
echo "=== out1"; "$SLUICE" iptables --config "$CONFIG" $MODE
dump first
echo "=== out2"; "$SLUICE" iptables --config "$CONFIG" $MODE
dump second
echo "=== out3"; "$SLUICE" iptables --config "$CONFIG" --remove $MODE
"$SLUICE" iptables --config "$CONFIG" --remove $MODE
dump removed
"#;

fn write_config(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("config.toml");
    std::fs::write(&path, text).expect("write config");
    (dir, path)
}

fn sluice_iptables(config: &Path, args: &[&str]) -> Output {
    Command::new(binary())
        .args(["iptables", "--config"])
        .arg(config)
        .args(args)
        .output()
        .expect("run sluice iptables")
}

/// The stdout of a successful `--dry-run`.
fn dry_run(config: &Path, args: &[&str]) -> String {
    let mut all = vec!["--dry-run"];
    all.extend_from_slice(args);
    let out = sluice_iptables(config, &all);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "sluice iptables --dry-run {args:?} failed: {stderr}"
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn iptables_dry_run_prints_the_rules() {
    let (_dir, config) = write_config(CONFIG);
    let script = dry_run(&config, &[]);
    for rule in [
        "iptables -t nat -A SLUICE_INBOUND -p tcp --dport 22 -j RETURN",
        "iptables -t nat -A SLUICE_INBOUND -p tcp --dport 15020 -j RETURN",
        "iptables -t nat -A SLUICE_INBOUND -p tcp -j REDIRECT --to-ports 15006",
        "iptables -t nat -A SLUICE_OUTBOUND -m mark --mark 0x539 -j RETURN",
        "iptables -t nat -A SLUICE_OUTBOUND -d 10.9.0.0/16 -j RETURN",
        "iptables -t nat -A SLUICE_OUTBOUND -p tcp -j REDIRECT --to-ports 15001",
        "ip6tables -t nat -A SLUICE_OUTBOUND -d fd00::/8 -j RETURN",
        "iptables -t nat -C OUTPUT -p tcp -j SLUICE_OUTBOUND 2>/dev/null || iptables -t nat -A OUTPUT -p tcp -j SLUICE_OUTBOUND",
    ] {
        assert!(script.lines().any(|l| l == rule), "no `{rule}` in:\n{script}");
    }
    assert!(!dry_run(&config, &["--no-ipv6"]).contains("ip6tables"));
    let nft = dry_run(&config, &["--nftables"]);
    for rule in [
        "table inet sluice {",
        "tcp dport { 22, 15020 } return",
        "meta l4proto tcp redirect to :15006",
        "ip6 daddr { fd00::/8 } return",
        "meta l4proto tcp redirect to :15001",
    ] {
        assert!(nft.contains(rule), "no `{rule}` in:\n{nft}");
    }
    assert!(dry_run(&config, &["--remove"]).contains("iptables -t nat -X SLUICE_OUTBOUND"));

    // No interception listener: nothing to redirect.
    let (_dir, plain) = write_config("[[listeners]]\naddress = \"127.0.0.1:0\"\n");
    let out = sluice_iptables(&plain, &["--dry-run"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.starts_with("error: ") && stderr.contains("intercept"),
        "{stderr}"
    );

    // Outbound with no way to tell sluice's own connections: refused.
    let (_dir, looping) = write_config(&CONFIG.replace("mark = 1337\n", ""));
    let out = sluice_iptables(&looping, &["--dry-run"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.starts_with("error: ") && stderr.contains("`mark`"), "{stderr}");
}

/// Whether `program --version` runs.
fn have(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Whether the root part can run; prints `skipped:` when it cannot (and
/// fails when it is required).
fn root_or_skip(test: &str) -> bool {
    // SAFETY: geteuid takes no arguments, touches no memory of ours and
    // cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let missing = ["iptables", "ip6tables", "nft", "unshare"]
        .into_iter()
        .find(|p| !have(p));
    let why = if !root {
        "not root".to_string()
    } else if let Some(program) = missing {
        format!("`{program}` is not installed")
    } else if !Command::new("unshare")
        .args(["-n", "true"])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        "cannot make a network namespace (unshare -n)".to_string()
    } else {
        return true;
    };
    assert!(
        !common::tls::required(),
        "{test}: {why}, but SLUICE_REQUIRE_ROOT_TESTS=1 requires it to run"
    );
    println!("skipped: {test}: {why}");
    false
}

/// [`SCRIPT`] in a fresh network namespace, by section.
fn in_netns(config: &Path, mode: &str, dry: bool) -> HashMap<String, String> {
    let out = Command::new("unshare")
        .args(["-n", "sh", "-c", SCRIPT])
        .env("SLUICE", binary())
        .env("CONFIG", config)
        .env("MODE", mode)
        .env("DRY", if dry { "1" } else { "0" })
        .output()
        .expect("run unshare");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "script failed ({mode}): {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    stdout
        .split("=== ")
        .skip(1)
        .filter_map(|chunk| chunk.split_once('\n'))
        .map(|(name, body)| (name.to_string(), body.to_string()))
        .collect()
}

#[test]
fn iptables_rules_apply_idempotently_and_remove() {
    let test = "iptables_rules_apply_idempotently_and_remove";
    if !root_or_skip(test) {
        return;
    }
    let (_dir, config) = write_config(CONFIG);

    let dumps = in_netns(&config, "", false);
    let section = |name: &str| {
        dumps
            .get(name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name} in {dumps:?}"))
    };
    let (v4, v6) = (section("first-v4"), section("first-v6"));
    assert_eq!(v4, section("second-v4"), "a second apply changed the IPv4 rules");
    assert_eq!(v6, section("second-v6"), "a second apply changed the IPv6 rules");
    assert!(section("out1").contains("redirecting TCP"), "{}", section("out1"));
    assert!(section("out3").contains("removed"), "{}", section("out3"));
    for dump in [&v4, &v6] {
        for rule in [
            "-A PREROUTING -p tcp -j SLUICE_INBOUND",
            "-A OUTPUT -p tcp -j SLUICE_OUTBOUND",
            "-A SLUICE_INBOUND -p tcp -m tcp --dport 22 -j RETURN",
            "-A SLUICE_INBOUND -p tcp -m tcp --dport 15020 -j RETURN",
            "-A SLUICE_INBOUND -p tcp -j REDIRECT --to-ports 15006",
            "-A SLUICE_OUTBOUND -m mark --mark 0x539 -j RETURN",
            "-A SLUICE_OUTBOUND -o lo -j RETURN",
            "-A SLUICE_OUTBOUND -p tcp -j REDIRECT --to-ports 15001",
        ] {
            assert_eq!(
                dump.lines().filter(|l| *l == rule).count(),
                1,
                "`{rule}` once in:\n{dump}"
            );
        }
    }
    assert!(
        v4.contains("-A SLUICE_OUTBOUND -d 10.9.0.0/16 -j RETURN") && !v4.contains("fd00"),
        "{v4}"
    );
    assert!(
        v6.contains("-A SLUICE_OUTBOUND -d fd00::/8 -j RETURN") && !v6.contains("10.9.0.0"),
        "{v6}"
    );
    let removed = section("removed-v4") + &section("removed-v6");
    assert!(!removed.contains("SLUICE"), "{removed}");
    // The dry run's script, run as it is, makes the same rules.
    let script = in_netns(&config, "", true);
    assert_eq!(script.get("script-v4"), Some(&v4));
    assert_eq!(script.get("script-v6"), Some(&v6));

    let dumps = in_netns(&config, "--nftables", false);
    let section = |name: &str| {
        dumps
            .get(name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name} in {dumps:?}"))
    };
    let nft = section("first");
    assert_eq!(nft, section("second"), "a second apply changed the nftables rules");
    for rule in [
        "table inet sluice {",
        "type nat hook prerouting priority dstnat; policy accept;",
        "tcp dport { 22, 15020 } return",
        "meta l4proto tcp redirect to :15006",
        "meta mark 0x00000539 return",
        "ip daddr 10.9.0.0/16 return",
        "ip6 daddr fd00::/8 return",
        "meta l4proto tcp redirect to :15001",
    ] {
        assert!(nft.contains(rule), "no `{rule}` in:\n{nft}");
    }
    assert!(!section("removed").contains("sluice"), "{}", section("removed"));
    let script = in_netns(&config, "--nftables", true);
    assert_eq!(script.get("script"), Some(&nft));
    println!("ran as root");
}

/// A sidecar whose `[sidecar] mark` the process may not set (no
/// CAP_NET_ADMIN) refuses to start, naming the cause, instead of failing
/// every upstream connection later. Run as nobody, in a fresh network
/// namespace (so its ports collide with nothing).
#[test]
fn mark_without_cap_net_admin_is_refused_at_start() {
    if !root_or_skip("mark_without_cap_net_admin_is_refused_at_start") {
        return;
    }
    println!("ran as root");
    let (dir, config) = write_config(&format!("plugins_dir = \"plugins\"\ncache_dir = \"cache\"\n{CONFIG}"));
    std::fs::create_dir_all(dir.path().join("plugins")).expect("plugins dir");
    std::fs::create_dir_all(dir.path().join("cache")).expect("cache dir");
    // nobody must reach the config.
    use std::os::unix::fs::PermissionsExt;
    for (path, mode) in [(dir.path(), 0o755), (dir.path().join("cache").as_path(), 0o777)] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }
    let out = Command::new("unshare")
        // Were it to start, `timeout` ends it and the assertions fail.
        .args([
            "-n",
            "timeout",
            "60",
            "setpriv",
            "--reuid",
            "65534",
            "--regid",
            "65534",
            "--clear-groups",
        ])
        .arg(binary())
        .args(["run", "--config"])
        .arg(&config)
        .output()
        .expect("run sluice as nobody");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "sluice started without CAP_NET_ADMIN: {stderr}");
    assert!(
        stderr.contains("cannot set the socket mark 1337") && stderr.contains("CAP_NET_ADMIN"),
        "{stderr}"
    );
}
