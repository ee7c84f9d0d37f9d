//! Published ports: docker's `-p [IP:][HOST:]CONTAINER[/PROTO]` forms, and
//! choosing free host ports for those given without one (and for `-P`).

use std::net::{IpAddr, TcpListener, UdpSocket};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One published port; `host_port` 0 means "any free port", chosen at start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PortBinding {
    pub container_port: u16,
    /// "tcp", "udp" or "sctp".
    pub protocol: String,
    /// Empty for every host address.
    pub host_ip: String,
    pub host_port: u16,
}

impl PortBinding {
    /// Docker's "80/tcp" key.
    pub fn key(&self) -> String {
        format!("{}/{}", self.container_port, self.protocol)
    }
}

fn port_range(s: &str, spec: &str) -> Result<(u16, u16)> {
    let bad = || {
        Error::Invalid(format!(
            "invalid port specification {spec:?}: {s:?} is not a port or a port range"
        ))
    };
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let a: u16 = a.parse().map_err(|_| bad())?;
    let b: u16 = b.parse().map_err(|_| bad())?;
    if a == 0 || b < a {
        return Err(bad());
    }
    Ok((a, b))
}

/// Parse one `-p` value into its bindings (a range gives one per port).
pub fn parse_publish(spec: &str) -> Result<Vec<PortBinding>> {
    let (rest, protocol) = match spec.rsplit_once('/') {
        Some((r, p)) => (r, p.to_ascii_lowercase()),
        None => (spec, "tcp".to_string()),
    };
    if !matches!(protocol.as_str(), "tcp" | "udp" | "sctp") {
        return Err(Error::Invalid(format!(
            "invalid port specification {spec:?}: unknown protocol {protocol:?}"
        )));
    }
    // An IPv6 host address is bracketed: [::1]:8080:80.
    let (host_ip, rest) = if let Some(r) = rest.strip_prefix('[') {
        let (ip, after) = r.split_once("]:").ok_or_else(|| {
            Error::Invalid(format!("invalid port specification {spec:?}: unclosed ["))
        })?;
        (ip.to_string(), after.to_string())
    } else {
        let parts: Vec<&str> = rest.split(':').collect();
        match parts.len() {
            1 | 2 => (String::new(), rest.to_string()),
            3 => (parts[0].to_string(), format!("{}:{}", parts[1], parts[2])),
            _ => {
                return Err(Error::Invalid(format!(
                    "invalid port specification {spec:?}"
                )))
            }
        }
    };
    if !host_ip.is_empty() && host_ip.parse::<IpAddr>().is_err() {
        return Err(Error::Invalid(format!(
            "invalid port specification {spec:?}: {host_ip:?} is not an IP address"
        )));
    }
    let (host, ctr) = match rest.split_once(':') {
        Some((h, c)) => (h, c),
        None => ("", rest.as_str()),
    };
    let (c0, c1) = port_range(ctr, spec)?;
    let hosts = if host.is_empty() {
        None
    } else {
        Some(port_range(host, spec)?)
    };
    if let Some((h0, h1)) = hosts {
        if h1 - h0 != c1 - c0 {
            return Err(Error::Invalid(format!(
                "invalid port specification {spec:?}: host and container port ranges differ in length"
            )));
        }
    }
    Ok((c0..=c1)
        .map(|p| PortBinding {
            container_port: p,
            protocol: protocol.clone(),
            host_ip: host_ip.clone(),
            host_port: hosts.map(|(h0, _)| h0 + (p - c0)).unwrap_or(0),
        })
        .collect())
}

/// `--expose`/image ExposedPorts keys ("80", "80/tcp", "53/udp") as bindings
/// to any free host port, for `-P`.
pub fn publish_all(exposed: &[String]) -> Result<Vec<PortBinding>> {
    let mut out = Vec::new();
    for e in exposed {
        let (port, proto) = e.split_once('/').unwrap_or((e, "tcp"));
        let (a, b) = port_range(port, e)?;
        for p in a..=b {
            out.push(PortBinding {
                container_port: p,
                protocol: proto.to_ascii_lowercase(),
                host_ip: String::new(),
                host_port: 0,
            });
        }
    }
    Ok(out)
}

/// Give every binding without a host port a free one: the kernel picks an
/// ephemeral port that nothing holds now (as docker's allocator does from
/// the same range).
pub fn assign_free(bindings: &mut [PortBinding]) -> Result<()> {
    for b in bindings.iter_mut().filter(|b| b.host_port == 0) {
        let ip: IpAddr = if b.host_ip.is_empty() {
            IpAddr::from([0, 0, 0, 0])
        } else {
            b.host_ip.parse().expect("validated when parsed")
        };
        let port = if b.protocol == "udp" {
            UdpSocket::bind((ip, 0)).and_then(|s| s.local_addr())
        } else {
            TcpListener::bind((ip, 0)).and_then(|s| s.local_addr())
        }
        .map_err(|e| {
            Error::io(
                format!("finding a free host port for {} on {ip}", b.key()),
                e,
            )
        })?
        .port();
        b.host_port = port;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(s: &str) -> (String, u16, u16, String) {
        let v = parse_publish(s).unwrap();
        assert_eq!(v.len(), 1, "{s}");
        let b = &v[0];
        (
            b.host_ip.clone(),
            b.host_port,
            b.container_port,
            b.protocol.clone(),
        )
    }

    #[test]
    fn docker_forms() {
        assert_eq!(one("80"), ("".into(), 0, 80, "tcp".into()));
        assert_eq!(one("8080:80"), ("".into(), 8080, 80, "tcp".into()));
        assert_eq!(
            one("127.0.0.1:8080:80/udp"),
            ("127.0.0.1".into(), 8080, 80, "udp".into())
        );
        assert_eq!(
            one("127.0.0.1::80"),
            ("127.0.0.1".into(), 0, 80, "tcp".into())
        );
        assert_eq!(one("[::1]:8080:80"), ("::1".into(), 8080, 80, "tcp".into()));
        let r = parse_publish("8000-8002:80-82").unwrap();
        assert_eq!(
            r.iter()
                .map(|b| (b.host_port, b.container_port))
                .collect::<Vec<_>>(),
            vec![(8000, 80), (8001, 81), (8002, 82)]
        );
        for bad in [
            "",
            "x:80",
            "80/icmp",
            "1.2.3:80:80",
            "8000-8001:80",
            "0",
            "70000",
        ] {
            let e = parse_publish(bad).unwrap_err().to_string();
            assert!(e.contains("invalid port specification"), "{bad}: {e}");
        }
    }

    #[test]
    fn free_ports_are_assigned() {
        let mut v = publish_all(&["80/tcp".into(), "53/udp".into()]).unwrap();
        assign_free(&mut v).unwrap();
        assert!(v.iter().all(|b| b.host_port != 0));
        assert_eq!(v[1].protocol, "udp");
    }
}
