#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The DHCP client and the rtnetlink calls against a real dnsmasq, across a veth pair
//! between two network namespaces (TEST-NET-1, 192.0.2.0/24).

mod common;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use common::{ip_json, Dnsmasq, Netns};
use limpet_netconf::dhcp::{Client, DhcpSocket, Event, Lease, StateKind};
use limpet_netconf::link::{AddrLifetimes, Link, LinkError, Netlink};

const SERVER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// Real time allowed for one exchange (covers dnsmasq start-up and a lost first DISCOVER).
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(30);

/// Drives `client` with real sockets until it reports an event, passing `clock()` as now.
fn run_until_event(
    client: &mut Client,
    socket: &DhcpSocket,
    clock: impl Fn() -> Instant,
    server: &mut Dnsmasq,
) -> Event {
    let give_up = Instant::now() + EXCHANGE_TIMEOUT;
    let mut buf = vec![0u8; 1500];
    while Instant::now() < give_up {
        server.assert_running();
        while let Some(t) = client.poll_transmit(clock()) {
            socket.send(&t).expect("send");
        }
        if let Some(e) = client.poll_event(clock()) {
            return e;
        }
        let wait = client
            .next_deadline()
            .saturating_duration_since(clock())
            .clamp(Duration::from_millis(10), Duration::from_millis(500));
        if common::wait_readable(socket.as_fd(), wait) {
            while let Some(n) = socket.recv(&mut buf).expect("recv") {
                if let Some(e) = client.handle(clock(), &buf[..n]) {
                    return e;
                }
            }
        } else if client.next_deadline() > clock() + Duration::from_secs(1) {
            // Real time is not the client's time in the renewal phase: advance by hand.
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    panic!(
        "no DHCP event within {EXCHANGE_TIMEOUT:?}; state {:?}",
        client.state()
    );
}

fn apply(nl: &mut Netlink, link: &Link, lease: &Lease, now: Instant) {
    let lifetime = lease.remaining_secs(now);
    nl.replace_address(
        link,
        lease.addr,
        Some(AddrLifetimes {
            valid: lifetime,
            preferred: lifetime,
        }),
    )
    .expect("add address");
    nl.replace_default_route(link, lease.router.expect("router"))
        .expect("default route");
}

#[test]
fn dhcp_lease_is_applied_and_renewed_against_dnsmasq() {
    common::require_root();
    let dnsmasq_bin = common::dnsmasq();
    assert!(dnsmasq_bin.exists());
    let srv = Netns::new("dhs");
    let cli = Netns::new("dhc");
    let pid = std::process::id() % 100_000;
    let (srv_if, cli_if) = (format!("lncs{pid}"), format!("lncc{pid}"));
    common::ip(&[
        "-n", &srv.name, "link", "add", &srv_if, "type", "veth", "peer", "name", &cli_if, "netns",
        &cli.name,
    ]);
    common::ip(&[
        "-n",
        &srv.name,
        "addr",
        "add",
        "192.0.2.1/24",
        "dev",
        &srv_if,
    ]);
    common::ip(&["-n", &srv.name, "link", "set", &srv_if, "up"]);
    let mut server = Dnsmasq::start(
        &srv,
        "dhcp",
        &[
            "--port=0".into(),
            format!("--interface={srv_if}"),
            "--dhcp-range=192.0.2.50,192.0.2.60,255.255.255.0,2m".into(),
            "--dhcp-option=3,192.0.2.1".into(),
            "--dhcp-option=6,192.0.2.53".into(),
            "--dhcp-authoritative".into(),
            "--log-dhcp".into(),
            format!(
                "--dhcp-leasefile={}",
                common::scratch_dir("dhcp").join("leases").display()
            ),
        ],
    );

    cli.enter();
    let mut nl = Netlink::open().expect("netlink");
    let lo = nl.link("lo").expect("lo");
    nl.set_up(&lo).expect("lo up");
    assert!(nl.link("lo").unwrap().up);
    let link = nl.link(&cli_if).expect("veth");
    assert!(!link.up);
    nl.set_up(&link).expect("link up");
    let mac = link.mac.expect("veth has a MAC");

    // Errors name the interface and carry the errno.
    match nl.link("lncnothere0") {
        Err(LinkError::NoSuchInterface { interface }) => assert_eq!(interface, "lncnothere0"),
        other => panic!("{other:?}"),
    }
    match nl.replace_default_route(&link, Ipv4Addr::new(203, 0, 113, 1)) {
        Err(e @ LinkError::Kernel { .. }) => {
            let LinkError::Kernel {
                interface, source, ..
            } = &e
            else {
                unreachable!()
            };
            assert_eq!(interface, &cli_if);
            assert_eq!(source.raw_os_error(), Some(libc::ENETUNREACH));
            assert!(e.to_string().contains(&cli_if), "{e}");
        }
        other => panic!("{other:?}"),
    }

    let socket = DhcpSocket::bind(&cli_if).expect("bind :68");
    let mut client = Client::new(mac, Instant::now());
    let Event::Bound(lease) = run_until_event(&mut client, &socket, Instant::now, &mut server)
    else {
        panic!("expected a lease");
    };
    assert_eq!(lease.server, SERVER);
    assert_eq!(lease.router, Some(SERVER));
    assert_eq!(lease.dns, vec![Ipv4Addr::new(192, 0, 2, 53)]);
    assert_eq!(lease.addr.prefix_len(), 24);
    let octet = lease.addr.addr().octets()[3];
    assert!((50..=60).contains(&octet), "{lease:?}");
    assert_eq!(lease.lease, Duration::from_secs(120));
    apply(&mut nl, &link, &lease, Instant::now());

    // The kernel agrees, seen through iproute2 (not through this crate).
    let addrs = ip_json(&["-n", &cli.name, "addr", "show", "dev", &cli_if]);
    let infos = addrs[0]["addr_info"].as_array().unwrap();
    let v4 = infos
        .iter()
        .find(|a| a["family"] == "inet")
        .expect("inet address");
    assert_eq!(v4["local"], lease.addr.addr().to_string());
    assert_eq!(v4["prefixlen"], 24);
    assert_eq!(v4["broadcast"], "192.0.2.255");
    assert!(v4["valid_life_time"].as_u64().unwrap() <= 120);
    let routes = ip_json(&["-n", &cli.name, "route", "show", "default"]);
    assert_eq!(routes[0]["gateway"], "192.0.2.1");
    assert_eq!(routes[0]["dev"], cli_if);
    assert_eq!(nl.addresses(&link).unwrap(), vec![lease.addr]);

    // Renewal: jump the client's clock to T1; the REQUEST goes unicast to the server.
    let offset = lease.renew_at() + Duration::from_secs(1) - Instant::now();
    let fake_now = || Instant::now() + offset;
    let t = client.poll_transmit(fake_now()).expect("renewal request");
    assert_eq!(client.state(), StateKind::Renewing);
    assert_eq!(t.dst, SocketAddrV4::new(SERVER, 67));
    socket.send(&t).expect("send renewal");
    let Event::Renewed(renewed) = run_until_event(&mut client, &socket, fake_now, &mut server)
    else {
        panic!("expected a renewal");
    };
    assert_eq!(renewed.addr, lease.addr);
    assert!(renewed.acquired > lease.renew_at());
    assert_eq!(client.state(), StateKind::Bound);
    apply(&mut nl, &link, &renewed, fake_now());
    assert!(
        server.log_text().contains("DHCPACK"),
        "{}",
        server.log_text()
    );

    // Lease lost: the address and route go.
    nl.delete_default_route(&link).expect("delete route");
    nl.delete_default_route(&link)
        .expect("deleting twice is fine");
    nl.delete_address(&link, lease.addr)
        .expect("delete address");
    assert!(nl.addresses(&link).unwrap().is_empty());
    assert_eq!(
        ip_json(&["-n", &cli.name, "route", "show", "default"]),
        serde_json::json!([])
    );
}
