//! Finding the device's partitions by GPT name, through sysfs (`PARTNAME=` in each block
//! device's `uevent`), under a root given as a parameter so tests can fake sysfs.
//!
//! Rules: all four partitions must be on one disk (a second disk carrying a `slot-a` must
//! not be able to mix itself into the boot); a disk is chosen by the `state` partition
//! found first in sorted order, and the others are looked up on that same disk only.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The GPT partition names of a Limpet disk.
pub const NAMES: [&str; 4] = ["state", "slot-a", "slot-b", "data"];

/// One block device partition as sysfs describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockPartition {
    /// Kernel device name, e.g. `vda2`.
    pub devname: String,
    /// The disk it belongs to, e.g. `vda`.
    pub disk: String,
    pub partname: String,
}

impl BlockPartition {
    /// The device node under `/dev`.
    pub fn node(&self, root: &Path) -> PathBuf {
        root.join("dev").join(&self.devname)
    }
}

/// The four partitions of the boot disk.
#[derive(Debug, Clone)]
pub struct DiskPartitions {
    pub state: BlockPartition,
    pub slot_a: BlockPartition,
    pub slot_b: BlockPartition,
    pub data: BlockPartition,
}

/// Reads every partition that has a GPT name from `<root>/sys/class/block`.
pub fn scan(root: &Path) -> Vec<BlockPartition> {
    let dir = root.join("sys/class/block");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut found: Vec<BlockPartition> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let uevent = std::fs::read_to_string(entry.path().join("uevent")).ok()?;
            let fields: BTreeMap<&str, &str> =
                uevent.lines().filter_map(|l| l.split_once('=')).collect();
            if fields.get("DEVTYPE") != Some(&"partition") {
                return None;
            }
            let devname = (*fields.get("DEVNAME")?).to_owned();
            let partname = (*fields.get("PARTNAME")?).to_owned();
            // sysfs links a partition into its disk's directory: the parent's name.
            let disk = std::fs::canonicalize(entry.path())
                .ok()
                .and_then(|p| {
                    p.parent()
                        .and_then(|d| d.file_name())
                        .map(|n| n.to_string_lossy().into_owned())
                })
                .unwrap_or_default();
            Some(BlockPartition {
                devname,
                disk,
                partname,
            })
        })
        .collect();
    // Device names are unique: a stable sort would order nothing more, for more code.
    found.sort_unstable_by(|a, b| a.devname.cmp(&b.devname));
    found
}

/// The Limpet partitions among `found`, all from the disk of the first `state` partition.
pub fn select(found: &[BlockPartition]) -> Option<DiskPartitions> {
    let state = found.iter().find(|p| p.partname == "state")?;
    let on_disk = |name: &str| {
        found
            .iter()
            .find(|p| p.disk == state.disk && p.partname == name)
            .cloned()
    };
    Some(DiskPartitions {
        state: state.clone(),
        slot_a: on_disk("slot-a")?,
        slot_b: on_disk("slot-b")?,
        data: on_disk("data")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake(root: &Path, disk: &str, n: u32, partname: &str) {
        let dev = format!("{disk}{n}");
        let real = root.join("sys/devices/virtio").join(disk).join(&dev);
        std::fs::create_dir_all(&real).unwrap();
        std::fs::write(
            real.join("uevent"),
            format!("MAJOR=254\nMINOR={n}\nDEVNAME={dev}\nDEVTYPE=partition\nPARTN={n}\nPARTNAME={partname}\n"),
        )
        .unwrap();
        let class = root.join("sys/class/block");
        std::fs::create_dir_all(&class).unwrap();
        std::os::unix::fs::symlink(&real, class.join(&dev)).unwrap();
    }

    #[test]
    fn finds_the_four_partitions_on_one_disk() {
        let root = tempfile::tempdir().unwrap();
        for (n, name) in NAMES.iter().enumerate() {
            fake(root.path(), "vda", u32::try_from(n).unwrap() + 1, name);
        }
        // A second disk with a stray slot-a must not be mixed in.
        fake(root.path(), "vdb", 1, "slot-a");
        let parts = select(&scan(root.path())).unwrap();
        assert_eq!(parts.slot_a.devname, "vda2");
        assert_eq!(parts.data.devname, "vda4");
        assert_eq!(parts.slot_a.node(Path::new("/")), Path::new("/dev/vda2"));
    }

    #[test]
    fn a_disk_missing_a_partition_is_not_selected() {
        let root = tempfile::tempdir().unwrap();
        fake(root.path(), "vda", 1, "state");
        fake(root.path(), "vda", 2, "slot-a");
        assert!(select(&scan(root.path())).is_none());
    }
}
