//! Small file-system helpers shared by the commands: atomic writes (an
//! interrupted run never leaves a half-written file behind), a manifest of
//! the files the tool wrote (so that it only ever deletes those), an
//! exclusive lock on a directory (so that concurrent runs do not interleave
//! their writes), and the rule for directories the tool may write into.
//!
//! Must not: delete a file that is not in a manifest with the content it was
//! written with, or remove a directory that is not empty.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

/// Largest local input file we read (config, certificates, keys): far more
/// than any real one, small enough that a wrong path (`/dev/zero`, a disk
/// image) is refused instead of read forever.
pub const MAX_INPUT_BYTES: u64 = 1 << 20;

/// Reads a small regular file as text: refuses anything that is not a
/// regular file (a device, a FIFO, a directory) or is over
/// [`MAX_INPUT_BYTES`], without reading it.
pub fn read_small_text(path: &Path) -> io::Result<String> {
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("it is not a regular file (a {})", file_kind(&meta)),
        ));
    }
    if meta.len() > MAX_INPUT_BYTES {
        return Err(too_big());
    }
    let mut text = String::new();
    File::open(path)?
        .take(MAX_INPUT_BYTES + 1)
        .read_to_string(&mut text)?;
    if text.len() as u64 > MAX_INPUT_BYTES {
        return Err(too_big());
    }
    Ok(text)
}

fn too_big() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("it is larger than {} KiB", MAX_INPUT_BYTES / 1024),
    )
}

fn file_kind(meta: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_dir() {
        "directory"
    } else if t.is_char_device() {
        "character device"
    } else if t.is_block_device() {
        "block device"
    } else if t.is_fifo() {
        "named pipe"
    } else if t.is_socket() {
        "socket"
    } else {
        "special file"
    }
}

/// Writes `bytes` to `path` through a temporary file in the same directory
/// and a rename; `mode` applies to the new file. Unchanged files are not
/// rewritten (their mtime stays, and nothing is written at all).
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    if let Ok(existing) = std::fs::read(path)
        && existing == bytes
    {
        let perms = std::fs::metadata(path)?.permissions();
        if perms.mode() & 0o777 != mode {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
        }
        return Ok(());
    }
    Staged::new(path, bytes, mode)?.rename_into_place()
}

/// [`write_atomic`] for many files at once, with the same guarantees for
/// each (written and synced before it replaces its destination, the rename
/// made durable), but the syncs of all the files run concurrently and each
/// directory is synced once, after all its renames: a file system commits
/// concurrent syncs together, where one sync after another waits for the
/// disk each time (a `plan` of 100 zones writes about 2,000 files). Stops
/// at the first error; files placed before it stay (each is complete).
pub fn write_all_atomic(files: &[(PathBuf, Vec<u8>, u32)]) -> Result<(), (PathBuf, io::Error)> {
    let mut staged = Vec::new();
    for (path, bytes, mode) in files {
        if let Ok(existing) = std::fs::read(path)
            && existing == *bytes
        {
            let perms = std::fs::metadata(path)
                .map_err(|e| (path.clone(), e))?
                .permissions();
            if perms.mode() & 0o777 != *mode {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(*mode))
                    .map_err(|e| (path.clone(), e))?;
            }
            continue;
        }
        let (staged_file, file) =
            Staged::create(path, bytes, *mode).map_err(|e| (path.clone(), e))?;
        staged.push((staged_file, file));
    }
    let threads = std::thread::available_parallelism()
        .map_or(4, |n| n.get())
        .clamp(4, 16);
    let chunk = staged.len().div_ceil(threads).max(1);
    let synced: Vec<Result<(), (PathBuf, io::Error)>> = std::thread::scope(|scope| {
        let workers: Vec<_> = staged
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    for (s, file) in part {
                        file.sync_all().map_err(|e| (s.dest.clone(), e))?;
                    }
                    Ok(())
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    synced.into_iter().collect::<Result<(), _>>()?;
    let mut dirs = std::collections::BTreeSet::new();
    for (mut s, _) in staged {
        std::fs::rename(&s.tmp, &s.dest).map_err(|e| (s.dest.clone(), e))?;
        s.placed = true;
        dirs.insert(parent_dir(&s.dest).to_path_buf());
    }
    for dir in dirs {
        sync_dir(&dir);
    }
    Ok(())
}

/// A file written and synced next to its destination (`.NAME.tmp-PID`), then
/// put into place by [`Staged::rename_into_place`] or
/// [`Staged::link_into_place`]; removed if dropped before that. Staging
/// every file of a set before placing any is how several files are written
/// so that an interruption never leaves a half-written one.
pub struct Staged {
    tmp: PathBuf,
    dest: PathBuf,
    placed: bool,
}

impl Staged {
    /// Writes `bytes` to a new temporary file beside `dest`, with `mode`
    /// (whatever the umask), and syncs it.
    pub fn new(dest: &Path, bytes: &[u8], mode: u32) -> io::Result<Staged> {
        let (staged, file) = Staged::create(dest, bytes, mode)?;
        file.sync_all()?;
        Ok(staged)
    }

    /// Writes the temporary file without syncing it; the caller syncs the
    /// file returned before placing it.
    fn create(dest: &Path, bytes: &[u8], mode: u32) -> io::Result<(Staged, File)> {
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = parent_dir(dest).join(format!(".{name}.tmp-{}", std::process::id()));
        // A leftover from an interrupted run with the same pid.
        let _ = std::fs::remove_file(&tmp);
        let staged = Staged {
            tmp,
            dest: dest.to_path_buf(),
            placed: false,
        };
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&staged.tmp)?;
        std::fs::set_permissions(&staged.tmp, std::fs::Permissions::from_mode(mode))?;
        file.write_all(bytes)?;
        Ok((staged, file))
    }

    /// Renames the file over its destination (replacing what is there) and
    /// makes the rename durable.
    pub fn rename_into_place(mut self) -> io::Result<()> {
        std::fs::rename(&self.tmp, &self.dest)?;
        self.placed = true;
        sync_dir(parent_dir(&self.dest));
        Ok(())
    }

    /// Hard-links the file to its destination, which fails with
    /// [`io::ErrorKind::AlreadyExists`] if the name exists (even as a
    /// dangling symlink): never replaces a file. The staged name is removed.
    pub fn link_into_place(self) -> io::Result<()> {
        std::fs::hard_link(&self.tmp, &self.dest)?;
        sync_dir(parent_dir(&self.dest));
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.placed {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// The directory a file is in (`.` for a bare name).
fn parent_dir(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Best effort: a directory's entries (a rename, a new link) reach the disk.
fn sync_dir(dir: &Path) {
    if let Ok(dir) = File::open(dir) {
        let _ = dir.sync_all();
    }
}

/// An absolute path with symlinks resolved as far as the path exists and
/// `..` resolved lexically beyond that.
pub fn resolve(path: &Path) -> PathBuf {
    let path = if path.as_os_str().is_empty() {
        Path::new(".")
    } else {
        path
    };
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut out = PathBuf::new();
    for component in absolute.components() {
        match component {
            Component::Prefix(_) | Component::RootDir => out.push(component),
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(name) => {
                out.push(name);
                if let Ok(real) = out.canonicalize() {
                    out = real;
                }
            }
        }
    }
    out
}

/// Why `dir` must not be a directory the tool writes into and may purge, or
/// `None` if it may: it must not be (or contain) the config file's directory
/// `config_dir`, the root of the repository the current directory is in, or
/// any directory holding `.git`.
pub fn unsafe_output_dir(dir: &Path, config_dir: &Path) -> Option<String> {
    let dir = resolve(dir);
    let config_dir = resolve(config_dir);
    if config_dir.starts_with(&dir) {
        return Some(if config_dir == dir {
            "it is the config file's directory".to_string()
        } else {
            format!(
                "it contains the config file's directory {}",
                config_dir.display()
            )
        });
    }
    if let Ok(cwd) = std::env::current_dir()
        && let Some(root) = repository_root(&resolve(&cwd))
        && root.starts_with(&dir)
    {
        return Some(format!(
            "it is or contains the repository {} (the current directory's)",
            root.display()
        ));
    }
    if dir.join(".git").symlink_metadata().is_ok() {
        return Some("it holds a repository (.git)".to_string());
    }
    None
}

/// The nearest ancestor of `dir` (itself included) holding `.git`.
fn repository_root(dir: &Path) -> Option<PathBuf> {
    dir.ancestors()
        .find(|d| d.join(".git").symlink_metadata().is_ok())
        .map(Path::to_path_buf)
}

/// An exclusive lock on a directory, held until dropped (the lock is an
/// `flock` on the directory itself, so no lock file is left behind and a
/// killed process releases it).
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

/// How long [`lock_dir`] waits for another run to finish with a directory.
pub const LOCK_WAIT: Duration = Duration::from_secs(120);

/// Takes the exclusive lock on `dir` (which must exist), waiting at most
/// `wait` for another run that holds it; `on_wait` is called once if it has
/// to wait.
pub fn lock_dir(dir: &Path, wait: Duration, on_wait: impl FnOnce()) -> io::Result<DirLock> {
    let file = File::open(dir)?;
    let deadline = Instant::now() + wait;
    let mut on_wait = Some(on_wait);
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(DirLock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => {
                if let Some(f) = on_wait.take() {
                    f();
                }
                if Instant::now() >= deadline {
                    return Err(io::Error::new(
                        io::ErrorKind::WouldBlock,
                        format!(
                            "another crdb-multiregion run still holds its lock after {}s; \
                             wait for it to finish and re-run",
                            wait.as_secs()
                        ),
                    ));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        }
    }
}

/// File name of the manifest kept in every directory the tool writes into.
pub const MANIFEST_FILE: &str = ".crdb-multiregion-files";

/// The files the tool wrote under one directory, with the SHA-256 of the
/// content it wrote. A file counts as ours only while it still has that
/// content: a file the user edited, replaced or put there is never deleted.
///
/// Stored as `<sha256 hex>  <path>` lines (the `sha256sum` format), paths
/// relative to the directory, or absolute for a file outside it (the CA key).
#[derive(Debug)]
pub struct Manifest {
    dir: PathBuf,
    entries: BTreeMap<PathBuf, String>,
}

/// What [`Manifest::purge`] did.
#[derive(Debug, Default)]
pub struct Purged {
    /// Files and directories deleted.
    pub removed: Vec<PathBuf>,
    /// Left in place, with the reason.
    pub kept: Vec<(PathBuf, String)>,
}

impl Manifest {
    /// The manifest of `dir`; empty when there is none yet.
    pub fn load(dir: &Path) -> io::Result<Manifest> {
        let mut entries = BTreeMap::new();
        match read_small_text(&dir.join(MANIFEST_FILE)) {
            Ok(text) => {
                for line in text.lines() {
                    if let Some((hash, path)) = line.split_once("  ")
                        && hash.len() == 64
                        && hash.bytes().all(|b| b.is_ascii_hexdigit())
                        && !path.is_empty()
                    {
                        entries.insert(PathBuf::from(path), hash.to_ascii_lowercase());
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        Ok(Manifest {
            dir: dir.to_path_buf(),
            entries,
        })
    }

    fn key(&self, path: &Path) -> PathBuf {
        match path.strip_prefix(&self.dir) {
            Ok(rel) if !rel.as_os_str().is_empty() => rel.to_path_buf(),
            _ => std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()),
        }
    }

    fn full(&self, key: &Path) -> PathBuf {
        self.dir.join(key)
    }

    /// Records that the tool wrote `bytes` to `path`.
    pub fn record(&mut self, path: &Path, bytes: &[u8]) {
        let key = self.key(path);
        // A name the line format cannot hold is simply not recorded (so never purged).
        if key.to_str().is_some_and(|s| !s.contains(['\n', '\r'])) {
            self.entries.insert(key, sha256_hex(bytes));
        }
    }

    /// Whether `path` is a file the tool wrote and nobody changed since.
    pub fn is_ours(&self, path: &Path) -> bool {
        let key = self.key(path);
        let Some(hash) = self.entries.get(&key) else {
            return false;
        };
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.is_file() => std::fs::read(path).is_ok_and(|b| &sha256_hex(&b) == hash),
            _ => false,
        }
    }

    /// Forgets `path` (after it was deleted).
    pub fn forget(&mut self, path: &Path) {
        let key = self.key(path);
        self.entries.remove(&key);
    }

    /// Writes the manifest (0600: it names key files).
    pub fn save(&self) -> io::Result<()> {
        let mut text = String::new();
        for (path, hash) in &self.entries {
            if let Some(p) = path.to_str() {
                text.push_str(&format!("{hash}  {p}\n"));
            }
        }
        write_atomic(&self.dir.join(MANIFEST_FILE), text.as_bytes(), 0o600)
    }

    /// Deletes every recorded file that still has the content the tool
    /// wrote, then the manifest, then each directory on the way to those
    /// files that is now empty. Anything else stays.
    pub fn purge(self) -> io::Result<Purged> {
        let mut out = Purged::default();
        let mut dirs = Vec::new();
        for key in self.entries.keys() {
            let path = self.full(key);
            match std::fs::symlink_metadata(&path) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
                Ok(_) if !self.is_ours(&path) => {
                    out.kept
                        .push((path, "changed since crdb-multiregion wrote it".into()));
                    continue;
                }
                Ok(_) => {}
            }
            std::fs::remove_file(&path)?;
            out.removed.push(path.clone());
            // Parents up to (and including) the manifest's directory; for a
            // file outside it (the CA key), only its own directory.
            let mut parent = path.parent();
            while let Some(p) = parent {
                if p.as_os_str().is_empty() {
                    break;
                }
                dirs.push(p.to_path_buf());
                if !key.is_relative() || p == self.dir {
                    break;
                }
                parent = p.parent();
            }
        }
        let manifest = self.dir.join(MANIFEST_FILE);
        if manifest.exists() {
            std::fs::remove_file(&manifest)?;
        }
        dirs.push(self.dir.clone());
        // Deepest first; only empty ones go.
        dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        dirs.dedup();
        for d in dirs {
            if std::fs::remove_dir(&d).is_ok() {
                out.removed.push(d);
            }
        }
        Ok(out)
    }
}

/// SHA-256 of `bytes`, lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_all_atomic_places_every_file_with_its_mode_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.yaml");
        let sub = dir.path().join("z");
        std::fs::create_dir(&sub).unwrap();
        let b = sub.join("b.key");
        std::fs::write(&a, "old").unwrap();
        let files: Vec<(PathBuf, Vec<u8>, u32)> = vec![
            (a.clone(), b"new".to_vec(), 0o644),
            (b.clone(), b"secret".to_vec(), 0o600),
        ];
        write_all_atomic(&files).unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), b"new");
        assert_eq!(std::fs::read(&b).unwrap(), b"secret");
        assert_eq!(
            std::fs::metadata(&b).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // Unchanged content is not rewritten; only the mode is corrected.
        let before = std::fs::metadata(&a).unwrap().modified().unwrap();
        let files = vec![(a.clone(), b"new".to_vec(), 0o600)];
        write_all_atomic(&files).unwrap();
        assert_eq!(std::fs::metadata(&a).unwrap().modified().unwrap(), before);
        assert_eq!(
            std::fs::metadata(&a).unwrap().permissions().mode() & 0o777,
            0o600
        );
        for d in [dir.path(), sub.as_path()] {
            let leftovers: Vec<_> = std::fs::read_dir(d)
                .unwrap()
                .filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
                .collect();
            assert!(leftovers.is_empty(), "{leftovers:?}");
        }
        // A destination that cannot be written names its path.
        let missing = dir.path().join("no-such-dir").join("c");
        let (path, _) = write_all_atomic(&[(missing.clone(), b"x".to_vec(), 0o644)]).unwrap_err();
        assert_eq!(path, missing);
    }

    #[test]
    fn purge_deletes_only_recorded_unchanged_files_and_empty_dirs() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("out");
        std::fs::create_dir_all(dir.join("a")).unwrap();
        std::fs::create_dir_all(dir.join("b")).unwrap();
        let mut m = Manifest::load(&dir).unwrap();
        for (rel, text) in [("a/1.yaml", "one"), ("a/2.yaml", "two"), ("b/3.yaml", "3")] {
            std::fs::write(dir.join(rel), text).unwrap();
            m.record(&dir.join(rel), text.as_bytes());
        }
        m.save().unwrap();
        std::fs::write(dir.join("a/2.yaml"), "edited").unwrap();
        std::fs::write(dir.join("b/mine.txt"), "user").unwrap();

        let m = Manifest::load(&dir).unwrap();
        assert!(m.is_ours(&dir.join("a/1.yaml")));
        assert!(!m.is_ours(&dir.join("a/2.yaml")));
        assert!(!m.is_ours(&dir.join("b/mine.txt")));
        let purged = m.purge().unwrap();
        assert!(!dir.join("a/1.yaml").exists());
        assert!(!dir.join("b/3.yaml").exists());
        assert_eq!(
            std::fs::read_to_string(dir.join("a/2.yaml")).unwrap(),
            "edited"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("b/mine.txt")).unwrap(),
            "user"
        );
        assert_eq!(purged.kept.len(), 1);
        assert!(dir.exists() && dir.join("a").exists() && dir.join("b").exists());
    }

    #[test]
    fn purge_of_a_fully_owned_tree_removes_it() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("out");
        std::fs::create_dir_all(dir.join("z")).unwrap();
        let mut m = Manifest::load(&dir).unwrap();
        std::fs::write(dir.join("z/f"), "x").unwrap();
        m.record(&dir.join("z/f"), b"x");
        m.save().unwrap();
        Manifest::load(&dir).unwrap().purge().unwrap();
        assert!(!dir.exists());
        assert!(tmp.path().exists());
    }

    #[test]
    fn read_small_text_refuses_devices_and_large_files() {
        let err = read_small_text(Path::new("/dev/zero")).unwrap_err();
        assert!(err.to_string().contains("character device"), "{err}");
        let tmp = tempfile::tempdir().unwrap();
        let big = tmp.path().join("big");
        std::fs::write(&big, vec![b'a'; MAX_INPUT_BYTES as usize + 1]).unwrap();
        assert!(
            read_small_text(&big)
                .unwrap_err()
                .to_string()
                .contains("larger")
        );
    }

    #[test]
    fn a_second_lock_waits_and_then_gives_up() {
        let tmp = tempfile::tempdir().unwrap();
        let held = lock_dir(tmp.path(), Duration::ZERO, || {}).unwrap();
        let mut waited = false;
        let err = lock_dir(tmp.path(), Duration::ZERO, || waited = true).unwrap_err();
        assert!(waited);
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        drop(held);
        lock_dir(tmp.path(), Duration::ZERO, || {}).unwrap();
    }
}
