//! nf_tables expressions: the steps of a rule, and their netlink encoding.
//!
//! Every expression that loads a value uses register 1 and every comparison reads it: a
//! rule is a sequence of "load, compare" pairs ending in an optional limit, a counter and a
//! verdict, so one register is all a rule needs. The one exception is a concatenation (a
//! pinhole's address and two ports): [`Expr::PayloadAt`] loads each field into 32-bit
//! registers of its own and [`Expr::LookupAt`] looks the whole up in a set.

use super::consts::*;
use super::wire::Writer;

/// A `meta` key this crate loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaKey {
    /// Input interface index (`u32`, host order).
    Iif,
    /// Output interface index (`u32`, host order).
    Oif,
    /// Originating socket's fsuid (`u32`, host order); no socket or a non-full socket
    /// (TIME_WAIT) ends the rule.
    SkUid,
    /// Netfilter family of the packet (`u8`).
    NfProto,
    /// Transport protocol number (`u8`).
    L4Proto,
}

impl MetaKey {
    fn code(self) -> u32 {
        match self {
            MetaKey::Iif => NFT_META_IIF,
            MetaKey::Oif => NFT_META_OIF,
            MetaKey::SkUid => NFT_META_SKUID,
            MetaKey::NfProto => NFT_META_NFPROTO,
            MetaKey::L4Proto => NFT_META_L4PROTO,
        }
    }
}

/// Which header a `payload` load reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadBase {
    /// The network header (IPv4 here).
    Network,
    /// The transport header (TCP, UDP, ICMP).
    Transport,
}

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    /// Equal.
    Eq,
    /// Not equal.
    Neq,
}

/// What a limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    /// Packets per `unit_secs`.
    Packets,
    /// Bytes per `unit_secs`.
    Bytes,
}

/// When a limit matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitMatch {
    /// While under the rate (`limit rate N/s`).
    Under,
    /// Once over the rate (`limit rate over N/s`, `NFT_LIMIT_F_INV`).
    Over,
}

/// A token-bucket limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Packets or bytes.
    pub kind: LimitKind,
    /// Units per `unit_secs`.
    pub rate: u64,
    /// The period: 1, 60 or 3600 seconds.
    pub unit_secs: u64,
    /// Extra packets or bytes the bucket holds.
    pub burst: u32,
    /// Under or over.
    pub matches: LimitMatch,
}

/// A rule's final verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Let the packet through this hook.
    Accept,
    /// Drop it.
    Drop,
    /// Continue in a regular chain; its rules end in a verdict of their own.
    Jump(String),
    /// Go on with the next rule: for a rule that only sets something (a conntrack mark).
    Continue,
}

/// One step of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// Load a packet or socket property into register 1.
    Meta(MetaKey),
    /// Load `len` bytes at `offset` of a header into register 1.
    Payload {
        /// Which header.
        base: PayloadBase,
        /// Byte offset in it.
        offset: u32,
        /// Bytes to load.
        len: u32,
    },
    /// Load `len` bytes at `offset` of a header into the 32-bit register `NFT_REG32_00 +
    /// reg32`: the fields of a concatenation, each in registers of its own.
    PayloadAt {
        /// Which header.
        base: PayloadBase,
        /// Byte offset in it.
        offset: u32,
        /// Bytes to load.
        len: u32,
        /// The 32-bit register, counted from `NFT_REG32_00`.
        reg32: u32,
    },
    /// The concatenation loaded from the 32-bit register `NFT_REG32_00 + reg32` on is an
    /// element of the named set.
    LookupAt {
        /// The set's name.
        set: String,
        /// The first 32-bit register, counted from `NFT_REG32_00`.
        reg32: u32,
    },
    /// Load the conntrack state bits into register 1.
    CtState,
    /// Load the packet's conntrack direction into register 1 (one byte: 0 original, 1
    /// reply).
    CtDirection,
    /// Load the conntrack mark into register 1 (32 bits, host byte order).
    CtMark,
    /// Set the conntrack mark to register 1.
    SetCtMark,
    /// Load the cgroup v2 id of the packet's socket's ancestor at `level` into register 1.
    SocketCgroupV2 {
        /// Depth below the cgroup2 root.
        level: u32,
    },
    /// Register 1 = (register 1 & mask) ^ xor.
    Bitwise {
        /// AND mask; its length is the operand length.
        mask: Vec<u8>,
        /// XOR value, same length.
        xor: Vec<u8>,
    },
    /// Compare register 1 with `data`; a mismatch ends the rule.
    Cmp {
        /// Operator.
        op: CmpOp,
        /// Operand, in the byte order of the loaded value.
        data: Vec<u8>,
    },
    /// Register 1 within `[from, to]` (inclusive, compared as big-endian bytes).
    Range {
        /// Lower bound.
        from: Vec<u8>,
        /// Upper bound.
        to: Vec<u8>,
    },
    /// Register 1 is an element of the named set of this table.
    Lookup {
        /// The set's name.
        set: String,
    },
    /// A rate limit.
    Limit(Limit),
    /// Count packets and bytes that reach this step.
    Counter,
    /// End the rule with a verdict.
    Verdict(Verdict),
}

impl Expr {
    /// The kernel's expression type name.
    pub fn name(&self) -> &'static str {
        match self {
            Expr::Meta(_) => "meta",
            Expr::Payload { .. } | Expr::PayloadAt { .. } => "payload",
            Expr::CtState | Expr::CtDirection | Expr::CtMark | Expr::SetCtMark => "ct",
            Expr::SocketCgroupV2 { .. } => "socket",
            Expr::Bitwise { .. } => "bitwise",
            Expr::Cmp { .. } => "cmp",
            Expr::Range { .. } => "range",
            Expr::Lookup { .. } | Expr::LookupAt { .. } => "lookup",
            Expr::Limit(_) => "limit",
            Expr::Counter => "counter",
            Expr::Verdict(_) => "immediate",
        }
    }

    /// Writes `NFTA_LIST_ELEM { NFTA_EXPR_NAME, NFTA_EXPR_DATA { ... } }`. `set_id` gives
    /// the batch id of a set created in the same batch.
    pub fn encode(&self, w: &mut Writer, set_id: &dyn Fn(&str) -> Option<u32>) {
        let elem = w.begin_nest(NFTA_LIST_ELEM);
        w.attr_str(NFTA_EXPR_NAME, self.name());
        let data = w.begin_nest(NFTA_EXPR_DATA);
        match self {
            Expr::Meta(key) => {
                w.attr_be32(NFTA_META_KEY, key.code());
                w.attr_be32(NFTA_META_DREG, NFT_REG_1);
            }
            Expr::Payload { base, offset, len } => payload(w, NFT_REG_1, *base, *offset, *len),
            Expr::PayloadAt {
                base,
                offset,
                len,
                reg32,
            } => payload(w, NFT_REG32_00 + reg32, *base, *offset, *len),
            Expr::LookupAt { set, reg32 } => lookup(w, set, NFT_REG32_00 + reg32, set_id),
            Expr::CtState | Expr::CtDirection | Expr::CtMark => {
                let key = match self {
                    Expr::CtState => NFT_CT_STATE,
                    Expr::CtDirection => NFT_CT_DIRECTION,
                    _ => NFT_CT_MARK,
                };
                w.attr_be32(NFTA_CT_KEY, key);
                w.attr_be32(NFTA_CT_DREG, NFT_REG_1);
            }
            Expr::SetCtMark => {
                w.attr_be32(NFTA_CT_KEY, NFT_CT_MARK);
                w.attr_be32(NFTA_CT_SREG, NFT_REG_1);
            }
            Expr::SocketCgroupV2 { level } => {
                w.attr_be32(NFTA_SOCKET_KEY, NFT_SOCKET_CGROUPV2);
                w.attr_be32(NFTA_SOCKET_DREG, NFT_REG_1);
                w.attr_be32(NFTA_SOCKET_LEVEL, *level);
            }
            Expr::Bitwise { mask, xor } => {
                w.attr_be32(NFTA_BITWISE_SREG, NFT_REG_1);
                w.attr_be32(NFTA_BITWISE_DREG, NFT_REG_1);
                w.attr_be32(NFTA_BITWISE_LEN, len32(mask));
                data_value(w, NFTA_BITWISE_MASK, mask);
                data_value(w, NFTA_BITWISE_XOR, xor);
            }
            Expr::Cmp { op, data } => {
                w.attr_be32(NFTA_CMP_SREG, NFT_REG_1);
                let op = match op {
                    CmpOp::Eq => NFT_CMP_EQ,
                    CmpOp::Neq => NFT_CMP_NEQ,
                };
                w.attr_be32(NFTA_CMP_OP, op);
                data_value(w, NFTA_CMP_DATA, data);
            }
            Expr::Range { from, to } => {
                w.attr_be32(NFTA_RANGE_SREG, NFT_REG_1);
                w.attr_be32(NFTA_RANGE_OP, NFT_RANGE_EQ);
                data_value(w, NFTA_RANGE_FROM_DATA, from);
                data_value(w, NFTA_RANGE_TO_DATA, to);
            }
            Expr::Lookup { set } => lookup(w, set, NFT_REG_1, set_id),
            Expr::Limit(l) => {
                w.attr_be64(NFTA_LIMIT_RATE, l.rate);
                w.attr_be64(NFTA_LIMIT_UNIT, l.unit_secs);
                w.attr_be32(NFTA_LIMIT_BURST, l.burst);
                let kind = match l.kind {
                    LimitKind::Packets => NFT_LIMIT_PKTS,
                    LimitKind::Bytes => NFT_LIMIT_PKT_BYTES,
                };
                w.attr_be32(NFTA_LIMIT_TYPE, kind);
                let flags = match l.matches {
                    LimitMatch::Under => 0,
                    LimitMatch::Over => NFT_LIMIT_F_INV,
                };
                w.attr_be32(NFTA_LIMIT_FLAGS, flags);
            }
            Expr::Counter => {
                w.attr_be64(NFTA_COUNTER_BYTES, 0);
                w.attr_be64(NFTA_COUNTER_PACKETS, 0);
            }
            Expr::Verdict(v) => {
                w.attr_be32(NFTA_IMMEDIATE_DREG, NFT_REG_VERDICT);
                let d = w.begin_nest(NFTA_IMMEDIATE_DATA);
                let vn = w.begin_nest(NFTA_DATA_VERDICT);
                match v {
                    Verdict::Accept => w.attr_be32(NFTA_VERDICT_CODE, NF_ACCEPT),
                    Verdict::Drop => w.attr_be32(NFTA_VERDICT_CODE, NF_DROP),
                    Verdict::Continue => w.attr(NFTA_VERDICT_CODE, &NFT_CONTINUE.to_be_bytes()),
                    Verdict::Jump(chain) => {
                        w.attr(NFTA_VERDICT_CODE, &NFT_JUMP.to_be_bytes());
                        w.attr_str(NFTA_VERDICT_CHAIN, chain);
                    }
                }
                w.end_nest(vn);
                w.end_nest(d);
            }
        }
        w.end_nest(data);
        w.end_nest(elem);
    }
}

/// `ty { NFTA_DATA_VALUE bytes }`.
pub(crate) fn data_value(w: &mut Writer, ty: u16, bytes: &[u8]) {
    let n = w.begin_nest(ty);
    w.attr(NFTA_DATA_VALUE, bytes);
    w.end_nest(n);
}

fn len32(b: &[u8]) -> u32 {
    u32::try_from(b.len()).unwrap_or(u32::MAX)
}

/// A `payload` load of `len` bytes at `offset` of `base` into register `dreg`.
fn payload(w: &mut Writer, dreg: u32, base: PayloadBase, offset: u32, len: u32) {
    w.attr_be32(NFTA_PAYLOAD_DREG, dreg);
    let base = match base {
        PayloadBase::Network => NFT_PAYLOAD_NETWORK_HEADER,
        PayloadBase::Transport => NFT_PAYLOAD_TRANSPORT_HEADER,
    };
    w.attr_be32(NFTA_PAYLOAD_BASE, base);
    w.attr_be32(NFTA_PAYLOAD_OFFSET, offset);
    w.attr_be32(NFTA_PAYLOAD_LEN, len);
}

/// A `lookup` of register `sreg` on in `set` (its batch id when made in the same batch).
fn lookup(w: &mut Writer, set: &str, sreg: u32, set_id: &dyn Fn(&str) -> Option<u32>) {
    w.attr_str(NFTA_LOOKUP_SET, set);
    w.attr_be32(NFTA_LOOKUP_SREG, sreg);
    if let Some(id) = set_id(set) {
        w.attr_be32(NFTA_LOOKUP_SET_ID, id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(e: &Expr) -> Vec<u8> {
        let mut w = Writer::new();
        e.encode(&mut w, &|_| Some(5));
        w.into_bytes()
    }

    /// Little helper to write the expected bytes by hand: (len, type) headers native-endian.
    fn hdr(out: &mut Vec<u8>, len: u16, ty: u16) {
        out.extend_from_slice(&len.to_ne_bytes());
        out.extend_from_slice(&ty.to_ne_bytes());
    }

    #[test]
    fn meta_l4proto_bytes() {
        // The same bytes libnftnl writes for `meta l4proto` into register 1.
        let mut want = Vec::new();
        hdr(&mut want, 36, NFTA_LIST_ELEM | NLA_F_NESTED);
        hdr(&mut want, 9, NFTA_EXPR_NAME);
        want.extend_from_slice(b"meta\0\0\0\0");
        hdr(&mut want, 20, NFTA_EXPR_DATA | NLA_F_NESTED);
        hdr(&mut want, 8, NFTA_META_KEY);
        want.extend_from_slice(&16u32.to_be_bytes());
        hdr(&mut want, 8, NFTA_META_DREG);
        want.extend_from_slice(&1u32.to_be_bytes());
        assert_eq!(enc(&Expr::Meta(MetaKey::L4Proto)), want);
    }

    #[test]
    fn jump_verdict_bytes() {
        let mut want = Vec::new();
        hdr(&mut want, 56, NFTA_LIST_ELEM | NLA_F_NESTED);
        hdr(&mut want, 14, NFTA_EXPR_NAME);
        want.extend_from_slice(b"immediate\0\0\0");
        hdr(&mut want, 36, NFTA_EXPR_DATA | NLA_F_NESTED);
        hdr(&mut want, 8, NFTA_IMMEDIATE_DREG);
        want.extend_from_slice(&0u32.to_be_bytes());
        hdr(&mut want, 24, NFTA_IMMEDIATE_DATA | NLA_F_NESTED);
        hdr(&mut want, 20, NFTA_DATA_VERDICT | NLA_F_NESTED);
        hdr(&mut want, 8, NFTA_VERDICT_CODE);
        want.extend_from_slice(&(-3i32).to_be_bytes());
        hdr(&mut want, 8, NFTA_VERDICT_CHAIN);
        want.extend_from_slice(b"t_a\0");
        assert_eq!(enc(&Expr::Verdict(Verdict::Jump("t_a".into()))), want);
    }

    #[test]
    fn lookup_names_the_set_and_its_batch_id() {
        let mut want = Vec::new();
        hdr(&mut want, 44, NFTA_LIST_ELEM | NLA_F_NESTED);
        hdr(&mut want, 11, NFTA_EXPR_NAME);
        want.extend_from_slice(b"lookup\0\0");
        hdr(&mut want, 28, NFTA_EXPR_DATA | NLA_F_NESTED);
        hdr(&mut want, 7, NFTA_LOOKUP_SET);
        want.extend_from_slice(b"n0\0\0");
        hdr(&mut want, 8, NFTA_LOOKUP_SREG);
        want.extend_from_slice(&1u32.to_be_bytes());
        hdr(&mut want, 8, NFTA_LOOKUP_SET_ID);
        want.extend_from_slice(&5u32.to_be_bytes());
        assert_eq!(enc(&Expr::Lookup { set: "n0".into() }), want);
    }

    #[test]
    fn limit_over_sets_the_invert_flag() {
        let b = enc(&Expr::Limit(Limit {
            kind: LimitKind::Bytes,
            rate: 2500,
            unit_secs: 1,
            burst: 3000,
            matches: LimitMatch::Over,
        }));
        // Last attribute: NFTA_LIMIT_FLAGS = 1.
        let tail = &b[b.len() - 8..];
        let mut want = Vec::new();
        hdr(&mut want, 8, NFTA_LIMIT_FLAGS);
        want.extend_from_slice(&1u32.to_be_bytes());
        assert_eq!(tail, &want[..]);
    }
}
