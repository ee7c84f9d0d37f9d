//! Name resolution on user networks, as docker's embedded DNS server and
//! podman's aardvark-dns: a small server per network, listening on the
//! network's gateway address (UDP port 53), answers the names of the
//! containers on the networks the asking container shares with them
//! (names, aliases, short ids); other names go to the host's resolvers.
//!
//! hako has no daemon, so the server is a process of its own, started by the
//! first container start that needs it and ending once no container uses the
//! network. What it knows is `<run root>/dns/records`, rewritten with every
//! /etc/hosts refresh (lines `NETWORK IP CONTAINER-ID NAME...`).

use std::fs;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use crate::error::{Context, Error, Result};

/// The directory of the records and the servers' pid files.
pub fn dir(run_root: &Path) -> PathBuf {
    run_root.join("dns")
}

pub fn records_path(run_root: &Path) -> PathBuf {
    dir(run_root).join("records")
}

/// Held by whoever starts a network's server, and by a server ending.
pub fn lock_path(run_root: &Path, network: &str) -> PathBuf {
    dir(run_root).join(format!("{network}.lock"))
}

pub fn pid_path(run_root: &Path, network: &str) -> PathBuf {
    dir(run_root).join(format!("{network}.pid"))
}

/// One container's entry on one network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub network: String,
    pub ip: Ipv4Addr,
    pub container: String,
    pub names: Vec<String>,
}

pub fn format_records(records: &[Record]) -> String {
    let mut out = String::new();
    for r in records {
        out.push_str(&format!(
            "{} {} {} {}\n",
            r.network,
            r.ip,
            r.container,
            r.names.join(" ")
        ));
    }
    out
}

pub fn parse_records(text: &str) -> Vec<Record> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            Some(Record {
                network: w.next()?.to_string(),
                ip: w.next()?.parse().ok()?,
                container: w.next()?.to_string(),
                names: w.map(str::to_string).collect(),
            })
        })
        .collect()
}

/// The address for `name` as seen by the container at `from`: a container
/// on a network `from` is on too. None: not a container name there.
pub fn resolve(records: &[Record], from: Ipv4Addr, name: &str) -> Option<Ipv4Addr> {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    // The asker by its address, then every network it is on.
    let asker: Vec<&str> = records
        .iter()
        .filter(|r| r.ip == from)
        .map(|r| r.container.as_str())
        .collect();
    let asking: Vec<&Record> = records
        .iter()
        .filter(|r| asker.contains(&r.container.as_str()))
        .collect();
    records
        .iter()
        .filter(|r| {
            asking
                .iter()
                .any(|a| a.network == r.network && a.container != r.container)
        })
        .find(|r| r.names.iter().any(|n| n.to_ascii_lowercase() == name))
        .map(|r| r.ip)
}

// DNS message layout (RFC 1035 section 4).
const QTYPE_A: u16 = 1;
const QTYPE_PTR: u16 = 12;
const RCODE_SERVFAIL: u8 = 2;
const RCODE_NXDOMAIN: u8 = 3;
const RCODE_FORMERR: u8 = 1;

/// The question of a query: its name, type, and where it ends.
struct Question {
    name: String,
    qtype: u16,
    end: usize,
}

fn question(msg: &[u8]) -> Option<Question> {
    if msg.len() < 12 || u16::from_be_bytes([msg[4], msg[5]]) != 1 {
        return None;
    }
    let mut i = 12;
    let mut labels = Vec::new();
    loop {
        let len = *msg.get(i)? as usize;
        i += 1;
        if len == 0 {
            break;
        }
        // Compression pointers have no place in a question.
        if len > 63 {
            return None;
        }
        labels.push(String::from_utf8_lossy(msg.get(i..i + len)?).into_owned());
        i += len;
    }
    let qtype = u16::from_be_bytes([*msg.get(i)?, *msg.get(i + 1)?]);
    msg.get(i + 3)?;
    Some(Question {
        name: labels.join("."),
        qtype,
        end: i + 4,
    })
}

/// The data of the one record of an answer.
enum Rdata {
    A(Ipv4Addr),
    Ptr(String),
}

/// A reply to `query` (its id and question) with `rcode` and, if given, one
/// record for the question's name.
fn reply(query: &[u8], q: &Question, rcode: u8, answer: Option<Rdata>) -> Vec<u8> {
    let mut out = Vec::with_capacity(q.end + 16);
    out.extend_from_slice(&query[..2]);
    // QR, the query's opcode and RD, AA and RA set.
    let rd = query[2] & 0x01;
    out.push(0x80 | (query[2] & 0x78) | 0x04 | rd);
    out.push(0x80 | rcode);
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&(answer.is_some() as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&query[12..q.end]);
    if let Some(data) = answer {
        out.extend_from_slice(&[0xc0, 0x0c]); // the question's name
        let (typ, bytes) = match data {
            Rdata::A(ip) => (QTYPE_A, ip.octets().to_vec()),
            Rdata::Ptr(name) => {
                let mut b = Vec::new();
                for l in name.split('.').filter(|l| !l.is_empty()) {
                    let l = &l.as_bytes()[..l.len().min(63)];
                    b.push(l.len() as u8);
                    b.extend_from_slice(l);
                }
                b.push(0);
                (QTYPE_PTR, b)
            }
        };
        out.extend_from_slice(&typ.to_be_bytes());
        out.extend_from_slice(&1u16.to_be_bytes()); // IN
        out.extend_from_slice(&600u32.to_be_bytes());
        out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
        out.extend_from_slice(&bytes);
    }
    out
}

/// `4.3.2.1.in-addr.arpa` → the name of the container at 1.2.3.4, if the
/// asker shares a network with it (or is it).
pub fn reverse(records: &[Record], from: Ipv4Addr, name: &str) -> Option<String> {
    let rest = name
        .trim_end_matches('.')
        .to_ascii_lowercase()
        .strip_suffix(".in-addr.arpa")?
        .to_string();
    let mut octets: Vec<u8> = rest
        .split('.')
        .map(|o| o.parse().ok())
        .collect::<Option<_>>()?;
    if octets.len() != 4 {
        return None;
    }
    octets.reverse();
    let ip = Ipv4Addr::new(octets[0], octets[1], octets[2], octets[3]);
    let asker: Vec<&str> = records
        .iter()
        .filter(|r| r.ip == from)
        .map(|r| r.container.as_str())
        .collect();
    let nets: Vec<&str> = records
        .iter()
        .filter(|r| asker.contains(&r.container.as_str()))
        .map(|r| r.network.as_str())
        .collect();
    records
        .iter()
        .find(|r| r.ip == ip && nets.contains(&r.network.as_str()))
        .and_then(|r| r.names.first())
        .map(|n| format!("{n}."))
}

/// What to do with one query.
enum Answer {
    Reply(Vec<u8>),
    Forward,
}

fn answer(records: &[Record], from: Ipv4Addr, msg: &[u8]) -> Option<Answer> {
    let Some(q) = question(msg) else {
        // Too short for a header: not worth an answer.
        if msg.len() < 12 {
            return None;
        }
        let mut out = msg[..12].to_vec();
        out[2] |= 0x80;
        out[3] = 0x80 | RCODE_FORMERR;
        out[4..12].fill(0);
        return Some(Answer::Reply(out));
    };
    if q.qtype == QTYPE_PTR {
        if let Some(n) = reverse(records, from, &q.name) {
            return Some(Answer::Reply(reply(msg, &q, 0, Some(Rdata::Ptr(n)))));
        }
    }
    match resolve(records, from, &q.name) {
        // Known: the address for A, "no data" for any other type.
        Some(ip) => Some(Answer::Reply(reply(
            msg,
            &q,
            0,
            (q.qtype == QTYPE_A).then_some(Rdata::A(ip)),
        ))),
        // A single label is a container name or nothing (docker forwards it,
        // but no public resolver has it: answering spares the client a wait).
        None if !q.name.trim_end_matches('.').contains('.') => {
            Some(Answer::Reply(reply(msg, &q, RCODE_NXDOMAIN, None)))
        }
        None => Some(Answer::Forward),
    }
}

/// The host's resolvers (this server runs in the host's namespace, so a
/// loopback resolver is fine here).
fn upstreams() -> Vec<SocketAddr> {
    fs::read_to_string("/etc/resolv.conf")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|s| s.trim().parse::<std::net::IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

/// Ask the upstreams in turn; the first answer, else SERVFAIL.
fn forward(msg: &[u8], up: &[SocketAddr]) -> Vec<u8> {
    for u in up {
        let bind: SocketAddr = if u.is_ipv4() {
            "0.0.0.0:0".parse().expect("valid")
        } else {
            "[::]:0".parse().expect("valid")
        };
        let Ok(s) = UdpSocket::bind(bind) else {
            continue;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        if s.send_to(msg, u).is_err() {
            continue;
        }
        let mut buf = [0u8; 4096];
        if let Ok((n, _)) = s.recv_from(&mut buf) {
            if n >= 2 && buf[..2] == msg[..2] {
                return buf[..n].to_vec();
            }
        }
    }
    match question(msg) {
        Some(q) => reply(msg, &q, RCODE_SERVFAIL, None),
        None => msg.to_vec(),
    }
}

/// Serve `network` on `gateway`:53 until no container is on the network
/// any more (checked every second). Writes the pid file once bound.
pub fn serve(run_root: &Path, network: &str, gateway: Ipv4Addr) -> Result<()> {
    let sock = UdpSocket::bind((gateway, 53)).map_err(|e| {
        Error::io(
            format!("network {network}: binding {gateway}:53 for DNS"),
            e,
        )
    })?;
    sock.set_read_timeout(Some(Duration::from_secs(1)))
        .ctx(|| "setting a socket timeout".to_string())?;
    // TCP too, for clients that retry a truncated answer or prefer it.
    let tcp = std::net::TcpListener::bind((gateway, 53)).map_err(|e| {
        Error::io(
            format!("network {network}: binding {gateway}:53/tcp for DNS"),
            e,
        )
    })?;
    let pid = pid_path(run_root, network);
    crate::fsutil::write_replace(&pid, format!("{}\n", std::process::id()).as_bytes())?;
    // Started, as the starter now knows from the pid file: its pipe for our
    // early errors goes away with it, so stderr must not stay that pipe.
    if let Ok(null) = fs::OpenOptions::new().write(true).open("/dev/null") {
        let _ = nix::unistd::dup2_stderr(&null);
    }
    let records_file = records_path(run_root);
    let mut records: Vec<Record> = Vec::new();
    let mut seen: Option<SystemTime> = None;
    let up = upstreams();
    {
        let records_file = records_file.clone();
        let up = up.clone();
        std::thread::spawn(move || {
            for conn in tcp.incoming().flatten() {
                let records_file = records_file.clone();
                let up = up.clone();
                std::thread::spawn(move || serve_tcp(conn, &records_file, &up));
            }
        });
    }
    let mut last_check = Instant::now() - Duration::from_secs(2);
    let mut buf = [0u8; 1500];
    loop {
        let got = sock.recv_from(&mut buf);
        // Reload what changed; end when the network has no one left.
        let mtime = fs::metadata(&records_file).and_then(|m| m.modified()).ok();
        if mtime != seen || last_check.elapsed() >= Duration::from_secs(1) {
            seen = mtime;
            last_check = Instant::now();
            records = parse_records(&fs::read_to_string(&records_file).unwrap_or_default());
            if !records.iter().any(|r| r.network == network) {
                // Under the starters' lock, looked at again: a container that
                // starts now has written its record before it takes the lock,
                // so it either keeps us or finds us gone and starts another.
                let lock = lock_path(run_root, network);
                let held = fs::File::create(&lock).ok().and_then(|f| {
                    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive).ok()
                });
                records = parse_records(&fs::read_to_string(&records_file).unwrap_or_default());
                if records.iter().any(|r| r.network == network) {
                    continue;
                }
                // Only our own pid file goes: a successor may have written its own.
                if fs::read_to_string(&pid)
                    .is_ok_and(|p| p.trim() == std::process::id().to_string())
                {
                    let _ = fs::remove_file(&pid);
                }
                drop(held);
                return Ok(());
            }
        }
        let Ok((n, from)) = got else { continue };
        let SocketAddr::V4(from4) = from else {
            continue;
        };
        let msg = buf[..n].to_vec();
        match answer(&records, *from4.ip(), &msg) {
            None => {}
            Some(Answer::Reply(r)) => {
                let _ = sock.send_to(&r, from);
            }
            Some(Answer::Forward) => {
                let s = match sock.try_clone() {
                    Ok(s) => s,
                    Err(_) => continue,
                };
                let up = up.clone();
                // Upstreams may be slow: the loop goes on answering.
                std::thread::spawn(move || {
                    let r = forward(&msg, &up);
                    let _ = s.send_to(&r, from);
                });
            }
        }
    }
}

/// End network `network`'s server, if it runs (the network is going).
pub fn stop(run_root: &Path, network: &str) {
    if running(run_root, network) {
        if let Some(pid) = fs::read_to_string(pid_path(run_root, network))
            .ok()
            .and_then(|t| t.trim().parse::<i32>().ok())
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }
    let _ = fs::remove_file(pid_path(run_root, network));
    let _ = fs::remove_file(lock_path(run_root, network));
}

/// Queries over one TCP connection (each message after its 2-byte length).
fn serve_tcp(mut conn: std::net::TcpStream, records_file: &Path, up: &[SocketAddr]) {
    use std::io::{Read, Write};
    let Ok(SocketAddr::V4(peer)) = conn.peer_addr() else {
        return;
    };
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    loop {
        let mut len = [0u8; 2];
        if conn.read_exact(&mut len).is_err() {
            return;
        }
        let mut msg = vec![0u8; u16::from_be_bytes(len) as usize];
        if conn.read_exact(&mut msg).is_err() {
            return;
        }
        let records = parse_records(&fs::read_to_string(records_file).unwrap_or_default());
        let out = match answer(&records, *peer.ip(), &msg) {
            None => return,
            Some(Answer::Reply(r)) => r,
            Some(Answer::Forward) => forward(&msg, up),
        };
        let mut framed = (out.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&out);
        if conn.write_all(&framed).is_err() {
            return;
        }
    }
}

/// Whether the pid file names a live process that is a DNS server.
pub fn running(run_root: &Path, network: &str) -> bool {
    let Ok(text) = fs::read_to_string(pid_path(run_root, network)) else {
        return false;
    };
    let Ok(pid) = text.trim().parse::<i32>() else {
        return false;
    };
    fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|c| c.split(|b| *b == 0).any(|w| w == b"dns-serve"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recs() -> Vec<Record> {
        parse_records(
            "front 10.1.0.2 aaa web www aaa123\n\
             front 10.1.0.3 bbb api bbb123\n\
             back 10.2.0.3 bbb api bbb123\n\
             back 10.2.0.4 ccc db ccc123\n",
        )
    }

    #[test]
    fn names_resolve_only_between_containers_sharing_a_network() {
        let r = recs();
        assert_eq!(format_records(&r).lines().count(), 4);
        let web = "10.1.0.2".parse().unwrap();
        let api_back = "10.2.0.3".parse().unwrap();
        assert_eq!(resolve(&r, web, "API."), Some("10.1.0.3".parse().unwrap()));
        assert_eq!(resolve(&r, web, "db"), None, "web is not on back");
        assert_eq!(
            resolve(&r, api_back, "db"),
            Some("10.2.0.4".parse().unwrap())
        );
        // api asks from its front address: it is on back too, so db resolves.
        assert_eq!(
            resolve(&r, "10.1.0.3".parse().unwrap(), "db"),
            Some("10.2.0.4".parse().unwrap())
        );
        assert_eq!(resolve(&r, "10.9.9.9".parse().unwrap(), "web"), None);
    }

    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for l in name.split('.') {
            q.push(l.len() as u8);
            q.extend_from_slice(l.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&1u16.to_be_bytes());
        q
    }

    #[test]
    fn answers_a_records_nodata_nxdomain_and_forwards_the_rest() {
        let r = recs();
        let web: Ipv4Addr = "10.1.0.2".parse().unwrap();
        let Some(Answer::Reply(a)) = answer(&r, web, &query("api", 1)) else {
            panic!("no reply")
        };
        assert_eq!(&a[..2], &[0x12, 0x34]);
        assert_eq!(a[3] & 0x0f, 0);
        assert_eq!(u16::from_be_bytes([a[6], a[7]]), 1, "one answer");
        assert_eq!(&a[a.len() - 4..], &[10, 1, 0, 3]);
        let Some(Answer::Reply(a)) = answer(&r, web, &query("api", 28)) else {
            panic!("no reply")
        };
        assert_eq!((a[3] & 0x0f, u16::from_be_bytes([a[6], a[7]])), (0, 0));
        let Some(Answer::Reply(a)) = answer(&r, web, &query("nosuch", 1)) else {
            panic!("no reply")
        };
        assert_eq!(a[3] & 0x0f, RCODE_NXDOMAIN);
        assert!(matches!(
            answer(&r, web, &query("example.com", 1)),
            Some(Answer::Forward)
        ));
        // Reverse lookups of the containers one shares a network with.
        let Some(Answer::Reply(a)) = answer(&r, web, &query("3.0.1.10.in-addr.arpa", 12)) else {
            panic!("no reply")
        };
        assert_eq!(u16::from_be_bytes([a[6], a[7]]), 1, "one answer");
        assert!(a.ends_with(b"\x03api\x00"), "{a:?}");
        assert_eq!(
            reverse(&r, web, "4.0.2.10.in-addr.arpa"),
            None,
            "db is not on front"
        );
        assert_eq!(
            reverse(&r, web, "2.0.1.10.in-addr.arpa").as_deref(),
            Some("web.")
        );
        // Garbage: a format error, or nothing for less than a header.
        let Some(Answer::Reply(a)) =
            answer(&r, web, &[0xab, 0xcd, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 200])
        else {
            panic!("no reply")
        };
        assert_eq!(a[3] & 0x0f, RCODE_FORMERR);
        assert!(answer(&r, web, &[1, 2, 3]).is_none());
        // A forward with no upstream answers SERVFAIL.
        let f = forward(&query("example.com", 1), &[]);
        assert_eq!(f[3] & 0x0f, RCODE_SERVFAIL);
    }
}
