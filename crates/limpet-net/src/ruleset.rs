//! The nftables ruleset built from a [`NetPolicy`] and the facts PID 1 learns at boot.
//!
//! Rules this module keeps:
//! - Pure: the policy and the [`Runtime`] facts in, the list of objects out.
//! - Default deny: base chains have policy drop and end with a counted drop rule; every
//!   accept names what it serves in its comment.
//! - Every rule has a counter, and a comment `device rule=<id>` or `task=<name> rule=<id>`
//!   by which [`crate::Counters`] finds it again.
//! - A task's egress rule matches every packet of the flow, not only the first: a rate cap
//!   therefore covers the whole flow, and nothing accepts "established" egress generically.
//! - IPv4 only: IPv6 is dropped first in every base chain.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use limpet_policy::net::{
    Addressing, ByteRate, Destination, DnsAccess, Egress, ListenScope, NetPolicy, PacketCap, Ports,
    Reach, TaskNet, FIRST_TASK_UID, L4,
};

use crate::nft::consts::{CT_STATE_ESTABLISHED, CT_STATE_INVALID, CT_STATE_RELATED};
use crate::nft::consts::{NFPROTO_IPV4, NFPROTO_IPV6};
use crate::nft::expr::{CmpOp, Expr, Limit, LimitKind, LimitMatch, MetaKey, PayloadBase, Verdict};
use crate::nft::object::{BaseChain, Chain, ChainPolicy, Hook, Rule, Set, SetElem, SetKind};

/// The table: `inet limpet`.
pub const TABLE: &str = "limpet";
/// Base chain at the input hook.
pub const CHAIN_INPUT: &str = "input";
/// Base chain at the output hook.
pub const CHAIN_OUTPUT: &str = "output";
/// Base chain at the forward hook.
pub const CHAIN_FORWARD: &str = "forward";
/// Regular chain of PID 1's own traffic (uid 0).
pub const CHAIN_PID1: &str = "pid1";
/// Regular chain capping PID 1's queries to upstream DNS servers.
pub const CHAIN_DNS_UPSTREAM: &str = "dns_upstream";
/// Prefix of a task's chain: `task_<name>`; an egress rule with a cap has its own chain
/// `task_<name>_e<i>` (task names have no `_`, so the two never collide).
pub const TASK_CHAIN_PREFIX: &str = "task_";
/// Prefix of a task's pinhole set: `pin_<task>`.
pub const PINHOLE_SET_PREFIX: &str = "pin_";
/// Set of the networks the device is connected to (`flags interval`), for `scope = "lan"`.
pub const SET_LAN: &str = "lan4";
/// Set of upstream DNS servers PID 1's stub may query.
pub const SET_DNS: &str = "dns4";
/// Most addresses a DNS name's set holds: a hostile resolver answer cannot grow it beyond.
pub const NAME_SET_SIZE: u32 = 256;
/// Most elements a task's pinhole set holds. PID 1 opens at most 4 at a time
/// (limpet-remote's `pinhole`); the kernel's bound is twice that, since an expired element
/// counts until the set's garbage collection removes it.
pub const PINHOLE_SET_SIZE: u32 = 8;
/// PID 1's queries to upstream DNS servers, packets per second (UDP and TCP together): a
/// device needs a few per minute; the cap keeps the stub from being the flood.
pub const DNS_UPSTREAM_PACKETS_PER_SECOND: u64 = 20;
/// ICMP errors (`ct state related`) the device sends per second.
pub const ICMP_ERRORS_PER_SECOND: u64 = 10;
/// Echo requests from the LAN answered per second.
pub const PING_PER_SECOND: u64 = 5;
/// Burst of a byte-rate cap: two full Ethernet frames, so that a cap below the MTU still
/// lets full-size packets through at the average rate.
pub const BYTE_BURST: u32 = 3000;
/// Burst of a packet-rate limit when none is derived from the rate.
pub const PACKET_BURST: u32 = 5;
/// The loopback interface's index, the same in every network namespace
/// (`LOOPBACK_IFINDEX`).
pub const LOOPBACK_IFINDEX: u32 = 1;
/// The uid of PID 1.
pub const ROOT_UID: u32 = 0;
/// PID 1's owner code in a flow's conntrack mark ([`task_owner`] for a task's; 0 is no
/// owner).
pub const PID1_OWNER: u16 = 1;

/// A task's owner code in a flow's conntrack mark: `uid - FIRST_TASK_UID + 2`, stable
/// across the normal and the island policy since a task keeps its uid; `None` when it does
/// not fit 16 bits.
pub fn task_owner(uid: u32) -> Option<u16> {
    let code = uid.checked_sub(FIRST_TASK_UID)?.checked_add(2)?;
    u16::try_from(code).ok()
}

/// A direction of a flow, as conntrack sees it: the low 16 bits of its mark name the owner
/// that sends in the original direction (who connected), the high 16 bits the owner that
/// sends replies (who accepted). Over loopback both ends are the device's, each its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Packets of the side that opened the flow.
    Original,
    /// Packets of the side that answered.
    Reply,
}

impl Direction {
    /// `ct direction`'s value.
    fn code(self) -> u8 {
        match self {
            Direction::Original => 0,
            Direction::Reply => 1,
        }
    }

    /// The bits of the mark naming this direction's owner.
    pub fn mask(self) -> u32 {
        match self {
            Direction::Original => 0x0000_ffff,
            Direction::Reply => 0xffff_0000,
        }
    }

    /// The mark bits naming `owner` in this direction.
    pub fn bits(self, owner: u16) -> u32 {
        match self {
            Direction::Original => u32::from(owner),
            Direction::Reply => u32::from(owner) << 16,
        }
    }

    fn id(self) -> &'static str {
        match self {
            Direction::Original => "original",
            Direction::Reply => "reply",
        }
    }
}

const DIRECTIONS: [Direction; 2] = [Direction::Original, Direction::Reply];

/// How PID 1 recognises a task's sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskMatch {
    /// By the task's cgroup v2 directory: `socket cgroupv2 level <level> <id>`. `id` is the
    /// inode number of the directory on the cgroup2 filesystem; `level` its depth below the
    /// root (2 for `<root>/limpet/<task>`).
    CgroupV2 {
        /// Depth below the cgroup2 root.
        level: u32,
        /// The cgroup id.
        id: u64,
    },
    /// By the socket owner's uid (`meta skuid`), where there is no cgroup2.
    Uid(u32),
}

/// What PID 1 knows at boot and the build did not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Runtime {
    /// How to recognise each task of the policy, by task name.
    pub tasks: BTreeMap<String, TaskMatch>,
    /// Networks the device is connected to (the `lan4` set), beyond a static address's.
    pub lan: Vec<Ipv4Net>,
    /// DNS servers learned from DHCP, beyond the manifest's.
    pub dns_upstream: Vec<Ipv4Addr>,
}

impl Runtime {
    /// Every task matched by its uid: for a device without cgroup2, and for tests.
    pub fn by_uid(policy: &NetPolicy) -> Runtime {
        Runtime {
            tasks: policy
                .tasks
                .iter()
                .map(|t| (t.name.clone(), TaskMatch::Uid(t.uid)))
                .collect(),
            ..Runtime::default()
        }
    }
}

/// Errors building a ruleset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RulesetError {
    /// The runtime facts have no [`TaskMatch`] for a task of the policy.
    #[error("no socket match (cgroup or uid) for task \"{task}\"")]
    NoTaskMatch {
        /// The task.
        task: String,
    },
    /// A task's uid gives it no owner code ([`task_owner`]).
    #[error(
        "task \"{task}\" has uid {uid}: a flow's owner is named by uid - {FIRST_TASK_UID} + 2 in \
         16 bits, so a task's uid must be from {FIRST_TASK_UID} to {}",
        FIRST_TASK_UID + 0xfffd
    )]
    NoOwnerCode {
        /// The task.
        task: String,
        /// Its uid.
        uid: u32,
    },
}

/// Everything in table `inet limpet`, in the order it is created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ruleset {
    /// The table's name.
    pub table: String,
    /// Sets, created before the rules that look them up.
    pub sets: Vec<Set>,
    /// Chains, created before any rule jumps to them.
    pub chains: Vec<Chain>,
    /// Rules, appended to their chains in this order.
    pub rules: Vec<Rule>,
}

impl Ruleset {
    /// Builds the ruleset.
    pub fn build(policy: &NetPolicy, rt: &Runtime) -> Result<Ruleset, RulesetError> {
        let mut owners = BTreeMap::new();
        for t in &policy.tasks {
            let code = task_owner(t.uid).ok_or_else(|| RulesetError::NoOwnerCode {
                task: t.name.clone(),
                uid: t.uid,
            })?;
            owners.insert(t.name.clone(), code);
        }
        let mut b = Builder {
            owners,
            ..Builder::default()
        };
        b.sets(policy, rt);
        let base = |name: &str, hook| Chain {
            name: name.to_owned(),
            base: Some(BaseChain {
                hook,
                priority: 0,
                policy: ChainPolicy::Drop,
            }),
        };
        b.chains.push(base(CHAIN_INPUT, Hook::Input));
        b.chains.push(base(CHAIN_FORWARD, Hook::Forward));
        b.chains.push(base(CHAIN_OUTPUT, Hook::Output));
        b.input(policy);
        b.forward();
        b.output(policy, rt)?;
        Ok(Ruleset {
            table: TABLE.to_owned(),
            sets: b.sets,
            chains: b.chains,
            rules: b.rules,
        })
    }

    /// The chain of a task.
    pub fn task_chain(task: &str) -> String {
        format!("{TASK_CHAIN_PREFIX}{task}")
    }

    /// The pinhole set of a task (`pin_<task>`), for a task whose policy has pinholes.
    pub fn pinhole_set(task: &str) -> String {
        format!("{PINHOLE_SET_PREFIX}{task}")
    }
}

/// The comment of a device-wide rule.
pub fn device_comment(id: &str) -> String {
    format!("device rule={id}")
}

/// The comment of a task's rule.
pub fn task_comment(task: &str, id: &str) -> String {
    format!("task={task} rule={id}")
}

#[derive(Default)]
struct Builder {
    /// Each task's owner code, by name.
    owners: BTreeMap<String, u16>,
    sets: Vec<Set>,
    chains: Vec<Chain>,
    rules: Vec<Rule>,
}

/// Match expressions of one rule, before its counter and verdict.
#[derive(Default)]
struct M(Vec<Expr>);

impl M {
    fn new() -> M {
        M::default()
    }

    fn cmp(mut self, load: Expr, data: Vec<u8>) -> M {
        self.0.push(load);
        self.0.push(Expr::Cmp {
            op: CmpOp::Eq,
            data,
        });
        self
    }

    fn nfproto(self, p: u8) -> M {
        self.cmp(Expr::Meta(MetaKey::NfProto), vec![p])
    }

    fn ipv4(self) -> M {
        self.nfproto(NFPROTO_IPV4)
    }

    fn l4(self, p: L4) -> M {
        self.l4_number(p.number())
    }

    fn l4_number(self, n: u8) -> M {
        self.cmp(Expr::Meta(MetaKey::L4Proto), vec![n])
    }

    fn oif_lo(self) -> M {
        self.cmp(
            Expr::Meta(MetaKey::Oif),
            LOOPBACK_IFINDEX.to_ne_bytes().to_vec(),
        )
    }

    fn not_oif_lo(mut self) -> M {
        self.0.push(Expr::Meta(MetaKey::Oif));
        self.0.push(Expr::Cmp {
            op: CmpOp::Neq,
            data: LOOPBACK_IFINDEX.to_ne_bytes().to_vec(),
        });
        self
    }

    fn iif_lo(self) -> M {
        self.cmp(
            Expr::Meta(MetaKey::Iif),
            LOOPBACK_IFINDEX.to_ne_bytes().to_vec(),
        )
    }

    fn skuid(self, uid: u32) -> M {
        self.cmp(Expr::Meta(MetaKey::SkUid), uid.to_ne_bytes().to_vec())
    }

    fn task(self, m: TaskMatch) -> M {
        match m {
            TaskMatch::CgroupV2 { level, id } => {
                self.cmp(Expr::SocketCgroupV2 { level }, id.to_ne_bytes().to_vec())
            }
            TaskMatch::Uid(uid) => self.skuid(uid),
        }
    }

    /// `ip daddr` (offset 16) or `ip saddr` (offset 12) in a network.
    fn addr_in(mut self, offset: u32, net: Ipv4Net) -> M {
        self.0.push(Expr::Payload {
            base: PayloadBase::Network,
            offset,
            len: 4,
        });
        if net.prefix_len() < 32 {
            self.0.push(Expr::Bitwise {
                mask: net.netmask().octets().to_vec(),
                xor: vec![0; 4],
            });
        }
        self.0.push(Expr::Cmp {
            op: CmpOp::Eq,
            data: net.network().octets().to_vec(),
        });
        self
    }

    fn addr_in_set(mut self, offset: u32, set: &str) -> M {
        self.0.push(Expr::Payload {
            base: PayloadBase::Network,
            offset,
            len: 4,
        });
        self.0.push(Expr::Lookup {
            set: set.to_owned(),
        });
        self
    }

    fn daddr(self, net: Ipv4Net) -> M {
        self.addr_in(16, net)
    }

    fn daddr_set(self, set: &str) -> M {
        self.addr_in_set(16, set)
    }

    fn saddr_set(self, set: &str) -> M {
        self.addr_in_set(12, set)
    }

    /// `th sport` (offset 0) or `th dport` (offset 2).
    fn port(mut self, offset: u32, p: Ports) -> M {
        self.0.push(Expr::Payload {
            base: PayloadBase::Transport,
            offset,
            len: 2,
        });
        if p.start == p.end {
            self.0.push(Expr::Cmp {
                op: CmpOp::Eq,
                data: p.start.to_be_bytes().to_vec(),
            });
        } else {
            self.0.push(Expr::Range {
                from: p.start.to_be_bytes().to_vec(),
                to: p.end.to_be_bytes().to_vec(),
            });
        }
        self
    }

    fn dport(self, port: u16) -> M {
        self.port(
            2,
            Ports {
                start: port,
                end: port,
            },
        )
    }

    fn sport(self, port: u16) -> M {
        self.port(
            0,
            Ports {
                start: port,
                end: port,
            },
        )
    }

    /// ICMP type, the first byte of the ICMP header.
    fn icmp_type(self, ty: u8) -> M {
        self.cmp(
            Expr::Payload {
                base: PayloadBase::Transport,
                offset: 0,
                len: 1,
            },
            vec![ty],
        )
    }

    /// `ct state` has any of the bits in `mask`.
    fn ct_state(mut self, mask: u32) -> M {
        self.0.push(Expr::CtState);
        self.0.push(Expr::Bitwise {
            mask: mask.to_ne_bytes().to_vec(),
            xor: vec![0; 4],
        });
        self.0.push(Expr::Cmp {
            op: CmpOp::Neq,
            data: vec![0; 4],
        });
        self
    }

    fn ct_direction(self, d: Direction) -> M {
        self.cmp(Expr::CtDirection, vec![d.code()])
    }

    /// The flow's mark names `owner` as the sender in direction `d`.
    fn ct_owner(mut self, d: Direction, owner: u16) -> M {
        self.0.push(Expr::CtMark);
        self.0.push(Expr::Bitwise {
            mask: d.mask().to_ne_bytes().to_vec(),
            xor: vec![0; 4],
        });
        self.0.push(Expr::Cmp {
            op: CmpOp::Eq,
            data: d.bits(owner).to_ne_bytes().to_vec(),
        });
        self
    }

    /// Names `owner` as the sender in direction `d` in the flow's mark, keeping the other
    /// direction's.
    fn set_ct_owner(mut self, d: Direction, owner: u16) -> M {
        self.0.push(Expr::CtMark);
        self.0.push(Expr::Bitwise {
            mask: (!d.mask()).to_ne_bytes().to_vec(),
            xor: d.bits(owner).to_ne_bytes().to_vec(),
        });
        self.0.push(Expr::SetCtMark);
        self
    }

    fn limit(mut self, l: Limit) -> M {
        self.0.push(Expr::Limit(l));
        self
    }
}

fn bytes_over(r: ByteRate) -> Limit {
    Limit {
        kind: LimitKind::Bytes,
        rate: r.bytes_per_second,
        unit_secs: 1,
        burst: BYTE_BURST,
        matches: LimitMatch::Over,
    }
}

fn packets(count: u64, per_seconds: u64, matches: LimitMatch) -> Limit {
    Limit {
        kind: LimitKind::Packets,
        rate: count,
        unit_secs: per_seconds,
        burst: PACKET_BURST,
        matches,
    }
}

const ICMP: u8 = 1;
const ICMP_ECHO_REPLY: u8 = 0;
const ICMP_ECHO_REQUEST: u8 = 8;
const DHCP_SERVER_PORT: u16 = 67;
const DHCP_CLIENT_PORT: u16 = 68;
const DNS_PORT: u16 = 53;

impl Builder {
    fn rule(&mut self, chain: &str, m: M, verdict: Verdict, comment: String) {
        let mut exprs = m.0;
        exprs.push(Expr::Counter);
        exprs.push(Expr::Verdict(verdict));
        self.rules.push(Rule {
            chain: chain.to_owned(),
            exprs,
            comment,
        });
    }

    fn sets(&mut self, policy: &NetPolicy, rt: &Runtime) {
        let mut lan: Vec<Ipv4Net> = rt.lan.clone();
        if let Addressing::Static { network } = policy.addressing {
            lan.push(network);
        }
        self.sets.push(Set {
            name: SET_LAN.to_owned(),
            kind: SetKind::Intervals,
            size: None,
            elements: lan_elements(&lan),
        });
        let mut dns: Vec<Ipv4Addr> = policy.dns_upstream.clone();
        dns.extend(rt.dns_upstream.iter().copied());
        dns.sort();
        dns.dedup();
        self.sets.push(Set {
            name: SET_DNS.to_owned(),
            kind: SetKind::Addresses,
            size: None,
            elements: dns.into_iter().map(SetElem::Addr).collect(),
        });
        for n in &policy.names {
            self.sets.push(Set {
                name: n.set.clone(),
                kind: SetKind::Expiring,
                size: Some(NAME_SET_SIZE),
                elements: Vec::new(),
            });
        }
        for t in policy.tasks.iter().filter(|t| t.pinholes) {
            self.sets.push(Set {
                name: Ruleset::pinhole_set(&t.name),
                kind: SetKind::Pinholes,
                size: Some(PINHOLE_SET_SIZE),
                elements: Vec::new(),
            });
        }
    }

    fn input(&mut self, policy: &NetPolicy) {
        let c = CHAIN_INPUT;
        self.rule(
            c,
            M::new().nfproto(NFPROTO_IPV6),
            Verdict::Drop,
            device_comment("ipv6"),
        );
        // A connection over loopback to a task's listen port: the task answers it, as
        // over the network (the listen rules below); the connecting side's own chain
        // decided whether it could be sent at all.
        for t in &policy.tasks {
            let owner = self.owner(&t.name);
            for (i, l) in t.listen.iter().enumerate() {
                self.rule(
                    c,
                    M::new()
                        .iif_lo()
                        .ipv4()
                        .l4(l.proto)
                        .dport(l.port)
                        .set_ct_owner(Direction::Reply, owner),
                    Verdict::Continue,
                    task_comment(&t.name, &format!("listen-lo:{i}")),
                );
            }
        }
        // Loopback is filtered at output, where the sending socket is known.
        self.rule(
            c,
            M::new().iif_lo(),
            Verdict::Accept,
            device_comment("loopback"),
        );
        self.rule(
            c,
            M::new().ct_state(CT_STATE_INVALID),
            Verdict::Drop,
            device_comment("invalid"),
        );
        // Replies of flows an output rule let out, and of accepted listeners; related ICMP
        // errors. No flow exists that a rule did not open.
        self.rule(
            c,
            M::new().ct_state(CT_STATE_ESTABLISHED | CT_STATE_RELATED),
            Verdict::Accept,
            device_comment("established"),
        );
        if policy.addressing == Addressing::Dhcp {
            self.rule(
                c,
                M::new()
                    .ipv4()
                    .l4(L4::Udp)
                    .sport(DHCP_SERVER_PORT)
                    .dport(DHCP_CLIENT_PORT),
                Verdict::Accept,
                device_comment("dhcp"),
            );
        }
        for t in &policy.tasks {
            let owner = self.owner(&t.name);
            for (i, l) in t.listen.iter().enumerate() {
                let mut m = M::new().ipv4();
                if l.from == ListenScope::Lan {
                    m = m.saddr_set(SET_LAN);
                }
                // The flow's replies are the task's: recorded for those its socket does not
                // carry (a SYN-ACK's is a request socket, which `socket cgroupv2` does not
                // match; an orphan's has no uid).
                self.rule(
                    c,
                    m.l4(l.proto)
                        .dport(l.port)
                        .set_ct_owner(Direction::Reply, owner),
                    Verdict::Accept,
                    task_comment(&t.name, &format!("listen:{i}")),
                );
            }
        }
        self.rule(
            c,
            M::new()
                .ipv4()
                .saddr_set(SET_LAN)
                .l4_number(ICMP)
                .icmp_type(ICMP_ECHO_REQUEST)
                .limit(packets(PING_PER_SECOND, 1, LimitMatch::Under)),
            Verdict::Accept,
            device_comment("ping-lan"),
        );
        self.rule(c, M::new(), Verdict::Drop, device_comment("input-drop"));
    }

    fn forward(&mut self) {
        self.rule(
            CHAIN_FORWARD,
            M::new(),
            Verdict::Drop,
            device_comment("forward-drop"),
        );
    }

    /// A task's owner code (every task of the policy has one: `build` checked).
    fn owner(&self, task: &str) -> u16 {
        self.owners.get(task).copied().unwrap_or_default()
    }

    /// The first rules of an owner's chain: each packet names its owner in the flow's mark,
    /// for the direction it is sent in; the packets its socket no longer carries the owner
    /// of (an orphan's) are judged by this chain again by that mark.
    fn owner_head(&mut self, chain: &str, owner: u16, comment: &dyn Fn(&str) -> String) {
        for d in DIRECTIONS {
            self.rule(
                chain,
                M::new().ct_direction(d).set_ct_owner(d, owner),
                Verdict::Continue,
                comment(&format!("owner:{}", d.id())),
            );
        }
    }

    fn output(&mut self, policy: &NetPolicy, rt: &Runtime) -> Result<(), RulesetError> {
        let c = CHAIN_OUTPUT;
        self.rule(
            c,
            M::new().nfproto(NFPROTO_IPV6),
            Verdict::Drop,
            device_comment("ipv6"),
        );
        if let Some(cap) = policy.egress_cap {
            self.rule(
                c,
                M::new().not_oif_lo().limit(bytes_over(cap)),
                Verdict::Drop,
                device_comment("egress-cap"),
            );
        }
        self.rule(
            c,
            M::new().skuid(ROOT_UID),
            Verdict::Jump(CHAIN_PID1.to_owned()),
            device_comment("pid1"),
        );
        self.pid1(policy);
        // ICMP errors about flows that exist, and echo replies to the LAN pings input let
        // in; both limited. These are the kernel's own packets, sent for whoever.
        self.rule(
            c,
            M::new()
                .ipv4()
                .l4_number(ICMP)
                .ct_state(CT_STATE_RELATED)
                .limit(packets(ICMP_ERRORS_PER_SECOND, 1, LimitMatch::Under)),
            Verdict::Accept,
            device_comment("icmp-errors"),
        );
        self.rule(
            c,
            M::new()
                .ipv4()
                .l4_number(ICMP)
                .icmp_type(ICMP_ECHO_REPLY)
                .ct_state(CT_STATE_ESTABLISHED)
                .limit(packets(PING_PER_SECOND, 1, LimitMatch::Under)),
            Verdict::Accept,
            device_comment("ping-reply"),
        );
        // (owner, its chain, its task).
        let mut orphans = vec![(PID1_OWNER, CHAIN_PID1.to_owned(), None)];
        for t in &policy.tasks {
            let m = *rt
                .tasks
                .get(&t.name)
                .ok_or_else(|| RulesetError::NoTaskMatch {
                    task: t.name.clone(),
                })?;
            let chain = Ruleset::task_chain(&t.name);
            self.rule(
                c,
                M::new().task(m),
                Verdict::Jump(chain.clone()),
                task_comment(&t.name, "dispatch"),
            );
            self.task_chain(t, &chain);
            orphans.push((self.owner(&t.name), chain, Some(&t.name)));
        }
        // Every packet whose socket names an owner has been judged by that owner's chain,
        // each ending in a drop. What is left has no owner: an orphaned socket's (closed
        // with data queued: no file, so no uid), the kernel's replies for a TIME_WAIT
        // socket, a listener's SYN-ACK (a request socket). An established flow whose mark
        // names an owner for the packet's direction is judged by that owner's chain again,
        // as if the socket still carried it; anything else, a new flow included, drops.
        for (owner, chain, task) in orphans {
            for d in DIRECTIONS {
                let id = format!("orphan:{}", d.id());
                let comment = match task {
                    Some(t) => task_comment(t, &id),
                    None => device_comment(&format!("pid1-{id}")),
                };
                self.rule(
                    c,
                    M::new()
                        .ct_state(CT_STATE_ESTABLISHED)
                        .ct_direction(d)
                        .ct_owner(d, owner),
                    Verdict::Jump(chain.clone()),
                    comment,
                );
            }
        }
        self.rule(c, M::new(), Verdict::Drop, device_comment("output-drop"));
        Ok(())
    }

    /// PID 1's chain: its DNS stub's replies and its own local traffic on loopback, DHCP,
    /// Roughtime, its queries upstream.
    fn pid1(&mut self, policy: &NetPolicy) {
        let c = CHAIN_PID1;
        self.chains.push(Chain {
            name: c.to_owned(),
            base: None,
        });
        self.owner_head(c, PID1_OWNER, &device_comment);
        self.rule(
            c,
            M::new().oif_lo(),
            Verdict::Accept,
            device_comment("loopback-pid1"),
        );
        if policy.addressing == Addressing::Dhcp {
            // No address match: DHCP discovers with broadcasts.
            self.rule(
                c,
                M::new()
                    .ipv4()
                    .l4(L4::Udp)
                    .sport(DHCP_CLIENT_PORT)
                    .dport(DHCP_SERVER_PORT),
                Verdict::Accept,
                device_comment("dhcp"),
            );
        }
        // PID 1's Roughtime queries: UDP to exactly the listed servers; the answers come
        // back as `established`.
        for (i, server) in policy.roughtime.iter().enumerate() {
            self.rule(
                c,
                M::new()
                    .ipv4()
                    .daddr(Ipv4Net::from(*server.ip()))
                    .l4(L4::Udp)
                    .dport(server.port()),
                Verdict::Accept,
                device_comment(&format!("roughtime:{i}")),
            );
        }
        self.chains.push(Chain {
            name: CHAIN_DNS_UPSTREAM.to_owned(),
            base: None,
        });
        for p in [L4::Udp, L4::Tcp] {
            self.rule(
                c,
                M::new().ipv4().daddr_set(SET_DNS).l4(p).dport(DNS_PORT),
                Verdict::Jump(CHAIN_DNS_UPSTREAM.to_owned()),
                device_comment(&format!("dns-upstream:{}", p.as_str())),
            );
        }
        self.rule(
            CHAIN_DNS_UPSTREAM,
            M::new().limit(packets(
                DNS_UPSTREAM_PACKETS_PER_SECOND,
                1,
                LimitMatch::Over,
            )),
            Verdict::Drop,
            device_comment("dns-upstream-cap"),
        );
        self.rule(
            CHAIN_DNS_UPSTREAM,
            M::new(),
            Verdict::Accept,
            device_comment("dns-upstream"),
        );
        self.rule(c, M::new(), Verdict::Drop, device_comment("pid1-drop"));
    }

    fn task_chain(&mut self, t: &TaskNet, chain: &str) {
        self.chains.push(Chain {
            name: chain.to_owned(),
            base: None,
        });
        self.owner_head(chain, self.owner(&t.name), &|id| task_comment(&t.name, id));
        if t.dns == DnsAccess::Stub {
            let stub = Ipv4Net::from(*limpet_policy::net::DNS_STUB.ip());
            for p in [L4::Udp, L4::Tcp] {
                self.rule(
                    chain,
                    M::new()
                        .oif_lo()
                        .ipv4()
                        .daddr(stub)
                        .l4(p)
                        .dport(limpet_policy::net::DNS_STUB.port()),
                    Verdict::Accept,
                    task_comment(&t.name, &format!("dns:{}", p.as_str())),
                );
            }
        }
        for (i, e) in t.egress.iter().enumerate() {
            self.egress(t, chain, i, e);
        }
        // The pinholes PID 1 opened: TCP to a peer's address and port, from the task's own
        // source port, each until its timeout or PID 1 closes it. Every packet of the flow
        // is matched.
        if t.pinholes {
            let load = |offset, len, reg32| Expr::PayloadAt {
                base: PayloadBase::Transport,
                offset,
                len,
                reg32,
            };
            let mut m = M::new().ipv4().l4(L4::Tcp);
            m.0.push(Expr::PayloadAt {
                base: PayloadBase::Network,
                offset: 16,
                len: 4,
                reg32: 0,
            });
            m.0.push(load(2, 2, 1));
            m.0.push(load(0, 2, 2));
            m.0.push(Expr::LookupAt {
                set: Ruleset::pinhole_set(&t.name),
                reg32: 0,
            });
            self.rule(chain, m, Verdict::Accept, task_comment(&t.name, "pinhole"));
        }
        // Replies of the task's own listeners: the flow was let in by an input rule.
        for (i, l) in t.listen.iter().enumerate() {
            self.rule(
                chain,
                M::new()
                    .ct_state(CT_STATE_ESTABLISHED)
                    .ipv4()
                    .l4(l.proto)
                    .sport(l.port),
                Verdict::Accept,
                task_comment(&t.name, &format!("listen-reply:{i}")),
            );
        }
        self.rule(
            chain,
            M::new(),
            Verdict::Drop,
            task_comment(&t.name, "drop"),
        );
    }

    fn egress(&mut self, t: &TaskNet, chain: &str, i: usize, e: &Egress) {
        let id = format!("egress:{i}");
        // With a cap, every port range jumps to one chain holding the cap, so the cap is
        // for the rule as a whole, not per range.
        let verdict = if e.rate.is_some() || e.packets.is_some() {
            let cap_chain = format!("{chain}_e{i}");
            self.chains.push(Chain {
                name: cap_chain.clone(),
                base: None,
            });
            self.caps(&t.name, &cap_chain, &id, e.rate, e.packets);
            Verdict::Jump(cap_chain)
        } else {
            Verdict::Accept
        };
        for p in &e.ports {
            let m = M::new().ipv4();
            let m = match &e.to {
                Destination::Net { net } => m.daddr(*net),
                Destination::Name { set, .. } => m.daddr_set(set),
            };
            // Island mode with `lan = true`: the declared destination's addresses on the
            // LAN only.
            let m = match e.reach {
                Reach::Declared => m,
                Reach::LanOnly => m.daddr_set(SET_LAN),
            };
            self.rule(
                chain,
                m.l4(e.proto).port(2, *p),
                verdict.clone(),
                task_comment(&t.name, &id),
            );
        }
    }

    fn caps(
        &mut self,
        task: &str,
        chain: &str,
        id: &str,
        rate: Option<ByteRate>,
        pkts: Option<PacketCap>,
    ) {
        if let Some(r) = rate {
            self.rule(
                chain,
                M::new().limit(bytes_over(r)),
                Verdict::Drop,
                task_comment(task, &format!("{id}:rate")),
            );
        }
        if let Some(p) = pkts {
            self.rule(
                chain,
                M::new().limit(packets(p.count, p.per_seconds, LimitMatch::Over)),
                Verdict::Drop,
                task_comment(task, &format!("{id}:packets")),
            );
        }
        self.rule(
            chain,
            M::new(),
            Verdict::Accept,
            task_comment(task, &format!("{id}:accept")),
        );
    }
}

/// The `lan4` elements: networks merged into disjoint, non-adjacent ranges (the kernel
/// rejects overlapping intervals).
pub fn lan_elements(nets: &[Ipv4Net]) -> Vec<SetElem> {
    let mut ranges: Vec<(u32, u32)> = nets
        .iter()
        .map(|n| (u32::from(n.network()), u32::from(n.broadcast())))
        .collect();
    ranges.sort_unstable();
    let mut merged: Vec<(u32, u32)> = Vec::new();
    for (s, e) in ranges {
        match merged.last_mut() {
            Some((_, last_end)) if s <= last_end.saturating_add(1) => {
                *last_end = (*last_end).max(e);
            }
            _ => merged.push((s, e)),
        }
    }
    merged
        .into_iter()
        .map(|(s, e)| SetElem::Range {
            start: Ipv4Addr::from(s),
            end: Ipv4Addr::from(e),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    /// limpet-compile's network test device.
    fn manifest() -> limpet_manifest::Manifest {
        let text = include_str!("../../limpet-compile/tests/fixtures/network.toml");
        limpet_manifest::parse("limpet.toml", text).unwrap()
    }

    fn build() -> Ruleset {
        let p = limpet_compile::net::compile(&manifest()).unwrap();
        let mut rt = Runtime::by_uid(&p);
        rt.tasks
            .insert("sensor".into(), TaskMatch::CgroupV2 { level: 2, id: 4242 });
        Ruleset::build(&p, &rt).unwrap()
    }

    fn comments(r: &Ruleset, chain: &str) -> Vec<String> {
        r.rules
            .iter()
            .filter(|x| x.chain == chain)
            .map(|x| x.comment.clone())
            .collect()
    }

    /// A task with pinholes: its set `pin_<task>` (pinholes, timeouts, size 8) and one rule
    /// of its chain looking up daddr . dport . sport in it, before its drop; no other rule
    /// changes.
    #[test]
    fn a_pinhole_set_and_its_rule_for_a_task_with_pinholes() {
        let mut p = limpet_compile::net::compile(&manifest()).unwrap();
        let plain = Ruleset::build(&p, &Runtime::by_uid(&p)).unwrap();
        let task = p.tasks[0].name.clone();
        p.tasks[0].pinholes = true;
        let r = Ruleset::build(&p, &Runtime::by_uid(&p)).unwrap();
        let set = Ruleset::pinhole_set(&task);
        let sets: Vec<_> = r
            .sets
            .iter()
            .filter(|s| s.name.starts_with(PINHOLE_SET_PREFIX))
            .collect();
        assert_eq!(
            sets,
            [&Set {
                name: set.clone(),
                kind: SetKind::Pinholes,
                size: Some(PINHOLE_SET_SIZE),
                elements: Vec::new(),
            }]
        );
        let chain = Ruleset::task_chain(&task);
        let mut with = comments(&r, &chain);
        let pinhole = task_comment(&task, "pinhole");
        let at = with.iter().position(|c| *c == pinhole).unwrap();
        assert_eq!(with.last(), Some(&task_comment(&task, "drop")));
        assert!(at + 1 < with.len());
        with.remove(at);
        assert_eq!(with, comments(&plain, &chain));
        assert_eq!(r.rules.len(), plain.rules.len() + 1);
        let rule = r.rules.iter().find(|x| x.comment == pinhole).unwrap();
        let loads: Vec<(u32, u32, u32)> = rule
            .exprs
            .iter()
            .filter_map(|e| match e {
                Expr::PayloadAt {
                    offset, len, reg32, ..
                } => Some((*offset, *len, *reg32)),
                _ => None,
            })
            .collect();
        assert_eq!(loads, [(16, 4, 0), (2, 2, 1), (0, 2, 2)]);
        assert!(rule.exprs.contains(&Expr::LookupAt { set, reg32: 0 }));
        // An orphan of a pinhole's flow has only its task's chain to pass: the lookup
        // again, so the pinhole's expiry cuts it as it cuts the socket's own packets.
        let orphans: Vec<&Rule> = r
            .rules
            .iter()
            .filter(|x| x.comment.starts_with(&format!("task={task} rule=orphan:")))
            .collect();
        assert_eq!(orphans.len(), 2);
        for o in orphans {
            assert_eq!(
                o.exprs.last(),
                Some(&Expr::Verdict(Verdict::Jump(chain.clone())))
            );
        }
    }

    #[test]
    fn chains_and_sets() {
        let r = build();
        let names: Vec<&str> = r.chains.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "input",
                "forward",
                "output",
                "pid1",
                "dns_upstream",
                "task_sensor",
                "task_sensor_e0",
                "task_sensor_e1",
                "task_web",
            ]
        );
        let sets: Vec<&str> = r.sets.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(sets, ["lan4", "dns4", "n0", "n1"]);
        assert!(r.rules.iter().all(|x| x.exprs.contains(&Expr::Counter)));
    }

    #[test]
    fn output_order_is_cap_pid1_icmp_tasks_orphans_drop() {
        let r = build();
        assert_eq!(
            comments(&r, "output"),
            [
                "device rule=ipv6",
                "device rule=egress-cap",
                "device rule=pid1",
                "device rule=icmp-errors",
                "device rule=ping-reply",
                "task=sensor rule=dispatch",
                "task=web rule=dispatch",
                "device rule=pid1-orphan:original",
                "device rule=pid1-orphan:reply",
                "task=sensor rule=orphan:original",
                "task=sensor rule=orphan:reply",
                "task=web rule=orphan:original",
                "task=web rule=orphan:reply",
                "device rule=output-drop",
            ]
        );
        assert_eq!(
            comments(&r, "pid1"),
            [
                "device rule=owner:original",
                "device rule=owner:reply",
                "device rule=loopback-pid1",
                "device rule=dhcp",
                "device rule=dns-upstream:udp",
                "device rule=dns-upstream:tcp",
                "device rule=pid1-drop",
            ]
        );
        assert_eq!(
            comments(&r, "task_sensor"),
            [
                "task=sensor rule=owner:original",
                "task=sensor rule=owner:reply",
                "task=sensor rule=dns:udp",
                "task=sensor rule=dns:tcp",
                "task=sensor rule=egress:0",
                "task=sensor rule=egress:1",
                "task=sensor rule=egress:1",
                "task=sensor rule=listen-reply:0",
                "task=sensor rule=drop",
            ]
        );
        let dispatch = r
            .rules
            .iter()
            .find(|x| x.comment == "task=sensor rule=dispatch")
            .unwrap();
        assert_eq!(dispatch.exprs[0], Expr::SocketCgroupV2 { level: 2 });
        assert_eq!(
            dispatch.exprs.last(),
            Some(&Expr::Verdict(Verdict::Jump("task_sensor".into())))
        );
    }

    /// The mark expressions naming `owner` in direction `d`: (load, bitwise, cmp) to test,
    /// (load, bitwise, set) to record.
    fn owner_test(d: Direction, owner: u16) -> Vec<Expr> {
        vec![
            Expr::CtMark,
            Expr::Bitwise {
                mask: d.mask().to_ne_bytes().to_vec(),
                xor: vec![0; 4],
            },
            Expr::Cmp {
                op: CmpOp::Eq,
                data: d.bits(owner).to_ne_bytes().to_vec(),
            },
        ]
    }

    fn owner_set(d: Direction, owner: u16) -> Vec<Expr> {
        vec![
            Expr::CtMark,
            Expr::Bitwise {
                mask: (!d.mask()).to_ne_bytes().to_vec(),
                xor: d.bits(owner).to_ne_bytes().to_vec(),
            },
            Expr::SetCtMark,
        ]
    }

    /// A task's owner code in the fixture: from its uid, which the manifest's order gives.
    fn owner_of(task: &str) -> u16 {
        let p = limpet_compile::net::compile(&manifest()).unwrap();
        let uid = p.tasks.iter().find(|t| t.name == task).unwrap().uid;
        assert_eq!(
            task_owner(uid).map(u32::from),
            Some(uid - FIRST_TASK_UID + 2)
        );
        task_owner(uid).unwrap()
    }

    fn contains(exprs: &[Expr], part: &[Expr]) -> bool {
        exprs.windows(part.len()).any(|w| w == part)
    }

    /// Every owner's chain (PID 1's, each task's) starts by naming its owner in the flow's
    /// mark for the packet's direction, and goes on; after every rule that matches a
    /// socket's owner, one rule per owner and direction sends an established flow's
    /// ownerless packets to that owner's chain again. None of them accepts: a packet
    /// without an owner passes only what its owner's chain passes now, and a new flow
    /// (no mark, not established) reaches the final drop.
    #[test]
    fn every_owner_judges_its_orphans_again() {
        let r = build();
        let owners = [
            (PID1_OWNER, "pid1", "device rule="),
            (owner_of("sensor"), "task_sensor", "task=sensor rule="),
            (owner_of("web"), "task_web", "task=web rule="),
        ];
        let output: Vec<&Rule> = r.rules.iter().filter(|x| x.chain == "output").collect();
        let first_orphan = output
            .iter()
            .position(|x| x.comment.contains("orphan"))
            .unwrap();
        let pid1 = output
            .iter()
            .position(|x| x.comment == "device rule=pid1")
            .unwrap();
        assert_eq!(
            output[pid1].exprs[..2],
            [
                Expr::Meta(MetaKey::SkUid),
                Expr::Cmp {
                    op: CmpOp::Eq,
                    data: ROOT_UID.to_ne_bytes().to_vec()
                }
            ]
        );
        let last_dispatch = output
            .iter()
            .rposition(|x| x.comment.ends_with("rule=dispatch"))
            .unwrap();
        assert!(pid1 < first_orphan && last_dispatch < first_orphan);
        let orphans = &output[first_orphan..output.len() - 1];
        assert_eq!(orphans.len(), 2 * owners.len());
        assert_eq!(
            output.last().unwrap().comment,
            "device rule=output-drop",
            "the last rule"
        );
        let established = M::new().ct_state(CT_STATE_ESTABLISHED).0;
        for (i, (owner, chain, prefix)) in owners.iter().enumerate() {
            let head: Vec<&Rule> = r.rules.iter().filter(|x| x.chain == *chain).collect();
            for (j, d) in DIRECTIONS.iter().enumerate() {
                let set = head[j];
                assert_eq!(set.comment, format!("{prefix}owner:{}", d.id()));
                assert_eq!(
                    set.exprs[..2],
                    [
                        Expr::CtDirection,
                        Expr::Cmp {
                            op: CmpOp::Eq,
                            data: vec![d.code()]
                        }
                    ]
                );
                assert!(contains(&set.exprs, &owner_set(*d, *owner)), "{set:?}");
                assert_eq!(set.exprs.last(), Some(&Expr::Verdict(Verdict::Continue)));

                let o = orphans[2 * i + j];
                let id = if *chain == "pid1" {
                    format!("pid1-orphan:{}", d.id())
                } else {
                    format!("orphan:{}", d.id())
                };
                assert_eq!(o.comment, format!("{prefix}{id}"));
                assert!(o.exprs.starts_with(&established), "{o:?}");
                assert!(contains(&o.exprs, &owner_test(*d, *owner)), "{o:?}");
                assert_eq!(
                    o.exprs.last(),
                    Some(&Expr::Verdict(Verdict::Jump((*chain).to_owned())))
                );
            }
        }
        // Nothing after the dispatch accepts.
        assert!(output[pid1 + 1..]
            .iter()
            .filter(|x| !x.comment.starts_with("device rule=icmp")
                && !x.comment.starts_with("device rule=ping"))
            .all(|x| x.exprs.last() != Some(&Expr::Verdict(Verdict::Accept))));
    }

    /// A listen rule names its task as the sender of the flow's replies: its SYN-ACK (a
    /// request socket, which `socket cgroupv2` does not match) and an orphan's packets are
    /// then judged by the task's chain.
    #[test]
    fn listen_rules_name_the_task_as_the_replies_owner() {
        let r = build();
        let input: Vec<&Rule> = r.rules.iter().filter(|x| x.chain == "input").collect();
        let listen: Vec<&&Rule> = input
            .iter()
            .filter(|x| x.comment.starts_with("task=web rule=listen:"))
            .collect();
        assert_eq!(listen.len(), 1);
        for x in listen {
            assert!(
                contains(&x.exprs, &owner_set(Direction::Reply, owner_of("web"))),
                "{x:?}"
            );
            assert_eq!(x.exprs.last(), Some(&Expr::Verdict(Verdict::Accept)));
        }
        // Over loopback too, before input's `iif lo` accept: only the mark, then on.
        let at = |c: &str| input.iter().position(|x| x.comment == c).unwrap();
        let lo = input[at("task=web rule=listen-lo:0")];
        assert!(at("task=web rule=listen-lo:0") < at("device rule=loopback"));
        assert!(lo.exprs.starts_with(&M::new().iif_lo().0), "{lo:?}");
        assert!(
            contains(&lo.exprs, &owner_set(Direction::Reply, owner_of("web"))),
            "{lo:?}"
        );
        assert_eq!(lo.exprs.last(), Some(&Expr::Verdict(Verdict::Continue)));
    }

    /// Owner codes are 16 bits counted from `FIRST_TASK_UID`; a task's uid outside is
    /// refused, not wrapped onto another owner.
    #[test]
    fn a_uid_without_an_owner_code_is_an_error() {
        assert_eq!(task_owner(FIRST_TASK_UID), Some(2));
        assert_eq!(task_owner(FIRST_TASK_UID + 0xfffd), Some(u16::MAX));
        let p = limpet_compile::net::compile(&manifest()).unwrap();
        for uid in [0, FIRST_TASK_UID - 1, FIRST_TASK_UID + 0xfffe] {
            let mut q = p.clone();
            q.tasks[0].uid = uid;
            let err = Ruleset::build(&q, &Runtime::by_uid(&q)).unwrap_err();
            assert_eq!(
                err,
                RulesetError::NoOwnerCode {
                    task: "sensor".into(),
                    uid
                }
            );
            assert!(
                err.to_string().contains("a task's uid must be from"),
                "{err}"
            );
        }
    }

    /// Island mode replaces the table: a kept task has the same owner code in both (its
    /// uid), so its flows' ownerless packets meet its island chain; a stopped task has no
    /// chain and no orphan rule, so its flows' remaining packets drop.
    #[test]
    fn island_judges_the_normal_policys_orphans_by_its_own_chains() {
        let compiled = compile_with_lifecycle("island = { keep = [\"sensor\"] }");
        let normal = compiled.network.unwrap();
        let island = compiled.island.unwrap().network.unwrap();
        let orphan_rules = |p: &NetPolicy| -> Vec<(String, Vec<Expr>)> {
            let r = Ruleset::build(p, &Runtime::by_uid(p)).unwrap();
            r.rules
                .into_iter()
                .filter(|x| x.comment.contains("orphan"))
                .map(|x| (x.comment, x.exprs))
                .collect()
        };
        let n = orphan_rules(&normal);
        let i = orphan_rules(&island);
        let sensor = |v: &[(String, Vec<Expr>)]| -> Vec<(String, Vec<Expr>)> {
            v.iter()
                .filter(|(c, _)| c.starts_with("task=sensor "))
                .cloned()
                .collect()
        };
        assert_eq!(sensor(&n).len(), 2);
        assert_eq!(sensor(&n), sensor(&i));
        assert!(n.iter().any(|(c, _)| c.starts_with("task=web ")));
        assert!(!i.iter().any(|(c, _)| c.starts_with("task=web ")));
    }

    #[test]
    fn static_addressing_has_no_dhcp_and_starts_with_its_lan() {
        let mut p = limpet_compile::net::compile(&manifest()).unwrap();
        let network: Ipv4Net = "192.0.2.0/24".parse().unwrap();
        p.addressing = Addressing::Static { network };
        let r = Ruleset::build(&p, &Runtime::by_uid(&p)).unwrap();
        assert!(r.rules.iter().all(|x| x.comment != "device rule=dhcp"));
        assert_eq!(r.sets[0].elements, lan_elements(&[network]));
    }

    #[test]
    fn missing_task_match_is_an_error() {
        let p = limpet_compile::net::compile(&manifest()).unwrap();
        assert_eq!(
            Ruleset::build(&p, &Runtime::default()),
            Err(RulesetError::NoTaskMatch {
                task: "sensor".into()
            })
        );
    }

    /// The compile-test fixture `network.toml` with `[update]` and a `[lifecycle]` ending
    /// in support on 2030-01-01 plus `lifecycle`, compiled.
    fn compile_with_lifecycle(lifecycle: &str) -> limpet_policy::DevicePolicy {
        let text = format!(
            "{}\n[update]\nrepository = \"http://updates.example.com:8080/t\"\n\
             keys = [{{ id = \"{}\" }}]\n\n[lifecycle]\nsupport_until = \"2030-01-01\"\n\
             {lifecycle}\n",
            include_str!("../../limpet-compile/tests/fixtures/network.toml"),
            "2f".repeat(32)
        );
        let m = limpet_manifest::parse("limpet.toml", &text)
            .unwrap()
            .with_update_agent()
            .unwrap();
        limpet_compile::compile(&m).unwrap()
    }

    /// Island mode (limpet-compile's `island`): with `lan = true` a kept task's egress
    /// rules also need `ip daddr @lan4`; with `lan = false` its chain is only the drop, and
    /// PID 1's Roughtime queries (`[lifecycle] roughtime`): uid 0, UDP, exactly the listed
    /// address and port, before PID 1's final drop, in the normal and the island policy.
    #[test]
    fn roughtime_servers_are_open_to_pid1_only_in_both_policies() {
        let compiled = compile_with_lifecycle(
            "island = { keep = [\"sensor\"] }\n\
             roughtime = [{ name = \"rt1\", address = \"192.0.2.5:2002\", \
             key = \"WGZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmY=\" }]",
        );
        let normal = compiled.network.unwrap();
        let island = compiled.island.unwrap().network.unwrap();
        let addr = Expr::Cmp {
            op: CmpOp::Eq,
            data: vec![192, 0, 2, 5],
        };
        let port = Expr::Cmp {
            op: CmpOp::Eq,
            data: 2002u16.to_be_bytes().to_vec(),
        };
        for p in [normal, island] {
            let r = Ruleset::build(&p, &Runtime::by_uid(&p)).unwrap();
            let at = |id: &str| {
                r.rules
                    .iter()
                    .position(|x| x.comment == format!("device rule={id}"))
            };
            let rt = at("roughtime:0").expect("a roughtime rule");
            assert!(rt < at("pid1-drop").unwrap());
            let rule = &r.rules[rt];
            // PID 1's chain: only uid 0's packets, and the orphans of its flows, reach it.
            assert_eq!(rule.chain, CHAIN_PID1);
            let accept = Expr::Verdict(Verdict::Accept);
            for e in [&addr, &port, &accept] {
                assert!(rule.exprs.contains(e), "{e:?} missing from {rule:?}");
            }
            assert!(at("roughtime:1").is_none());
        }
    }

    /// a stopped task has no chain. The update agent's rule is as declared.
    #[test]
    fn island_rules_narrow_to_the_lan_or_to_nothing() {
        let lan4 = Expr::Lookup {
            set: SET_LAN.to_owned(),
        };
        for lan in [true, false] {
            let island =
                compile_with_lifecycle(&format!("island = {{ keep = [\"sensor\"], lan = {lan} }}"))
                    .island
                    .unwrap();
            let p = island.network.unwrap();
            let r = Ruleset::build(&p, &Runtime::by_uid(&p)).unwrap();
            assert!(r.chains.iter().all(|c| !c.name.starts_with("task_web")));
            let sensor: Vec<&Rule> = r
                .rules
                .iter()
                .filter(|x| x.chain == "task_sensor")
                .collect();
            if lan {
                let egress: Vec<&&Rule> = sensor
                    .iter()
                    .filter(|x| x.comment.starts_with("task=sensor rule=egress:"))
                    .collect();
                assert_eq!(egress.len(), 3);
                assert!(egress.iter().all(|x| x.exprs.contains(&lan4)));
            } else {
                let ids: Vec<&str> = sensor.iter().map(|x| x.comment.as_str()).collect();
                assert_eq!(
                    ids,
                    [
                        "task=sensor rule=owner:original",
                        "task=sensor rule=owner:reply",
                        "task=sensor rule=drop"
                    ]
                );
                assert!(r
                    .rules
                    .iter()
                    .all(|x| !x.comment.starts_with("task=sensor rule=listen")));
            }
            let agent: Vec<&Rule> = r
                .rules
                .iter()
                .filter(|x| x.chain == "task_limpet-update" && x.comment.contains("egress"))
                .collect();
            assert_eq!(agent.len(), 1);
            assert!(
                !agent[0].exprs.contains(&lan4),
                "the repository is not on the LAN"
            );
        }
    }

    #[test]
    fn lan_networks_merge() {
        let nets: Vec<Ipv4Net> = [
            "192.0.2.0/25",
            "192.0.2.128/25",
            "198.51.100.0/24",
            "192.0.2.64/26",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        assert_eq!(
            lan_elements(&nets),
            vec![
                SetElem::Range {
                    start: Ipv4Addr::new(192, 0, 2, 0),
                    end: Ipv4Addr::new(192, 0, 2, 255)
                },
                SetElem::Range {
                    start: Ipv4Addr::new(198, 51, 100, 0),
                    end: Ipv4Addr::new(198, 51, 100, 255)
                },
            ]
        );
    }
}
