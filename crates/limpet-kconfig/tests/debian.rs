//! The audit of the real Debian kernel config on this machine (`/boot/config-*-amd64`, from
//! `linux-image-amd64`, which `.ci/install-deps` installs): facts read from that file, and
//! the figures docs/kernel.md shows.
// Tests fail by panicking; the workspace lints against it are for production code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use limpet_kconfig::{audit, Arch, Audit, KernelConfig, Source, Value};
use limpet_manifest::Manifest;
use limpet_testkit::docs;

/// The newest `/boot/config-*-amd64`.
fn debian_config() -> (PathBuf, KernelConfig) {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/boot")
        .expect("/boot (install linux-image-amd64, see .ci/install-deps)")
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with("config-6.1.") && name.ends_with("-amd64")
        })
        .collect();
    found.sort();
    let path = found
        .pop()
        .expect("a /boot/config-6.1.*-amd64 (install linux-image-amd64, see .ci/install-deps)");
    let text = std::fs::read_to_string(&path).unwrap();
    let config = KernelConfig::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (path, config)
}

fn example(name: &str) -> Manifest {
    let path = docs::workspace_path(&format!("examples/{name}/limpet.toml"));
    let text = std::fs::read_to_string(&path).unwrap();
    limpet_manifest::parse("limpet.toml", &text).unwrap()
}

fn passed(audit: &Audit, option: &str) -> bool {
    audit
        .hardening
        .iter()
        .chain(&audit.attack_surface)
        .find(|f| f.check.option == option)
        .unwrap_or_else(|| panic!("no check of {option}"))
        .passed
}

#[test]
fn debians_config_reads_as_the_file_says() {
    let (_, config) = debian_config();
    assert_eq!(config.get("MODULES"), Some(&Value::Yes));
    assert_eq!(config.get("IO_URING"), Some(&Value::Yes));
    assert_eq!(config.get("NF_TABLES"), Some(&Value::Module));
    assert_eq!(config.get("INIT_ON_FREE_DEFAULT_ON"), Some(&Value::No));
    assert_eq!(
        config.get("DEFAULT_MMAP_MIN_ADDR"),
        Some(&Value::Number("65536".into()))
    );
    let Some(Value::Str(lsm)) = config.get("LSM") else {
        panic!("CONFIG_LSM is a string")
    };
    assert!(lsm.starts_with("landlock,lockdown,yama"), "{lsm}");
    assert_eq!(Arch::of(&config), Some(Arch::X86_64));
}

#[test]
fn debians_kernel_passes_and_fails_what_its_file_says() {
    let (_, config) = debian_config();
    let a = audit(&config, None);
    for on in [
        "STACKPROTECTOR_STRONG",
        "FORTIFY_SOURCE",
        "HARDENED_USERCOPY",
        "STRICT_KERNEL_RWX",
        "INIT_ON_ALLOC_DEFAULT_ON",
        "SECURITY_LOCKDOWN_LSM",
        "RANDOMIZE_BASE",
        "SLAB_FREELIST_HARDENED",
        "VMAP_STACK",
        "BUG_ON_DATA_CORRUPTION",
        "DEFAULT_MMAP_MIN_ADDR",
    ] {
        assert!(passed(&a, on), "{on} should pass");
    }
    // INIT_ON_FREE_DEFAULT_ON and MODULE_SIG_FORCE are not set, SLAB_MERGE_DEFAULT=y,
    // X86_KERNEL_IBT is not set, and the attack-surface options are on.
    for off in [
        "INIT_ON_FREE_DEFAULT_ON",
        "MODULE_SIG_FORCE",
        "SLAB_MERGE_DEFAULT",
        "X86_KERNEL_IBT",
        "IO_URING",
        "BPF_SYSCALL",
        "USER_NS",
        "DEVMEM",
        "DEBUG_FS",
        "KEXEC",
    ] {
        assert!(!passed(&a, off), "{off} should fail");
    }
    // No aarch64 check is run on an x86_64 config.
    assert!(a.hardening.iter().all(|f| f.check.arch != Arch::Aarch64));
}

#[test]
fn debians_kernel_meets_the_examples_needs() {
    let (_, config) = debian_config();
    for name in ["hello", "contain"] {
        let a = audit(&config, Some(&example(name)));
        a.require_needs()
            .unwrap_or_else(|e| panic!("examples/{name}: {e}"));
    }
    // Met as modules where a module will do.
    let a = audit(&config, Some(&example("contain")));
    let nft = a
        .needs
        .iter()
        .find(|f| f.check.option == "NF_TABLES")
        .unwrap();
    assert_eq!(nft.actual, Some(Value::Module));
}

/// `[kernel] tpm = "tpm2"` asks for the TPM drivers built in: Debian's kernel has them; a
/// config without them is refused by name, and a manifest that asks for no TPM needs none.
#[test]
fn a_manifest_asking_for_a_tpm_needs_its_drivers_built_in() {
    let (config_path, config) = debian_config();
    let path = docs::workspace_path("examples/hello/limpet.toml");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("[kernel]\n", "[kernel]\ntpm = \"tpm2\"\n");
    let with_tpm = limpet_manifest::parse("limpet.toml", &text).unwrap();
    assert_eq!(with_tpm.kernel.tpm, limpet_manifest::Tpm::Tpm2);
    let a = audit(&config, Some(&with_tpm));
    a.require_needs().unwrap();
    let tis = a
        .needs
        .iter()
        .find(|f| f.check.option == "TCG_TIS")
        .unwrap();
    assert_eq!(tis.actual, Some(Value::Yes));

    let stripped = KernelConfig::parse(
        &std::fs::read_to_string(&config_path)
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with("CONFIG_TCG_TIS="))
            .collect::<Vec<_>>()
            .join("\n"),
    )
    .unwrap();
    let a = audit(&stripped, Some(&with_tpm));
    let missing: Vec<&str> = a.missing_needs().map(|f| f.check.option).collect();
    assert_eq!(missing, ["TCG_TIS"]);
    let a = audit(&stripped, Some(&example("hello")));
    assert!(a.needs.iter().all(|f| !f.check.option.starts_with("TCG_")));
}

#[test]
fn docs_show_debians_figures() {
    let (_, config) = debian_config();
    let hello = audit(&config, Some(&example("hello")));
    let contain = audit(&config, Some(&example("contain")));
    let mut rows = vec![[
        "options on (`=y` or `=m`)".to_owned(),
        hello.options_on.to_string(),
    ]];
    for t in hello.tally() {
        rows.push([
            format!("hardening checks, {}", t.source.name()),
            format!("{} passed, {} failed", t.passed, t.failed),
        ]);
    }
    let total = hello.hardening.len();
    let passed = hello.hardening.iter().filter(|f| f.passed).count();
    rows.push([
        "hardening checks, all".to_owned(),
        format!("{passed} of {total} passed"),
    ]);
    rows.push([
        "attack-surface options on".to_owned(),
        format!(
            "{} of {}",
            hello.surface_on().count(),
            hello.attack_surface.len()
        ),
    ]);
    for (name, a) in [("hello", &hello), ("contain", &contain)] {
        rows.push([
            format!("needs of `examples/{name}` met"),
            format!(
                "{} of {}",
                a.needs.len() - a.missing_needs().count(),
                a.needs.len()
            ),
        ]);
    }
    assert!(hello.tally().iter().any(|t| t.source == Source::Kspp));
    docs::assert_region(
        &docs::workspace_path("docs/kernel.md"),
        "kernel-debian-audit",
        file!(),
        &docs::table(&["measure", "Debian 6.1 (amd64)"], rows),
    );
}
