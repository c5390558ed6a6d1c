//! The files under the certs directory (and the CA key): reading what is
//! there, and writing new files safely.
//!
//! Owns how files are written: directories we create are 0700 (an existing
//! one is only warned about), keys 0600 and certificates 0644; files are
//! replaced atomically (temp file + rename), a new CA is created with
//! create-new semantics (never overwriting a CA another run just wrote);
//! writers hold an exclusive lock on the certs directory and record every
//! file in its manifest ([`crate::fsutil::Manifest`]). A [`Sink`] in preview
//! mode writes nothing. Must not: decide what to write.

use std::fs::{self, DirBuilder, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::fsutil::Staged;

use super::{CertError, CertSettings, Mode};

pub(super) const KEY_FILE_MODE: u32 = 0o600;
pub(super) const CERT_FILE_MODE: u32 = 0o644;
const DIR_MODE: u32 = 0o700;

/// Where new files go: to disk (under the lock, recorded in the manifest),
/// or nowhere (a preview).
pub(super) enum Sink {
    Write {
        _lock: crate::fsutil::DirLock,
        manifest: crate::fsutil::Manifest,
        manifest_path: PathBuf,
    },
    Preview,
}

impl Sink {
    pub(super) fn open(settings: &CertSettings, mode: Mode) -> Result<Sink, CertError> {
        if mode == Mode::Preview {
            return Ok(Sink::Preview);
        }
        let dir = &settings.certs_dir;
        ensure_private_dir(dir)?;
        let lock = crate::fsutil::lock_dir(dir, crate::fsutil::LOCK_WAIT, || {
            tracing::warn!(
                "waiting for another crdb-multiregion run to finish with {}",
                dir.display()
            )
        })
        .map_err(CertError::io("lock", dir))?;
        let manifest_path = dir.join(crate::fsutil::MANIFEST_FILE);
        let manifest =
            crate::fsutil::Manifest::load(dir).map_err(CertError::io("read", &manifest_path))?;
        Ok(Sink::Write {
            _lock: lock,
            manifest,
            manifest_path,
        })
    }

    pub(super) fn ensure_dir(&self, dir: &Path) -> Result<(), CertError> {
        match self {
            Sink::Write { .. } => ensure_private_dir(dir),
            Sink::Preview => Ok(()),
        }
    }

    pub(super) fn tighten_key_mode(&self, path: &Path) -> Result<(), CertError> {
        match self {
            Sink::Write { .. } => tighten_key_mode(path),
            Sink::Preview => Ok(()),
        }
    }

    /// Writes (replacing) or, with `create_new`, creates the files, and
    /// records them in the manifest.
    pub(super) fn write(
        &mut self,
        files: &[(&Path, String, u32)],
        create_new: bool,
    ) -> Result<(), CertError> {
        let Sink::Write {
            manifest,
            manifest_path,
            ..
        } = self
        else {
            return Ok(());
        };
        let result = if create_new {
            let result = create_new_files(files);
            // Linked in order up to an error: what is there is ours if it
            // holds what we wrote.
            for (path, contents, _) in files {
                if path.is_file() && fs::read(path).is_ok_and(|b| b == contents.as_bytes()) {
                    manifest.record(path, contents.as_bytes());
                }
            }
            result
        } else {
            write_atomically(files, |path, bytes| manifest.record(path, bytes))
        };
        manifest
            .save()
            .map_err(CertError::io("write", manifest_path))?;
        result
    }
}

pub(super) fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

pub(super) fn parent_dir(path: &Path) -> Option<&Path> {
    path.parent().filter(|p| !p.as_os_str().is_empty())
}

/// The file's text, `None` when there is none. A symbolic link to nothing is
/// an error (writing would replace the link with a plain file), and so is a
/// file that is not a small regular file.
pub(super) fn read_optional(path: &Path) -> Result<Option<String>, CertError> {
    match crate::fsutil::read_small_text(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Ok(target) = fs::read_link(path) {
                return Err(CertError::DanglingSymlink {
                    path: path.to_path_buf(),
                    target,
                });
            }
            Ok(None)
        }
        Err(e) => Err(CertError::io("read", path)(e)),
    }
}

/// Creates `dir` (and missing parents) with mode 0700. An existing directory
/// is left as it is: it may be shared (a home directory, /tmp), so a loose
/// mode is only reported.
pub(super) fn ensure_private_dir(dir: &Path) -> Result<(), CertError> {
    match fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => {
            if meta.permissions().mode() & 0o077 != 0 {
                tracing::warn!(
                    "{} is accessible to other users (mode {:o}); consider `chmod 700 {}`",
                    dir.display(),
                    meta.permissions().mode() & 0o777,
                    dir.display()
                );
            }
            Ok(())
        }
        Ok(_) => Err(CertError::Io {
            action: "use as a directory",
            path: dir.to_path_buf(),
            source: io::Error::other("it exists and is not a directory"),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            DirBuilder::new()
                .recursive(true)
                .mode(DIR_MODE)
                .create(dir)
                .map_err(CertError::io("create the directory", dir))?;
            // Independent of the umask.
            fs::set_permissions(dir, Permissions::from_mode(DIR_MODE))
                .map_err(CertError::io("set the permissions of", dir))
        }
        Err(e) => Err(CertError::io("inspect", dir)(e)),
    }
}

/// A reused key file is ours: make sure nobody else can read it.
fn tighten_key_mode(path: &Path) -> Result<(), CertError> {
    let meta = fs::metadata(path).map_err(CertError::io("inspect", path))?;
    if meta.permissions().mode() & 0o077 != 0 {
        fs::set_permissions(path, Permissions::from_mode(KEY_FILE_MODE))
            .map_err(CertError::io("set the permissions of", path))?;
    }
    Ok(())
}

/// Stages every file (see [`Staged`]); errors name the destination, the
/// file the user knows.
fn stage_all(files: &[(&Path, String, u32)]) -> Result<Vec<Staged>, CertError> {
    files
        .iter()
        .map(|(dest, contents, mode)| {
            Staged::new(dest, contents.as_bytes(), *mode).map_err(CertError::io("write", dest))
        })
        .collect()
}

/// Like [`write_atomically`], but never replaces an existing file: each
/// file is staged, then hard-linked into place. Used for the CA, so that two
/// runs can never overwrite each other's CA key.
pub(super) fn create_new_files(files: &[(&Path, String, u32)]) -> Result<(), CertError> {
    let staged = stage_all(files)?;
    for (file, (dest, _, _)) in staged.into_iter().zip(files) {
        match file.link_into_place() {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(CertError::CaAppeared {
                    path: dest.to_path_buf(),
                });
            }
            Err(e) => return Err(CertError::io("create", dest)(e)),
        }
    }
    Ok(())
}

/// Writes every file to a temporary file, synced, and only then renames
/// them into place, in order, and syncs their directories
/// ([`crate::fsutil::write_all_atomic`]), so an interruption never leaves a
/// half-written file and what was placed survives a crash. `placed` is
/// called for each file that holds its contents afterwards (also when a
/// later one failed).
pub(super) fn write_atomically(
    files: &[(&Path, String, u32)],
    mut placed: impl FnMut(&Path, &[u8]),
) -> Result<(), CertError> {
    let batch: Vec<(PathBuf, Vec<u8>, u32)> = files
        .iter()
        .map(|(path, contents, mode)| (path.to_path_buf(), contents.as_bytes().to_vec(), *mode))
        .collect();
    let written = crate::fsutil::write_all_atomic(&batch, crate::fsutil::Durability::Synced);
    for ((path, bytes, _), in_place) in batch.iter().zip(&written.in_place) {
        if *in_place {
            placed(path, bytes);
        }
    }
    match written.error {
        Some((path, e)) => Err(CertError::io("write", &path)(e)),
        None => Ok(()),
    }
}
