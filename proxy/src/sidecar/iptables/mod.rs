//! `sluice iptables`: the nat rules that send a pod's TCP traffic through
//! sluice's interception listeners, in the manner of istio-iptables and
//! linkerd2-proxy-init. This module owns the [`Plan`] (what is redirected
//! where and what is let through, from `[sidecar]`), its two forms
//! (iptables/ip6tables chains `SLUICE_INBOUND` and `SLUICE_OUTBOUND`, or one
//! nftables table `sluice`), and applying or removing them idempotently.
//! Both go through one list of steps: the dry run prints them as a shell
//! script, apply runs them, so the script is exactly what apply does.

use crate::config::SidecarConfig;
use ipnet::IpNet;
use std::fmt;
use std::io::Write;
use std::process::{Command, Output, Stdio};

const INBOUND_CHAIN: &str = "SLUICE_INBOUND";
const OUTBOUND_CHAIN: &str = "SLUICE_OUTBOUND";
/// Bound on deleting one jump again and again (`-D` while `-C` succeeds).
const MAX_DELETES: usize = 64;

/// What to redirect and what to let through. Built (and checked) from
/// `[sidecar]` by [`Plan::from_config`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Where inbound TCP goes (the `intercept = "inbound"` listener).
    pub inbound_port: Option<u16>,
    /// Where outbound TCP goes (the `intercept = "outbound"` listener).
    pub outbound_port: Option<u16>,
    /// Connections with this mark (sluice's own) are not redirected.
    pub mark: Option<u32>,
    /// Connections of this user (sluice's) are not redirected.
    pub uid: Option<u32>,
    /// Connections of this group (sluice's) are not redirected.
    pub gid: Option<u32>,
    /// Destination ports never redirected inbound, the admin port included.
    pub exclude_inbound_ports: Vec<u16>,
    /// Destination ports never redirected outbound.
    pub exclude_outbound_ports: Vec<u16>,
    /// Destination networks never redirected outbound.
    pub exclude_outbound_cidrs: Vec<IpNet>,
}

/// Why a `[sidecar]` cannot be turned into rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("nothing to intercept: no listener has `intercept = \"inbound\"` or `intercept = \"outbound\"`")]
    NothingToIntercept,
    #[error(
        "outbound traffic is redirected to port {port} but [sidecar] sets none of `mark`, `proxy_uid` \
         and `proxy_gid`: sluice's own connections would be redirected back to it"
    )]
    OutboundLoop { port: u16 },
    #[error("[sidecar] `mark = 0` would match every unmarked connection; use a nonzero mark")]
    ZeroMark,
}

impl Plan {
    /// The plan for `sidecar`: an error when nothing is intercepted, or when
    /// outbound is redirected with no way to tell sluice's own connections.
    pub fn from_config(sidecar: &SidecarConfig) -> Result<Plan, PlanError> {
        if sidecar.inbound_port.is_none() && sidecar.outbound_port.is_none() {
            return Err(PlanError::NothingToIntercept);
        }
        if sidecar.mark == Some(0) {
            return Err(PlanError::ZeroMark);
        }
        if let Some(port) = sidecar.outbound_port
            && sidecar.mark.is_none()
            && sidecar.proxy_uid.is_none()
            && sidecar.proxy_gid.is_none()
        {
            return Err(PlanError::OutboundLoop { port });
        }
        let inbound = sidecar.exclude_inbound_ports.iter().copied().chain(sidecar.admin_port);
        Ok(Plan {
            inbound_port: sidecar.inbound_port,
            outbound_port: sidecar.outbound_port,
            mark: sidecar.mark,
            uid: sidecar.proxy_uid,
            gid: sidecar.proxy_gid,
            exclude_inbound_ports: unique(inbound.filter(|p| *p != 0)),
            exclude_outbound_ports: unique(sidecar.exclude_outbound_ports.iter().copied()),
            exclude_outbound_cidrs: unique(sidecar.exclude_outbound_cidrs.iter().copied()),
        })
    }

    /// The steps that apply or remove this plan's rules.
    fn steps(&self, options: &Options) -> Vec<Step> {
        let families = families(options.ipv6).iter();
        match (options.nftables, options.remove) {
            (false, false) => families.flat_map(|f| self.iptables_apply(f)).collect(),
            (false, true) => families.flat_map(|f| iptables_remove(f.iptables)).collect(),
            (true, false) => vec![nft(self.nft_script(options.ipv6))],
            (true, true) => vec![nft(nft_reset(nft_family(options.ipv6)))],
        }
    }

    /// `SLUICE_INBOUND`'s rules (what follows `-A SLUICE_INBOUND`).
    fn inbound_rules(&self) -> Option<Vec<Vec<String>>> {
        let port = self.inbound_port?;
        let mut rules: Vec<_> = self.exclude_inbound_ports.iter().map(|p| dport_return(*p)).collect();
        rules.push(redirect(port));
        Some(rules)
    }

    /// `SLUICE_OUTBOUND`'s rules for `family`.
    fn outbound_rules(&self, family: &Family) -> Option<Vec<Vec<String>>> {
        let port = self.outbound_port?;
        let mut rules = Vec::new();
        if let Some(mark) = self.mark {
            rules.push(args(&["-m", "mark", "--mark", &format!("{mark:#x}"), "-j", "RETURN"]));
        }
        if let Some(uid) = self.uid {
            rules.push(args(&["-m", "owner", "--uid-owner", &uid.to_string(), "-j", "RETURN"]));
        }
        if let Some(gid) = self.gid {
            rules.push(args(&["-m", "owner", "--gid-owner", &gid.to_string(), "-j", "RETURN"]));
        }
        rules.push(args(&["-o", "lo", "-j", "RETURN"]));
        rules.push(args(&["-d", family.loopback, "-j", "RETURN"]));
        for net in self.exclude_outbound_cidrs.iter().filter(|n| family.holds(n)) {
            rules.push(args(&["-d", &net.to_string(), "-j", "RETURN"]));
        }
        rules.extend(self.exclude_outbound_ports.iter().map(|p| dport_return(*p)));
        rules.push(redirect(port));
        Some(rules)
    }

    /// Create-or-flush each chain, fill it, jump to it once; a chain this
    /// plan does not use is removed, so applying converges on the plan.
    fn iptables_apply(&self, family: &Family) -> Vec<Step> {
        let bin = family.iptables;
        let mut steps = Vec::new();
        for (chain, hook, rules) in [
            (INBOUND_CHAIN, "PREROUTING", self.inbound_rules()),
            (OUTBOUND_CHAIN, "OUTPUT", self.outbound_rules(family)),
        ] {
            let Some(rules) = rules else {
                steps.extend(remove_chain(bin, chain, hook));
                continue;
            };
            steps.push(Step::Tolerate(nat(bin, &["-N", chain])));
            steps.push(Step::Run(nat(bin, &["-F", chain])));
            for rule in rules {
                let mut cmd = nat(bin, &["-A", chain]);
                cmd.args.extend(rule);
                steps.push(Step::Run(cmd));
            }
            steps.push(Step::Ensure {
                check: jump(bin, "-C", hook, chain),
                add: jump(bin, "-A", hook, chain),
            });
        }
        steps
    }

    /// The nftables script: the table dropped if there and made anew, in
    /// one transaction.
    fn nft_script(&self, ipv6: bool) -> String {
        let family = nft_family(ipv6);
        let mut script = nft_reset(family);
        script += &format!("table {family} sluice {{\n");
        if let Some(port) = self.inbound_port {
            let mut rules = Vec::new();
            if !self.exclude_inbound_ports.is_empty() {
                rules.push(format!("tcp dport {{ {} }} return", list(&self.exclude_inbound_ports)));
            }
            rules.push(format!("meta l4proto tcp redirect to :{port}"));
            script += &nft_chain("inbound", "prerouting priority dstnat", &rules);
        }
        if let Some(port) = self.outbound_port {
            let mut rules = Vec::new();
            if let Some(mark) = self.mark {
                rules.push(format!("meta mark {mark:#010x} return"));
            }
            if let Some(uid) = self.uid {
                rules.push(format!("meta skuid {uid} return"));
            }
            if let Some(gid) = self.gid {
                rules.push(format!("meta skgid {gid} return"));
            }
            rules.push("oifname \"lo\" return".to_string());
            for family in families(ipv6) {
                let (nft, loopback) = (family.nft, family.loopback);
                let host = loopback.split_once('/').map_or(loopback, |(host, _)| host);
                rules.push(format!("{nft} daddr {host} return"));
                let nets: Vec<_> = self.exclude_outbound_cidrs.iter().filter(|n| family.holds(n)).collect();
                if !nets.is_empty() {
                    rules.push(format!("{nft} daddr {{ {} }} return", list(&nets)));
                }
            }
            if !self.exclude_outbound_ports.is_empty() {
                rules.push(format!("tcp dport {{ {} }} return", list(&self.exclude_outbound_ports)));
            }
            rules.push(format!("meta l4proto tcp redirect to :{port}"));
            script += &nft_chain("outbound", "output priority -100", &rules);
        }
        script + "}\n"
    }

    /// One line saying what apply did.
    fn summary(&self, options: &Options) -> String {
        let how = format!(
            "{}, {}",
            if options.nftables { "nftables" } else { "iptables" },
            if options.ipv6 { "IPv4 and IPv6" } else { "IPv4 only" }
        );
        if options.remove {
            return format!("removed sluice's redirection rules ({how})");
        }
        let port = |p: Option<u16>| p.map_or_else(|| "-".to_string(), |p| p.to_string());
        format!(
            "redirecting TCP: inbound to port {}, outbound to port {} ({how})",
            port(self.inbound_port),
            port(self.outbound_port)
        )
    }
}

/// How `sluice iptables` was asked to act.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Print the shell script instead of running it.
    pub dry_run: bool,
    /// Remove the rules instead of installing them.
    pub remove: bool,
    /// Use `nft` instead of `iptables`/`ip6tables`.
    pub nftables: bool,
    /// Also redirect IPv6 (`ip6tables`, or an `inet` table).
    pub ipv6: bool,
}

/// Why applying or printing the rules failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot run `{command}`: {source}")]
    Spawn { command: String, source: std::io::Error },
    #[error("`{command}` failed ({status}): {stderr}{hint}")]
    Failed {
        command: String,
        status: std::process::ExitStatus,
        stderr: String,
        hint: &'static str,
    },
    #[error("cannot write the output: {0}")]
    Write(std::io::Error),
}

/// Print (`dry_run`) or apply/remove `plan`'s rules; apply writes a
/// one-line summary to `out`.
pub fn run(plan: &Plan, options: &Options, out: &mut dyn Write) -> Result<(), Error> {
    let steps = plan.steps(options);
    if options.dry_run {
        return out.write_all(render(&steps).as_bytes()).map_err(Error::Write);
    }
    execute(&steps)?;
    writeln!(out, "{}", plan.summary(options)).map_err(Error::Write)
}

/// An address family, as each tool names it.
struct Family {
    iptables: &'static str,
    nft: &'static str,
    loopback: &'static str,
    v6: bool,
}

impl Family {
    fn holds(&self, net: &IpNet) -> bool {
        matches!(net, IpNet::V6(_)) == self.v6
    }
}

const V4: Family = Family {
    iptables: "iptables",
    nft: "ip",
    loopback: "127.0.0.1/32",
    v6: false,
};
const V6: Family = Family {
    iptables: "ip6tables",
    nft: "ip6",
    loopback: "::1/128",
    v6: true,
};

fn families(ipv6: bool) -> &'static [Family] {
    if ipv6 { &[V4, V6] } else { &[V4] }
}

/// One command line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Cmd {
    program: &'static str,
    args: Vec<String>,
}

impl fmt::Display for Cmd {
    /// As a shell would take it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.program)?;
        for arg in &self.args {
            let plain = !arg.is_empty()
                && arg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_./:,=@%+".contains(&b));
            if plain {
                write!(f, " {arg}")?;
            } else {
                write!(f, " '{}'", arg.replace('\'', r"'\''"))?;
            }
        }
        Ok(())
    }
}

/// One thing apply does, and the dry run prints.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    /// Must succeed.
    Run(Cmd),
    /// May fail (creating a chain that exists, removing one that does not).
    Tolerate(Cmd),
    /// `add` unless `check` succeeds.
    Ensure { check: Cmd, add: Cmd },
    /// `delete` as long as `check` succeeds.
    DeleteAll { check: Cmd, delete: Cmd },
    /// Must succeed, reading `input` on stdin.
    Feed { cmd: Cmd, input: String },
}

/// The steps as a shell script one can paste.
fn render(steps: &[Step]) -> String {
    let mut script = String::from("#!/bin/sh\nset -e\n");
    for step in steps {
        script += &match step {
            Step::Run(cmd) => format!("{cmd}\n"),
            Step::Tolerate(cmd) => format!("{cmd} 2>/dev/null || true\n"),
            Step::Ensure { check, add } => format!("{check} 2>/dev/null || {add}\n"),
            Step::DeleteAll { check, delete } => format!("while {check} 2>/dev/null; do {delete}; done\n"),
            Step::Feed { cmd, input } => format!("{cmd} <<'EOF'\n{input}EOF\n"),
        };
    }
    script
}

fn execute(steps: &[Step]) -> Result<(), Error> {
    for step in steps {
        match step {
            Step::Run(cmd) => require(cmd, output(cmd, None)?)?,
            Step::Tolerate(cmd) => {
                let _ = output(cmd, None);
            }
            Step::Ensure { check, add } => {
                if !succeeds(check) {
                    require(add, output(add, None)?)?;
                }
            }
            Step::DeleteAll { check, delete } => {
                for _ in 0..MAX_DELETES {
                    if !succeeds(check) {
                        break;
                    }
                    require(delete, output(delete, None)?)?;
                }
            }
            Step::Feed { cmd, input } => require(cmd, output(cmd, Some(input))?)?,
        }
    }
    Ok(())
}

/// Run `cmd` to completion, capturing its output.
fn output(cmd: &Cmd, input: Option<&str>) -> Result<Output, Error> {
    let spawn = |source: std::io::Error| Error::Spawn {
        command: cmd.to_string(),
        source,
    };
    let mut child = Command::new(cmd.program)
        .args(&cmd.args)
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn)?;
    // Dropping stdin closes it, so the child sees the end of its input.
    let written = match (input, child.stdin.take()) {
        (Some(input), Some(mut stdin)) => stdin.write_all(input.as_bytes()),
        _ => Ok(()),
    };
    let output = child.wait_with_output().map_err(spawn)?;
    // A child that succeeded on part of its input must not pass as done.
    if output.status.success() {
        written.map_err(spawn)?;
    }
    Ok(output)
}

fn succeeds(cmd: &Cmd) -> bool {
    output(cmd, None).is_ok_and(|o| o.status.success())
}

fn require(cmd: &Cmd, output: Output) -> Result<(), Error> {
    if output.status.success() {
        return Ok(());
    }
    Err(Error::Failed {
        command: cmd.to_string(),
        status: output.status,
        stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        hint: if cmd.program == "ip6tables" {
            " (where IPv6 is off, pass --no-ipv6)"
        } else {
            ""
        },
    })
}

/// Remove a chain and the jumps to it; nothing to do when it is absent.
fn remove_chain(bin: &'static str, chain: &str, hook: &str) -> [Step; 3] {
    [
        Step::DeleteAll {
            check: jump(bin, "-C", hook, chain),
            delete: jump(bin, "-D", hook, chain),
        },
        Step::Tolerate(nat(bin, &["-F", chain])),
        Step::Tolerate(nat(bin, &["-X", chain])),
    ]
}

fn iptables_remove(bin: &'static str) -> Vec<Step> {
    let inbound = remove_chain(bin, INBOUND_CHAIN, "PREROUTING");
    inbound
        .into_iter()
        .chain(remove_chain(bin, OUTBOUND_CHAIN, "OUTPUT"))
        .collect()
}

/// `bin -t nat rest...`
fn nat(program: &'static str, rest: &[&str]) -> Cmd {
    let args = ["-t", "nat"].iter().chain(rest).map(|s| s.to_string()).collect();
    Cmd { program, args }
}

/// The rule in `hook` that sends TCP to `chain` (`op`: -C, -A or -D).
fn jump(bin: &'static str, op: &str, hook: &str, chain: &str) -> Cmd {
    nat(bin, &[op, hook, "-p", "tcp", "-j", chain])
}

fn dport_return(port: u16) -> Vec<String> {
    args(&["-p", "tcp", "--dport", &port.to_string(), "-j", "RETURN"])
}

fn redirect(port: u16) -> Vec<String> {
    args(&["-p", "tcp", "-j", "REDIRECT", "--to-ports", &port.to_string()])
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn nft(input: String) -> Step {
    let cmd = Cmd {
        program: "nft",
        args: args(&["-f", "-"]),
    };
    Step::Feed { cmd, input }
}

fn nft_family(ipv6: bool) -> &'static str {
    if ipv6 { "inet" } else { "ip" }
}

/// Make sure the table exists, then delete it: removes it, there or not.
fn nft_reset(family: &str) -> String {
    format!("table {family} sluice\ndelete table {family} sluice\n")
}

fn nft_chain(name: &str, hook: &str, rules: &[String]) -> String {
    let mut chain = format!("\tchain {name} {{\n\t\ttype nat hook {hook}; policy accept;\n");
    for rule in rules {
        chain += &format!("\t\t{rule}\n");
    }
    chain + "\t}\n"
}

fn list<T: fmt::Display>(items: &[T]) -> String {
    items.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
}

/// `items` without repeats, in first-seen order.
fn unique<T: PartialEq>(items: impl IntoIterator<Item = T>) -> Vec<T> {
    let mut seen = Vec::new();
    for item in items {
        if !seen.contains(&item) {
            seen.push(item);
        }
    }
    seen
}

#[cfg(test)]
mod tests;
