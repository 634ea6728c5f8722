//! Building the kernel: unpack the source once, configure it with `allnoconfig` and the
//! fragment, check the result, compile the EFI-stub image, keep it in the cache.
//!
//! Rules this module keeps:
//! - One result per cache key: the sha256 of the source tarball, the target, the
//!   rendered fragment, the compiler's version and the build epoch. A key that is in the
//!   cache costs no compiling at all; a finished entry is renamed into place whole, so a
//!   build cut short leaves no entry that looks done.
//! - One build at a time per cache (a lock file), one incremental build tree per target:
//!   a second device with the same kernel waits and then reuses it.
//! - Reproducible: `KBUILD_BUILD_TIMESTAMP` is the build epoch, user and host are
//!   `limpet`, the build version is 1.
//! - A required line that did not land in the finished `.config` is an error naming the
//!   option and why it is wanted, before anything is compiled.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use limpet_kconfig::KernelConfig;
use limpet_manifest::Target;
use sha2::{Digest, Sha256};

use crate::fragment::{self, Line};
use crate::source::{KernelSource, TREE};
use crate::KbuildError;

/// What to build.
#[derive(Debug)]
pub struct Request<'a> {
    /// The source tarball.
    pub source: &'a KernelSource,
    /// The device's architecture.
    pub target: Target,
    /// The configuration lines ([`fragment::lines`]).
    pub lines: &'a [Line],
    /// The cache directory (`<cargo target dir>/limpet-kernel`).
    pub cache: &'a Path,
    /// The build epoch (`SOURCE_DATE_EPOCH`), the kernel's build timestamp.
    pub epoch: u64,
    /// Parallel jobs for `make`.
    pub jobs: usize,
}

/// A built kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    /// Its release (`uname -r`).
    pub release: String,
    /// The EFI-stub image (`vmlinuz-<release>`): bzImage on x86_64, Image on aarch64.
    pub image: PathBuf,
    /// Its `.config`, beside the image as `config-<release>`.
    pub config: PathBuf,
    /// Whether it came from the cache.
    pub reused: bool,
    /// Hardening options this toolchain could not turn on.
    pub not_hardened: Vec<&'static str>,
}

/// The files of a cache entry.
const IMAGE_PREFIX: &str = "vmlinuz-";
const RELEASE_FILE: &str = "release";
const UNMET_FILE: &str = "not-hardened";
const FRAGMENT_FILE: &str = "fragment.config";

/// Builds (or reuses) the kernel `req` asks for.
pub fn build(req: &Request<'_>) -> Result<Built, KbuildError> {
    let toolchain = Toolchain::for_target(req.target);
    let compiler = toolchain.version()?;
    let fragment = fragment::render(req.lines);
    let key = cache_key(req, &compiler, &fragment);
    let entry = req.cache.join(format!("{}-{key}", req.target.as_str()));
    if let Some(built) = read_entry(&entry)? {
        return Ok(built);
    }
    mkdir(req.cache)?;
    let lock_path = req.cache.join("lock");
    let lock = fs::File::create(&lock_path).map_err(io(&lock_path))?;
    lock.lock().map_err(io(&lock_path))?;
    // Someone else may have built it while this one waited.
    if let Some(built) = read_entry(&entry)? {
        return Ok(built);
    }
    let tree = unpack(req.source, req.cache)?;
    let out = build_tree(req.cache, req.target);
    mkdir(&out)?;
    let fragment_path = out.join(FRAGMENT_FILE);
    fs::write(&fragment_path, &fragment).map_err(io(&fragment_path))?;

    let started = Instant::now();
    tracing::info!(
        "configuring Linux ({}) for {}",
        req.source.version,
        req.target.as_str()
    );
    let stamp = timestamp(req.epoch)?;
    let mut make = toolchain.make(&tree, &out, &stamp, req.epoch);
    make.env("KCONFIG_ALLCONFIG", &fragment_path)
        .arg("allnoconfig");
    run(make, "make allnoconfig")?;
    let config_path = out.join(".config");
    let text = fs::read_to_string(&config_path).map_err(io(&config_path))?;
    let config = KernelConfig::parse(&text).map_err(|source| KbuildError::BadConfig {
        path: config_path.clone(),
        source,
    })?;
    let (required, best_effort) = fragment::unmet(req.lines, &config);
    if !required.is_empty() {
        return Err(KbuildError::Unmet {
            target: req.target.as_str(),
            options: required
                .iter()
                .map(|l| {
                    format!(
                        "CONFIG_{} ({}: {})",
                        l.check.option,
                        l.check.want.describe(),
                        l.check.reason
                    )
                })
                .collect(),
        });
    }
    tracing::info!(
        "compiling Linux for {} with {} job(s) (minutes the first time)",
        req.target.as_str(),
        req.jobs
    );
    let mut make = toolchain.make(&tree, &out, &stamp, req.epoch);
    make.arg(format!("-j{}", req.jobs.max(1)))
        .arg(toolchain.image_target);
    run(make, "make (the kernel image)")?;
    let release_path = out.join("include/config/kernel.release");
    let release = fs::read_to_string(&release_path)
        .map_err(io(&release_path))?
        .trim()
        .to_owned();

    // The entry, made aside and renamed into place whole.
    let staging = req
        .cache
        .join(format!(".{}-{key}.partial", req.target.as_str()));
    let _ = fs::remove_dir_all(&staging);
    mkdir(&staging)?;
    let copy = |from: &Path, name: &str| {
        let to = staging.join(name);
        fs::copy(from, &to).map(|_| ()).map_err(io(&to))
    };
    copy(
        &out.join(toolchain.image_path),
        &format!("{IMAGE_PREFIX}{release}"),
    )?;
    copy(&config_path, &format!("config-{release}"))?;
    copy(&fragment_path, FRAGMENT_FILE)?;
    let not_hardened: Vec<&'static str> = best_effort.iter().map(|l| l.check.option).collect();
    let write = |name: &str, text: String| {
        let to = staging.join(name);
        fs::write(&to, text).map_err(io(&to))
    };
    write(RELEASE_FILE, format!("{release}\n"))?;
    write(
        UNMET_FILE,
        not_hardened.iter().map(|o| format!("{o}\n")).collect(),
    )?;
    fs::rename(&staging, &entry).map_err(io(&entry))?;
    tracing::info!(
        "Linux {release} for {} built in {:.0} s",
        req.target.as_str(),
        started.elapsed().as_secs_f64()
    );
    let mut built = read_entry(&entry)?.ok_or_else(|| KbuildError::Io {
        path: entry.clone(),
        source: std::io::Error::from(std::io::ErrorKind::NotFound),
    })?;
    built.reused = false;
    Ok(built)
}

/// The incremental build tree (`make O=`) of `target` in `cache`.
pub fn build_tree(cache: &Path, target: Target) -> PathBuf {
    cache.join(format!("build-{}", target.as_str()))
}

/// The cache key: everything the image depends on.
fn cache_key(req: &Request<'_>, compiler: &str, fragment: &str) -> String {
    let mut h = Sha256::new();
    for part in [
        req.source.sha256.as_str(),
        req.target.as_str(),
        compiler,
        &req.epoch.to_string(),
        fragment,
    ] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    hex::encode(&h.finalize()[..8])
}

/// A finished cache entry, if `entry` is one.
fn read_entry(entry: &Path) -> Result<Option<Built>, KbuildError> {
    let release_path = entry.join(RELEASE_FILE);
    let release = match fs::read_to_string(&release_path) {
        Ok(text) => text.trim().to_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(KbuildError::Io {
                path: release_path,
                source,
            })
        }
    };
    let unmet_path = entry.join(UNMET_FILE);
    let unmet = fs::read_to_string(&unmet_path).map_err(io(&unmet_path))?;
    let not_hardened = unmet
        .lines()
        .filter_map(|o| {
            limpet_kconfig::checks::HARDENING
                .iter()
                .find(|c| c.option == o)
                .map(|c| c.option)
        })
        .collect();
    Ok(Some(Built {
        image: entry.join(format!("{IMAGE_PREFIX}{release}")),
        config: entry.join(format!("config-{release}")),
        release,
        reused: true,
        not_hardened,
    }))
}

/// The source tree, unpacked once per tarball under `cache`.
fn unpack(source: &KernelSource, cache: &Path) -> Result<PathBuf, KbuildError> {
    let dir = cache.join(format!("src-{}", &source.sha256[..16]));
    let tree = dir.join(TREE);
    if tree.join("Makefile").is_file() {
        return Ok(tree);
    }
    tracing::info!("unpacking {}", source.tarball.display());
    let partial = cache.join(format!(".src-{}.partial", &source.sha256[..16]));
    let _ = fs::remove_dir_all(&partial);
    mkdir(&partial)?;
    let mut tar = Command::new("tar");
    tar.arg("-xf").arg(&source.tarball).arg("-C").arg(&partial);
    run(tar, "tar (unpacking the kernel source)")?;
    let _ = fs::remove_dir_all(&dir);
    fs::rename(&partial, &dir).map_err(io(&dir))?;
    Ok(tree)
}

/// The cross toolchain and image of a target.
struct Toolchain {
    arch: &'static str,
    cross: Option<&'static str>,
    image_target: &'static str,
    image_path: &'static str,
}

impl Toolchain {
    fn for_target(target: Target) -> Toolchain {
        match target {
            Target::X86_64 => Toolchain {
                arch: "x86_64",
                cross: (std::env::consts::ARCH != "x86_64").then_some("x86_64-linux-gnu-"),
                image_target: "bzImage",
                image_path: "arch/x86/boot/bzImage",
            },
            Target::Aarch64 => Toolchain {
                arch: "arm64",
                cross: (std::env::consts::ARCH != "aarch64").then_some("aarch64-linux-gnu-"),
                image_target: "Image",
                image_path: "arch/arm64/boot/Image",
            },
        }
    }

    /// The compiler's first `--version` line.
    fn version(&self) -> Result<String, KbuildError> {
        let gcc = format!("{}gcc", self.cross.unwrap_or(""));
        let out = Command::new(&gcc)
            .arg("--version")
            .output()
            .map_err(|source| KbuildError::Spawn {
                program: gcc.clone(),
                source,
            })?;
        let text = String::from_utf8_lossy(&out.stdout);
        match text.lines().next() {
            Some(line) if out.status.success() => Ok(line.to_owned()),
            _ => Err(KbuildError::Failed {
                what: format!("{gcc} --version"),
                status: out.status.to_string(),
            }),
        }
    }

    /// `make -C tree O=out ARCH=… [CROSS_COMPILE=…] -s` with the reproducibility variables.
    fn make(&self, tree: &Path, out: &Path, stamp: &str, epoch: u64) -> Command {
        let mut make = Command::new("make");
        make.arg("-C")
            .arg(tree)
            .arg(format!("O={}", out.display()))
            .arg(format!("ARCH={}", self.arch))
            .arg("-s");
        if let Some(cross) = self.cross {
            make.arg(format!("CROSS_COMPILE={cross}"));
        }
        make.env("KBUILD_BUILD_TIMESTAMP", stamp)
            .env("KBUILD_BUILD_USER", "limpet")
            .env("KBUILD_BUILD_HOST", "limpet")
            .env("KBUILD_BUILD_VERSION", "1")
            .env("SOURCE_DATE_EPOCH", epoch.to_string());
        make
    }
}

/// The epoch as `date` writes it (`Sat Dec  6 18:00:00 UTC 2026`), the way the kernel
/// prints its own build time in `/proc/version`.
fn timestamp(epoch: u64) -> Result<String, KbuildError> {
    let out = Command::new("date")
        .args(["-u", "-d", &format!("@{epoch}")])
        .env("LC_ALL", "C")
        .output()
        .map_err(|source| KbuildError::Spawn {
            program: "date".into(),
            source,
        })?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !out.status.success() || text.is_empty() {
        return Err(KbuildError::Failed {
            what: format!("date -u -d @{epoch}"),
            status: out.status.to_string(),
        });
    }
    Ok(text)
}

fn run(mut cmd: Command, what: &str) -> Result<(), KbuildError> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let status = cmd
        .status()
        .map_err(|source| KbuildError::Spawn { program, source })?;
    if status.success() {
        Ok(())
    } else {
        Err(KbuildError::Failed {
            what: what.to_owned(),
            status: status.to_string(),
        })
    }
}

fn mkdir(dir: &Path) -> Result<(), KbuildError> {
    fs::create_dir_all(dir).map_err(io(dir))
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> KbuildError + '_ {
    move |source| KbuildError::Io {
        path: path.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_changes_with_every_input() {
        let source = KernelSource {
            tarball: "/usr/src/x.tar.xz".into(),
            version: "6.1.1-1".into(),
            sha256: "ab".repeat(32),
        };
        let cache = Path::new("/c");
        let req = |target, epoch| Request {
            source: &source,
            target,
            lines: &[],
            cache,
            epoch,
            jobs: 2,
        };
        let base = cache_key(&req(Target::X86_64, 1), "gcc 12", "CONFIG_A=y\n");
        assert_eq!(base.len(), 16);
        assert_eq!(
            base,
            cache_key(&req(Target::X86_64, 1), "gcc 12", "CONFIG_A=y\n")
        );
        for other in [
            cache_key(&req(Target::Aarch64, 1), "gcc 12", "CONFIG_A=y\n"),
            cache_key(&req(Target::X86_64, 2), "gcc 12", "CONFIG_A=y\n"),
            cache_key(&req(Target::X86_64, 1), "gcc 13", "CONFIG_A=y\n"),
            cache_key(&req(Target::X86_64, 1), "gcc 12", "CONFIG_A=m\n"),
        ] {
            assert_ne!(base, other);
        }
    }

    #[test]
    fn a_partial_entry_is_not_a_cache_hit() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_entry(dir.path()).unwrap(), None);
        fs::write(dir.path().join(RELEASE_FILE), "6.1.192\n").unwrap();
        fs::write(dir.path().join(UNMET_FILE), "KFENCE\nNOT_A_CHECK\n").unwrap();
        let built = read_entry(dir.path()).unwrap().unwrap();
        assert_eq!(built.release, "6.1.192");
        assert_eq!(built.not_hardened, ["KFENCE"]);
        assert_eq!(built.image, dir.path().join("vmlinuz-6.1.192"));
    }
}
