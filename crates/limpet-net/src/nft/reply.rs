//! Reading what the kernel sends back: acknowledgements and rule dumps.

use super::batch::comment_from_udata;
use super::consts::*;
use super::wire::{self, attrs, find, Msg, WireError, NFGENMSG_LEN, NLMSG_HDRLEN};

/// An `NLMSG_ERROR` reply: `error == 0` is an acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    /// Sequence number of the message it answers.
    pub seq: u32,
    /// 0, or a positive errno.
    pub errno: i32,
}

/// Reads an `NLMSG_ERROR` message: `i32 error` then the original `nlmsghdr`.
pub fn ack(m: &Msg<'_>) -> Result<Ack, WireError> {
    let bad = WireError {
        what: "error reply",
        offset: 0,
    };
    if m.payload.len() < 4 + NLMSG_HDRLEN {
        return Err(bad);
    }
    let error = i32::from_ne_bytes([m.payload[0], m.payload[1], m.payload[2], m.payload[3]]);
    // The original header's seq, at offset 8 in it; the outer seq is the same, but the
    // inner one is what the kernel copied from our message.
    let seq = wire::read_u32_ne(m.payload, 4 + 8);
    Ok(Ack {
        seq,
        errno: error.checked_neg().unwrap_or(i32::MAX),
    })
}

/// One rule from a dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpedRule {
    /// Its chain.
    pub chain: String,
    /// Its handle.
    pub handle: u64,
    /// Its comment, if it has one.
    pub comment: Option<String>,
    /// Its counter, if it has one: `(packets, bytes)`.
    pub counter: Option<(u64, u64)>,
}

/// Reads a `NEWRULE` message of a dump.
pub fn dumped_rule(m: &Msg<'_>) -> Result<DumpedRule, WireError> {
    let body = m.payload.get(NFGENMSG_LEN..).ok_or(WireError {
        what: "rule",
        offset: 0,
    })?;
    let a = attrs(body)?;
    let chain = find(&a, NFTA_RULE_CHAIN)
        .and_then(wire::string)
        .unwrap_or_default()
        .to_owned();
    let handle = find(&a, NFTA_RULE_HANDLE).and_then(wire::be64).unwrap_or(0);
    let comment = find(&a, NFTA_RULE_USERDATA).and_then(comment_from_udata);
    let mut counter = None;
    if let Some(list) = find(&a, NFTA_RULE_EXPRESSIONS) {
        for (_, elem) in attrs(list)? {
            let e = attrs(elem)?;
            if find(&e, NFTA_EXPR_NAME).and_then(wire::string) != Some("counter") {
                continue;
            }
            let Some(data) = find(&e, NFTA_EXPR_DATA) else {
                continue;
            };
            let d = attrs(data)?;
            let packets = find(&d, NFTA_COUNTER_PACKETS).and_then(wire::be64);
            let bytes = find(&d, NFTA_COUNTER_BYTES).and_then(wire::be64);
            if let (Some(p), Some(b)) = (packets, bytes) {
                counter = Some((p, b));
            }
        }
    }
    Ok(DumpedRule {
        chain,
        handle,
        comment,
        counter,
    })
}

#[cfg(test)]
mod tests {
    use super::super::batch::comment_udata;
    use super::super::wire::Writer;
    use super::*;

    #[test]
    fn error_reply_names_the_sequence_number() {
        let mut p = (-2i32).to_ne_bytes().to_vec();
        let mut w = Writer::new();
        let m = w.begin_msg(0x0a06, 0x405, 42, 1, 0);
        w.end_msg(m);
        p.extend_from_slice(&w.as_bytes()[..NLMSG_HDRLEN]);
        let msg = Msg {
            ty: NLMSG_ERROR,
            flags: 0,
            seq: 42,
            payload: &p,
        };
        assert_eq!(ack(&msg), Ok(Ack { seq: 42, errno: 2 }));
        let short = Msg {
            payload: &p[..8],
            ..msg
        };
        assert!(ack(&short).is_err());
    }

    #[test]
    fn dumped_rule_reads_chain_handle_comment_counter() {
        let mut w = Writer::new();
        let m = w.begin_msg(0x0a06, NLM_F_MULTI, 1, 1, 0);
        w.attr_str(NFTA_RULE_TABLE, "limpet");
        w.attr_str(NFTA_RULE_CHAIN, "output");
        w.attr_be64(NFTA_RULE_HANDLE, 9);
        let l = w.begin_nest(NFTA_RULE_EXPRESSIONS);
        let e = w.begin_nest(NFTA_LIST_ELEM);
        w.attr_str(NFTA_EXPR_NAME, "counter");
        let d = w.begin_nest(NFTA_EXPR_DATA);
        w.attr_be64(NFTA_COUNTER_BYTES, 1500);
        w.attr_be64(NFTA_COUNTER_PACKETS, 3);
        w.end_nest(d);
        w.end_nest(e);
        w.end_nest(l);
        w.attr(
            NFTA_RULE_USERDATA,
            &comment_udata("device rule=output-drop"),
        );
        w.end_msg(m);
        let bytes = w.into_bytes();
        let msgs = wire::messages(&bytes).unwrap();
        let r = dumped_rule(&msgs[0]).unwrap();
        assert_eq!(
            r,
            DumpedRule {
                chain: "output".into(),
                handle: 9,
                comment: Some("device rule=output-drop".into()),
                counter: Some((3, 1500)),
            }
        );
    }
}
