//! The nat table rule set for a set of Services, as kube-proxy's iptables
//! mode writes it: one chain per Service port (load-balancing over its ready
//! endpoints with `statistic --mode random`, client-IP affinity with
//! `recent`), one chain per endpoint (the DNAT), entry chains jumped to from
//! PREROUTING/OUTPUT/POSTROUTING. Every chain name starts with the
//! instance's prefix, so several control planes on one host (tests) never
//! touch each other's rules.

use std::fmt::Write as _;

use sha2::{Digest, Sha256};

/// The connection mark bit meaning "masquerade this" (kube-proxy uses
/// 0x4000, which hako's engine already uses for its bridges).
pub const MASQ_MARK: &str = "0x8000/0x8000";

/// The comment naming the process that owns an instance's rules.
pub const OWNER_COMMENT: &str = "hako kube-proxy pid ";

/// One Service port as the proxy programs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SvcPort {
    /// `namespace/name:port-name`, for comments and chain hashes.
    pub id: String,
    pub cluster_ip: String,
    pub port: u16,
    /// `tcp`, `udp` or `sctp`.
    pub protocol: String,
    /// Ports on every local address: the node port, and for a LoadBalancer
    /// Service its own port too (k3s ServiceLB's host ports, single node).
    pub host_ports: Vec<u16>,
    /// ClientIP session affinity timeout in seconds.
    pub affinity: Option<u32>,
    /// Ready endpoints: (ip, port).
    pub endpoints: Vec<(String, u16)>,
}

/// The names of an instance's chains.
#[derive(Debug, Clone)]
pub struct Chains {
    pub prefix: String,
}

impl Chains {
    /// `tag` is at most 6 characters (chain names are limited to 28).
    pub fn new(tag: &str) -> Chains {
        Chains {
            prefix: format!("HK{tag}-"),
        }
    }
    pub fn services(&self) -> String {
        format!("{}SERVICES", self.prefix)
    }
    pub fn nodeports(&self) -> String {
        format!("{}NODEPORTS", self.prefix)
    }
    pub fn postrouting(&self) -> String {
        format!("{}POSTRTG", self.prefix)
    }
    pub fn mark_masq(&self) -> String {
        format!("{}MARK-MASQ", self.prefix)
    }
    fn hashed(&self, kind: char, what: &str) -> String {
        let h = Sha256::digest(what.as_bytes());
        let mut s = format!("{}{kind}", self.prefix);
        for b in &h[..8] {
            let _ = write!(s, "{b:02x}");
        }
        s
    }
    pub fn svc(&self, p: &SvcPort) -> String {
        self.hashed('V', &format!("{}/{}", p.id, p.protocol))
    }
    pub fn sep(&self, p: &SvcPort, ip: &str, port: u16) -> String {
        self.hashed('E', &format!("{}/{}/{ip}:{port}", p.id, p.protocol))
    }
    /// The filter chain rejecting connections to Services without endpoints.
    pub fn no_endpoints(&self) -> String {
        format!("{}NO-EP", self.prefix)
    }
    /// The built-in chains that jump to this instance's entry chains:
    /// (table, chain, matches before the jump, target).
    pub fn hooks(&self) -> Vec<(&'static str, &'static str, &'static [&'static str], String)> {
        const NEW: &[&str] = &["-m", "conntrack", "--ctstate", "NEW"];
        vec![
            ("nat", "PREROUTING", &[], self.services()),
            ("nat", "OUTPUT", &[], self.services()),
            ("nat", "POSTROUTING", &[], self.postrouting()),
            ("filter", "INPUT", NEW, self.no_endpoints()),
            ("filter", "OUTPUT", NEW, self.no_endpoints()),
            ("filter", "FORWARD", NEW, self.no_endpoints()),
        ]
    }
}

/// The `iptables-restore --noflush` input that replaces every chain of the
/// instance in one transaction: chains in `existing` no longer wanted are
/// flushed and deleted in the same commit.
pub fn render(ch: &Chains, ports: &[SvcPort], existing: &[String]) -> String {
    let mut decl: Vec<String> = vec![
        ch.services(),
        ch.nodeports(),
        ch.postrouting(),
        ch.mark_masq(),
    ];
    let mut rules = String::new();
    let mm = ch.mark_masq();
    // The owner's pid, so a later proxy can remove the rules of one that was killed.
    let _ = writeln!(
        rules,
        "-A {mm} -m comment --comment \"{OWNER_COMMENT}{}\" -j MARK --set-xmark {MASQ_MARK}",
        std::process::id()
    );
    let pr = ch.postrouting();
    let _ = writeln!(rules, "-A {pr} -m mark ! --mark {MASQ_MARK} -j RETURN");
    // Clear the mark so a packet re-entering (another instance) is not masqueraded twice.
    let _ = writeln!(rules, "-A {pr} -j MARK --xor-mark 0x8000");
    let _ = writeln!(rules, "-A {pr} -j MASQUERADE");
    let mut nodeport_rules = String::new();
    // Connections to a Service without ready endpoints are refused at once
    // (kube-proxy's REJECT), not left to time out.
    let mut reject = format!("*filter\n:{} - [0:0]\n", ch.no_endpoints());
    // route_localnet lets 127.0.0.1 be DNATed out; kube-proxy then drops
    // packets for 127/8 that did not come from 127/8 (martians from outside).
    let _ = writeln!(
        reject,
        "-A {} ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment --comment \"block incoming localnet connections\" -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP",
        ch.no_endpoints()
    );
    for p in ports {
        if p.endpoints.is_empty() {
            let proto = &p.protocol;
            let _ = writeln!(
                reject,
                "-A {} -d {}/32 -p {proto} -m {proto} --dport {} -m comment --comment \"{} has no endpoints\" -j REJECT",
                ch.no_endpoints(),
                p.cluster_ip,
                p.port,
                p.id
            );
            for np in &p.host_ports {
                let _ = writeln!(
                    reject,
                    "-A {} -m addrtype --dst-type LOCAL -p {proto} -m {proto} --dport {np} -m comment --comment \"{} has no endpoints\" -j REJECT",
                    ch.no_endpoints(),
                    p.id
                );
            }
            continue;
        }
        let svc = ch.svc(p);
        decl.push(svc.clone());
        let proto = &p.protocol;
        let _ = writeln!(
            rules,
            "-A {} -d {}/32 -p {proto} -m {proto} --dport {} -m comment --comment \"{} cluster IP\" -j {svc}",
            ch.services(),
            p.cluster_ip,
            p.port,
            p.id
        );
        for np in &p.host_ports {
            // Traffic to a node port leaves with the node's address, so the
            // reply comes back through the node (and 127.0.0.1 works).
            let _ = writeln!(
                nodeport_rules,
                "-A {} -p {proto} -m {proto} --dport {np} -m comment --comment \"{}\" -j {mm}",
                ch.nodeports(),
                p.id
            );
            let _ = writeln!(
                nodeport_rules,
                "-A {} -p {proto} -m {proto} --dport {np} -m comment --comment \"{}\" -j {svc}",
                ch.nodeports(),
                p.id
            );
        }
        let seps: Vec<String> = p
            .endpoints
            .iter()
            .map(|(ip, port)| ch.sep(p, ip, *port))
            .collect();
        if let Some(secs) = p.affinity {
            for sep in &seps {
                let _ = writeln!(
                    rules,
                    "-A {svc} -m recent --name {sep} --mask 255.255.255.255 --rsource --rcheck --seconds {secs} --reap -j {sep}"
                );
            }
        }
        let n = seps.len();
        for (i, sep) in seps.iter().enumerate() {
            if i + 1 < n {
                let prob = 1.0 / (n - i) as f64;
                let _ = writeln!(
                    rules,
                    "-A {svc} -m statistic --mode random --probability {prob:.10} -j {sep}"
                );
            } else {
                let _ = writeln!(rules, "-A {svc} -j {sep}");
            }
        }
        for ((ip, port), sep) in p.endpoints.iter().zip(&seps) {
            decl.push(sep.clone());
            // Hairpin: a pod reaching its own service must see replies
            // come back through the node.
            let _ = writeln!(rules, "-A {sep} -s {ip}/32 -j {mm}");
            let recent = if p.affinity.is_some() {
                format!(" -m recent --name {sep} --mask 255.255.255.255 --rsource --set")
            } else {
                String::new()
            };
            let _ = writeln!(
                rules,
                "-A {sep} -p {proto} -m {proto}{recent} -j DNAT --to-destination {ip}:{port}"
            );
        }
    }
    rules.push_str(&nodeport_rules);
    // Last: anything addressed to the node itself may be a node port.
    let _ = writeln!(
        rules,
        "-A {} -m addrtype --dst-type LOCAL -j {}",
        ch.services(),
        ch.nodeports()
    );
    reject.push_str("COMMIT\n");
    let mut out = reject;
    out.push_str("*nat\n");
    decl.sort();
    decl.dedup();
    let stale: Vec<&String> = existing.iter().filter(|c| !decl.contains(c)).collect();
    for c in decl.iter().chain(stale.iter().copied()) {
        let _ = writeln!(out, ":{c} - [0:0]");
    }
    out.push_str(&rules);
    for c in stale {
        let _ = writeln!(out, "-X {c}");
    }
    out.push_str("COMMIT\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(eps: &[(&str, u16)], affinity: Option<u32>) -> SvcPort {
        SvcPort {
            id: "default/web:http".into(),
            cluster_ip: "10.43.0.10".into(),
            port: 80,
            protocol: "tcp".into(),
            host_ports: vec![30080],
            affinity,
            endpoints: eps.iter().map(|(i, p)| (i.to_string(), *p)).collect(),
        }
    }

    #[test]
    fn three_endpoints_split_evenly_and_stale_chains_go() {
        let ch = Chains::new("abc123");
        let p = port(
            &[("10.1.0.2", 8080), ("10.1.0.3", 8080), ("10.1.0.4", 8080)],
            None,
        );
        let stale = "HKabc123-Vdeadbeefdeadbeef".to_string();
        let out = render(&ch, std::slice::from_ref(&p), std::slice::from_ref(&stale));
        assert!(out.contains("--probability 0.3333333333"), "{out}");
        assert!(out.contains("--probability 0.5000000000"), "{out}");
        assert_eq!(out.matches("-j DNAT").count(), 3);
        assert!(out.contains(&format!("-X {stale}\n")));
        assert!(out.contains("--dport 30080"));
        assert!(out.contains("! -s 127.0.0.0/8 -d 127.0.0.0/8"), "{out}");
        assert!(ch.svc(&p).len() <= 28);
        // The node-port catch-all is the last rule of the entry chain.
        let last = out
            .lines()
            .rfind(|l| l.starts_with("-A HKabc123-SERVICES"))
            .unwrap();
        assert!(last.contains("addrtype"), "{last}");
    }

    #[test]
    fn affinity_checks_recent_before_random() {
        let ch = Chains::new("t");
        let out = render(
            &ch,
            &[port(&[("10.1.0.2", 80), ("10.1.0.3", 80)], Some(10800))],
            &[],
        );
        let rcheck = out.find("--rcheck --seconds 10800").unwrap();
        let random = out.find("--mode random").unwrap();
        assert!(rcheck < random);
        assert_eq!(out.matches("--set -j DNAT").count(), 2);
    }

    #[test]
    fn a_service_without_endpoints_has_no_chain() {
        let ch = Chains::new("t");
        let out = render(&ch, &[port(&[], None)], &[]);
        assert!(!out.contains("-j DNAT"));
        let reject: Vec<&str> = out.lines().filter(|l| l.ends_with("-j REJECT")).collect();
        assert_eq!(reject.len(), 2, "{out}");
        assert!(reject[0].contains("-d 10.43.0.10/32") && reject[1].contains("--dport 30080"));
        let nat = out.split("*nat").nth(1).unwrap();
        assert!(!nat.contains("10.43.0.10"));
    }
}
