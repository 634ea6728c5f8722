//! The device's network policy: manifest egress and listen rules compiled to one nftables ruleset, installed over netlink.
