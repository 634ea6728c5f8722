//! Early boot: pseudo-filesystems and kernel modules. Paths are taken relative to a root
//! given as a parameter, so the module-list parsing can be tested without being PID 1.

use std::path::{Path, PathBuf};

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
#[derive(Debug, thiserror::Error)]
pub enum EarlyBootError {
    #[error("cannot mount {}", target.display())]
    Mount {
        target: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read the module list {}", path.display())]
    ReadList {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot load module {}", path.display())]
    Module {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Mounts `/proc`, `/sys`, `/dev`, `/run` and loads the listed modules.
pub fn early_boot(root: &Path) -> Result<EarlyBootReport, EarlyBootError> {
    for (fstype, target, flags) in sys::PSEUDO_FILESYSTEMS {
        let path = root.join(target);
        sys::mount_pseudo(fstype, &path, *flags).map_err(|source| EarlyBootError::Mount {
            target: path.clone(),
            source,
        })?;
    }
    let list_path = root.join(MODULE_LIST);
    let list = std::fs::read_to_string(&list_path).map_err(|source| EarlyBootError::ReadList {
        path: list_path.clone(),
        source,
    })?;
    let mut report = EarlyBootReport::default();
    for module in module_paths(&list) {
        let path = root.join(module.trim_start_matches('/'));
        match sys::load_module(&path) {
            Ok(sys::ModuleLoad::Loaded) => report.loaded += 1,
            Ok(sys::ModuleLoad::AlreadyLoaded) => report.already_loaded += 1,
            Err(source) => return Err(EarlyBootError::Module { path, source }),
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
