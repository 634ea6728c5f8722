//! limpet-net against the real kernel of the test host, as root.
//!
//! Each case makes its own network namespaces (`ip netns add limpet-net-<pid>-<n>`, deleted
//! when the case ends), installs a ruleset compiled from a small manifest through [`Nft`],
//! and checks it with an independent tool: `nft -j list ...` run in that namespace. The
//! traffic case joins two namespaces with a veth pair (TEST-NET addresses only), mounts
//! cgroup2 on a temporary directory and runs this binary again as a probe process inside a
//! task's cgroup (or uid) to connect, send and listen.
//!
//! A plain `main` (`harness = false`): probes are this binary re-run with `--probe`, and a
//! failing case must not leave namespaces or mounts behind. Arguments that do not start
//! with `-` filter the cases by substring. Not root: every case fails, loudly.

// Test code: a failed expectation is a test failure, reported with its context.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use limpet_net::nft::expr::{Expr, Verdict};
use limpet_net::nft::object::{Rule, SetElem};
use limpet_net::{Nft, NftError, Owner, Ruleset, Runtime, TaskMatch};
use limpet_policy::NetPolicy;
use serde_json::Value;
use support::{run, unique, Cgroup2, Netns};

mod support;

struct Case {
    name: &'static str,
    run: fn(),
}

const CASES: &[Case] = &[
    Case {
        name: "ruleset_as_nft_lists_it",
        run: ruleset_as_nft_lists_it,
    },
    Case {
        name: "install_replaces_the_table",
        run: install_replaces_the_table,
    },
    Case {
        name: "rejected_batch_names_the_object_and_changes_nothing",
        run: rejected_batch_names_the_object_and_changes_nothing,
    },
    Case {
        name: "dns_set_elements_refresh_and_expire",
        run: dns_set_elements_refresh_and_expire,
    },
    Case {
        name: "lan_set_is_replaced",
        run: lan_set_is_replaced,
    },
    Case {
        name: "traffic_follows_the_policy",
        run: traffic_follows_the_policy,
    },
    Case {
        name: "orphan_tail_over_loopback",
        run: orphan_tail_over_loopback,
    },
    Case {
        name: "orphan_tail_over_veth",
        run: orphan_tail_over_veth,
    },
    Case {
        name: "orphans_pass_only_what_their_owner_may_send",
        run: orphans_pass_only_what_their_owner_may_send,
    },
    Case {
        name: "an_ownerless_new_flow_drops",
        run: an_ownerless_new_flow_drops,
    },
];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--probe") {
        return probe(&args[2..]);
    }
    let filters: Vec<&String> = args
        .iter()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let selected: Vec<&Case> = CASES
        .iter()
        .filter(|c| filters.is_empty() || filters.iter().any(|f| c.name.contains(f.as_str())))
        .collect();
    if !rustix::process::geteuid().is_root() {
        println!(
            "limpet-net kernel tests need root (network namespaces, nftables, cgroup2): \
             {} not run",
            selected.len()
        );
        println!("0 passed, {} failed", selected.len());
        return ExitCode::FAILURE;
    }
    let (mut passed, mut failed) = (0, 0);
    for c in selected {
        print!("test {} ... ", c.name);
        std::io::stdout().flush().ok();
        match std::panic::catch_unwind(c.run) {
            Ok(()) => {
                println!("ok");
                passed += 1;
            }
            Err(_) => {
                println!("FAILED");
                failed += 1;
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

// ---------------------------------------------------------------------------------------
// Namespaces, commands, nft's view.

/// What the kernel tests add to a namespace: nftables through our handle and through
/// the independent `nft` tool.
trait NftIn {
    fn nft(&self) -> Nft;
    fn nft_json(&self, args: &[&str]) -> Value;
    fn ruleset(&self) -> Value;
}

impl NftIn for Netns {
    fn nft(&self) -> Nft {
        self.enter(|| Nft::open().expect("open the netlink socket"))
    }

    /// `nft -j ARGS` in the namespace, parsed.
    fn nft_json(&self, args: &[&str]) -> Value {
        let mut a = vec!["netns", "exec", self.name.as_str(), "nft", "-j"];
        a.extend_from_slice(args);
        let out = run("ip", &a);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("nft -j output: {e}: {out}"))
    }

    fn ruleset(&self) -> Value {
        self.nft_json(&["list", "ruleset"])
    }
}

/// The objects of kind `kind` ("chain", "set", "rule") in nft's JSON list.
fn objects<'a>(v: &'a Value, kind: &str) -> Vec<&'a Value> {
    v["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o.get(kind))
        .collect()
}

fn chain<'a>(v: &'a Value, name: &str) -> &'a Value {
    objects(v, "chain")
        .into_iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no chain {name}"))
}

fn rules_of<'a>(v: &'a Value, chain: &str) -> Vec<&'a Value> {
    objects(v, "rule")
        .into_iter()
        .filter(|r| r["chain"] == chain)
        .collect()
}

fn comments(v: &Value, chain: &str) -> Vec<String> {
    rules_of(v, chain)
        .iter()
        .map(|r| r["comment"].as_str().unwrap_or("").to_owned())
        .collect()
}

fn rule<'a>(v: &'a Value, comment: &str) -> &'a Value {
    objects(v, "rule")
        .into_iter()
        .find(|r| r["comment"] == comment)
        .unwrap_or_else(|| panic!("no rule {comment}"))
}

/// The expressions of a rule as compact JSON text, for substring checks.
fn expr_text(r: &Value) -> String {
    r["expr"].to_string()
}

// ---------------------------------------------------------------------------------------
// Manifests.

const MANIFEST: &str = r#"
[device]
name = "thermostat"
version = "1.0.0"
target = "x86_64"

[network]
dns = ["192.0.2.53"]
egress_cap = "10Mbit/s"

[[task]]
name = "sensor"
package = "sensor"
memory = "8MiB"
cpu = "10%"
network = "allowlist"
syscalls = "network"

[[task.egress]]
host = "192.0.2.2"
ports = [443]

[[task.egress]]
host = "api.example.com"
ports = [443, "8000-8080"]

[[task.egress]]
host = "192.0.2.2"
ports = [9000]
proto = "udp"
rate = "8kbit/s"

[[task.egress]]
host = "192.0.2.2"
ports = [9001]
proto = "udp"
packets = "5/s"

[[task]]
name = "web"
package = "web"
memory = "8MiB"
cpu = "10%"
network = "allowlist"
syscalls = "network"

[[task.listen]]
port = 8080

[[task.listen]]
port = 8081
scope = "any"
"#;

fn policy() -> NetPolicy {
    let m = limpet_manifest::parse("limpet.toml", MANIFEST).unwrap();
    limpet_compile::net::compile(&m).unwrap()
}

fn uid_ruleset() -> Ruleset {
    let p = policy();
    Ruleset::build(&p, &Runtime::by_uid(&p)).unwrap()
}

// ---------------------------------------------------------------------------------------
// Cases.

fn ruleset_as_nft_lists_it() {
    let ns = Netns::new("limpet-net-");
    let p = policy();
    let mut rt = Runtime::by_uid(&p);
    rt.tasks
        .insert("sensor".into(), TaskMatch::CgroupV2 { level: 2, id: 1 });
    rt.lan = vec!["192.0.2.0/24".parse().unwrap()];
    let r = Ruleset::build(&p, &rt).unwrap();
    ns.nft().install(&r).unwrap();
    let v = ns.ruleset();

    let tables = objects(&v, "table");
    assert_eq!(tables.len(), 1);
    assert_eq!(
        (&tables[0]["family"], &tables[0]["name"]),
        (&"inet".into(), &"limpet".into())
    );

    for (name, hook) in [
        ("input", "input"),
        ("forward", "forward"),
        ("output", "output"),
    ] {
        let c = chain(&v, name);
        assert_eq!(c["type"], "filter", "{name}");
        assert_eq!(c["hook"], hook, "{name}");
        assert_eq!(c["prio"], 0, "{name}");
        assert_eq!(c["policy"], "drop", "{name}");
    }
    for name in [
        "pid1",
        "task_sensor",
        "task_sensor_e2",
        "task_sensor_e3",
        "task_web",
        "dns_upstream",
    ] {
        assert!(
            chain(&v, name).get("hook").is_none(),
            "{name} is a regular chain"
        );
    }

    let sets = objects(&v, "set");
    let set = |n: &str| *sets.iter().find(|s| s["name"] == n).unwrap();
    assert_eq!(set("lan4")["type"], "ipv4_addr");
    assert_eq!(set("lan4")["flags"], serde_json::json!(["interval"]));
    assert_eq!(
        set("lan4")["elem"],
        serde_json::json!([{"prefix": {"addr": "192.0.2.0", "len": 24}}])
    );
    assert_eq!(set("dns4")["elem"], serde_json::json!(["192.0.2.53"]));
    assert_eq!(set("n0")["type"], "ipv4_addr");
    assert_eq!(set("n0")["flags"], serde_json::json!(["timeout"]));
    assert_eq!(set("n0")["size"], 256);

    // The kernel lists the output and PID 1's chains as built (their order is the unit
    // tests'), with the PID 1 dispatch and the orphan rules.
    for c in ["output", "pid1"] {
        let built: Vec<&str> = r
            .rules
            .iter()
            .filter(|x| x.chain == c)
            .map(|x| x.comment.as_str())
            .collect();
        assert_eq!(comments(&v, c), built, "{c}");
    }
    assert!(comments(&v, "output").contains(&"task=web rule=orphan:reply".to_owned()));
    assert!(comments(&v, "pid1").contains(&"device rule=loopback-pid1".to_owned()));
    assert_eq!(
        comments(&v, "input"),
        [
            "device rule=ipv6",
            "task=web rule=listen-lo:0",
            "task=web rule=listen-lo:1",
            "device rule=loopback",
            "device rule=invalid",
            "device rule=established",
            "device rule=dhcp",
            "task=web rule=listen:0",
            "task=web rule=listen:1",
            "device rule=ping-lan",
            "device rule=input-drop",
        ]
    );
    assert_eq!(comments(&v, "forward"), ["device rule=forward-drop"]);
    assert_eq!(
        comments(&v, "task_sensor"),
        [
            "task=sensor rule=owner:original",
            "task=sensor rule=owner:reply",
            "task=sensor rule=dns:udp",
            "task=sensor rule=dns:tcp",
            "task=sensor rule=egress:0",
            "task=sensor rule=egress:1",
            "task=sensor rule=egress:1",
            "task=sensor rule=egress:2",
            "task=sensor rule=egress:3",
            "task=sensor rule=drop",
        ]
    );
    // Every rule counts.
    for r in objects(&v, "rule") {
        assert!(expr_text(r).contains("\"counter\""), "no counter: {r}");
    }

    // What the rules say, as nft reads them back.
    let t = expr_text(rule(&v, "task=sensor rule=dispatch"));
    // nft 1.0.6's JSON leaves the level out; its text form shows it.
    assert!(
        t.contains(r#"{"socket":{"key":"cgroupv2"}},"op":"==","right":"1""#),
        "{t}"
    );
    let text = run(
        "ip",
        &[
            "netns", "exec", &ns.name, "nft", "list", "chain", "inet", "limpet", "output",
        ],
    );
    assert!(text.contains("socket cgroupv2 level 2 1 counter"), "{text}");
    // A flow's owners in its conntrack mark (sensor's code 2, web's 3), and the ownerless
    // packets of an established flow judged by their owner's chain again.
    for line in [
        "meta skuid 0 counter packets 0 bytes 0 jump pid1",
        "ct state established ct direction original ct mark & 0x0000ffff == 0x00000002 \
         counter packets 0 bytes 0 jump task_sensor",
        "ct state established ct direction reply ct mark 0x00030000/16 \
         counter packets 0 bytes 0 jump task_web",
    ] {
        assert!(text.contains(line), "{line}: {text}");
    }
    let text = run(
        "ip",
        &[
            "netns",
            "exec",
            &ns.name,
            "nft",
            "list",
            "chain",
            "inet",
            "limpet",
            "task_sensor",
        ],
    );
    // nft shows `(mark & 0xffff0000) | 2` as `mark & 0xffff0002 | 2`: the same value.
    assert!(
        text.contains("ct direction original ct mark set ct mark & 0xffff0002 | 0x00000002"),
        "{text}"
    );
    assert!(
        text.contains("ct direction reply ct mark set ct mark & 0x0002ffff | 0x00020000"),
        "{text}"
    );
    // A listener's flow names web (3) as the sender of its replies: 0x30000.
    let l = expr_text(rule(&v, "task=web rule=listen:1"));
    assert!(
        l.contains(
            r#"{"mangle":{"key":{"ct":{"key":"mark"}},"value":{"|":[{"&":[{"ct":{"key":"mark"}},262143]},196608]}}}"#
        ),
        "{l}"
    );
    assert!(t.contains(r#""jump":{"target":"task_sensor"}"#), "{t}");
    let t = expr_text(rule(&v, "task=web rule=dispatch"));
    assert!(
        t.contains(r#"{"meta":{"key":"skuid"}},"op":"==","right":10001"#),
        "{t}"
    );
    let t = expr_text(rule(&v, "task=sensor rule=egress:0"));
    assert!(t.contains(r#""right":"192.0.2.2""#), "{t}");
    assert!(t.contains(r#""right":443"#), "{t}");
    assert!(t.contains(r#""accept":null"#), "{t}");
    let egress1 = rules_of(&v, "task_sensor")
        .into_iter()
        .filter(|r| r["comment"] == "task=sensor rule=egress:1")
        .map(expr_text)
        .collect::<Vec<_>>();
    assert!(egress1[0].contains(r#""right":"@n0""#), "{}", egress1[0]);
    assert!(
        egress1[1].contains(r#""right":{"range":[8000,8080]}"#),
        "{}",
        egress1[1]
    );
    let t = expr_text(rule(&v, "task=sensor rule=egress:2"));
    assert!(t.contains(r#""jump":{"target":"task_sensor_e2"}"#), "{t}");
    assert_eq!(
        rule(&v, "task=sensor rule=egress:2:rate")["expr"][0]["limit"],
        serde_json::json!({"rate": 1000, "burst": 3000, "per": "second", "rate_unit": "bytes",
                           "burst_unit": "bytes", "inv": true})
    );
    assert_eq!(
        rule(&v, "task=sensor rule=egress:3:packets")["expr"][0]["limit"],
        serde_json::json!({"rate": 5, "burst": 5, "per": "second", "inv": true})
    );
    let t = expr_text(rule(&v, "device rule=egress-cap"));
    assert!(
        t.contains(r#""op":"!=""#) && t.contains(r#""right":"lo""#),
        "{t}"
    );
    let t = expr_text(rule(&v, "task=web rule=listen:0"));
    assert!(
        t.contains(r#""right":"@lan4""#) && t.contains(r#""right":8080"#),
        "{t}"
    );
    let t = expr_text(rule(&v, "task=web rule=listen:1"));
    assert!(!t.contains("@lan4") && t.contains(r#""right":8081"#), "{t}");
    let t = expr_text(rule(&v, "device rule=established"));
    assert!(t.contains(r#""right":["established","related"]"#), "{t}");
}

fn install_replaces_the_table() {
    let ns = Netns::new("limpet-net-");
    let mut nft = ns.nft();
    let r = uid_ruleset();
    nft.install(&r).unwrap();
    let first = objects(&ns.ruleset(), "rule").len();
    assert_eq!(first, r.rules.len());
    nft.install(&r).unwrap();
    let v = ns.ruleset();
    assert_eq!(objects(&v, "rule").len(), first, "no rule twice");
    assert_eq!(objects(&v, "table").len(), 1);
    let c = nft.counters().unwrap();
    assert_eq!(
        c.rules.len(),
        r.rules.len(),
        "a counter per rule, read back"
    );
}

fn rejected_batch_names_the_object_and_changes_nothing() {
    let ns = Netns::new("limpet-net-");
    let mut nft = ns.nft();
    let good = uid_ruleset();
    nft.install(&good).unwrap();
    let before = ns.ruleset();

    let mut bad = good.clone();
    bad.rules.push(Rule {
        chain: "output".into(),
        exprs: vec![
            Expr::Counter,
            Expr::Verdict(Verdict::Jump("nowhere".into())),
        ],
        comment: "device rule=bad".into(),
    });
    let index = bad.rules.len() - 1;
    match nft.install(&bad) {
        Err(NftError::Rejected { object, errno, .. }) => {
            assert_eq!(errno, libc_enoent(), "{object}");
            let text = object.to_string();
            assert_eq!(
                text,
                format!("rule {index} in chain output (device rule=bad)")
            );
        }
        other => panic!("expected a rejected rule, got {other:?}"),
    }
    let mut bad_set = good.clone();
    bad_set.rules[0].exprs.insert(
        0,
        Expr::Lookup {
            set: "missing".into(),
        },
    );
    let err = nft.install(&bad_set).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("the kernel rejected rule 0 in chain input"),
        "{err}"
    );
    assert_eq!(ns.ruleset(), before, "a rejected batch changes nothing");
}

fn libc_enoent() -> i32 {
    rustix::io::Errno::NOENT.raw_os_error()
}

/// The elements of set `name` as nft lists them.
fn set_elems(ns: &Netns, name: &str) -> Vec<Value> {
    let v = ns.nft_json(&["list", "set", "inet", "limpet", name]);
    let set = objects(&v, "set")[0].clone();
    set.get("elem")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn dns_set_elements_refresh_and_expire() {
    let ns = Netns::new("limpet-net-");
    let mut nft = ns.nft();
    nft.install(&uid_ruleset()).unwrap();
    let a = Ipv4Addr::new(198, 51, 100, 7);
    let b = Ipv4Addr::new(198, 51, 100, 8);
    nft.add_set_elements(
        "n0",
        &[(a, Duration::from_secs(2)), (b, Duration::from_secs(2))],
    )
    .unwrap();
    let e = set_elems(&ns, "n0");
    assert_eq!(e.len(), 2, "{e:?}");
    assert_eq!(e[0]["elem"]["val"], "198.51.100.7", "{e:?}");
    assert_eq!(e[0]["elem"]["timeout"], 2, "{e:?}");
    // Re-adding `a` with a longer ttl refreshes it; `b` keeps its 2 s.
    nft.add_set_elements("n0", &[(a, Duration::from_secs(60))])
        .unwrap();
    let e = set_elems(&ns, "n0");
    let of = |addr: &str| e.iter().find(|x| x["elem"]["val"] == addr).cloned();
    assert_eq!(of("198.51.100.7").unwrap()["elem"]["timeout"], 60, "{e:?}");
    assert!(
        of("198.51.100.7").unwrap()["elem"]["expires"]
            .as_u64()
            .unwrap()
            > 50
    );
    // `b` expires; bounded wait.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let e = set_elems(&ns, "n0");
        if e.len() == 1 {
            assert_eq!(e[0]["elem"]["val"], "198.51.100.7");
            break;
        }
        assert!(Instant::now() < deadline, "element did not expire: {e:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
    let err = nft
        .add_set_elements("no-such-set", &[(a, Duration::from_secs(1))])
        .unwrap_err();
    assert!(
        err.to_string().contains("elements of set no-such-set"),
        "{err}"
    );
}

fn lan_set_is_replaced() {
    let ns = Netns::new("limpet-net-");
    let mut nft = ns.nft();
    nft.install(&uid_ruleset()).unwrap();
    nft.replace_lan_networks(&[
        "192.0.2.0/24".parse().unwrap(),
        "198.51.100.0/25".parse().unwrap(),
    ])
    .unwrap();
    assert_eq!(
        set_elems(&ns, "lan4"),
        vec![
            serde_json::json!({"prefix": {"addr": "192.0.2.0", "len": 24}}),
            serde_json::json!({"prefix": {"addr": "198.51.100.0", "len": 25}}),
        ]
    );
    nft.replace_lan_networks(&["203.0.113.0/24".parse().unwrap()])
        .unwrap();
    nft.add_lan_network("192.0.2.0/24".parse().unwrap())
        .unwrap();
    assert_eq!(
        set_elems(&ns, "lan4"),
        vec![
            serde_json::json!({"prefix": {"addr": "192.0.2.0", "len": 24}}),
            serde_json::json!({"prefix": {"addr": "203.0.113.0", "len": 24}}),
        ]
    );
    nft.add_dns_servers(&[Ipv4Addr::new(203, 0, 113, 53)])
        .unwrap();
    assert_eq!(
        set_elems(&ns, "dns4"),
        vec![
            serde_json::json!("192.0.2.53"),
            serde_json::json!("203.0.113.53")
        ]
    );
    let _ = SetElem::Addr(Ipv4Addr::LOCALHOST);
}

// ---------------------------------------------------------------------------------------
// Traffic.

/// Who a probe runs as.
#[derive(Clone)]
struct As {
    /// `cgroup.procs` of its cgroup, or "-" to stay.
    cgroup: String,
    /// uid, or 0.
    uid: u32,
}

/// Runs this binary as a probe in namespace `ns`: `--probe <cgroup> <uid> <what> <args..>`.
fn spawn_probe(ns: &Netns, who: &As, what: &[&str]) -> Child {
    let exe = std::env::current_exe().unwrap();
    let uid = who.uid.to_string();
    let mut args = vec![
        "netns",
        "exec",
        ns.name.as_str(),
        exe.to_str().unwrap(),
        "--probe",
        who.cgroup.as_str(),
        uid.as_str(),
    ];
    args.extend_from_slice(what);
    Command::new("ip")
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

fn probe_output(ns: &Netns, who: &As, what: &[&str]) -> String {
    let out = spawn_probe(ns, who, what).wait_with_output().unwrap();
    assert!(out.status.success(), "probe {what:?}: {}", out.status);
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn connect(ns: &Netns, who: &As, to: &str) -> String {
    probe_output(ns, who, &["connect", to])
}

/// A TCP server in `ns` on `addr` accepting (and dropping) connections until the process
/// ends; runs on a detached thread with its socket made in the namespace.
fn tcp_server(ns: &Netns, addr: &str) {
    let l = ns.enter(|| TcpListener::bind(addr).unwrap());
    std::thread::spawn(move || {
        for s in l.incoming() {
            drop(s);
        }
    });
}

/// A UDP sink in `ns` on `addr`; returns the socket to count what arrived.
fn udp_sink(ns: &Netns, addr: &str) -> UdpSocket {
    let s = ns.enter(|| UdpSocket::bind(addr).unwrap());
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    s
}

fn drain(s: &UdpSocket) -> usize {
    let mut buf = [0u8; 2048];
    let mut n = 0;
    // Bounded: at most 10 000 datagrams, each read times out after 300 ms of silence.
    for _ in 0..10_000 {
        match s.recv(&mut buf) {
            Ok(_) => n += 1,
            Err(_) => break,
        }
    }
    n
}

/// dev (the device) 192.0.2.1 ── veth ── net 192.0.2.2, 198.51.100.7, 203.0.113.2.
fn device_and_network() -> (Netns, Netns) {
    let dev = Netns::new("limpet-net-");
    let net = Netns::new("limpet-net-");
    let (a, b) = (unique("lnA"), unique("lnB"));
    run(
        "ip",
        &[
            "link", "add", "name", &a, "netns", &dev.name, "type", "veth", "peer", "name", &b,
            "netns", &net.name,
        ],
    );
    dev.ip(&["addr", "add", "192.0.2.1/24", "dev", &a]);
    dev.ip(&["link", "set", &a, "up"]);
    dev.ip(&["route", "add", "198.51.100.0/24", "via", "192.0.2.2"]);
    dev.ip(&["route", "add", "203.0.113.0/24", "via", "192.0.2.2"]);
    net.ip(&["addr", "add", "192.0.2.2/24", "dev", &b]);
    net.ip(&["addr", "add", "198.51.100.7/24", "dev", &b]);
    net.ip(&["addr", "add", "203.0.113.2/24", "dev", &b]);
    net.ip(&["link", "set", &b, "up"]);
    (dev, net)
}

fn traffic_follows_the_policy() {
    let (dev, net) = device_and_network();
    for addr in [
        "192.0.2.2:443",
        "192.0.2.2:8443",
        "198.51.100.7:443",
        "198.51.100.7:8000",
    ] {
        tcp_server(&net, addr);
    }
    let udp_rate = udp_sink(&net, "192.0.2.2:9000");
    let udp_pkts = udp_sink(&net, "192.0.2.2:9001");

    let mut cg = Cgroup2::mount("limpet-net-");
    let (sensor_dir, sensor_id) = cg.task_dir("sensor");
    let (other_dir, _) = cg.task_dir("other");
    let p = policy();
    let mut rt = Runtime::by_uid(&p); // web: by uid 10001
    rt.tasks.insert(
        "sensor".into(),
        TaskMatch::CgroupV2 {
            level: 2,
            id: sensor_id,
        },
    );
    rt.lan = vec!["192.0.2.0/24".parse().unwrap()];
    let mut nft = dev.nft();
    nft.install(&Ruleset::build(&p, &rt).unwrap()).unwrap();

    let procs = |d: &Path| d.join("cgroup.procs").to_str().unwrap().to_owned();
    let sensor = As {
        cgroup: procs(&sensor_dir),
        uid: 10_000,
    };
    let stranger = As {
        cgroup: procs(&other_dir),
        uid: 10_000, // the sensor's uid, but not its cgroup: the cgroup decides
    };
    let root = As {
        cgroup: procs(&other_dir),
        uid: 0,
    };

    // Literal address and port: allowed; other port, other address: refused at output.
    assert_eq!(connect(&dev, &sensor, "192.0.2.2:443"), "ok");
    assert_eq!(connect(&dev, &sensor, "192.0.2.2:8443"), "blocked");
    assert_eq!(connect(&dev, &stranger, "192.0.2.2:443"), "blocked");
    assert_eq!(connect(&dev, &root, "192.0.2.2:443"), "blocked");

    // A DNS name's address: refused until the stub adds it, then allowed until it expires.
    assert_eq!(connect(&dev, &sensor, "198.51.100.7:443"), "blocked");
    nft.add_set_elements(
        "n0",
        &[(Ipv4Addr::new(198, 51, 100, 7), Duration::from_secs(2))],
    )
    .unwrap();
    assert_eq!(connect(&dev, &sensor, "198.51.100.7:443"), "ok");
    assert_eq!(connect(&dev, &sensor, "198.51.100.7:8000"), "ok");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !set_elems(&dev, "n0").is_empty() {
        assert!(Instant::now() < deadline, "n0 element did not expire");
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(connect(&dev, &sensor, "198.51.100.7:443"), "blocked");

    // Rate caps: 100 datagrams of 1000 bytes at once. 8 kbit/s = 1000 B/s plus a 3000 B
    // burst lets a few through; 5/s with a burst of 5 lets about 5.
    let sent = probe_output(&dev, &sensor, &["udp", "192.0.2.2:9000", "100", "1000"]);
    let got = drain(&udp_rate);
    assert!(
        (1..=10).contains(&got),
        "byte cap let {got} through (probe: {sent})"
    );
    let sent = probe_output(&dev, &sensor, &["udp", "192.0.2.2:9001", "100", "100"]);
    let got = drain(&udp_pkts);
    assert!(
        (1..=12).contains(&got),
        "packet cap let {got} through (probe: {sent})"
    );

    // Listeners (web, by uid 10001): 8080 from the LAN only, 8081 from anywhere.
    let web = As {
        cgroup: "-".into(),
        uid: 10_001,
    };
    let mut l = spawn_probe(&dev, &web, &["listen", "0.0.0.0:8080,0.0.0.0:8081", "8"]);
    let mut lines = BufReader::new(l.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "listening");
    let from = |src: &str, to: &str| -> &'static str {
        let src: SocketAddr = format!("{src}:0").parse().unwrap();
        let to: SocketAddr = to.parse().unwrap();
        net.enter(|| {
            let s = rustix::net::socket(
                rustix::net::AddressFamily::INET,
                rustix::net::SocketType::STREAM,
                None,
            )
            .unwrap();
            rustix::net::bind(&s, &src).unwrap();
            rustix::net::sockopt::set_socket_timeout(
                &s,
                rustix::net::sockopt::Timeout::Send,
                Some(Duration::from_secs(2)),
            )
            .unwrap();
            match rustix::net::connect(&s, &to) {
                Ok(()) => {
                    let mut t = TcpStream::from(s);
                    // The task echoes one byte: its replies pass output.
                    t.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                    let _ = t.write_all(b"x");
                    let mut b = [0u8; 1];
                    match std::io::Read::read(&mut t, &mut b) {
                        Ok(1) => "ok",
                        _ => "no-reply",
                    }
                }
                Err(_) => "refused",
            }
        })
    };
    assert_eq!(from("192.0.2.2", "192.0.2.1:8080"), "ok");
    assert_eq!(
        from("203.0.113.2", "192.0.2.1:8080"),
        "refused",
        "not from the LAN"
    );
    assert_eq!(from("203.0.113.2", "192.0.2.1:8081"), "ok");
    assert_eq!(
        from("192.0.2.2", "192.0.2.1:9999"),
        "refused",
        "no listener rule"
    );
    let _ = l.kill();
    let _ = l.wait();

    // Counters: the sensor's refusals are in its drop rule; its egress rules counted.
    let c = nft.counters().unwrap();
    let drops = c.task_drops();
    assert!(drops["sensor"].packets >= 2, "{drops:?}");
    assert!(c.get(&Owner::Task("sensor".into()), "egress:0").packets >= 1);
    assert!(
        c.get(&Owner::Task("sensor".into()), "egress:2:rate")
            .packets
            >= 50
    );
    assert!(c.get(&Owner::Device, "pid1-drop").packets >= 1);
    assert!(c.get(&Owner::Device, "input-drop").packets >= 1);
    drop(cg);
}

// ---------------------------------------------------------------------------------------
// Orphaned sockets: a socket closed with data still queued is an orphan, without a file and
// so without `meta skuid`; the kernel goes on sending its queue.

/// What a writer sends before closing: far more than the slow reader takes before the
/// close, so that the orphan has a queue to send.
const TAIL_BYTES: usize = 4 << 20;

/// Reads a stream slowly to its end (the writer's close) and returns the bytes that
/// arrived in order; stops early at 3 s of silence (a lost tail), bounded overall.
fn slow_read(s: TcpStream) -> usize {
    slow_read_gated(s, None)
}

fn slow_read_gated(mut s: TcpStream, gate: Option<&Gate>) -> usize {
    use std::sync::atomic::Ordering;
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let mut buf = vec![0u8; 64 << 10];
    let mut total = 0usize;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        match std::io::Read::read(&mut s, &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                assert!(
                    buf[..n]
                        .iter()
                        .enumerate()
                        .all(|(i, b)| *b == pattern(total + i)),
                    "bytes out of order at {total}"
                );
                total += n;
                std::thread::sleep(Duration::from_millis(5));
                // Held: bounded wait for the test to let it go on.
                let held = Instant::now();
                while gate.is_some_and(|g| g.load(Ordering::SeqCst) == 1)
                    && held.elapsed() < Duration::from_secs(30)
                {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
    }
    total
}

/// A TCP server in `ns` on `addr` that reads one connection slowly; the bytes it got.
fn slow_reader(ns: &Netns, addr: &str) -> std::thread::JoinHandle<usize> {
    gated_reader(ns, addr, None)
}

/// A reader that can be held: `1` in the gate stops it reading, `2` lets it read on.
type Gate = std::sync::Arc<std::sync::atomic::AtomicU8>;

/// [`slow_reader`] with a gate, and a 64 KiB receive buffer (no autotuning): while it is
/// held, at most that much more of the writer's queue can arrive.
fn gated_reader(ns: &Netns, addr: &str, gate: Option<Gate>) -> std::thread::JoinHandle<usize> {
    let l = ns.enter(|| TcpListener::bind(addr).unwrap());
    if gate.is_some() {
        rustix::net::sockopt::set_socket_recv_buffer_size(&l, 64 << 10).unwrap();
    }
    l.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok((s, _)) = l.accept() {
                s.set_nonblocking(false).unwrap();
                return slow_read_gated(s, gate.as_ref());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        0
    })
}

/// A probe serving `TAIL_BYTES` on `addr` as `who`; returns once it listens.
fn spawn_server(ns: &Netns, who: &As, addr: &str) -> Child {
    let bytes = TAIL_BYTES.to_string();
    let mut p = spawn_probe(ns, who, &["serve", addr, &bytes]);
    let mut line = String::new();
    BufReader::new(p.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "listening");
    p
}

/// Connects from `ns` (its thread) to `to` and reads slowly what a server sends.
fn read_from(ns: &Netns, to: &str) -> usize {
    let to: SocketAddr = to.parse().unwrap();
    match ns.enter(|| TcpStream::connect_timeout(&to, Duration::from_secs(2))) {
        Ok(s) => slow_read(s),
        Err(e) => {
            println!("\n  connecting to {to}: {e}");
            0
        }
    }
}

fn finish(mut p: Child) -> String {
    let mut out = String::new();
    std::io::Read::read_to_string(p.stdout.as_mut().unwrap(), &mut out).unwrap();
    let _ = p.wait();
    out.trim().to_owned()
}

/// PID 1 (uid 0) serving over loopback, its socket closed with a queue: the reader gets
/// every byte.
fn orphan_tail_over_loopback() {
    let dev = Netns::new("limpet-net-");
    let mut nft = dev.nft();
    nft.install(&uid_ruleset()).unwrap();
    let pid1 = As {
        cgroup: "-".into(),
        uid: 0,
    };
    let server = spawn_server(&dev, &pid1, "127.0.0.1:7000");
    let got = read_from(&dev, "127.0.0.1:7000");
    let sent = finish(server);
    let c = nft.counters().unwrap();
    println!(
        "\n  loopback, PID 1 serving: got {got} of {TAIL_BYTES} ({sent}); output-drop {:?}",
        c.get(&Owner::Device, "output-drop")
    );
    assert_eq!(got, TAIL_BYTES);
}

/// A task's connection out over the veth and a task's listener's connection, by uid and by
/// cgroup, each socket closed with a queue: the reader gets every byte.
fn orphan_tail_over_veth() {
    let (dev, net) = device_and_network();
    let mut cg = Cgroup2::mount("limpet-net-");
    let (sensor_dir, sensor_id) = cg.task_dir("sensor");
    let (web_dir, web_id) = cg.task_dir("web");
    // Without the device cap (10 Mbit/s: 3.4 s a transfer); the cap is
    // `orphans_pass_only_what_their_owner_may_send`'s.
    let mut p = policy();
    p.egress_cap = None;
    let procs = |d: &Path| d.join("cgroup.procs").to_str().unwrap().to_owned();
    let mut results = Vec::new();
    for by_cgroup in [false, true] {
        let mut rt = Runtime::by_uid(&p);
        rt.lan = vec!["192.0.2.0/24".parse().unwrap()];
        let (sensor, web) = if by_cgroup {
            for (task, id) in [("sensor", sensor_id), ("web", web_id)] {
                rt.tasks
                    .insert(task.into(), TaskMatch::CgroupV2 { level: 2, id });
            }
            // Another uid than the task's: only the cgroup can match.
            let s = As {
                cgroup: procs(&sensor_dir),
                uid: 20_000,
            };
            let w = As {
                cgroup: procs(&web_dir),
                uid: 20_001,
            };
            (s, w)
        } else {
            let s = As {
                cgroup: "-".into(),
                uid: 10_000,
            };
            let w = As {
                cgroup: "-".into(),
                uid: 10_001,
            };
            (s, w)
        };
        let mut nft = dev.nft();
        nft.install(&Ruleset::build(&p, &rt).unwrap()).unwrap();
        let mode = if by_cgroup { "cgroup" } else { "uid" };

        let reader = slow_reader(&net, "192.0.2.2:443");
        let bytes = TAIL_BYTES.to_string();
        let sent = probe_output(&dev, &sensor, &["send", "192.0.2.2:443", &bytes]);
        let got = reader.join().unwrap();
        results.push((format!("{mode}: task connects out"), got, sent));

        let server = spawn_server(&dev, &web, "0.0.0.0:8081");
        let got = read_from(&net, "192.0.2.1:8081");
        results.push((format!("{mode}: task's listener"), got, finish(server)));
        // The same listener over loopback, for PID 1 (uid 0).
        let server = spawn_server(&dev, &web, "127.0.0.1:8081");
        let got = read_from(&dev, "127.0.0.1:8081");
        results.push((
            format!("{mode}: task's listener on lo"),
            got,
            finish(server),
        ));
        let c = nft.counters().unwrap();
        println!(
            "\n  {mode}: output-drop {:?}",
            c.get(&Owner::Device, "output-drop")
        );
    }
    for (what, got, sent) in &results {
        println!("  {what}: got {got} of {TAIL_BYTES} ({sent})");
    }
    for (what, got, _) in &results {
        assert_eq!(*got, TAIL_BYTES, "{what}");
    }
    drop(cg);
}

/// The sensor (by uid) sends `TAIL_BYTES` to `to` (from `from_port`) and closes; the
/// reader on `to` in `net` is held once the writer has closed, `between` runs, and the
/// reader reads on: the bytes it got.
fn tail_after(
    dev: &Netns,
    net: &Netns,
    to: &str,
    from_port: Option<&str>,
    between: impl FnOnce(),
) -> usize {
    use std::sync::atomic::{AtomicU8, Ordering};
    let gate: Gate = std::sync::Arc::new(AtomicU8::new(0));
    let reader = gated_reader(net, to, Some(gate.clone()));
    let sensor = As {
        cgroup: "-".into(),
        uid: 10_000,
    };
    let bytes = TAIL_BYTES.to_string();
    let mut what = vec!["send", to, bytes.as_str()];
    what.extend(from_port);
    assert_eq!(probe_output(dev, &sensor, &what), "ok");
    gate.store(1, Ordering::SeqCst);
    // The reader stops; what is in flight lands in its 64 KiB buffer.
    std::thread::sleep(Duration::from_millis(300));
    between();
    gate.store(2, Ordering::SeqCst);
    reader.join().unwrap()
}

/// Ownerless packets pass what their owner's chain passes now, no more: (d) the egress cap
/// and the task's egress rule still count them; (b) a ruleset installed after the close
/// (as entering island mode does) judges them by its own chains; (a) a pinhole's flow
/// passes until the pinhole expires and not after.
fn orphans_pass_only_what_their_owner_may_send() {
    let (dev, net) = device_and_network();
    let mut p = policy();
    p.tasks[0].pinholes = true;
    let mut rt = Runtime::by_uid(&p);
    rt.lan = vec!["192.0.2.0/24".parse().unwrap()];
    let normal = Ruleset::build(&p, &rt).unwrap();
    let mut nft = dev.nft();
    nft.install(&normal).unwrap();
    let sensor = Owner::Task("sensor".into());
    let count = |nft: &mut Nft, owner: &Owner, id: &str| nft.counters().unwrap().get(owner, id);

    // (d): after the close, the orphan's packets go through the device cap (10 Mbit/s:
    // its drops count) and the sensor's egress rule (its bytes count).
    let mut before = None;
    let got = tail_after(&dev, &net, "192.0.2.2:443", None, || {
        before = Some((
            count(&mut nft, &Owner::Device, "egress-cap"),
            count(&mut nft, &sensor, "egress:0"),
            count(&mut nft, &sensor, "orphan:original"),
        ));
    });
    assert_eq!(got, TAIL_BYTES, "the tail under the normal policy");
    let (cap, egress, orphan) = before.unwrap();
    let c = nft.counters().unwrap();
    let after = |id| {
        c.get(
            if id == "egress-cap" {
                &Owner::Device
            } else {
                &sensor
            },
            id,
        )
    };
    println!(
        "\n  after the close: egress-cap {:?} -> {:?}, egress:0 {:?} -> {:?}, orphan {:?} -> {:?}",
        cap,
        after("egress-cap"),
        egress,
        after("egress:0"),
        orphan,
        after("orphan:original")
    );
    assert!(after("orphan:original").packets > orphan.packets);
    assert!(
        after("egress:0").bytes >= egress.bytes + (after("orphan:original").bytes - orphan.bytes)
    );
    assert!(after("egress-cap").packets > cap.packets);

    // From here without the device cap, for time.
    p.egress_cap = None;
    let normal = Ruleset::build(&p, &rt).unwrap();
    nft.install(&normal).unwrap();

    // (b): the sensor's egress gone from the new table: its flow's tail drops there.
    let mut q = p.clone();
    q.tasks[0].egress.clear();
    let island = Ruleset::build(&q, &rt).unwrap();
    let drops = count(&mut nft, &sensor, "drop");
    let got = tail_after(&dev, &net, "192.0.2.2:443", None, || {
        nft.install(&island).unwrap();
    });
    let dropped = count(&mut nft, &sensor, "drop");
    println!("  after a new table: got {got}; task drop {drops:?} -> {dropped:?}");
    assert!(got < TAIL_BYTES, "the old policy's flow passed the new one");
    // The new table's counters start at 0.
    assert!(dropped.packets > 0);
    nft.install(&normal).unwrap();

    // (a): a pinhole to 203.0.113.2:7000 from port 40000: the tail passes while it lasts,
    // and drops once it expired.
    let set = Ruleset::pinhole_set("sensor");
    let peer: SocketAddrV4 = "203.0.113.2:7000".parse().unwrap();
    nft.add_pinhole(&set, peer, 40_000, Duration::from_secs(60))
        .unwrap();
    let got = tail_after(&dev, &net, "203.0.113.2:7000", Some("40000"), || {});
    assert_eq!(
        got, TAIL_BYTES,
        "the tail of a pinhole's flow before it expires"
    );
    nft.add_pinhole(&set, peer, 40_001, Duration::from_secs(5))
        .unwrap();
    let got = tail_after(&dev, &net, "203.0.113.2:7000", Some("40001"), || {
        let deadline = Instant::now() + Duration::from_secs(10);
        while set_elems(&dev, &set).len() > 1 {
            assert!(Instant::now() < deadline, "the pinhole did not expire");
            std::thread::sleep(Duration::from_millis(250));
        }
    });
    println!("  pinhole expired after the close: got {got}");
    assert!(got < TAIL_BYTES, "the tail passed an expired pinhole");
}

/// (c) Nothing new: a flow the table has not seen (established before it was installed,
/// so conntrack picks it up as new) gets no pass for its ownerless packets.
fn an_ownerless_new_flow_drops() {
    let (dev, net) = device_and_network();
    let mut nft = dev.nft();
    let got = tail_after(&dev, &net, "192.0.2.2:443", None, || {
        nft.install(&uid_ruleset()).unwrap();
    });
    let c = nft.counters().unwrap();
    let drops = c.get(&Owner::Device, "output-drop");
    println!("\n  a flow older than the table: got {got}; output-drop {drops:?}");
    assert!(got < TAIL_BYTES);
    assert!(drops.packets > 0);
    for r in c.rules.iter().filter(|r| r.rule.contains("orphan")) {
        assert_eq!(r.count.packets, 0, "{r:?}");
    }
}

// ---------------------------------------------------------------------------------------
// The probe: `--probe <cgroup.procs or -> <uid> <what> <args..>`, prints one line per result.

fn probe(args: &[String]) -> ExitCode {
    let (cgroup, uid, what) = (&args[0], &args[1], &args[2]);
    if cgroup != "-" {
        std::fs::write(cgroup, "0").expect("join the cgroup");
    }
    let uid: u32 = uid.parse().unwrap();
    if uid != 0 {
        let u = rustix::process::Uid::from_raw(uid);
        rustix::thread::set_thread_res_uid(u, u, u).expect("setresuid");
    }
    match what.as_str() {
        "connect" => {
            let to: SocketAddr = args[3].parse().unwrap();
            let r = TcpStream::connect_timeout(&to, Duration::from_secs(1));
            println!("{}", outcome(r.map(drop)));
        }
        "udp" => {
            let to: SocketAddrV4 = args[3].parse().unwrap();
            let (count, size): (usize, usize) =
                (args[4].parse().unwrap(), args[5].parse().unwrap());
            let s = UdpSocket::bind("0.0.0.0:0").unwrap();
            let buf = vec![0u8; size];
            let ok = (0..count).filter(|_| s.send_to(&buf, to).is_ok()).count();
            println!("{ok} sent");
        }
        "listen" => {
            let ls: Vec<TcpListener> = args[3]
                .split(',')
                .map(|a| {
                    let l = TcpListener::bind(a).unwrap();
                    l.set_nonblocking(true).unwrap();
                    l
                })
                .collect();
            let max: usize = args[4].parse().unwrap();
            println!("listening");
            std::io::stdout().flush().ok();
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut served = 0;
            while served < max && Instant::now() < deadline {
                for l in &ls {
                    if let Ok((mut s, _)) = l.accept() {
                        s.set_nonblocking(false).unwrap();
                        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                        let mut b = [0u8; 1];
                        if std::io::Read::read(&mut s, &mut b).is_ok() {
                            let _ = s.write_all(&b);
                        }
                        served += 1;
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        // Connects (from `local_port` when given), writes `bytes` and closes at once: what
        // the peer has not yet acknowledged is left to the orphaned socket.
        "send" => {
            let to: SocketAddr = args[3].parse().unwrap();
            let bytes: usize = args[4].parse().unwrap();
            let s = rustix::net::socket(
                rustix::net::AddressFamily::INET,
                rustix::net::SocketType::STREAM,
                None,
            )
            .unwrap();
            if let Some(port) = args.get(5) {
                let from: SocketAddr = format!("0.0.0.0:{port}").parse().unwrap();
                rustix::net::bind(&s, &from).unwrap();
            }
            let r = rustix::net::connect(&s, &to)
                .map_err(std::io::Error::from)
                .and_then(|()| write_and_close(TcpStream::from(s), bytes));
            println!("{}", outcome(r));
        }
        // Listens, accepts one connection, writes `bytes` to it and closes at once.
        "serve" => {
            let l = TcpListener::bind(&args[3]).unwrap();
            let bytes: usize = args[4].parse().unwrap();
            println!("listening");
            std::io::stdout().flush().ok();
            // Bounded: 10 s for a client.
            l.set_nonblocking(true).unwrap();
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut r = Err(std::io::ErrorKind::TimedOut.into());
            while Instant::now() < deadline {
                if let Ok((s, _)) = l.accept() {
                    s.set_nonblocking(false).unwrap();
                    r = write_and_close(s, bytes);
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            println!("{}", outcome(r));
        }
        other => panic!("unknown probe {other}"),
    }
    ExitCode::SUCCESS
}

/// Byte `i` of what a writer sends: a count modulo 251, so that a lost or repeated
/// segment shows.
fn pattern(i: usize) -> u8 {
    u8::try_from(i % 251).unwrap_or(0)
}

/// Writes `bytes` of a counting pattern and closes the socket without lingering.
fn write_and_close(mut s: TcpStream, bytes: usize) -> std::io::Result<()> {
    // Bounded: a policy that stops the flow fails the write instead of hanging.
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    // A fixed 1 MiB send buffer (2 MiB in the kernel's count): the write returns with up
    // to that much queued, which the orphan then has to send.
    rustix::net::sockopt::set_socket_send_buffer_size(&s, 1 << 20)?;
    let data: Vec<u8> = (0..bytes).map(pattern).collect();
    s.write_all(&data)
}

fn outcome(r: std::io::Result<()>) -> String {
    match r {
        Ok(()) => "ok".into(),
        // A dropped SYN: TCP retransmits it (the output drop's EPERM is not reported by
        // connect), so the connection times out.
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::PERM.raw_os_error()) => {
            "blocked".into()
        }
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => "blocked".into(),
        Err(e) => format!("error: {e}"),
    }
}
