//! Rule counters read back from the kernel, named by the rules' comments.
//!
//! Every rule [`crate::Ruleset`] writes has a counter and a comment, `device rule=<id>` or
//! `task=<name> rule=<id>`. Several kernel rules may share a comment (an egress rule with
//! several port ranges); their counts add up.

use std::collections::BTreeMap;

use crate::nft::reply::DumpedRule;

/// Packets and bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Count {
    /// Packets.
    pub packets: u64,
    /// Bytes.
    pub bytes: u64,
}

impl Count {
    fn add(&mut self, packets: u64, bytes: u64) {
        self.packets = self.packets.saturating_add(packets);
        self.bytes = self.bytes.saturating_add(bytes);
    }
}

/// Whose rule a counter belongs to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Owner {
    /// A device-wide rule.
    Device,
    /// A task's rule.
    Task(String),
}

/// One kernel rule's counter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleCounter {
    /// The rule's chain.
    pub chain: String,
    /// The rule's handle in the kernel.
    pub handle: u64,
    /// Its owner, from the comment.
    pub owner: Owner,
    /// Its id, from the comment (`egress:0`, `drop`, `output-drop`...).
    pub rule: String,
    /// The count.
    pub count: Count,
}

/// All counters of the table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// One per kernel rule with a counter and one of our comments, in dump order.
    pub rules: Vec<RuleCounter>,
}

/// Reads `device rule=<id>` or `task=<name> rule=<id>`.
pub fn parse_comment(c: &str) -> Option<(Owner, String)> {
    let (owner, rule) = c.split_once(' ')?;
    let rule = rule.strip_prefix("rule=")?;
    let owner = match owner {
        "device" => Owner::Device,
        o => Owner::Task(o.strip_prefix("task=")?.to_owned()),
    };
    Some((owner, rule.to_owned()))
}

impl Counters {
    /// Builds the counters from dumped rules; rules without a counter or without one of
    /// our comments are left out.
    pub fn from_dump(rules: &[DumpedRule]) -> Counters {
        let rules = rules
            .iter()
            .filter_map(|r| {
                let (packets, bytes) = r.counter?;
                let (owner, rule) = parse_comment(r.comment.as_deref()?)?;
                Some(RuleCounter {
                    chain: r.chain.clone(),
                    handle: r.handle,
                    owner,
                    rule,
                    count: Count { packets, bytes },
                })
            })
            .collect();
        Counters { rules }
    }

    /// The sum of the counters of `owner`'s rule `rule`.
    pub fn get(&self, owner: &Owner, rule: &str) -> Count {
        let mut c = Count::default();
        for r in self
            .rules
            .iter()
            .filter(|r| &r.owner == owner && r.rule == rule)
        {
            c.add(r.count.packets, r.count.bytes);
        }
        c
    }

    /// What each task's final drop rule dropped: what PID 1 reports per task.
    pub fn task_drops(&self) -> BTreeMap<String, Count> {
        let mut out = BTreeMap::new();
        for r in &self.rules {
            if let (Owner::Task(t), "drop") = (&r.owner, r.rule.as_str()) {
                out.entry(t.clone())
                    .or_insert_with(Count::default)
                    .add(r.count.packets, r.count.bytes);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dumped(comment: &str, packets: u64) -> DumpedRule {
        DumpedRule {
            chain: "c".into(),
            handle: 1,
            comment: Some(comment.into()),
            counter: Some((packets, packets * 100)),
        }
    }

    #[test]
    fn comments_name_owner_and_rule() {
        assert_eq!(
            parse_comment("task=sensor rule=egress:0"),
            Some((Owner::Task("sensor".into()), "egress:0".into()))
        );
        assert_eq!(
            parse_comment("device rule=output-drop"),
            Some((Owner::Device, "output-drop".into()))
        );
        assert_eq!(parse_comment("someone else's"), None);
    }

    #[test]
    fn shared_comments_add_up_and_drops_are_per_task() {
        let c = Counters::from_dump(&[
            dumped("task=a rule=egress:1", 2),
            dumped("task=a rule=egress:1", 3),
            dumped("task=a rule=drop", 7),
            dumped("task=b rule=drop", 1),
            DumpedRule {
                comment: None,
                ..dumped("", 9)
            },
        ]);
        assert_eq!(c.rules.len(), 4);
        assert_eq!(
            c.get(&Owner::Task("a".into()), "egress:1"),
            Count {
                packets: 5,
                bytes: 500
            }
        );
        let d = c.task_drops();
        assert_eq!(d["a"].packets, 7);
        assert_eq!(d["b"].packets, 1);
    }
}
