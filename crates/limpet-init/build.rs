//! `LIMPET_INIT_NETWORK=off` (set by `limpet build` for a device whose policy has no
//! network) builds PID 1 without the network: `src/network.rs` then uses `network/off.rs`.
//! Any other value, or none, builds it with the network (tests, clippy, devices with one).

fn main() {
    println!("cargo::rerun-if-env-changed=LIMPET_INIT_NETWORK");
    println!("cargo::rustc-check-cfg=cfg(limpet_init_no_network)");
    if std::env::var_os("LIMPET_INIT_NETWORK").is_some_and(|v| v == "off") {
        println!("cargo::rustc-cfg=limpet_init_no_network");
    }
}
