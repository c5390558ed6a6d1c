//! `completions SHELL` and `man`: documentation generated from the clap
//! declarations in `cli.rs`, so it can never disagree with `--help`.
//! Touches no config, no file and no cluster; writes only stdout.

use std::io::Write;

use anyhow::Context;
use clap::CommandFactory;

use crate::cli::Cli;
use crate::exit::Exit;

const BIN: &str = "crdb-multiregion";

/// The completion script for `shell`.
pub fn completion_script(shell: clap_complete::Shell) -> Vec<u8> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), BIN, &mut out);
    out
}

/// The manual page in roff: the top-level page, then one section per
/// subcommand holding exactly its `--help` text, so `man crdb-multiregion`
/// teaches every flag without more pages to install.
pub fn man_page() -> std::io::Result<Vec<u8>> {
    let mut cmd = Cli::command();
    cmd.build();
    let mut out = Vec::new();
    let man = clap_mangen::Man::new(cmd.clone());
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    man.render_options_section(&mut out)?;
    for sub in cmd.get_subcommands_mut().filter(|s| !s.is_hide_set()) {
        if sub.get_name() == "help" {
            continue;
        }
        writeln!(
            out,
            ".SH \"{} {}\"",
            BIN.to_uppercase(),
            sub.get_name().to_uppercase()
        )?;
        writeln!(out, ".nf")?;
        for line in sub.render_long_help().to_string().lines() {
            writeln!(out, "{}", roff_line(line))?;
        }
        writeln!(out, ".fi")?;
    }
    man.render_version_section(&mut out)?;
    Ok(out)
}

/// One line of literal text in roff: backslashes escaped, and a leading `.`
/// or `'` (a request to roff) neutralised.
fn roff_line(line: &str) -> String {
    let escaped = line.replace('\\', "\\e");
    if escaped.starts_with(['.', '\'']) {
        format!("\\&{escaped}")
    } else {
        escaped
    }
}

pub fn completions(shell: clap_complete::Shell) -> anyhow::Result<Exit> {
    write_stdout(&completion_script(shell))
}

pub fn man() -> anyhow::Result<Exit> {
    let page = man_page().context("could not render the manual page")?;
    write_stdout(&page)
}

/// Writes to stdout; a reader that went away (`| head`) is not an error.
fn write_stdout(bytes: &[u8]) -> anyhow::Result<Exit> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => Ok(Exit::Success),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(Exit::Success),
        Err(e) => Err(e).context("could not write to stdout"),
    }
}
