//! The rules `sluice iptables` writes, exactly, for representative plans.

use super::*;
use std::time::Duration;

fn sidecar() -> SidecarConfig {
    SidecarConfig {
        mark: Some(1337),
        proxy_uid: Some(1337),
        proxy_gid: Some(1338),
        opaque_ports: Vec::new(),
        detect_timeout: Duration::from_secs(5),
        tcp_idle_timeout: Duration::from_secs(3600),
        exclude_inbound_ports: vec![22],
        exclude_outbound_ports: vec![5432],
        exclude_outbound_cidrs: vec!["10.9.0.0/16".parse().unwrap(), "fd00::/8".parse().unwrap()],
        inbound_port: Some(15006),
        outbound_port: Some(15001),
        admin_port: Some(15020),
    }
}

fn dry(sidecar: &SidecarConfig, nftables: bool, remove: bool, ipv6: bool) -> String {
    let plan = Plan::from_config(sidecar).unwrap();
    let options = Options {
        dry_run: true,
        remove,
        nftables,
        ipv6,
    };
    let mut out = Vec::new();
    run(&plan, &options, &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

#[test]
fn iptables_rules_for_both_families() {
    let expected = "\
#!/bin/sh
set -e
iptables -t nat -N SLUICE_INBOUND 2>/dev/null || true
iptables -t nat -F SLUICE_INBOUND
iptables -t nat -A SLUICE_INBOUND -p tcp --dport 22 -j RETURN
iptables -t nat -A SLUICE_INBOUND -p tcp --dport 15020 -j RETURN
iptables -t nat -A SLUICE_INBOUND -p tcp -j REDIRECT --to-ports 15006
iptables -t nat -C PREROUTING -p tcp -j SLUICE_INBOUND 2>/dev/null || iptables -t nat -A PREROUTING -p tcp -j SLUICE_INBOUND
iptables -t nat -N SLUICE_OUTBOUND 2>/dev/null || true
iptables -t nat -F SLUICE_OUTBOUND
iptables -t nat -A SLUICE_OUTBOUND -m mark --mark 0x539 -j RETURN
iptables -t nat -A SLUICE_OUTBOUND -m owner --uid-owner 1337 -j RETURN
iptables -t nat -A SLUICE_OUTBOUND -m owner --gid-owner 1338 -j RETURN
iptables -t nat -A SLUICE_OUTBOUND -o lo -j RETURN
iptables -t nat -A SLUICE_OUTBOUND -d 127.0.0.1/32 -j RETURN
iptables -t nat -A SLUICE_OUTBOUND -d 10.9.0.0/16 -j RETURN
iptables -t nat -A SLUICE_OUTBOUND -p tcp --dport 5432 -j RETURN
iptables -t nat -A SLUICE_OUTBOUND -p tcp -j REDIRECT --to-ports 15001
iptables -t nat -C OUTPUT -p tcp -j SLUICE_OUTBOUND 2>/dev/null || iptables -t nat -A OUTPUT -p tcp -j SLUICE_OUTBOUND
ip6tables -t nat -N SLUICE_INBOUND 2>/dev/null || true
ip6tables -t nat -F SLUICE_INBOUND
ip6tables -t nat -A SLUICE_INBOUND -p tcp --dport 22 -j RETURN
ip6tables -t nat -A SLUICE_INBOUND -p tcp --dport 15020 -j RETURN
ip6tables -t nat -A SLUICE_INBOUND -p tcp -j REDIRECT --to-ports 15006
ip6tables -t nat -C PREROUTING -p tcp -j SLUICE_INBOUND 2>/dev/null || ip6tables -t nat -A PREROUTING -p tcp -j SLUICE_INBOUND
ip6tables -t nat -N SLUICE_OUTBOUND 2>/dev/null || true
ip6tables -t nat -F SLUICE_OUTBOUND
ip6tables -t nat -A SLUICE_OUTBOUND -m mark --mark 0x539 -j RETURN
ip6tables -t nat -A SLUICE_OUTBOUND -m owner --uid-owner 1337 -j RETURN
ip6tables -t nat -A SLUICE_OUTBOUND -m owner --gid-owner 1338 -j RETURN
ip6tables -t nat -A SLUICE_OUTBOUND -o lo -j RETURN
ip6tables -t nat -A SLUICE_OUTBOUND -d ::1/128 -j RETURN
ip6tables -t nat -A SLUICE_OUTBOUND -d fd00::/8 -j RETURN
ip6tables -t nat -A SLUICE_OUTBOUND -p tcp --dport 5432 -j RETURN
ip6tables -t nat -A SLUICE_OUTBOUND -p tcp -j REDIRECT --to-ports 15001
ip6tables -t nat -C OUTPUT -p tcp -j SLUICE_OUTBOUND 2>/dev/null || ip6tables -t nat -A OUTPUT -p tcp -j SLUICE_OUTBOUND
";
    assert_eq!(dry(&sidecar(), false, false, true), expected);
}

#[test]
fn nftables_rules_for_both_families() {
    let expected = "\
#!/bin/sh
set -e
nft -f - <<'EOF'
table inet sluice
delete table inet sluice
table inet sluice {
\tchain inbound {
\t\ttype nat hook prerouting priority dstnat; policy accept;
\t\ttcp dport { 22, 15020 } return
\t\tmeta l4proto tcp redirect to :15006
\t}
\tchain outbound {
\t\ttype nat hook output priority -100; policy accept;
\t\tmeta mark 0x00000539 return
\t\tmeta skuid 1337 return
\t\tmeta skgid 1338 return
\t\toifname \"lo\" return
\t\tip daddr 127.0.0.1 return
\t\tip daddr { 10.9.0.0/16 } return
\t\tip6 daddr ::1 return
\t\tip6 daddr { fd00::/8 } return
\t\ttcp dport { 5432 } return
\t\tmeta l4proto tcp redirect to :15001
\t}
}
EOF
";
    assert_eq!(dry(&sidecar(), true, false, true), expected);
}

#[test]
fn only_inbound_leaves_outbound_alone_and_clears_a_stale_chain() {
    let mut config = sidecar();
    config.outbound_port = None;
    config.mark = None;
    config.proxy_uid = None;
    config.proxy_gid = None;
    let expected = "\
#!/bin/sh
set -e
iptables -t nat -N SLUICE_INBOUND 2>/dev/null || true
iptables -t nat -F SLUICE_INBOUND
iptables -t nat -A SLUICE_INBOUND -p tcp --dport 22 -j RETURN
iptables -t nat -A SLUICE_INBOUND -p tcp --dport 15020 -j RETURN
iptables -t nat -A SLUICE_INBOUND -p tcp -j REDIRECT --to-ports 15006
iptables -t nat -C PREROUTING -p tcp -j SLUICE_INBOUND 2>/dev/null || iptables -t nat -A PREROUTING -p tcp -j SLUICE_INBOUND
while iptables -t nat -C OUTPUT -p tcp -j SLUICE_OUTBOUND 2>/dev/null; do iptables -t nat -D OUTPUT -p tcp -j SLUICE_OUTBOUND; done
iptables -t nat -F SLUICE_OUTBOUND 2>/dev/null || true
iptables -t nat -X SLUICE_OUTBOUND 2>/dev/null || true
";
    assert_eq!(dry(&config, false, false, false), expected);
    let expected = "\
#!/bin/sh
set -e
nft -f - <<'EOF'
table ip sluice
delete table ip sluice
table ip sluice {
\tchain inbound {
\t\ttype nat hook prerouting priority dstnat; policy accept;
\t\ttcp dport { 22, 15020 } return
\t\tmeta l4proto tcp redirect to :15006
\t}
}
EOF
";
    assert_eq!(dry(&config, true, false, false), expected);
}

#[test]
fn outbound_needs_a_way_to_tell_sluices_own_connections() {
    let mut config = sidecar();
    config.mark = None;
    config.proxy_uid = None;
    config.proxy_gid = None;
    let err = Plan::from_config(&config).unwrap_err();
    assert_eq!(err, PlanError::OutboundLoop { port: 15001 });
    let message = err.to_string();
    assert!(
        message.contains("`mark`") && message.contains("redirected back"),
        "{message}"
    );
    config.proxy_gid = Some(7);
    assert!(Plan::from_config(&config).is_ok());
    config.mark = Some(0);
    assert_eq!(Plan::from_config(&config), Err(PlanError::ZeroMark));
    config.inbound_port = None;
    config.outbound_port = None;
    assert_eq!(Plan::from_config(&config), Err(PlanError::NothingToIntercept));
}

#[test]
fn excluded_ports_and_networks_are_listed_once() {
    let mut config = sidecar();
    config.exclude_inbound_ports = vec![15020, 22, 22];
    config.exclude_outbound_cidrs.push("10.9.0.0/16".parse().unwrap());
    let plan = Plan::from_config(&config).unwrap();
    assert_eq!(plan.exclude_inbound_ports, [15020, 22]);
    assert_eq!(plan.exclude_outbound_cidrs.len(), 2);
}

#[test]
fn cidrs_go_to_their_own_family() {
    let script = dry(&sidecar(), false, false, true);
    let (v6, v4): (Vec<&str>, Vec<&str>) = script.lines().partition(|l| l.starts_with("ip6tables"));
    assert!(v4.iter().any(|l| l.contains("-d 10.9.0.0/16 -j RETURN")));
    assert!(!v4.iter().any(|l| l.contains("fd00::/8") || l.contains("::1/128")));
    assert!(v6.iter().any(|l| l.contains("-d fd00::/8 -j RETURN")));
    assert!(!v6.iter().any(|l| l.contains("10.9.0.0/16") || l.contains("127.0.0.1")));
    // Without IPv6: no ip6tables, and an `ip` table with no ip6 rules.
    assert!(!dry(&sidecar(), false, false, false).contains("ip6tables"));
    let nft = dry(&sidecar(), true, false, false);
    assert!(nft.contains("table ip sluice {") && nft.contains("ip daddr { 10.9.0.0/16 } return"));
    assert!(
        !nft.contains("ip6") && !nft.contains("fd00") && !nft.contains("inet"),
        "{nft}"
    );
}

#[test]
fn remove_scripts() {
    let expected = "\
#!/bin/sh
set -e
while iptables -t nat -C PREROUTING -p tcp -j SLUICE_INBOUND 2>/dev/null; do iptables -t nat -D PREROUTING -p tcp -j SLUICE_INBOUND; done
iptables -t nat -F SLUICE_INBOUND 2>/dev/null || true
iptables -t nat -X SLUICE_INBOUND 2>/dev/null || true
while iptables -t nat -C OUTPUT -p tcp -j SLUICE_OUTBOUND 2>/dev/null; do iptables -t nat -D OUTPUT -p tcp -j SLUICE_OUTBOUND; done
iptables -t nat -F SLUICE_OUTBOUND 2>/dev/null || true
iptables -t nat -X SLUICE_OUTBOUND 2>/dev/null || true
";
    assert_eq!(dry(&sidecar(), false, true, false), expected);
    let both = dry(&sidecar(), false, true, true);
    assert_eq!(both.lines().filter(|l| l.starts_with("ip6tables -t nat -X")).count(), 2);
    assert_eq!(both.lines().count(), 14);
    let expected = "#!/bin/sh\nset -e\nnft -f - <<'EOF'\ntable inet sluice\ndelete table inet sluice\nEOF\n";
    assert_eq!(dry(&sidecar(), true, true, true), expected);
}

#[test]
fn commands_are_quoted_for_the_shell() {
    let cmd = Cmd {
        program: "iptables",
        args: args(&["-m", "comment", "--comment", "it's here", ""]),
    };
    assert_eq!(cmd.to_string(), r"iptables -m comment --comment 'it'\''s here' ''");
}
