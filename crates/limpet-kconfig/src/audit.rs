//! The audit: every check of [`crate::checks`] and every need of [`crate::needs`] against one
//! [`KernelConfig`], and the report.
//!
//! Rules this module keeps:
//! - Checks for another architecture than the config's are left out, never counted.
//! - Hardening and attack-surface findings are a report; only manifest needs the kernel
//!   lacks are an error ([`Audit::require_needs`]), naming each missing option.

use std::fmt;

use limpet_manifest::Manifest;
use serde::Serialize;

use crate::checks::{Arch, Check, Source, ATTACK_SURFACE, HARDENING};
use crate::config::{KernelConfig, Value};

/// One check against the config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The check.
    pub check: Check,
    /// The name the config knows the option by (its [`Check::renamed`] one in a kernel
    /// that renamed it).
    pub name: &'static str,
    /// The option's value; `None` when the config does not mention it.
    pub actual: Option<Value>,
    /// Whether the value is what the check wants.
    pub passed: bool,
}

impl Finding {
    fn new(check: &Check, config: &KernelConfig) -> Finding {
        let (name, actual) = check.lookup(config);
        let actual = actual.cloned();
        Finding {
            passed: check.want.accepts(actual.as_ref()),
            check: check.clone(),
            name,
            actual,
        }
    }

    /// `CONFIG_X=y`, `CONFIG_X is not set`, as the config has it.
    pub fn actual_text(&self) -> String {
        match &self.actual {
            None => format!("CONFIG_{} is not mentioned", self.name),
            Some(Value::No) => format!("CONFIG_{} is not set", self.name),
            Some(v) => format!("CONFIG_{}={}", self.name, v.spelling()),
        }
    }
}

/// Hardening checks passed and failed from one source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Tally {
    /// The source.
    pub source: Source,
    /// Checks passed.
    pub passed: usize,
    /// Checks failed.
    pub failed: usize,
}

/// The report on one kernel config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Audit {
    /// The config's architecture, when it says.
    pub arch: Option<Arch>,
    /// Options on (`=y` or `=m`).
    pub options_on: usize,
    /// The hardening checks that apply.
    pub hardening: Vec<Finding>,
    /// The attack-surface checks that apply.
    pub attack_surface: Vec<Finding>,
    /// What the manifest needs; empty when no manifest was given.
    pub needs: Vec<Finding>,
}

/// The manifest needs options the kernel does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the kernel lacks what the manifest needs: {}", list(.missing))]
pub struct MissingNeeds {
    /// The needs that failed.
    pub missing: Vec<Finding>,
}

fn list(missing: &[Finding]) -> String {
    missing
        .iter()
        .map(|f| {
            format!(
                "CONFIG_{} (wanted {}, found {}: {})",
                f.check.option,
                f.check.want.describe(),
                f.actual
                    .as_ref()
                    .map_or("not set".to_owned(), Value::spelling),
                f.check.reason
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Audits `config`, and its fit for `manifest` when one is given.
pub fn audit(config: &KernelConfig, manifest: Option<&Manifest>) -> Audit {
    let arch = Arch::of(config);
    let run = |checks: &[Check]| -> Vec<Finding> {
        checks
            .iter()
            .filter(|c| c.arch.applies_to(arch))
            .map(|c| Finding::new(c, config))
            .collect()
    };
    // Needs are already for the manifest's target; a config for another architecture
    // fails the target's own need (CONFIG_X86_64 or CONFIG_ARM64).
    let needs = manifest
        .map(crate::needs::of)
        .unwrap_or_default()
        .iter()
        .map(|c| Finding::new(c, config))
        .collect();
    Audit {
        arch,
        options_on: config.count_on(),
        hardening: run(HARDENING),
        attack_surface: run(ATTACK_SURFACE),
        needs,
    }
}

impl Audit {
    /// Hardening checks passed and failed, by source, for the sources that have checks.
    pub fn tally(&self) -> Vec<Tally> {
        Source::ALL
            .iter()
            .map(|&source| {
                let of = self.hardening.iter().filter(|f| f.check.source == source);
                let passed = of.clone().filter(|f| f.passed).count();
                Tally {
                    source,
                    passed,
                    failed: of.count() - passed,
                }
            })
            .filter(|t| t.passed + t.failed > 0)
            .collect()
    }

    /// Attack-surface options that are on.
    pub fn surface_on(&self) -> impl Iterator<Item = &Finding> {
        self.attack_surface.iter().filter(|f| !f.passed)
    }

    /// Manifest needs the kernel lacks.
    pub fn missing_needs(&self) -> impl Iterator<Item = &Finding> {
        self.needs.iter().filter(|f| !f.passed)
    }

    /// `Ok` when the kernel has everything the manifest needs.
    pub fn require_needs(&self) -> Result<(), MissingNeeds> {
        let missing: Vec<Finding> = self.missing_needs().cloned().collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(MissingNeeds { missing })
        }
    }
}

impl fmt::Display for Audit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let arch = self.arch.map_or("unknown architecture", |a| a.name());
        writeln!(f, "kernel config: {arch}, {} options on", self.options_on)?;
        let passed = self.hardening.iter().filter(|x| x.passed).count();
        writeln!(
            f,
            "hardening: {passed} of {} checks passed",
            self.hardening.len()
        )?;
        for t in self.tally() {
            writeln!(
                f,
                "  {}: {} passed, {} failed",
                t.source.name(),
                t.passed,
                t.failed
            )?;
        }
        for x in self.hardening.iter().filter(|x| !x.passed) {
            writeln!(
                f,
                "  failed [{}] {}, wanted {}: {}",
                x.check.source.name(),
                x.actual_text(),
                x.check.want.describe(),
                x.check.reason
            )?;
        }
        let on: Vec<&Finding> = self.surface_on().collect();
        writeln!(
            f,
            "attack surface: {} of {} options on",
            on.len(),
            self.attack_surface.len()
        )?;
        for x in on {
            writeln!(f, "  on: {}: {}", x.actual_text(), x.check.reason)?;
        }
        if !self.needs.is_empty() {
            let missing: Vec<&Finding> = self.missing_needs().collect();
            writeln!(
                f,
                "manifest needs: {} of {} met",
                self.needs.len() - missing.len(),
                self.needs.len()
            )?;
            for x in missing {
                writeln!(
                    f,
                    "  missing: {}, wanted {}: {}",
                    x.actual_text(),
                    x.check.want.describe(),
                    x.check.reason
                )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn manifest(network: bool) -> Manifest {
        let net = if network {
            "network = \"allowlist\"\n[[task.egress]]\nhost = \"192.0.2.1\"\nports = [443]\n"
        } else {
            ""
        };
        let text = format!(
            "[device]\nname = \"d\"\nversion = \"0.1.0\"\ntarget = \"x86_64\"\n\
             [[task]]\nname = \"t\"\npackage = \"t\"\nmemory = \"8MiB\"\ncpu = \"5%\"\n{net}"
        );
        limpet_manifest::parse("limpet.toml", &text).unwrap()
    }

    #[test]
    fn hardening_is_tallied_by_source_and_arch() {
        let config = KernelConfig::parse(
            "CONFIG_X86_64=y\nCONFIG_BUG=y\nCONFIG_FORTIFY_SOURCE=y\nCONFIG_SLAB_MERGE_DEFAULT=y\n",
        )
        .unwrap();
        let a = audit(&config, None);
        assert_eq!(a.arch, Some(Arch::X86_64));
        assert!(a.hardening.iter().all(|f| f.check.arch != Arch::Aarch64));
        let kspp = a
            .tally()
            .into_iter()
            .find(|t| t.source == Source::Kspp)
            .unwrap();
        // FORTIFY_SOURCE=y passes, and so does HARDENED_USERCOPY_FALLBACK, wanted off and
        // absent; SLAB_MERGE_DEFAULT=y fails.
        assert_eq!(kspp.passed, 2);
        assert!(!a
            .hardening
            .iter()
            .any(|f| f.check.option == "SLAB_MERGE_DEFAULT" && f.passed));
        assert!(a.needs.is_empty() && a.require_needs().is_ok());
    }

    #[test]
    fn a_renamed_option_is_judged_by_the_name_the_config_uses() {
        // Linux 6.9 renamed RETPOLINE to MITIGATION_RETPOLINE and PAGE_TABLE_ISOLATION to
        // MITIGATION_PAGE_TABLE_ISOLATION: a newer config meets the checks under the new
        // names, and the finding says which name it read.
        let config = KernelConfig::parse(
            "CONFIG_X86_64=y\nCONFIG_MITIGATION_RETPOLINE=y\n# CONFIG_MITIGATION_PAGE_TABLE_ISOLATION is not set\n",
        )
        .unwrap();
        let a = audit(&config, None);
        let find = |option: &str| {
            a.hardening
                .iter()
                .find(|f| f.check.option == option)
                .unwrap()
        };
        let retpoline = find("RETPOLINE");
        assert!(retpoline.passed);
        assert_eq!(retpoline.actual_text(), "CONFIG_MITIGATION_RETPOLINE=y");
        let pti = find("PAGE_TABLE_ISOLATION");
        assert!(!pti.passed);
        assert_eq!(
            pti.actual_text(),
            "CONFIG_MITIGATION_PAGE_TABLE_ISOLATION is not set"
        );
        // An older config is judged by the old name, as before.
        let old = KernelConfig::parse("CONFIG_X86_64=y\nCONFIG_RETPOLINE=y\n").unwrap();
        let a = audit(&old, None);
        let f = a
            .hardening
            .iter()
            .find(|f| f.check.option == "RETPOLINE")
            .unwrap();
        assert!(f.passed);
        assert_eq!(f.actual_text(), "CONFIG_RETPOLINE=y");
    }

    #[test]
    fn an_unknown_arch_runs_only_the_common_checks() {
        let a = audit(&KernelConfig::default(), None);
        assert_eq!(a.arch, None);
        assert!(a
            .hardening
            .iter()
            .chain(&a.attack_surface)
            .all(|f| f.check.arch == Arch::Any));
    }

    #[test]
    fn attack_surface_lists_what_is_on() {
        let config = KernelConfig::parse("CONFIG_IO_URING=y\nCONFIG_NFS_FS=m\n").unwrap();
        let a = audit(&config, None);
        let on: Vec<_> = a.surface_on().map(|f| f.check.option).collect();
        assert_eq!(on, ["IO_URING", "NFS_FS"]);
    }

    #[test]
    fn needs_accept_modules_and_name_what_is_missing() {
        let m = manifest(false);
        let needs = crate::needs::of(&m);
        let config = KernelConfig::parse(
            &crate::fragment(&needs).replace("CONFIG_DM_VERITY=y", "CONFIG_DM_VERITY=m"),
        )
        .unwrap();
        assert!(audit(&config, Some(&m)).require_needs().is_ok());
        assert!(!needs.iter().any(|c| c.option == "NF_TABLES"));

        let without = crate::fragment(&needs).replace("CONFIG_SECURITY_LANDLOCK=y\n", "");
        let a = audit(&KernelConfig::parse(&without).unwrap(), Some(&m));
        let err = a.require_needs().unwrap_err().to_string();
        assert!(
            err.contains("CONFIG_SECURITY_LANDLOCK (wanted y, found not set"),
            "{err}"
        );
    }

    #[test]
    fn network_rules_need_nftables() {
        let m = manifest(true);
        let plain = crate::fragment(&crate::needs::of(&manifest(false)));
        let a = audit(&KernelConfig::parse(&plain).unwrap(), Some(&m));
        let err = a.require_needs().unwrap_err();
        assert!(err.missing.iter().any(|f| f.check.option == "NF_TABLES"));
        assert!(
            err.to_string().contains("CONFIG_NF_TABLES (wanted y or m"),
            "{err}"
        );
        let full = crate::fragment(&crate::needs::of(&m));
        assert!(audit(&KernelConfig::parse(&full).unwrap(), Some(&m))
            .require_needs()
            .is_ok());
    }

    #[test]
    fn a_config_for_another_arch_fails_the_target_need() {
        let m = manifest(false);
        let text =
            crate::fragment(&crate::needs::of(&m)).replace("CONFIG_X86_64=y", "CONFIG_ARM64=y");
        let err = audit(&KernelConfig::parse(&text).unwrap(), Some(&m))
            .require_needs()
            .unwrap_err();
        assert!(err.to_string().contains("CONFIG_X86_64"), "{err}");
    }
}
