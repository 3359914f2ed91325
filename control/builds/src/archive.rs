//! Untrusted project archives: [`extract`] unpacks a `.tar.gz`, `.tar` or `.zip` (told apart
//! by their first bytes) into a fresh directory, and [`project_root`] finds the project in it.
//!
//! Only regular files and directories are accepted, with relative paths made of plain names:
//! `..`, absolute paths, symlinks, hard links and device files are refused with a
//! [`BuildError::Source`] naming the entry, before anything is written for it. Sizes are
//! enforced on the bytes actually unpacked (not on what headers claim), against
//! [`Limits::unpacked_bytes`] and [`Limits::archive_entries`], so that a compression bomb stops
//! at the limit. Since nothing but plain directories is ever created, no entry can make a later
//! one land outside the destination.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use crate::{BuildError, Limits};

/// Paths deeper than this are refused (no real project needs them).
const MAX_DEPTH: usize = 32;
/// Longer paths are refused.
const MAX_PATH: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    TarGz,
    Tar,
    Zip,
}

fn sniff(bytes: &[u8]) -> Option<Kind> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        Some(Kind::TarGz)
    } else if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") {
        Some(Kind::Zip)
    } else if bytes.len() >= 262 && &bytes[257..262] == b"ustar" {
        Some(Kind::Tar)
    } else {
        None
    }
}

fn source_err(msg: impl Into<String>) -> BuildError {
    BuildError::Source(msg.into())
}

/// Unpacks `bytes` into `dest` (an existing, empty directory) within `limits`.
pub(crate) fn extract(bytes: &[u8], dest: &Path, limits: &Limits) -> Result<(), BuildError> {
    let mut budget = Budget {
        bytes_left: limits.unpacked_bytes,
        entries_left: limits.archive_entries,
        limits,
    };
    match sniff(bytes) {
        Some(Kind::TarGz) => {
            // The decompressed stream is bounded too (tar headers and padding on top of the
            // files' bytes), so that a stream of zeros cannot run forever.
            let cap = limits
                .unpacked_bytes
                .saturating_add(u64::from(limits.archive_entries).saturating_mul(2048))
                .saturating_add(1 << 20);
            let gz = flate2::read::GzDecoder::new(bytes);
            extract_tar(
                Capped {
                    inner: gz,
                    left: cap,
                },
                dest,
                &mut budget,
            )
        }
        Some(Kind::Tar) => extract_tar(bytes, dest, &mut budget),
        Some(Kind::Zip) => extract_zip(bytes, dest, &mut budget),
        None => Err(source_err(
            "the archive is neither a .tar.gz, a .tar nor a .zip (unrecognized first bytes)",
        )),
    }
}

struct Budget<'a> {
    bytes_left: u64,
    entries_left: u32,
    limits: &'a Limits,
}

impl Budget<'_> {
    fn entry(&mut self) -> Result<(), BuildError> {
        if self.entries_left == 0 {
            return Err(source_err(format!(
                "the archive has more than {} entries",
                self.limits.archive_entries
            )));
        }
        self.entries_left -= 1;
        Ok(())
    }

    fn too_big(&self) -> BuildError {
        source_err(format!(
            "the archive unpacks to more than {} bytes",
            self.limits.unpacked_bytes
        ))
    }
}

/// A reader that fails once `left` bytes have been read.
struct Capped<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Err(io::Error::other(CAPPED));
        }
        let n = self.inner.read(buf)?;
        self.left = self.left.saturating_sub(n as u64);
        Ok(n)
    }
}

const CAPPED: &str = "the decompressed archive is larger than the limit";

/// The entry's path, checked: relative, plain names only, bounded. `None` for the archive's
/// root itself (`./`).
fn checked_path(raw: &str) -> Result<Option<PathBuf>, BuildError> {
    let shown = raw.escape_debug();
    if raw.len() > MAX_PATH {
        return Err(source_err(format!(
            "archive entry path longer than {MAX_PATH} bytes"
        )));
    }
    if raw.contains('\0') || raw.contains('\\') {
        return Err(source_err(format!(
            "archive entry \"{shown}\": NUL or backslash in the path"
        )));
    }
    let mut out = PathBuf::new();
    for c in Path::new(raw).components() {
        match c {
            Component::Normal(name) => out.push(name),
            Component::CurDir => {}
            Component::ParentDir => {
                return Err(source_err(format!(
                    "archive entry \"{shown}\": `..` in the path is not allowed"
                )))
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(source_err(format!(
                    "archive entry \"{shown}\": absolute paths are not allowed"
                )))
            }
        }
    }
    if out.components().count() > MAX_DEPTH {
        return Err(source_err(format!(
            "archive entry \"{shown}\": deeper than {MAX_DEPTH} directories"
        )));
    }
    Ok(if out.as_os_str().is_empty() {
        None
    } else {
        Some(out)
    })
}

/// macOS's resource forks, which zip tools add: skipped, not refused.
fn is_junk(rel: &Path) -> bool {
    rel.components()
        .next()
        .is_some_and(|c| c.as_os_str() == "__MACOSX")
}

fn make_dir(dest: &Path, rel: &Path) -> Result<(), BuildError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dest.join(rel))
        .map_err(|e| {
            source_err(format!(
                "archive entry \"{}\": cannot create the directory: {e}",
                rel.display()
            ))
        })
}

/// Writes one file from `data`, at most the remaining budget; `executable` keeps the x bit.
fn write_file(
    dest: &Path,
    rel: &Path,
    data: &mut dyn Read,
    executable: bool,
    budget: &mut Budget<'_>,
) -> Result<(), BuildError> {
    if let Some(parent) = rel.parent() {
        make_dir(dest, parent)?;
    }
    let shown = rel.display();
    let path = dest.join(rel);
    // A directory of the same name (from an earlier entry) is an error; a file is replaced.
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if executable { 0o755 } else { 0o644 })
        .open(&path)
        .map_err(|e| source_err(format!("archive entry \"{shown}\": cannot write it: {e}")))?;
    let mut limited = data.take(budget.bytes_left.saturating_add(1));
    let mut buf = vec![0u8; 64 << 10];
    let mut written: u64 = 0;
    loop {
        let n = match limited.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.to_string().contains(CAPPED) => return Err(budget.too_big()),
            Err(e) => {
                return Err(source_err(format!(
                    "archive entry \"{shown}\": cannot read it: {e}"
                )))
            }
        };
        written += n as u64;
        if written > budget.bytes_left {
            return Err(budget.too_big());
        }
        f.write_all(&buf[..n])
            .map_err(|e| BuildError::Sandbox(format!("unpacking {}: {e}", path.display())))?;
    }
    budget.bytes_left -= written;
    Ok(())
}

fn extract_tar<R: Read>(reader: R, dest: &Path, budget: &mut Budget<'_>) -> Result<(), BuildError> {
    let mut archive = tar::Archive::new(reader);
    let bad = |e: io::Error| {
        if e.to_string().contains(CAPPED) {
            source_err(format!(
                "the archive unpacks to more than {} bytes",
                budget.limits.unpacked_bytes
            ))
        } else {
            source_err(format!("not a valid tar archive: {e}"))
        }
    };
    let entries = archive.entries().map_err(bad)?;
    for entry in entries {
        let mut entry = entry.map_err(bad)?;
        budget.entry()?;
        let raw = entry.path_bytes();
        let raw = String::from_utf8_lossy(&raw).into_owned();
        let kind = entry.header().entry_type();
        use tar::EntryType as T;
        match kind {
            // Metadata the tar crate has already applied, or that changes nothing here.
            T::XGlobalHeader | T::XHeader | T::GNULongName | T::GNULongLink => continue,
            T::Regular | T::Continuous | T::Directory => {}
            T::Symlink | T::Link => {
                return Err(source_err(format!(
                    "archive entry \"{}\": symbolic and hard links are not allowed",
                    raw.escape_debug()
                )))
            }
            _ => {
                return Err(source_err(format!(
                    "archive entry \"{}\": only regular files and directories are allowed",
                    raw.escape_debug()
                )))
            }
        }
        let Some(rel) = checked_path(&raw)? else {
            continue;
        };
        if is_junk(&rel) {
            continue;
        }
        if kind == T::Directory {
            make_dir(dest, &rel)?;
        } else {
            let declared = entry.header().size().unwrap_or(u64::MAX);
            if declared > budget.bytes_left {
                return Err(budget.too_big());
            }
            let executable = entry.header().mode().is_ok_and(|m| m & 0o111 != 0);
            write_file(dest, &rel, &mut entry, executable, budget)?;
        }
    }
    Ok(())
}

fn extract_zip(bytes: &[u8], dest: &Path, budget: &mut Budget<'_>) -> Result<(), BuildError> {
    let mut archive = zip::ZipArchive::new(io::Cursor::new(bytes))
        .map_err(|e| source_err(format!("not a valid zip archive: {e}")))?;
    if archive.len() > budget.entries_left as usize {
        return Err(source_err(format!(
            "the archive has more than {} entries",
            budget.limits.archive_entries
        )));
    }
    for i in 0..archive.len() {
        budget.entry()?;
        let mut file = archive
            .by_index(i)
            .map_err(|e| source_err(format!("zip entry {i}: {e}")))?;
        let raw = String::from_utf8_lossy(file.name_raw()).into_owned();
        if file.is_symlink() {
            return Err(source_err(format!(
                "archive entry \"{}\": symbolic links are not allowed",
                raw.escape_debug()
            )));
        }
        // Only files and directories: the Unix mode, when present, must say so.
        if let Some(mode) = file.unix_mode() {
            let fmt = mode & 0o170000;
            if fmt != 0 && fmt != 0o100000 && fmt != 0o040000 {
                return Err(source_err(format!(
                    "archive entry \"{}\": only regular files and directories are allowed",
                    raw.escape_debug()
                )));
            }
        }
        let Some(rel) = checked_path(&raw)? else {
            continue;
        };
        if is_junk(&rel) {
            continue;
        }
        if file.is_dir() {
            make_dir(dest, &rel)?;
        } else {
            if file.size() > budget.bytes_left {
                return Err(budget.too_big());
            }
            let executable = file.unix_mode().is_some_and(|m| m & 0o111 != 0);
            write_file(dest, &rel, &mut file, executable, budget)?;
        }
    }
    Ok(())
}

/// The project's directory: `dir` itself, or, while `dir` holds nothing but one directory,
/// that directory (archives made with `tar czf p.tgz project/` or GitHub's zips).
pub(crate) fn project_root(dir: &Path) -> Result<PathBuf, BuildError> {
    let mut root = dir.to_path_buf();
    for _ in 0..4 {
        let entries: Vec<fs::DirEntry> = fs::read_dir(&root)
            .map_err(|e| BuildError::Sandbox(format!("reading {}: {e}", root.display())))?
            .collect::<Result<_, _>>()
            .map_err(|e| BuildError::Sandbox(format!("reading {}: {e}", root.display())))?;
        match entries.as_slice() {
            [] => return Err(source_err("the archive is empty")),
            [only] if only.file_type().is_ok_and(|t| t.is_dir()) => root = only.path(),
            _ => break,
        }
    }
    Ok(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "fnvm-builds-archive-test-{}-{name}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    /// A tar entry with any path and type, bypassing the tar crate's own path checks (which
    /// would refuse to write the malicious entries we test).
    fn raw_tar_entry(out: &mut Vec<u8>, path: &str, kind: tar::EntryType, data: &[u8]) {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        {
            let old = h.as_old_mut();
            old.name = [0; 100];
            old.name[..path.len()].copy_from_slice(path.as_bytes());
            if kind == tar::EntryType::Symlink {
                old.linkname[..4].copy_from_slice(b"/etc");
            }
        }
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }

    fn tar_gz(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
        let mut raw = Vec::new();
        for (p, k, d) in entries {
            raw_tar_entry(&mut raw, p, *k, d);
        }
        raw.extend_from_slice(&[0; 1024]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&raw).unwrap();
        gz.finish().unwrap()
    }

    fn refused(bytes: &[u8], limits: &Limits, what: &str) {
        let d = tmp(what);
        match extract(bytes, &d, limits) {
            Err(BuildError::Source(msg)) => assert!(msg.contains(what), "{msg}"),
            other => panic!("expected a Source error about {what}, got {other:?}"),
        }
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn good_tar_gz_unpacks_and_finds_the_project() {
        use tar::EntryType as T;
        let bytes = tar_gz(&[
            ("p/", T::Directory, b""),
            ("p/Cargo.toml", T::Regular, b"[package]"),
            ("./p/src/main.rs", T::Regular, b"fn main() {}"),
        ]);
        let d = tmp("good");
        extract(&bytes, &d, &Limits::default()).unwrap();
        let root = project_root(&d).unwrap();
        assert_eq!(root, d.join("p"));
        assert_eq!(
            fs::read_to_string(root.join("src/main.rs")).unwrap(),
            "fn main() {}"
        );
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn dangerous_tar_entries_are_refused() {
        use tar::EntryType as T;
        let l = Limits::default();
        refused(&tar_gz(&[("../evil", T::Regular, b"x")]), &l, "`..`");
        refused(&tar_gz(&[("a/../../evil", T::Regular, b"x")]), &l, "`..`");
        refused(&tar_gz(&[("/etc/evil", T::Regular, b"x")]), &l, "absolute");
        refused(&tar_gz(&[("link", T::Symlink, b"")]), &l, "links");
        refused(&tar_gz(&[("hard", T::Link, b"")]), &l, "links");
        refused(&tar_gz(&[("dev", T::Char, b"")]), &l, "only regular files");
        refused(&tar_gz(&[("fifo", T::Fifo, b"")]), &l, "only regular files");
        refused(b"not an archive at all", &l, "unrecognized");
    }

    #[test]
    fn tar_bombs_are_refused() {
        use tar::EntryType as T;
        // Many entries.
        let many: Vec<(String, T, &[u8])> = (0..20)
            .map(|i| (format!("f{i}"), T::Regular, &b"x"[..]))
            .collect();
        let many: Vec<(&str, T, &[u8])> =
            many.iter().map(|(p, k, d)| (p.as_str(), *k, *d)).collect();
        let l = Limits {
            archive_entries: 10,
            ..Limits::default()
        };
        refused(&tar_gz(&many), &l, "more than 10 entries");
        // One huge file of zeros: a few KiB compressed, 8 MiB unpacked.
        let zeros = vec![0u8; 8 << 20];
        let bomb = tar_gz(&[("zeros", T::Regular, &zeros)]);
        assert!(bomb.len() < 64 << 10);
        let l = Limits {
            unpacked_bytes: 1 << 20,
            ..Limits::default()
        };
        refused(&bomb, &l, "more than 1048576 bytes");
    }

    fn zip_with(f: impl FnOnce(&mut zip::ZipWriter<io::Cursor<Vec<u8>>>)) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
        f(&mut w);
        w.finish().unwrap().into_inner()
    }

    #[test]
    fn zips_unpack_and_dangerous_ones_are_refused() {
        let opts = || {
            zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated)
        };
        let good = zip_with(|w| {
            w.start_file("go.mod", opts()).unwrap();
            w.write_all(b"module x\n").unwrap();
            w.start_file("__MACOSX/._go.mod", opts()).unwrap();
            w.write_all(b"junk").unwrap();
        });
        let d = tmp("zipgood");
        extract(&good, &d, &Limits::default()).unwrap();
        assert_eq!(fs::read_to_string(d.join("go.mod")).unwrap(), "module x\n");
        assert!(!d.join("__MACOSX").exists());
        let _ = fs::remove_dir_all(&d);

        let l = Limits::default();
        let evil = zip_with(|w| {
            w.start_file("../../evil", opts()).unwrap();
            w.write_all(b"x").unwrap();
        });
        refused(&evil, &l, "`..`");
        let evil = zip_with(|w| {
            w.start_file("/abs", opts()).unwrap();
            w.write_all(b"x").unwrap();
        });
        refused(&evil, &l, "absolute");
        let evil = zip_with(|w| {
            w.add_symlink("link", "/etc/passwd", opts()).unwrap();
        });
        refused(&evil, &l, "symbolic links");
        let bomb = zip_with(|w| {
            w.start_file("zeros", opts()).unwrap();
            w.write_all(&vec![0u8; 4 << 20]).unwrap();
        });
        let small = Limits {
            unpacked_bytes: 1 << 20,
            ..Limits::default()
        };
        refused(&bomb, &small, "more than 1048576 bytes");
    }
}
