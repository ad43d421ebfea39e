//! `[sidecar]` and the sidecar keys elsewhere (`intercept` on a listener,
//! `direction` on a route, `destinations`/`services` on a cluster): how
//! sluice behaves beside one application, receiving its traffic through
//! iptables redirection. Plain data, validated once; the listener, the
//! upstream and `sluice iptables` read it.

use super::raw::{RawCluster, RawListener, RawRoute, RawSidecar};
use super::validate::Locator;
use super::{ConfigError, ListenerConfig};
use ipnet::IpNet;
use std::time::Duration;

/// Which way an intercepted connection goes, seen from the application.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// To the application: redirected from `PREROUTING`.
    Inbound,
    /// From the application: redirected from `OUTPUT`.
    Outbound,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }

    pub(super) fn parse(text: &str) -> Option<Direction> {
        match text {
            "inbound" => Some(Direction::Inbound),
            "outbound" => Some(Direction::Outbound),
            _ => None,
        }
    }
}

/// The reserved cluster name that means "where the client was going": the
/// intercepted connection's original destination (outbound: unless a
/// cluster's `destinations` or `services` claim it; inbound: the
/// application). The default cluster of a route with a `direction`.
pub const ORIGINAL_DESTINATION: &str = "original-destination";

/// Default time a client on an intercepted connection has to send enough
/// bytes for its protocol to be told.
pub const DEFAULT_DETECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default time an opaque TCP connection may go without a byte either way.
pub const DEFAULT_TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

/// `[sidecar]`: a bootstrap setting (read at start).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SidecarConfig {
    /// `SO_MARK` set on every connection sluice opens, so the `OUTPUT` rules
    /// let them out instead of redirecting them back (needs CAP_NET_ADMIN).
    pub mark: Option<u32>,
    /// The UID sluice runs as: `sluice iptables` lets its traffic out.
    pub proxy_uid: Option<u32>,
    /// The GID sluice runs as, likewise.
    pub proxy_gid: Option<u32>,
    /// Destination ports whose connections skip detection and are relayed
    /// as opaque TCP (server-speaks-first protocols: MySQL, SMTP).
    pub opaque_ports: Vec<u16>,
    /// How long detection waits for the client's first bytes.
    pub detect_timeout: Duration,
    /// How long an opaque TCP connection may stay silent both ways.
    pub tcp_idle_timeout: Duration,
    /// Inbound ports not redirected (besides the admin port).
    pub exclude_inbound_ports: Vec<u16>,
    /// Outbound destination ports not redirected.
    pub exclude_outbound_ports: Vec<u16>,
    /// Outbound destination networks not redirected.
    pub exclude_outbound_cidrs: Vec<IpNet>,
    /// The port of the inbound interception listener.
    pub inbound_port: Option<u16>,
    /// The port of the outbound interception listener.
    pub outbound_port: Option<u16>,
    /// The admin port, never redirected inbound.
    pub admin_port: Option<u16>,
}

impl SidecarConfig {
    /// Whether `port` is relayed as opaque TCP without detection.
    pub fn is_opaque(&self, port: u16) -> bool {
        self.opaque_ports.contains(&port)
    }
}

/// Validate `[sidecar]` against the listeners (which must include the
/// interception listeners it needs) and the admin address.
pub(super) fn build(
    loc: &Locator<'_>,
    raw: Option<&RawSidecar>,
    listeners: &[ListenerConfig],
    admin_port: Option<u16>,
) -> Result<Option<SidecarConfig>, ConfigError> {
    let port_of = |direction: Direction| {
        listeners
            .iter()
            .find(|l| l.intercept == Some(direction))
            .map(|l| l.address.port())
    };
    let (inbound_port, outbound_port) = (port_of(Direction::Inbound), port_of(Direction::Outbound));
    let Some(raw) = raw else {
        if inbound_port.is_none() && outbound_port.is_none() {
            return Ok(None);
        }
        return Ok(Some(SidecarConfig {
            mark: None,
            proxy_uid: None,
            proxy_gid: None,
            opaque_ports: Vec::new(),
            detect_timeout: DEFAULT_DETECT_TIMEOUT,
            tcp_idle_timeout: DEFAULT_TCP_IDLE_TIMEOUT,
            exclude_inbound_ports: Vec::new(),
            exclude_outbound_ports: Vec::new(),
            exclude_outbound_cidrs: Vec::new(),
            inbound_port,
            outbound_port,
            admin_port,
        }));
    };
    if inbound_port.is_none() && outbound_port.is_none() {
        return loc.err(
            None,
            "sidecar".into(),
            "[sidecar] needs a listener with `intercept = \"inbound\"` or `intercept = \"outbound\"`",
        );
    }
    let ports = |list: &[toml::Spanned<u32>], key: &str| -> Result<Vec<u16>, ConfigError> {
        list.iter()
            .enumerate()
            .map(|(i, p)| match u16::try_from(*p.get_ref()) {
                Ok(port) if port > 0 => Ok(port),
                _ => loc.at(p, format!("sidecar.{key}[{i}]"), "a port is 1 to 65535"),
            })
            .collect()
    };
    let mut cidrs = Vec::new();
    for (i, c) in raw.exclude_outbound_cidrs.iter().enumerate() {
        let text = c.get_ref();
        // A bare address is a single host.
        let net = text
            .parse::<IpNet>()
            .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from));
        match net {
            Ok(net) => cidrs.push(net.trunc()),
            Err(_) => {
                return loc.at(
                    c,
                    format!("sidecar.exclude_outbound_cidrs[{i}]"),
                    format!("`{text}` is not a network like `10.0.0.0/8` or `fd00::/8`"),
                );
            }
        }
    }
    let duration = |value: &Option<toml::Spanned<String>>, key: &str, default: Duration| match value {
        Some(v) => loc.duration(v, format!("sidecar.{key}")),
        None => Ok(default),
    };
    if let Some(mark) = raw.mark.as_ref().filter(|m| *m.get_ref() == 0) {
        return loc.at(mark, "sidecar.mark".into(), "0 is no mark; use a value like 1337");
    }
    Ok(Some(SidecarConfig {
        mark: raw.mark.as_ref().map(|m| *m.get_ref()),
        proxy_uid: raw.proxy_uid,
        proxy_gid: raw.proxy_gid,
        opaque_ports: ports(&raw.opaque_ports, "opaque_ports")?,
        detect_timeout: duration(&raw.detect_timeout, "detect_timeout", DEFAULT_DETECT_TIMEOUT)?,
        tcp_idle_timeout: duration(&raw.tcp_idle_timeout, "tcp_idle_timeout", DEFAULT_TCP_IDLE_TIMEOUT)?,
        exclude_inbound_ports: ports(&raw.exclude_inbound_ports, "exclude_inbound_ports")?,
        exclude_outbound_ports: ports(&raw.exclude_outbound_ports, "exclude_outbound_ports")?,
        exclude_outbound_cidrs: cidrs,
        inbound_port,
        outbound_port,
        admin_port,
    }))
}

/// `intercept` on `[[listeners]]`.
pub(super) fn intercept(loc: &Locator<'_>, l: &RawListener, i: usize) -> Result<Option<Direction>, ConfigError> {
    let Some(value) = &l.intercept else {
        return Ok(None);
    };
    match Direction::parse(value.get_ref()) {
        Some(direction) => Ok(Some(direction)),
        None => loc.at(
            value,
            format!("listeners[{i}].intercept"),
            format!("`{}` is not `inbound` or `outbound`", value.get_ref()),
        ),
    }
}

/// `direction` on `[[routes]]`: the route serves that direction's
/// interception listeners, which must exist.
pub(super) fn route_direction(
    loc: &Locator<'_>,
    r: &RawRoute,
    i: usize,
    listeners: &[ListenerConfig],
) -> Result<Option<Direction>, ConfigError> {
    let Some(value) = &r.direction else {
        return Ok(None);
    };
    let key = format!("routes[{i}].direction");
    let Some(direction) = Direction::parse(value.get_ref()) else {
        return loc.at(
            value,
            key,
            format!("`{}` is not `inbound` or `outbound`", value.get_ref()),
        );
    };
    if !listeners.iter().any(|l| l.intercept == Some(direction)) {
        return loc.at(
            value,
            key,
            format!(
                "no listener has `intercept = \"{}\"`, so this route would never serve",
                direction.as_str()
            ),
        );
    }
    Ok(Some(direction))
}

/// `destinations` and `services` on `[[clusters]]`: the outbound traffic
/// the cluster takes over from the original destination.
pub(super) fn claims(loc: &Locator<'_>, c: &RawCluster, i: usize) -> Result<DestinationClaims, ConfigError> {
    let mut claims = DestinationClaims::default();
    for (j, d) in c.destinations.iter().enumerate() {
        claims
            .destinations
            .push(loc.socket_addr(d, format!("clusters[{i}].destinations[{j}]"))?);
    }
    for (j, s) in c.services.iter().enumerate() {
        let name = s.get_ref().to_ascii_lowercase();
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        if !valid {
            return loc.at(
                s,
                format!("clusters[{i}].services[{j}]"),
                format!(
                    "`{}` is not a host name like `reviews.shop.svc.cluster.local`",
                    s.get_ref()
                ),
            );
        }
        claims.services.push(name);
    }
    Ok(claims)
}

/// Every interception listener of one direction listens on the same port:
/// the redirection rules send all of a direction's traffic to one port.
pub(super) fn one_port_per_direction(
    loc: &Locator<'_>,
    raw: &[RawListener],
    listeners: &[ListenerConfig],
) -> Result<(), ConfigError> {
    for (i, l) in listeners.iter().enumerate() {
        let Some(direction) = l.intercept else { continue };
        let first = listeners.iter().find(|o| o.intercept == Some(direction));
        if let Some(first) = first.filter(|f| f.address.port() != l.address.port()) {
            return loc.at(
                &raw[i].address,
                format!("listeners[{i}].address"),
                format!(
                    "every `intercept = \"{}\"` listener must use the same port (the rules redirect to one): `{}` uses {}",
                    direction.as_str(),
                    first.name,
                    first.address.port()
                ),
            );
        }
    }
    Ok(())
}

/// The claims of cluster `i` (the last of `clusters`) overlap none before it.
pub(super) fn unclaimed_before(
    loc: &Locator<'_>,
    c: &RawCluster,
    i: usize,
    clusters: &[super::ClusterConfig],
) -> Result<(), ConfigError> {
    let Some((new, earlier)) = clusters.split_last() else {
        return Ok(());
    };
    for (j, d) in new.claims.destinations.iter().enumerate() {
        if let Some(other) = earlier.iter().find(|o| o.claims.destinations.contains(d)) {
            return loc.at(
                &c.destinations[j],
                format!("clusters[{i}].destinations[{j}]"),
                format!("{d} is already claimed by cluster `{}`", other.name),
            );
        }
    }
    for (j, name) in new.claims.services.iter().enumerate() {
        if let Some(other) = earlier.iter().find(|o| o.claims.services.contains(name)) {
            return loc.at(
                &c.services[j],
                format!("clusters[{i}].services[{j}]"),
                format!("`{name}` is already claimed by cluster `{}`", other.name),
            );
        }
    }
    Ok(())
}

/// What outbound traffic a cluster claims: requests whose original
/// destination is one of `destinations`, or whose `Host` (port aside) is
/// one of `services`, go to the cluster instead of the original destination.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DestinationClaims {
    pub destinations: Vec<std::net::SocketAddr>,
    /// Lower case.
    pub services: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::path::Path;

    const LISTENERS: &str = r#"
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
"#;

    fn parse(rest: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("pod.toml"), &format!("{LISTENERS}{rest}"))
    }

    /// The error's key and line.
    fn located(rest: &str) -> (String, Option<usize>, String) {
        let e = parse(rest).unwrap_err();
        (e.key, e.line, e.message)
    }

    fn line_of(rest: &str, needle: &str) -> Option<usize> {
        let text = format!("{LISTENERS}{rest}");
        text.lines().position(|l| l.contains(needle)).map(|i| i + 1)
    }

    #[test]
    fn a_sidecar_config_parses_into_plain_data() {
        let config = parse(
            r#"
[sidecar]
mark = 1337
proxy_uid = 2102
opaque_ports = [3306, 25]
detect_timeout = "2s"
exclude_inbound_ports = [22]
exclude_outbound_ports = [5432]
exclude_outbound_cidrs = ["169.254.169.254", "10.0.0.0/8", "fd00::1/8"]

[[clusters]]
name = "reviews"
endpoints = ["10.0.0.9:9080"]
destinations = ["10.96.0.12:9080"]
services = ["Reviews.shop.svc.cluster.local"]

[[routes]]
direction = "outbound"
hosts = ["reviews"]
cluster = "reviews"

[[routes]]
direction = "inbound"
"#,
        )
        .unwrap();
        let sidecar = config.bootstrap.sidecar.as_ref().unwrap();
        assert_eq!(sidecar.mark, Some(1337));
        assert_eq!(sidecar.proxy_uid, Some(2102));
        assert!(sidecar.is_opaque(3306) && !sidecar.is_opaque(80));
        assert_eq!(sidecar.detect_timeout, Duration::from_secs(2));
        assert_eq!(sidecar.tcp_idle_timeout, DEFAULT_TCP_IDLE_TIMEOUT);
        assert_eq!(
            (sidecar.inbound_port, sidecar.outbound_port),
            (Some(15006), Some(15001))
        );
        assert_eq!(sidecar.admin_port, Some(15020));
        let cidrs: Vec<String> = sidecar.exclude_outbound_cidrs.iter().map(|c| c.to_string()).collect();
        assert_eq!(cidrs, ["169.254.169.254/32", "10.0.0.0/8", "fd00::/8"]);
        assert_eq!(config.clusters[0].claims.services, ["reviews.shop.svc.cluster.local"]);
        assert_eq!(config.clusters[0].claims.destinations[0].to_string(), "10.96.0.12:9080");
        assert_eq!(config.routes[0].direction, Some(Direction::Outbound));
        // A direction route without a cluster goes where the client was going.
        assert_eq!(config.routes[1].cluster, ORIGINAL_DESTINATION);
        assert_eq!(config.routes[1].direction, Some(Direction::Inbound));
    }

    #[test]
    fn interception_listeners_alone_give_default_settings() {
        let config = parse("").unwrap();
        let sidecar = config.bootstrap.sidecar.unwrap();
        assert_eq!(sidecar.detect_timeout, DEFAULT_DETECT_TIMEOUT);
        assert_eq!(sidecar.mark, None);
        let gateway = Config::parse(Path::new("gw.toml"), "[[listeners]]\naddress = \"127.0.0.1:1\"\n").unwrap();
        assert!(gateway.bootstrap.sidecar.is_none());
    }

    #[test]
    fn mistakes_name_their_key_and_line() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "[sidecar]\nopaque_ports = [70000]\n",
                "sidecar.opaque_ports[0]",
                "70000",
            ),
            ("[sidecar]\nmark = 0\n", "sidecar.mark", "mark = 0"),
            (
                "[sidecar]\nexclude_outbound_cidrs = [\"10.0.0/8\"]\n",
                "sidecar.exclude_outbound_cidrs[0]",
                "10.0.0/8",
            ),
            (
                "[sidecar]\ndetect_timeout = \"soon\"\n",
                "sidecar.detect_timeout",
                "soon",
            ),
            (
                "[[routes]]\ndirection = \"sideways\"\n",
                "routes[0].direction",
                "sideways",
            ),
            (
                "[[clusters]]\nname = \"original-destination\"\nendpoints = [\"a:1\"]\n",
                "clusters[0].name",
                "original-destination",
            ),
            (
                "[[clusters]]\nname = \"a\"\nendpoints = [\"a:1\"]\ndestinations = [\"nowhere\"]\n",
                "clusters[0].destinations[0]",
                "nowhere",
            ),
            (
                "[[clusters]]\nname = \"a\"\nendpoints = [\"a:1\"]\nservices = [\"bad name\"]\n",
                "clusters[0].services[0]",
                "bad name",
            ),
        ];
        for (rest, key, on_line) in cases {
            let (got_key, line, message) = located(rest);
            assert_eq!(got_key, *key, "{rest}: {message}");
            assert_eq!(line, line_of(rest, on_line), "{rest}: {message}");
        }
    }

    #[test]
    fn routes_and_listeners_must_fit_together() {
        // A direction no listener intercepts.
        let text = "[[listeners]]\nname = \"in\"\naddress = \"0.0.0.0:15006\"\nintercept = \"inbound\"\n\
                    [[routes]]\ndirection = \"outbound\"\n";
        let e = Config::parse(Path::new("pod.toml"), text).unwrap_err();
        assert_eq!(e.key, "routes[0].direction");
        assert!(e.message.contains("intercept = \"outbound\""), "{e}");
        // `original-destination` outside sidecar mode.
        let text = "[[listeners]]\naddress = \"127.0.0.1:1\"\n[[routes]]\ncluster = \"original-destination\"\n";
        let e = Config::parse(Path::new("gw.toml"), text).unwrap_err();
        assert_eq!(e.key, "routes[0].cluster");
        // Nor on an ordinary route of a sidecar.
        let e = parse("[[routes]]\ncluster = \"original-destination\"\n").unwrap_err();
        assert_eq!(e.key, "routes[0].cluster");
        // One port per direction.
        let e =
            parse("[[listeners]]\nname = \"in6\"\naddress = \"[::]:15007\"\nintercept = \"inbound\"\n").unwrap_err();
        assert_eq!(e.key, "listeners[2].address", "{e}");
        // One claimant per destination and per service.
        let twice = "[[clusters]]\nname = \"a\"\nendpoints = [\"a:1\"]\nservices = [\"s\"]\n\
                     [[clusters]]\nname = \"b\"\nendpoints = [\"b:1\"]\nservices = [\"S\"]\n";
        let e = parse(twice).unwrap_err();
        assert_eq!(e.key, "clusters[1].services[0]", "{e}");
        assert!(e.message.contains("cluster `a`"), "{e}");
        // A gateway route still needs its cluster.
        let e = Config::parse(
            Path::new("gw.toml"),
            "[[listeners]]\naddress = \"127.0.0.1:1\"\n[[routes]]\nname = \"r\"\n",
        )
        .unwrap_err();
        assert_eq!((e.key.as_str(), e.line), ("routes[0].cluster", Some(4)));
        // `[sidecar]` without an interception listener.
        let text = "[[listeners]]\naddress = \"127.0.0.1:1\"\n[sidecar]\nmark = 1\n";
        let e = Config::parse(Path::new("gw.toml"), text).unwrap_err();
        assert_eq!(e.key, "sidecar");
        // TLS on an interception listener.
        let text = "[[listeners]]\naddress = \"0.0.0.0:15006\"\nintercept = \"inbound\"\n\
                    [listeners.tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n";
        let e = Config::parse(Path::new("pod.toml"), text).unwrap_err();
        assert_eq!(e.key, "listeners[0].tls", "{e}");
    }
}
