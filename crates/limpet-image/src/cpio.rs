//! The initramfs: a `newc` cpio archive, compressed with zstd.
//!
//! Rules:
//! - Entries are written sorted by path, so a directory comes before its contents; every
//!   parent directory is emitted (mode 0755 unless added explicitly). Files added with
//!   [`CpioBuilder::add_file_last`] follow every other entry, in the order they were added:
//!   the bytes that change from one release to the next go there, so the compressed
//!   archives of two releases are the same up to them (a slot's delta carries the
//!   initramfs as compressed bytes from its first difference on: docs/update.md).
//! - Inode numbers count from 1 in output order; uid and gid are 0; every entry carries the
//!   one mtime given to [`CpioBuilder::finish`]; the archive ends with `TRAILER!!!`.
//! - Paths are relative (`init`, `lib/modules/x.ko`): no leading `/`, no empty, `.` or `..`
//!   component, no NUL.
//! - [`compress`]: zstd level 19, one thread, with a content checksum (Debian's kernel has
//!   `CONFIG_RD_ZSTD`).

use std::collections::BTreeMap;
use std::io::Write;

use thiserror::Error;

/// File type bits of `st_mode`.
const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;

/// zstd level for the initramfs: small, and decompression speed does not depend on it.
pub const ZSTD_LEVEL: i32 = 19;

/// Why an entry cannot be added or the archive compressed.
#[derive(Debug, Error)]
pub enum CpioError {
    /// The path is not a clean relative path.
    #[error("invalid cpio path {path:?}: {reason}")]
    Path {
        /// The path.
        path: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The path is already used by an entry of another kind, or twice for a file.
    #[error("cpio path {path:?} added twice")]
    Duplicate {
        /// The path.
        path: String,
    },
    /// The mode has bits other than permissions.
    #[error("mode {mode:o} of {path:?} has bits outside 0o7777")]
    Mode {
        /// The path.
        path: String,
        /// The mode.
        mode: u32,
    },
    /// A file is larger than newc can describe (4 GiB).
    #[error("file {path:?} is {size} bytes, too large for cpio newc")]
    TooLarge {
        /// The path.
        path: String,
        /// Its size.
        size: u64,
    },
    /// The archive being read is not well-formed newc.
    #[error("malformed cpio archive at offset {offset}: {reason}")]
    Malformed {
        /// Byte offset of the record at fault.
        offset: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// zstd decompression failed or exceeded the size limit.
    #[error("cannot decompress the initramfs")]
    Decompress {
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// zstd failed.
    #[error("zstd compression of the initramfs failed")]
    Compress {
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Dir,
    File(Vec<u8>),
    Symlink(String),
}

#[derive(Debug, Clone)]
struct Node {
    mode: u32,
    kind: Kind,
    /// Added by the caller, not implied by a child.
    explicit: bool,
    /// Written after every other entry, this one the `n`th ([`CpioBuilder::add_file_last`]).
    last: Option<usize>,
}

/// Collects entries and writes them as one `newc` archive.
#[derive(Debug, Default, Clone)]
pub struct CpioBuilder {
    nodes: BTreeMap<String, Node>,
}

fn check_path(path: &str) -> Result<(), CpioError> {
    let bad = |reason| CpioError::Path {
        path: path.to_owned(),
        reason,
    };
    if path.is_empty() {
        return Err(bad("empty"));
    }
    if path.starts_with('/') {
        return Err(bad("absolute"));
    }
    if path.contains('\0') {
        return Err(bad("contains NUL"));
    }
    if path
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(bad("empty, . or .. component"));
    }
    Ok(())
}

impl CpioBuilder {
    /// An empty archive.
    pub fn new() -> Self {
        Self::default()
    }

    fn add(&mut self, path: &str, mode: u32, kind: Kind) -> Result<(), CpioError> {
        check_path(path)?;
        if mode & !0o7777 != 0 {
            return Err(CpioError::Mode {
                path: path.to_owned(),
                mode,
            });
        }
        // Parents become implicit directories; a parent that is not a directory is a clash.
        let mut end = 0;
        while let Some(i) = path[end..].find('/') {
            let parent = &path[..end + i];
            match self.nodes.get(parent) {
                Some(n) if n.kind != Kind::Dir => {
                    return Err(CpioError::Duplicate {
                        path: parent.to_owned(),
                    })
                }
                Some(_) => {}
                None => {
                    self.nodes.insert(
                        parent.to_owned(),
                        Node {
                            mode: 0o755,
                            kind: Kind::Dir,
                            explicit: false,
                            last: None,
                        },
                    );
                }
            }
            end += i + 1;
        }
        match self.nodes.get_mut(path) {
            Some(existing)
                if existing.kind == Kind::Dir && kind == Kind::Dir && !existing.explicit =>
            {
                existing.mode = mode;
                existing.explicit = true;
                Ok(())
            }
            Some(_) => Err(CpioError::Duplicate {
                path: path.to_owned(),
            }),
            None => {
                self.nodes.insert(
                    path.to_owned(),
                    Node {
                        mode,
                        kind,
                        explicit: true,
                        last: None,
                    },
                );
                Ok(())
            }
        }
    }

    /// Adds a directory with permission bits `mode`.
    pub fn add_dir(&mut self, path: &str, mode: u32) -> Result<(), CpioError> {
        self.add(path, mode, Kind::Dir)
    }

    /// Adds a regular file with permission bits `mode`.
    pub fn add_file(&mut self, path: &str, mode: u32, data: Vec<u8>) -> Result<(), CpioError> {
        if u32::try_from(data.len()).is_err() {
            return Err(CpioError::TooLarge {
                path: path.to_owned(),
                size: data.len() as u64,
            });
        }
        self.add(path, mode, Kind::File(data))
    }

    /// As [`CpioBuilder::add_file`], but written after every other entry (and after the
    /// files added this way before it): for what differs between two releases of a device.
    pub fn add_file_last(&mut self, path: &str, mode: u32, data: Vec<u8>) -> Result<(), CpioError> {
        self.add_file(path, mode, data)?;
        let n = self.nodes.values().filter(|n| n.last.is_some()).count();
        if let Some(node) = self.nodes.get_mut(path) {
            node.last = Some(n);
        }
        Ok(())
    }

    /// Adds a symbolic link (mode 0777) pointing at `target`.
    pub fn add_symlink(&mut self, path: &str, target: &str) -> Result<(), CpioError> {
        if target.is_empty() || target.contains('\0') {
            return Err(CpioError::Path {
                path: path.to_owned(),
                reason: "bad symlink target",
            });
        }
        self.add(path, 0o777, Kind::Symlink(target.to_owned()))
    }

    /// Writes the archive, every entry with modification time `mtime`.
    pub fn finish(&self, mtime: u32) -> Vec<u8> {
        let mut out = Vec::new();
        // Path order (a directory before its contents), then the files added last; their
        // directories are all in the first part.
        let mut last: Vec<_> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.last.is_some())
            .collect();
        last.sort_by_key(|(_, n)| n.last);
        let order = self
            .nodes
            .iter()
            .filter(|(_, n)| n.last.is_none())
            .chain(last);
        for (ino, (path, node)) in (1u32..).zip(order) {
            let (type_bits, nlink, data): (u32, u32, &[u8]) = match &node.kind {
                Kind::Dir => (S_IFDIR, 2, &[]),
                Kind::File(d) => (S_IFREG, 1, d),
                Kind::Symlink(t) => (S_IFLNK, 1, t.as_bytes()),
            };
            write_entry(
                &mut out,
                ino,
                type_bits | node.mode,
                nlink,
                mtime,
                path,
                data,
            );
        }
        write_entry(&mut out, 0, 0, 1, 0, "TRAILER!!!", &[]);
        out
    }
}

fn pad4(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

/// One `newc` record: 110-byte header, name + NUL padded to 4, data padded to 4.
fn write_entry(
    out: &mut Vec<u8>,
    ino: u32,
    mode: u32,
    nlink: u32,
    mtime: u32,
    name: &str,
    data: &[u8],
) {
    // Sizes were checked to fit u32 when added; names are far shorter.
    let size = u32::try_from(data.len()).unwrap_or(u32::MAX);
    let namesize = u32::try_from(name.len() + 1).unwrap_or(u32::MAX);
    let fields = [ino, mode, 0, 0, nlink, mtime, size, 0, 0, 0, 0, namesize, 0];
    out.extend_from_slice(b"070701");
    for f in fields {
        out.extend_from_slice(format!("{f:08x}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad4(out);
    out.extend_from_slice(data);
    pad4(out);
}

/// Compresses an archive for the kernel: zstd level [`ZSTD_LEVEL`], single-threaded, with
/// a checksum.
pub fn compress(cpio: &[u8]) -> Result<Vec<u8>, CpioError> {
    let run = || -> std::io::Result<Vec<u8>> {
        let mut enc = zstd::stream::Encoder::new(Vec::new(), ZSTD_LEVEL)?;
        enc.include_checksum(true)?;
        enc.include_contentsize(true)?;
        enc.set_pledged_src_size(Some(cpio.len() as u64))?;
        enc.write_all(cpio)?;
        enc.finish()
    };
    run().map_err(|source| CpioError::Compress { source })
}

/// Largest initramfs [`decompress`] agrees to produce.
pub const MAX_DECOMPRESSED: usize = 1 << 30;

/// Decompresses a zstd initramfs (one frame or several concatenated), refusing output
/// larger than [`MAX_DECOMPRESSED`].
pub fn decompress(compressed: &[u8]) -> Result<Vec<u8>, CpioError> {
    zstd::bulk::decompress(compressed, MAX_DECOMPRESSED)
        .map_err(|source| CpioError::Decompress { source })
}

/// One record of a `newc` archive, borrowed from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpioEntry<'a> {
    /// Path as stored (relative).
    pub path: &'a str,
    /// Type and permission bits.
    pub mode: u32,
    /// File contents, or the target of a symlink.
    pub data: &'a [u8],
}

/// Reads every record of a `newc` archive up to `TRAILER!!!`, bounds-checking each field.
/// Archives may follow one another, as the kernel unpacks them (a Limpet initramfs is two,
/// each compressed on its own): after a trailer, NUL padding is skipped and another
/// archive is read if bytes remain; the records of all of them are returned in order.
pub fn read_entries(archive: &[u8]) -> Result<Vec<CpioEntry<'_>>, CpioError> {
    let mut entries = Vec::new();
    let mut pos = 0usize;
    loop {
        let bad = |reason| CpioError::Malformed {
            offset: pos,
            reason,
        };
        let header = archive.get(pos..pos + 110).ok_or(bad("truncated header"))?;
        if &header[..6] != b"070701" {
            return Err(bad("not a newc record (magic 070701)"));
        }
        let field = |i: usize| -> Result<usize, CpioError> {
            let text = std::str::from_utf8(&header[6 + i * 8..14 + i * 8])
                .map_err(|_| bad("non-ASCII field"))?;
            let value = u32::from_str_radix(text, 16).map_err(|_| bad("non-hex field"))?;
            usize::try_from(value).map_err(|_| bad("field too large"))
        };
        let mode = u32::try_from(field(1)?).map_err(|_| bad("mode too large"))?;
        let size = field(6)?;
        let namesize = field(11)?;
        let name_start = pos + 110;
        let name_end = name_start
            .checked_add(namesize)
            .ok_or(bad("name size overflows"))?;
        let name = archive
            .get(name_start..name_end)
            .ok_or(bad("truncated name"))?;
        let name = name
            .strip_suffix(&[0])
            .ok_or(bad("name not NUL-terminated"))?;
        let name = std::str::from_utf8(name).map_err(|_| bad("name is not UTF-8"))?;
        let data_start = name_end.next_multiple_of(4);
        let data_end = data_start
            .checked_add(size)
            .ok_or(bad("file size overflows"))?;
        let data = archive
            .get(data_start..data_end)
            .ok_or(bad("truncated file data"))?;
        if name == "TRAILER!!!" {
            pos = data_end.next_multiple_of(4);
            while archive.get(pos) == Some(&0) {
                pos += 1;
            }
            if pos >= archive.len() {
                return Ok(entries);
            }
            continue;
        }
        entries.push(CpioEntry {
            path: name,
            mode,
            data,
        });
        pos = data_end.next_multiple_of(4);
    }
}

/// The contents of the regular file at `path` in a `newc` archive, if there is one: of
/// concatenated archives that both hold it, the later one's, which is what the kernel
/// leaves in its root file system (it writes the later file over the earlier).
pub fn find_file<'a>(archive: &'a [u8], path: &str) -> Option<&'a [u8]> {
    read_entries(archive)
        .ok()?
        .into_iter()
        .rfind(|e| e.path == path && e.mode & 0o170_000 == S_IFREG)
        .map(|e| e.data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_and_order() {
        let mut b = CpioBuilder::new();
        b.add_file("lib/modules/a.ko", 0o644, vec![1, 2, 3])
            .unwrap();
        b.add_file("init", 0o755, vec![0; 5]).unwrap();
        b.add_dir("lib", 0o700).unwrap();
        let names: Vec<_> = b.nodes.keys().cloned().collect();
        assert_eq!(names, ["init", "lib", "lib/modules", "lib/modules/a.ko"]);
        assert_eq!(b.nodes["lib"].mode, 0o700);
        assert!(matches!(
            b.add_file("init", 0o755, vec![]),
            Err(CpioError::Duplicate { .. })
        ));
        assert!(matches!(
            b.add_file("init/x", 0o755, vec![]),
            Err(CpioError::Duplicate { .. })
        ));
        assert!(matches!(
            b.add_file("../x", 0o755, vec![]),
            Err(CpioError::Path { .. })
        ));
        let a = b.finish(7);
        assert_eq!(a.len() % 4, 0);
        assert!(a.windows(10).any(|w| w == b"TRAILER!!!"));
    }

    #[test]
    fn reader_round_trips_the_writer_and_refuses_truncation() {
        let mut b = CpioBuilder::new();
        b.add_file("etc/limpet/image.pub", 0o444, b"key".to_vec())
            .unwrap();
        b.add_file("init", 0o555, vec![7; 13]).unwrap();
        let a = b.finish(1);
        let entries = read_entries(&a).unwrap();
        let paths: Vec<_> = entries.iter().map(|e| e.path).collect();
        assert_eq!(paths, ["etc", "etc/limpet", "etc/limpet/image.pub", "init"]);
        assert_eq!(find_file(&a, "etc/limpet/image.pub"), Some(&b"key"[..]));
        assert_eq!(find_file(&a, "etc"), None);
        for cut in [0, 5, 109, 115, a.len() - 20] {
            assert!(
                matches!(read_entries(&a[..cut]), Err(CpioError::Malformed { .. })),
                "cut at {cut}"
            );
        }
        let packed = compress(&a).unwrap();
        assert_eq!(decompress(&packed).unwrap(), a);
        // Files added last follow the rest, in the order added, their directories before.
        let mut b = CpioBuilder::new();
        b.add_file_last("init", 0o555, vec![1]).unwrap();
        b.add_file_last("etc/limpet/late", 0o444, vec![2]).unwrap();
        b.add_file("lib/x.ko", 0o444, vec![3]).unwrap();
        b.add_file("etc/limpet/image.pub", 0o444, vec![4]).unwrap();
        let a = b.finish(1);
        let entries = read_entries(&a).unwrap();
        let paths: Vec<_> = entries.iter().map(|e| e.path).collect();
        assert_eq!(
            paths,
            [
                "etc",
                "etc/limpet",
                "etc/limpet/image.pub",
                "lib",
                "lib/x.ko",
                "init",
                "etc/limpet/late"
            ]
        );
        assert_eq!(find_file(&a, "etc/limpet/late"), Some(&[2u8][..]));
        let packed = compress(&a).unwrap();
        assert_eq!(decompress(&packed).unwrap(), a);
        assert!(matches!(
            decompress(b"not zstd"),
            Err(CpioError::Decompress { .. })
        ));
    }

    #[test]
    fn concatenated_archives_read_as_the_kernel_unpacks_them() {
        let mut first = CpioBuilder::new();
        first.add_file("init", 0o555, vec![1; 5]).unwrap();
        let mut second = CpioBuilder::new();
        second
            .add_file(
                "etc/limpet/release",
                0o444,
                b"hello 0.2.0 (x86_64)\n".to_vec(),
            )
            .unwrap();
        let (a, b) = (first.finish(1), second.finish(1));
        // Each compressed on its own, concatenated: one decompression gives both.
        let mut packed = compress(&a).unwrap();
        packed.extend(compress(&b).unwrap());
        let raw = decompress(&packed).unwrap();
        assert_eq!(raw, [&a[..], &b[..]].concat());
        let paths: Vec<_> = read_entries(&raw).unwrap().iter().map(|e| e.path).collect();
        assert_eq!(paths, ["init", "etc", "etc/limpet", "etc/limpet/release"]);
        assert_eq!(
            find_file(&raw, "etc/limpet/release"),
            Some(&b"hello 0.2.0 (x86_64)\n"[..])
        );
        // A file in both archives: the later one is what the kernel leaves.
        let mut again = CpioBuilder::new();
        again.add_file("init", 0o555, vec![2; 3]).unwrap();
        let twice = [&a[..], &again.finish(1)[..]].concat();
        assert_eq!(find_file(&twice, "init"), Some(&[2u8; 3][..]));
        // NUL padding between archives is skipped, as the kernel skips it.
        let padded = [&a[..], &[0u8; 512][..], &b[..], &[0u8; 7][..]].concat();
        assert_eq!(read_entries(&padded).unwrap().len(), 4);
        // A second archive cut short, or junk after a trailer, is refused where it is.
        for bad in [
            [&a[..], &b[..b.len() - 20]].concat(),
            [&a[..], b"junk"].concat(),
        ] {
            match read_entries(&bad) {
                Err(CpioError::Malformed { offset, .. }) => assert!(offset >= a.len()),
                other => panic!("{other:?}"),
            }
        }
    }
}
