//! A bounded random-mutation test of the compose loader (issue 13, proof):
//! valid compose files (and their `.env`) mutated many times with a seeded
//! RNG and loaded in-process through `hako_compose::open`. Every case must
//! return (no panic, no abort: a stack overflow would kill this binary),
//! allocate a bounded amount of memory, and, when it fails, fail in one line
//! without control characters or Rust type names.
//!
//! `HAKO_MUTATION_SEED` and `HAKO_MUTATION_CASES` change the seed and count.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use rand_core::{Rng, SeedableRng};

/// Counts live heap bytes and their peak, so a case's memory is measured.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(n: usize) {
    let now = LIVE.fetch_add(n, Ordering::Relaxed) + n;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call is forwarded to the system allocator unchanged; the
// counters are only bookkeeping.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            grew(l.size());
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(p, l) };
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let q = unsafe { System.realloc(p, l, new) };
        if !q.is_null() {
            LIVE.fetch_sub(l.size(), Ordering::Relaxed);
            grew(new);
        }
        q
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// The most one load may allocate beyond what was live before it: inputs
/// stay below 64 KiB, so this is a generous bound, not a tight one.
const MAX_CASE_BYTES: usize = 64 << 20;
const MAX_INPUT: usize = 64 << 10;

const CORPUS: &[&str] = &[
    r#"name: shop
services:
  init:
    image: busybox
    command: ["sh", "-c", "echo ${GREETING:-hello} > /data/index.html"]
    volumes: [data:/data]
  api:
    image: busybox
    command: httpd -f -p 80 -h /data
    volumes:
      - type: volume
        source: data
        target: /data
        read_only: true
    depends_on:
      init: {condition: service_completed_successfully}
    healthcheck:
      test: ["CMD-SHELL", "wget -qO- http://127.0.0.1/ >/dev/null"]
      interval: 200ms
      retries: 50
    environment:
      MODE: one
  web:
    image: busybox
    ports: ["127.0.0.1::80", {target: 443, published: "8443"}]
    depends_on:
      api: {condition: service_healthy}
    deploy: {replicas: 2, resources: {limits: {cpus: "0.5", memory: 64m}}}
volumes:
  data: {}
"#,
    r#"x-common: &common
  image: ${IMAGE:-busybox}
  restart: on-failure:3
  ulimits: {nofile: {soft: 1024, hard: 2048}, core: -1}
services:
  a:
    <<: *common
    container_name: the-a
    env_file: [vars.env]
    stop_grace_period: 1m30s
    expose: ["8000-8010/udp"]
    logging: {driver: json-file, options: {max-size: 1m, max-file: "3"}}
  b:
    <<: *common
    network_mode: "service:a"
    scale: 1
    tmpfs: [/run:size=1m]
    sysctls: [net.core.somaxconn=1024]
    mem_limit: 1g
    shm_size: 64m
networks:
  back: {internal: true, ipam: {config: [{subnet: 10.9.0.0/24}]}}
configs:
  site: {file: ./vars.env}
secrets:
  key: {file: ./vars.env}
"#,
    r#"include:
  - other.yaml
services:
  app:
    image: busybox
    command: ["sleep", "${SLEEP:?need a value}"]
    networks:
      front:
        aliases: [api]
        ipv4_address: 10.8.0.5
    mac_address: "02:42:0a:08:00:05"
    extra_hosts: {db: 10.0.0.2}
    cap_add: [NET_ADMIN]
    read_only: true
    init: true
    profiles: [debug]
networks:
  front: {ipam: {config: [{subnet: 10.8.0.0/24}]}}
"#,
];

const ENV: &str = "GREETING=hi\nIMAGE=busybox\nexport SLEEP=\"100\"\n# c\n";
const OTHER: &str = "services:\n  db:\n    image: busybox\n    env_file: vars.env\n";

/// Fragments that reach the parser's and the model's corners.
const TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ":",
    ": ",
    "- ",
    "\n",
    "\n  ",
    "~",
    "null",
    "&a ",
    "*a",
    "<<: *a",
    "${",
    "${A:-${B:-",
    "$$",
    "}}}",
    "'",
    "\"",
    "!!binary ",
    "!!str ",
    "? ",
    "|",
    ">",
    "#",
    "\t",
    "\0",
    "\x1b[31m",
    "\u{feff}",
    "4294967296",
    "18446744073709551616",
    "-1",
    "1e400",
    "NaN",
    ".inf",
    "0x10",
    "99999999h",
    "65536",
    "-9223372036854775809",
    "services:",
    "include: [/dev/zero]",
    "env_file: /dev/zero",
    "image:",
    "deploy:",
    "replicas:",
    "scale: ",
    "ports:",
    "volumes:",
    "container_name: ",
    "---\n",
    "...\n",
];

fn pick(rng: &mut rand_pcg::Pcg64, n: usize) -> usize {
    (rng.next_u64() % n.max(1) as u64) as usize
}

fn mutate(rng: &mut rand_pcg::Pcg64, input: &str) -> Vec<u8> {
    let mut b = input.as_bytes().to_vec();
    let ops = 1 + rng.next_u64() % 4;
    for _ in 0..ops {
        match rng.next_u64() % 6 {
            0 if !b.is_empty() => {
                let i = pick(rng, b.len());
                b[i] ^= 1 << (rng.next_u64() % 8);
            }
            1 | 2 => {
                let t = TOKENS[pick(rng, TOKENS.len())];
                let i = pick(rng, b.len() + 1);
                b.splice(i..i, t.bytes());
            }
            3 if !b.is_empty() => {
                let i = pick(rng, b.len());
                let n = 1 + pick(rng, 16.min(b.len() - i));
                b.drain(i..i + n);
            }
            4 if !b.is_empty() => {
                // Repeat a chunk (nesting and size growth).
                let i = pick(rng, b.len());
                let n = 1 + pick(rng, 64.min(b.len() - i));
                let chunk = b[i..i + n].to_vec();
                let times = 1 + rng.next_u64() % 64;
                for _ in 0..times {
                    if b.len() + chunk.len() > MAX_INPUT {
                        break;
                    }
                    b.splice(i..i, chunk.iter().copied());
                }
            }
            _ => {
                // Swap two lines.
                let text = String::from_utf8_lossy(&b).into_owned();
                let mut lines: Vec<&str> = text.lines().collect();
                if lines.len() > 1 {
                    let x = pick(rng, lines.len());
                    let y = pick(rng, lines.len());
                    lines.swap(x, y);
                    b = lines.join("\n").into_bytes();
                }
            }
        }
    }
    b.truncate(MAX_INPUT);
    b
}

#[test]
fn mutated_compose_files_never_panic_abort_or_balloon() {
    let seed: u64 = std::env::var("HAKO_MUTATION_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x6861_6b6f);
    let cases: usize = std::env::var("HAKO_MUTATION_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3000);
    let mut rng = rand_pcg::Pcg64::seed_from_u64(seed);
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let (mut loaded, mut refused) = (0, 0);
    for case in 0..cases {
        let base = CORPUS[case % CORPUS.len()];
        let file = mutate(&mut rng, base);
        let env = if rng.next_u64() % 4 == 0 {
            mutate(&mut rng, ENV)
        } else {
            ENV.as_bytes().to_vec()
        };
        let other = if rng.next_u64() % 4 == 0 {
            mutate(&mut rng, OTHER)
        } else {
            OTHER.as_bytes().to_vec()
        };
        std::fs::write(dir.join("compose.yaml"), &file).unwrap();
        std::fs::write(dir.join(".env"), &env).unwrap();
        std::fs::write(dir.join("vars.env"), &env).unwrap();
        std::fs::write(dir.join("other.yaml"), &other).unwrap();
        let opts = hako_compose::LoadOptions {
            workdir: dir.to_path_buf(),
            profiles: vec!["debug".into()],
            ..Default::default()
        };
        let before = LIVE.load(Ordering::Relaxed);
        PEAK.store(before, Ordering::Relaxed);
        let got = std::panic::catch_unwind(|| {
            hako_compose::open(&opts).map(|p| {
                // What `up` computes first must not panic either.
                let _ = p.order();
                p.services.len()
            })
        });
        let peak = PEAK.load(Ordering::Relaxed).saturating_sub(before);
        let show = || String::from_utf8_lossy(&file).into_owned();
        let result = got.unwrap_or_else(|_| {
            panic!(
                "seed {seed} case {case}: the loader panicked on:\n{}",
                show()
            )
        });
        assert!(
            peak <= MAX_CASE_BYTES,
            "seed {seed} case {case}: {peak} bytes allocated for:\n{}",
            show()
        );
        match result {
            Ok(_) => loaded += 1,
            Err(e) => {
                refused += 1;
                let msg = e.to_string();
                assert!(
                    !msg.chars().any(char::is_control),
                    "seed {seed} case {case}: control characters in {msg:?}"
                );
                for hint in [
                    "Option<",
                    "Vec<",
                    "String>",
                    "__Nonexhaustive",
                    "core::",
                    "std::",
                    "alloc::",
                ] {
                    assert!(
                        !msg.contains(hint),
                        "seed {seed} case {case}: a Rust type hint in {msg:?}"
                    );
                }
            }
        }
    }
    // The mutations must exercise both outcomes, or the test proves little.
    assert!(loaded > cases / 50, "only {loaded} of {cases} cases loaded");
    assert!(
        refused > cases / 20,
        "only {refused} of {cases} cases refused"
    );
}
