//! What `limpet build` leaves out of PID 1 for a device that does not use it (each part's
//! module says what it is): `LIMPET_INIT_NETWORK=off` for a device whose policy has no
//! network (`src/network.rs` then uses `network/off.rs`, and limpet-policy's build.rs
//! leaves out the parser of a network policy), `LIMPET_INIT_INSTALL=off` for one
//! without `[update]` (`src/install.rs`), `LIMPET_INIT_TPM=off` for one whose manifest has no
//! `[kernel] tpm` (`src/identity.rs`: the identity is kept in software),
//! `LIMPET_INIT_ROUGHTIME=off` for one whose slot lists no Roughtime server
//! (`src/roughtime.rs`). Any other value, or none, links the part (tests,
//! clippy, devices that use it).

fn main() {
    for (var, cfg) in [
        ("LIMPET_INIT_NETWORK", "limpet_init_no_network"),
        ("LIMPET_INIT_INSTALL", "limpet_init_no_install"),
        ("LIMPET_INIT_TPM", "limpet_init_no_tpm"),
        ("LIMPET_INIT_ROUGHTIME", "limpet_init_no_roughtime"),
    ] {
        println!("cargo::rerun-if-env-changed={var}");
        println!("cargo::rustc-check-cfg=cfg({cfg})");
        if std::env::var_os(var).is_some_and(|v| v == "off") {
            println!("cargo::rustc-cfg={cfg}");
        }
    }
}
