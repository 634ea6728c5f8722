//! The device's network policy applied: the signed
//! [`NetPolicy`](limpet_policy::NetPolicy) turned into one nftables ruleset, installed over
//! netlink.
//!
//! The build host compiles the manifest's egress and listen rules into a `NetPolicy`
//! (`limpet-compile`), stored in the signed image; PID 1 builds a [`Ruleset`] from it and the facts of the boot ([`Runtime`]: each task's
//! cgroup or uid, the LAN networks, DHCP's DNS servers) and installs it with
//! [`Nft::install`] before any interface is up. There is no `nft` binary on the device: the
//! netlink messages are encoded here ([`nft`]).
//!
//! # The ruleset
//!
//! One table, `inet limpet`, replaced as a whole in one atomic batch (create, delete,
//! create: a missing table is no error on Linux 6.1). IPv4 only; IPv6 is dropped.
//!
//! Base chains, all `type filter`, priority 0, **policy drop**:
//!
//! - `input`: IPv6 drop; `iif lo` accept (loopback is filtered at output); `ct state
//!   invalid` drop; `ct state established,related` accept; DHCP replies (UDP 67 → 68,
//!   DHCP addressing only); per task listen rule `l4proto`, `dport`, and `ip saddr @lan4`
//!   for `scope = "lan"`; echo requests from `@lan4`, 5/s; counted drop.
//! - `forward`: counted drop.
//! - `output`: IPv6 drop; the device egress cap (`oif != lo limit rate over N bytes/second`
//!   → drop); uid 0 (PID 1) jumping to `pid1`; ICMP `ct state related` (errors) 10/s and
//!   echo replies 5/s accept; per task a dispatch rule (`socket cgroupv2 level 2 <id>`, or
//!   `meta skuid <uid>` without cgroup2) jumping to the task's chain; then, per owner (PID 1,
//!   each task) and direction, the **orphan rules** `ct state established ct direction D
//!   ct mark & M == <owner> jump <owner's chain>` (below); counted drop.
//! - In `input`, a task's listen rules also name the task as the owner of the flow's
//!   replies in its conntrack mark; so do, first in `input` and for loopback only, one rule
//!   per listen rule (`iif lo`, its port; `continue`).
//!
//! Regular chains:
//!
//! - `pid1`: the owner rules (below); `oif lo` accept (its stub's replies, its own local
//!   traffic); DHCP (UDP 68 → 67, any address: broadcast, DHCP addressing only) accept;
//!   Roughtime (UDP to each listed server) accept; DNS to `@dns4` (UDP and TCP 53) jumping
//!   to `dns_upstream`; counted drop.
//! - `task_<name>`: the owner rules (below); DNS to the stub `127.0.0.53:53` over `lo`
//!   (UDP, TCP; only for tasks with a DNS-name rule); per egress rule and port range, `ip daddr <net>` or
//!   `ip daddr @n<i>`, `l4proto`, `th dport <port or range>` → accept, or → jump to
//!   `task_<name>_e<i>` when the rule has a cap; per listen rule, `ct state established`
//!   with `th sport <port>` (replies of its own listeners) accept; counted drop. Egress
//!   rules match every packet of a flow, so caps cover established packets too.
//! - `task_<name>_e<i>`: `limit rate over <B> bytes/second` → drop,
//!   `limit rate over <P>/<unit>` → drop, accept. One chain per capped egress rule, so the
//!   cap is shared by all its port ranges.
//! - `dns_upstream`: `limit rate over 20/second` → drop, accept.
//!
//! Packets without an owner: a socket closed with data queued (an orphan: no file, so no
//! `meta skuid`), the kernel's answers for a TIME_WAIT socket, a listener's SYN-ACK (a
//! request socket, which `socket cgroupv2` does not match). The owner rules, first in
//! `pid1` and in each `task_<name>` (`continue`), write the owner's code
//! ([`ruleset::PID1_OWNER`], [`ruleset::task_owner`]) into the 16 bits of the flow's
//! conntrack mark for the packet's direction ([`ruleset::Direction`]); the orphan rules,
//! after every owner match and before the final drop, send an established flow's
//! ownerless packets to the chain of the owner its mark names. None accepts: the packet
//! passes only what its owner's chain passes now (caps, sets, pinholes, a replaced
//! table's chains); a new flow drops. docs/network.md says why and what was measured.
//!
//! Sets, all `type ipv4_addr`:
//!
//! - `lan4` (`flags interval`): the networks the device is connected to
//!   ([`Nft::replace_lan_networks`]); a static address's network is in it from the start.
//! - `dns4`: upstream DNS servers, the manifest's at install, DHCP's added at run time
//!   ([`Nft::add_dns_servers`]).
//! - `n0`, `n1`, ... (`flags timeout`, `size 256`): one per DNS name of any task, shared by
//!   all tasks allowed that name, in sorted name order;
//!   [`NetPolicy::names`](limpet_policy::NetPolicy::names) maps names to sets. The stub
//!   adds answers with their TTL ([`Nft::add_set_elements`]).
//!
//! Counters: every rule has a `counter` and a comment (stored as nft userdata, shown by
//! `nft list ruleset`): `device rule=<id>` or `task=<name> rule=<id>`. Task ids:
//! `owner:original`, `owner:reply`, `dispatch`, `orphan:original`, `orphan:reply`,
//! `dns:udp`, `dns:tcp`, `egress:<i>`, `egress:<i>:rate`, `egress:<i>:packets`,
//! `egress:<i>:accept`, `listen:<i>` and `listen-lo:<i>` (in input), `listen-reply:<i>`,
//! `drop`. Device ids:
//! `ipv6`, `loopback`, `invalid`, `established`, `dhcp`, `ping-lan`, `input-drop`,
//! `forward-drop`, `egress-cap`, `pid1`, `owner:original`, `owner:reply`,
//! `pid1-orphan:original`, `pid1-orphan:reply`, `loopback-pid1`, `icmp-errors`, `ping-reply`,
//! `dns-upstream:udp`, `dns-upstream:tcp`, `dns-upstream-cap`, `dns-upstream`, `pid1-drop`,
//! `output-drop`. [`Nft::counters`] dumps them; [`Counters::task_drops`] is what each task's
//! final drop rule dropped.
//!
//! Kernel modules the ruleset needs on Debian's 6.1 kernel (all `=m` there), in load
//! order: `libcrc32c`, `nfnetlink`, `nf_tables`, `nf_defrag_ipv4`, `nf_defrag_ipv6`,
//! `nf_conntrack`, `nft_ct`, `nft_limit`, `nf_socket_ipv4`, `nf_socket_ipv6`, `nft_socket`.
//! Counter, meta, cmp, bitwise, range, payload, lookup, immediate and the set backends are
//! part of `nf_tables.ko`. The device has no `modprobe` for the kernel's on-demand loading,
//! so PID 1 loads these before [`Nft::install`].

#![warn(missing_docs)]

pub mod counters;
mod handle;
pub mod nft;
pub mod ruleset;
mod sys;

pub use counters::{Count, Counters, Owner, RuleCounter};
pub use handle::{Nft, NftError, REPLY_TIMEOUT};
pub use ruleset::{Ruleset, RulesetError, Runtime, TaskMatch};
