//! `LIMPET_INIT_NETWORK=off`, the variable `limpet build` sets for the device build of a
//! policy without a network (crates/limpet-init/build.rs reads it too): this crate then
//! leaves out the code that parses a network policy (`cfg(limpet_policy_no_network)`,
//! `device.rs`), which PID 1 would carry for the device's whole life unused, and refuses a
//! policy that has one. Any other value, or none, parses it (the build host, tests,
//! devices with a network).

fn main() {
    println!("cargo::rerun-if-env-changed=LIMPET_INIT_NETWORK");
    println!("cargo::rustc-check-cfg=cfg(limpet_policy_no_network)");
    if std::env::var_os("LIMPET_INIT_NETWORK").is_some_and(|v| v == "off") {
        println!("cargo::rustc-cfg=limpet_policy_no_network");
    }
}
