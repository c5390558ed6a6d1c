//! Small file-system helpers shared by the commands: atomic writes (an
//! interrupted run never leaves a half-written file behind), a manifest of
//! the files the tool wrote (so that it only ever deletes those), an
//! exclusive lock on a directory (so that concurrent runs do not interleave
//! their writes), and the rule for directories the tool may write into.
//!
//! Must not: delete a file that is not in a manifest with the content it was
//! written with, or remove a directory that is not empty.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
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
    if let Some(current) = mode_if_holds(path, bytes) {
        if current != mode {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
        }
        return Ok(());
    }
    Staged::new(path, bytes, mode)?.rename_into_place()
}

/// Whether a batch of files must survive a crash of the machine (power
/// loss, kernel panic) right after it was written. Either way a file is
/// written to a temporary name and renamed into place, so a run that is
/// killed or fails never leaves a half-written file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Each file is synced before it replaces its destination, and each
    /// directory after its renames: what is in place when the call returns
    /// survives a crash. For what cannot be made again: keys, certificates,
    /// manifests of what the tool owns.
    Synced,
    /// No sync: after a crash of the machine within the file system's
    /// writeback delay (about 30 s on Linux), a file placed in that window
    /// can be missing, the previous version, empty, or (on some file
    /// systems) cut short. For files the next run makes again from its
    /// inputs and rewrites whenever they differ byte for byte (the
    /// generated manifests).
    Unsynced,
}

/// What [`write_all_atomic`] did.
#[derive(Debug)]
pub struct Written {
    /// Per file of the batch, in order: whether it now holds the bytes
    /// asked for (placed by this call, or already there).
    pub in_place: Vec<bool>,
    /// The names each directory of the batch held before the call, for the
    /// directories that could be listed.
    pub listed: BTreeMap<PathBuf, BTreeSet<OsString>>,
    /// The first error, with the file it concerns; files placed before it
    /// stay (each is complete).
    pub error: Option<(PathBuf, io::Error)>,
}

/// Writes each `(path, bytes, mode)` through a temporary file in its
/// directory and a rename; `mode` applies whatever the umask. A file that
/// already holds `bytes` is not rewritten (its mtime stays; only a wrong
/// mode is corrected). Each directory is listed once, so a file that is not
/// there is not read; the files are staged on several threads, each
/// closed as soon as it is written (a batch of thousands never holds
/// thousands of descriptors). With [`Durability::Synced`] the syncs run
/// concurrently and each directory is synced once, after all its renames:
/// a file system commits concurrent syncs together, where one sync after
/// another waits for the disk each time. Nothing is renamed unless every
/// file was staged; then the renames run in the order given, up to the
/// first that fails.
pub fn write_all_atomic(files: &[(PathBuf, Vec<u8>, u32)], durability: Durability) -> Written {
    let mut listed = BTreeMap::new();
    for (path, _, _) in files {
        let dir = parent_dir(path);
        if !listed.contains_key(dir)
            && let Ok(names) = list_names(dir)
        {
            listed.insert(dir.to_path_buf(), names);
        }
    }
    let may_exist = |path: &Path| match (listed.get(parent_dir(path)), path.file_name()) {
        (Some(names), Some(name)) => names.contains(name),
        _ => true,
    };
    let sync = durability == Durability::Synced;
    // Per file: `Ok(None)` when it already holds its bytes, `Ok(Some(_))`
    // when staged.
    let outcomes: Vec<io::Result<Option<Staged>>> = concurrently(files, |(path, bytes, mode)| {
        if may_exist(path)
            && let Some(current) = mode_if_holds(path, bytes)
        {
            if current != *mode {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(*mode))?;
            }
            return Ok(None);
        }
        let (staged, file) = Staged::create(path, bytes, *mode)?;
        if sync {
            file.sync_all()?;
        }
        Ok(Some(staged))
    });
    let mut in_place = vec![false; files.len()];
    let mut staged = Vec::new();
    let mut error = None;
    for (i, outcome) in outcomes.into_iter().enumerate() {
        match outcome {
            Ok(None) => in_place[i] = true,
            Ok(Some(s)) => staged.push((i, s)),
            Err(e) => {
                if error.is_none() {
                    error = Some((files[i].0.clone(), e));
                }
            }
        }
    }
    if error.is_some() {
        // Dropping the staged files removes them.
        return Written {
            in_place,
            listed,
            error,
        };
    }
    let mut dirs = BTreeSet::new();
    for (i, mut s) in staged {
        if let Err(e) = std::fs::rename(&s.tmp, &s.dest) {
            error = Some((s.dest.clone(), e));
            break;
        }
        s.placed = true;
        in_place[i] = true;
        if sync {
            dirs.insert(parent_dir(&s.dest).to_path_buf());
        }
    }
    let dirs: Vec<PathBuf> = dirs.into_iter().collect();
    concurrently(&dirs, |dir| {
        sync_dir(dir);
    });
    Written {
        in_place,
        listed,
        error,
    }
}

/// `f` of every item, in order, computed on a few threads (each takes a
/// contiguous run of the items, so files of one directory mostly stay on
/// one thread).
fn concurrently<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    if items.len() < 2 {
        return items.iter().map(&f).collect();
    }
    let threads = std::thread::available_parallelism()
        .map_or(4, |n| n.get())
        .clamp(4, 16);
    let chunk = items.len().div_ceil(threads).max(1);
    let f = &f;
    std::thread::scope(|scope| {
        let workers: Vec<_> = items
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(f).collect::<Vec<R>>()))
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

/// The names in `dir`.
pub fn list_names(dir: &Path) -> io::Result<BTreeSet<OsString>> {
    std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.file_name()))
        .collect()
}

/// The permission bits of `path` if it is a regular file holding exactly
/// `bytes`, else `None` (also when it cannot be read).
fn mode_if_holds(path: &Path, bytes: &[u8]) -> Option<u32> {
    let file = File::open(path).ok()?;
    let meta = file.metadata().ok()?;
    if !meta.is_file() || meta.len() != bytes.len() as u64 {
        return None;
    }
    let mut current = Vec::with_capacity(bytes.len());
    file.take(bytes.len() as u64 + 1)
        .read_to_end(&mut current)
        .ok()?;
    (current == bytes).then_some(meta.permissions().mode() & 0o777)
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
        let tmp = parent_dir(dest).join(format!(".{name}.tmp-{}", process_id()));
        let open = || {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(&tmp)
        };
        let mut file = match open() {
            // A leftover from an interrupted run with the same pid.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                std::fs::remove_file(&tmp)?;
                open()?
            }
            opened => opened?,
        };
        let staged = Staged {
            tmp,
            dest: dest.to_path_buf(),
            placed: false,
        };
        // On the descriptor: the umask may have cleared bits of `mode`.
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
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

/// This process's id (looked up once: it names every temporary file).
fn process_id() -> u32 {
    static PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *PID.get_or_init(std::process::id)
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
                // Every line is written with its newline: one without (the
                // file cut short by a crash) may name a path cut short too.
                let lines = text
                    .split_inclusive('\n')
                    .filter_map(|l| l.strip_suffix('\n'));
                for line in lines {
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
        let written = write_all_atomic(&files, Durability::Synced);
        assert!(written.error.is_none(), "{:?}", written.error);
        assert_eq!(written.in_place, [true, true]);
        assert_eq!(std::fs::read(&a).unwrap(), b"new");
        assert_eq!(std::fs::read(&b).unwrap(), b"secret");
        assert_eq!(
            std::fs::metadata(&b).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // Unchanged content is not rewritten; only the mode is corrected.
        let before = std::fs::metadata(&a).unwrap().modified().unwrap();
        let files = vec![(a.clone(), b"new".to_vec(), 0o600)];
        let written = write_all_atomic(&files, Durability::Unsynced);
        assert!(written.error.is_none() && written.in_place == [true]);
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
        let written = write_all_atomic(
            &[(missing.clone(), b"x".to_vec(), 0o644)],
            Durability::Synced,
        );
        let (path, _) = written.error.unwrap();
        assert_eq!(path, missing);
        assert_eq!(written.in_place, [false]);
    }

    #[test]
    fn a_failed_rename_stops_the_batch_and_says_what_is_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        // A non-empty directory where a file should go: staging works, the
        // rename over it fails.
        let blocked = dir.path().join("blocked");
        std::fs::create_dir(&blocked).unwrap();
        std::fs::write(blocked.join("inside"), "x").unwrap();
        let c = dir.path().join("c");
        std::fs::write(&c, "old c").unwrap();
        let files = vec![
            (a.clone(), b"a".to_vec(), 0o644),
            (blocked.clone(), b"b".to_vec(), 0o644),
            (c.clone(), b"new c".to_vec(), 0o644),
        ];
        let written = write_all_atomic(&files, Durability::Synced);
        let (path, _) = written.error.unwrap();
        assert_eq!(path, blocked);
        assert_eq!(written.in_place, [true, false, false]);
        assert_eq!(std::fs::read(&a).unwrap(), b"a");
        assert_eq!(std::fs::read(&c).unwrap(), b"old c");
        let names = list_names(dir.path()).unwrap();
        assert_eq!(names.len(), 3, "a temporary file was left: {names:?}");
        // What the directory held before the call.
        let before: BTreeSet<OsString> = ["blocked", "c"].iter().map(OsString::from).collect();
        assert_eq!(written.listed[dir.path()], before);
    }

    #[test]
    fn a_leftover_temporary_file_of_the_same_pid_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("f.key");
        let leftover = dir.path().join(format!(".f.key.tmp-{}", process_id()));
        std::fs::write(&leftover, "half").unwrap();
        std::fs::set_permissions(&leftover, std::fs::Permissions::from_mode(0o666)).unwrap();
        let written = write_all_atomic(
            &[(dest.clone(), b"key".to_vec(), 0o600)],
            Durability::Synced,
        );
        assert!(written.error.is_none(), "{:?}", written.error);
        assert_eq!(std::fs::read(&dest).unwrap(), b"key");
        assert_eq!(
            std::fs::metadata(&dest).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(!leftover.exists());
    }

    #[test]
    fn a_file_with_the_same_length_but_other_bytes_is_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, "abc").unwrap();
        let written =
            write_all_atomic(&[(f.clone(), b"abd".to_vec(), 0o644)], Durability::Unsynced);
        assert!(written.error.is_none() && written.in_place == [true]);
        assert_eq!(std::fs::read(&f).unwrap(), b"abd");
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
    fn a_manifest_cut_short_loses_its_last_entry_instead_of_naming_a_cut_path() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let mut m = Manifest::load(dir).unwrap();
        for name in ["a.yaml", "b.yaml"] {
            std::fs::write(dir.join(name), name).unwrap();
            m.record(&dir.join(name), name.as_bytes());
        }
        m.save().unwrap();
        let text = std::fs::read(dir.join(MANIFEST_FILE)).unwrap();
        std::fs::write(dir.join(MANIFEST_FILE), &text[..text.len() - 4]).unwrap();
        let m = Manifest::load(dir).unwrap();
        let keys: Vec<&PathBuf> = m.entries.keys().collect();
        assert_eq!(keys, [Path::new("a.yaml")]);
        assert!(m.is_ours(&dir.join("a.yaml")));
        assert!(!m.is_ours(&dir.join("b.yaml")));
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
