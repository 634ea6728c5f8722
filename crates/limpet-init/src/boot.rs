//! Early boot: pseudo-filesystems and kernel modules. Paths are taken relative to a root
//! given as a parameter, so the module-list parsing can be tested without being PID 1.

use std::path::Path;

use crate::sys;

/// The module load list the build writes into the initramfs.
pub const MODULE_LIST: &str = "etc/limpet/modules";

/// What early boot did.
#[derive(Debug, Default)]
pub struct EarlyBootReport {
    pub loaded: usize,
    pub already_loaded: usize,
}

/// Errors of early boot, each naming the path at fault.
#[derive(Debug)]
pub enum BootError {
    Mount {
        target: String,
        source: std::io::Error,
    },
    ReadList {
        path: String,
        source: std::io::Error,
    },
    Module {
        path: String,
        source: std::io::Error,
    },
}

impl std::fmt::Display for BootError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Mount { target, source } => write!(f, "cannot mount {target}: {source}"),
            Self::ReadList { path, source } => write!(f, "cannot read {path}: {source}"),
            Self::Module { path, source } => write!(f, "cannot load module {path}: {source}"),
        }
    }
}

/// Mounts `/proc`, `/sys`, `/dev`, `/run` and loads the listed modules.
pub fn early_boot(root: &Path) -> Result<EarlyBootReport, BootError> {
    for (fstype, target, flags) in sys::PSEUDO_FILESYSTEMS {
        let path = root.join(target);
        sys::mount_pseudo(fstype, &path, *flags).map_err(|source| BootError::Mount {
            target: path.display().to_string(),
            source,
        })?;
    }
    let list_path = root.join(MODULE_LIST);
    let list = std::fs::read_to_string(&list_path).map_err(|source| BootError::ReadList {
        path: list_path.display().to_string(),
        source,
    })?;
    let mut report = EarlyBootReport::default();
    for module in module_paths(&list) {
        let path = root.join(module.trim_start_matches('/'));
        match sys::load_module(&path) {
            Ok(sys::ModuleLoad::Loaded) => report.loaded += 1,
            Ok(sys::ModuleLoad::AlreadyLoaded) => report.already_loaded += 1,
            Err(source) => {
                return Err(BootError::Module {
                    path: path.display().to_string(),
                    source,
                })
            }
        }
    }
    Ok(report)
}

/// The module paths of a load list: one per line, blank lines and `#` comments ignored.
pub fn module_paths(list: &str) -> impl Iterator<Item = &str> {
    list.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_list_skips_blanks_and_comments() {
        let list = "# load order\n/lib/modules/6.1/a.ko\n\n  /lib/modules/6.1/b.ko  \n";
        assert_eq!(
            module_paths(list).collect::<Vec<_>>(),
            ["/lib/modules/6.1/a.ko", "/lib/modules/6.1/b.ko"]
        );
    }
}
