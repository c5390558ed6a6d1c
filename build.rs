//! Puts the git commit and its date into `--version`, so a bug report says
//! exactly which build it came from: `crdb-multiregion 0.1.0 (b147bc1
//! 2026-11-30)`. The commit date, not the build time, keeps builds
//! reproducible. Outside a git checkout (a source tarball, or git missing)
//! the version is the crate version alone.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!text.is_empty()).then_some(text)
}

fn main() {
    let version = env!("CARGO_PKG_VERSION");
    let long = match git(&["log", "-1", "--format=%h %cs"]) {
        Some(commit) => format!("{version} ({commit})"),
        None => version.to_string(),
    };
    println!("cargo:rustc-env=CRDB_MULTIREGION_VERSION={long}");

    // Build again when HEAD moves: HEAD itself (a checkout), the branch it
    // points at (a commit), and packed refs (a gc). Paths come from git, so
    // worktrees (where .git is a file) work too.
    // A path that does not exist would make cargo run this every build.
    let branch = git(&["symbolic-ref", "-q", "HEAD"]);
    let watched = ["HEAD", "packed-refs"]
        .into_iter()
        .chain(branch.as_deref())
        .filter_map(|path| git(&["rev-parse", "--git-path", path]))
        .filter(|p| std::path::Path::new(p).exists());
    for p in watched {
        println!("cargo:rerun-if-changed={p}");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
