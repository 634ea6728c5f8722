//! One nfnetlink batch: `BATCH_BEGIN`, nf_tables messages, `BATCH_END`.
//!
//! The kernel applies a batch as one transaction: every message succeeds and the whole batch
//! is committed, or none of it is. Each message asks for an acknowledgement
//! (`NLM_F_ACK`), and [`Batch::finish`] returns which object each sequence number stands
//! for, so an error reply can name the object it rejected.

use std::net::Ipv4Addr;

use super::consts::*;
use super::expr::data_value;
use super::object::{BaseChain, Chain, ChainPolicy, Hook, ObjectRef, Rule, Set, SetElem, SetKind};
use super::wire::Writer;

/// The family of every table this crate writes.
pub const FAMILY: u8 = NFPROTO_INET;
/// The chain type of every base chain.
const CHAIN_TYPE: &str = "filter";
/// libnftnl's limit on a comment, terminating NUL included.
pub const COMMENT_MAX: usize = 128;

const NEW: u16 = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE;

/// A batch being written.
#[derive(Debug)]
pub struct Batch {
    w: Writer,
    table: String,
    seq: u32,
    objects: Vec<(u32, ObjectRef)>,
    set_ids: Vec<(String, u32)>,
}

/// A finished batch: its bytes and the object behind each acknowledged sequence number.
#[derive(Debug)]
pub struct Encoded {
    /// The datagram.
    pub bytes: Vec<u8>,
    /// `(seq, object)` for each message that asked for an acknowledgement.
    pub objects: Vec<(u32, ObjectRef)>,
}

impl Batch {
    /// Opens a batch for `table`; sequence numbers start at `first_seq`.
    pub fn new(table: &str, first_seq: u32) -> Batch {
        let mut w = Writer::new();
        let m = w.begin_msg(
            NFNL_MSG_BATCH_BEGIN,
            NLM_F_REQUEST,
            first_seq,
            0,
            NFNL_SUBSYS_NFTABLES,
        );
        w.end_msg(m);
        Batch {
            w,
            table: table.to_owned(),
            seq: first_seq.wrapping_add(1),
            objects: Vec::new(),
            set_ids: Vec::new(),
        }
    }

    fn begin(&mut self, msg: u16, flags: u16, obj: ObjectRef) -> super::wire::Mark {
        let seq = self.seq;
        self.seq = self.seq.wrapping_add(1);
        self.objects.push((seq, obj));
        self.w
            .begin_msg((NFNL_SUBSYS_NFTABLES << 8) | msg, flags, seq, FAMILY, 0)
    }

    /// `NEWTABLE`: creates the table, or does nothing if it exists.
    pub fn new_table(&mut self) {
        let m = self.begin(NFT_MSG_NEWTABLE, NEW, ObjectRef::Table(self.table.clone()));
        self.w.attr_str(NFTA_TABLE_NAME, &self.table);
        self.w.attr_be32(NFTA_TABLE_FLAGS, 0);
        self.w.end_msg(m);
    }

    /// `DELTABLE`: deletes the table and everything in it.
    pub fn del_table(&mut self) {
        let m = self.begin(
            NFT_MSG_DELTABLE,
            NLM_F_REQUEST | NLM_F_ACK,
            ObjectRef::TableDeletion(self.table.clone()),
        );
        self.w.attr_str(NFTA_TABLE_NAME, &self.table);
        self.w.end_msg(m);
    }

    /// `NEWCHAIN`.
    pub fn new_chain(&mut self, c: &Chain) {
        let m = self.begin(NFT_MSG_NEWCHAIN, NEW, ObjectRef::Chain(c.name.clone()));
        self.w.attr_str(NFTA_CHAIN_TABLE, &self.table);
        self.w.attr_str(NFTA_CHAIN_NAME, &c.name);
        if let Some(BaseChain {
            hook,
            priority,
            policy,
        }) = c.base
        {
            let h = self.w.begin_nest(NFTA_CHAIN_HOOK);
            let num = match hook {
                Hook::Input => NF_INET_LOCAL_IN,
                Hook::Forward => NF_INET_FORWARD,
                Hook::Output => NF_INET_LOCAL_OUT,
            };
            self.w.attr_be32(NFTA_HOOK_HOOKNUM, num);
            self.w.attr(NFTA_HOOK_PRIORITY, &priority.to_be_bytes());
            self.w.end_nest(h);
            let policy = match policy {
                ChainPolicy::Drop => NF_DROP,
            };
            self.w.attr_be32(NFTA_CHAIN_POLICY, policy);
            self.w.attr_str(NFTA_CHAIN_TYPE, CHAIN_TYPE);
        }
        self.w.end_msg(m);
    }

    /// `NEWSET`, then its elements if it has any. The set gets a batch id so that rules in
    /// the same batch can find it.
    pub fn new_set(&mut self, s: &Set) {
        let id = u32::try_from(self.set_ids.len() + 1).unwrap_or(u32::MAX);
        self.set_ids.push((s.name.clone(), id));
        let m = self.begin(NFT_MSG_NEWSET, NEW, ObjectRef::Set(s.name.clone()));
        self.w.attr_str(NFTA_SET_TABLE, &self.table);
        self.w.attr_str(NFTA_SET_NAME, &s.name);
        let flags = match s.kind {
            SetKind::Addresses => 0,
            SetKind::Intervals => NFT_SET_INTERVAL,
            SetKind::Expiring | SetKind::Pinholes => NFT_SET_TIMEOUT,
        };
        self.w.attr_be32(NFTA_SET_FLAGS, flags);
        let (key_type, key_len) = match s.kind {
            // Each field of a concatenation takes whole 32-bit registers: 4 + 4 + 4.
            SetKind::Pinholes => (
                (((NFT_TYPE_IPADDR << NFT_TYPE_BITS) | NFT_TYPE_INET_SERVICE) << NFT_TYPE_BITS)
                    | NFT_TYPE_INET_SERVICE,
                12,
            ),
            _ => (NFT_TYPE_IPADDR, 4),
        };
        self.w.attr_be32(NFTA_SET_KEY_TYPE, key_type);
        self.w.attr_be32(NFTA_SET_KEY_LEN, key_len);
        self.w.attr_be32(NFTA_SET_ID, id);
        if let Some(size) = s.size {
            let d = self.w.begin_nest(NFTA_SET_DESC);
            self.w.attr_be32(NFTA_SET_DESC_SIZE, size);
            self.w.end_nest(d);
        }
        self.w.end_msg(m);
        if !s.elements.is_empty() {
            self.new_set_elems(&s.name, &s.elements);
        }
    }

    /// `NEWSETELEM` without `NLM_F_EXCL`: an element already there is not an error.
    pub fn new_set_elems(&mut self, set: &str, elems: &[SetElem]) {
        let m = self.begin(
            NFT_MSG_NEWSETELEM,
            NEW,
            ObjectRef::SetElements(set.to_owned()),
        );
        self.set_elem_list(set, elems);
        self.w.end_msg(m);
    }

    /// `DELSETELEM`; with no elements, it empties the set.
    pub fn del_set_elems(&mut self, set: &str, elems: &[SetElem]) {
        let m = self.begin(
            NFT_MSG_DELSETELEM,
            NLM_F_REQUEST | NLM_F_ACK,
            ObjectRef::SetElementsDeletion(set.to_owned()),
        );
        self.set_elem_list(set, elems);
        self.w.end_msg(m);
    }

    fn set_elem_list(&mut self, set: &str, elems: &[SetElem]) {
        self.w.attr_str(NFTA_SET_ELEM_LIST_TABLE, &self.table);
        self.w.attr_str(NFTA_SET_ELEM_LIST_SET, set);
        if let Some(id) = self.set_id(set) {
            self.w.attr_be32(NFTA_SET_ELEM_LIST_SET_ID, id);
        }
        if elems.is_empty() {
            return;
        }
        let list = self.w.begin_nest(NFTA_SET_ELEM_LIST_ELEMENTS);
        for e in elems {
            match *e {
                SetElem::Addr(a) => self.elem(&a.octets(), 0, None),
                SetElem::Expiring(a, ttl) => self.elem(&a.octets(), 0, Some(ttl)),
                SetElem::Pinhole {
                    peer,
                    peer_port,
                    local_port,
                    ttl,
                } => self.elem(&pinhole_key(peer, peer_port, local_port), 0, Some(ttl)),
                SetElem::PinholeKey {
                    peer,
                    peer_port,
                    local_port,
                } => self.elem(&pinhole_key(peer, peer_port, local_port), 0, None),
                SetElem::Range { start, end } => {
                    self.elem(&start.octets(), 0, None);
                    // The interval ends at the first address past it; a range reaching
                    // 255.255.255.255 has no such address and is open-ended, as nft does.
                    if let Some(past) = u32::from(end).checked_add(1) {
                        let past = Ipv4Addr::from(past).octets();
                        self.elem(&past, NFT_SET_ELEM_INTERVAL_END, None);
                    }
                }
            }
        }
        self.w.end_nest(list);
    }

    fn elem(&mut self, key: &[u8], flags: u32, ttl: Option<std::time::Duration>) {
        let e = self.w.begin_nest(NFTA_LIST_ELEM);
        data_value(&mut self.w, NFTA_SET_ELEM_KEY, key);
        if flags != 0 {
            self.w.attr_be32(NFTA_SET_ELEM_FLAGS, flags);
        }
        if let Some(ttl) = ttl {
            let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
            self.w.attr_be64(NFTA_SET_ELEM_TIMEOUT, ms);
        }
        self.w.end_nest(e);
    }

    fn set_id(&self, set: &str) -> Option<u32> {
        self.set_ids
            .iter()
            .find(|(n, _)| n == set)
            .map(|(_, id)| *id)
    }

    /// `NEWRULE`, appended to its chain. `index` is the rule's place in the ruleset, for
    /// error messages.
    pub fn new_rule(&mut self, index: usize, r: &Rule) {
        let m = self.begin(
            NFT_MSG_NEWRULE,
            NEW | NLM_F_APPEND,
            ObjectRef::Rule {
                index,
                chain: r.chain.clone(),
                comment: r.comment.clone(),
            },
        );
        self.w.attr_str(NFTA_RULE_TABLE, &self.table);
        self.w.attr_str(NFTA_RULE_CHAIN, &r.chain);
        let list = self.w.begin_nest(NFTA_RULE_EXPRESSIONS);
        let ids = self.set_ids.clone();
        let lookup = move |name: &str| ids.iter().find(|(n, _)| n == name).map(|(_, id)| *id);
        for e in &r.exprs {
            e.encode(&mut self.w, &lookup);
        }
        self.w.end_nest(list);
        self.w.attr(NFTA_RULE_USERDATA, &comment_udata(&r.comment));
        self.w.end_msg(m);
    }

    /// Closes the batch.
    pub fn finish(mut self) -> Encoded {
        let m = self.w.begin_msg(
            NFNL_MSG_BATCH_END,
            NLM_F_REQUEST,
            self.seq,
            0,
            NFNL_SUBSYS_NFTABLES,
        );
        self.w.end_msg(m);
        Encoded {
            bytes: self.w.into_bytes(),
            objects: self.objects,
        }
    }
}

/// A rule comment as libnftnl stores it: one TLV `{ type 0, length, text NUL }`. Longer
/// comments are cut at [`COMMENT_MAX`] - 1 bytes (on a character boundary).
pub fn comment_udata(comment: &str) -> Vec<u8> {
    let mut end = comment.len().min(COMMENT_MAX - 1);
    while !comment.is_char_boundary(end) {
        end -= 1;
    }
    let text = &comment.as_bytes()[..end];
    let mut out = Vec::with_capacity(text.len() + 3);
    out.push(NFTNL_UDATA_RULE_COMMENT);
    out.push(u8::try_from(text.len() + 1).unwrap_or(u8::MAX));
    out.extend_from_slice(text);
    out.push(0);
    out
}

/// Reads the comment back from rule userdata.
pub fn comment_from_udata(udata: &[u8]) -> Option<String> {
    let mut off = 0;
    while off + 2 <= udata.len() {
        let (ty, len) = (udata[off], usize::from(udata[off + 1]));
        let value = udata.get(off + 2..off + 2 + len)?;
        if ty == NFTNL_UDATA_RULE_COMMENT {
            return super::wire::string(value).map(str::to_owned);
        }
        off += 2 + len;
    }
    None
}

/// A dump request for every rule of `table` (`GETRULE`, `NLM_F_DUMP`).
pub fn dump_rules(table: &str, seq: u32) -> Vec<u8> {
    let mut w = Writer::new();
    let m = w.begin_msg(
        (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETRULE,
        NLM_F_REQUEST | NLM_F_DUMP,
        seq,
        FAMILY,
        0,
    );
    w.attr_str(NFTA_RULE_TABLE, table);
    w.end_msg(m);
    w.into_bytes()
}

/// A pinhole's key: the address, then each port big-endian in a 32-bit register of its own
/// (the kernel zeroes a register's bytes past a 2-byte load).
pub fn pinhole_key(peer: Ipv4Addr, peer_port: u16, local_port: u16) -> [u8; 12] {
    let mut key = [0u8; 12];
    key[..4].copy_from_slice(&peer.octets());
    key[4..6].copy_from_slice(&peer_port.to_be_bytes());
    key[8..10].copy_from_slice(&local_port.to_be_bytes());
    key
}

#[cfg(test)]
mod tests {
    use super::super::wire::{attrs, find, messages, NFGENMSG_LEN};
    use super::*;

    #[test]
    fn batch_is_framed_and_every_object_is_acknowledged() {
        let mut b = Batch::new("limpet", 100);
        b.new_table();
        b.del_table();
        b.new_table();
        let e = b.finish();
        let msgs = messages(&e.bytes).unwrap();
        let types: Vec<u16> = msgs.iter().map(|m| m.ty).collect();
        assert_eq!(types, vec![0x10, 0x0a00, 0x0a02, 0x0a00, 0x11]);
        let seqs: Vec<u32> = msgs.iter().map(|m| m.seq).collect();
        assert_eq!(seqs, vec![100, 101, 102, 103, 104]);
        // BATCH_BEGIN/END carry res_id = NFNL_SUBSYS_NFTABLES (big-endian) and no ACK.
        assert_eq!(msgs[0].payload, &[0, 0, 0, 10]);
        assert_eq!(msgs[0].flags, NLM_F_REQUEST);
        assert!(msgs[1..4].iter().all(|m| m.flags & NLM_F_ACK != 0));
        assert_eq!(
            e.objects.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
            vec![101, 102, 103]
        );
        assert_eq!(
            e.objects[1].1,
            ObjectRef::TableDeletion("limpet".to_owned())
        );
        let a = attrs(&msgs[1].payload[NFGENMSG_LEN..]).unwrap();
        assert_eq!(find(&a, NFTA_TABLE_NAME), Some(&b"limpet\0"[..]));
    }

    #[test]
    fn comment_round_trip_and_cap() {
        let u = comment_udata("task=a rule=drop");
        assert_eq!(&u[..2], &[0, 17]);
        assert_eq!(comment_from_udata(&u).as_deref(), Some("task=a rule=drop"));
        let long = "x".repeat(300);
        let u = comment_udata(&long);
        assert_eq!(u.len(), 2 + COMMENT_MAX);
        assert_eq!(
            comment_from_udata(&u).map(|s| s.len()),
            Some(COMMENT_MAX - 1)
        );
    }

    #[test]
    fn interval_elements_end_one_past_the_range() {
        let mut b = Batch::new("t", 1);
        b.new_set_elems(
            "lan4",
            &[
                SetElem::Range {
                    start: Ipv4Addr::new(192, 0, 2, 0),
                    end: Ipv4Addr::new(192, 0, 2, 255),
                },
                SetElem::Range {
                    start: Ipv4Addr::new(255, 255, 255, 0),
                    end: Ipv4Addr::BROADCAST,
                },
            ],
        );
        let e = b.finish();
        let msgs = messages(&e.bytes).unwrap();
        let a = attrs(&msgs[1].payload[NFGENMSG_LEN..]).unwrap();
        let list = attrs(find(&a, NFTA_SET_ELEM_LIST_ELEMENTS).unwrap()).unwrap();
        let keys: Vec<(Vec<u8>, bool)> = list
            .iter()
            .map(|(_, el)| {
                let el = attrs(el).unwrap();
                let key = attrs(find(&el, NFTA_SET_ELEM_KEY).unwrap()).unwrap();
                (
                    find(&key, NFTA_DATA_VALUE).unwrap().to_vec(),
                    find(&el, NFTA_SET_ELEM_FLAGS).is_some(),
                )
            })
            .collect();
        assert_eq!(
            keys,
            vec![
                (vec![192, 0, 2, 0], false),
                (vec![192, 0, 3, 0], true),
                (vec![255, 255, 255, 0], false),
            ]
        );
    }
}
