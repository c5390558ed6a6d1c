//! The real executable, run as a user runs it: in a fresh directory holding a
//! copy of `config/example.toml`, with the paths in the config resolving
//! against that directory.
//!
//! Every run goes through [`Work::run`], which fails the test if the program
//! panicked or was killed by a signal, so "never a panic" is checked on every
//! input here, good or bad. Error texts are insta snapshots
//! (`tests/snapshots/cli__*.snap`) with the temporary directory filtered out.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use k8s_openapi::api::core::v1::Secret;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_crdb-multiregion");
const EXAMPLE: &str = include_str!("../../config/example.toml");
const BUILTIN_STATEFULSET: &str = include_str!("../../templates/statefulset.yaml");
/// The example's zones, in file order (the first runs the init Job).
const ZONES: [&str; 3] = ["us-east1-b", "us-west1-a", "us-central1-a"];
/// The manifest of the files the tool wrote, in the certs and generated dirs.
const MANIFEST: &str = ".crdb-multiregion-files";

/// What one run of the binary did.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// A scratch directory that the binary runs in.
struct Work {
    dir: tempfile::TempDir,
}

impl Work {
    /// A new directory with `example.toml` in it.
    fn new() -> Work {
        let work = Work {
            dir: tempfile::tempdir().expect("create a temporary directory"),
        };
        work.write("example.toml", EXAMPLE);
        work
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn write(&self, rel: &str, text: &str) {
        let path = self.path(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&path, text).unwrap();
    }

    fn read(&self, rel: &str) -> Vec<u8> {
        std::fs::read(self.path(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
    }

    fn read_string(&self, rel: &str) -> String {
        String::from_utf8(self.read(rel)).unwrap()
    }

    /// The example config with `from` replaced by `to` (which must occur).
    fn edit_example(&self, from: &str, to: &str) {
        assert!(EXAMPLE.contains(from), "example.toml has no {from:?}");
        self.write("example.toml", &EXAMPLE.replacen(from, to, 1));
    }

    /// Runs the binary in this directory with no stdin and no RUST_LOG.
    fn run(&self, args: &[&str]) -> Run {
        let out = Command::new(BIN)
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .output()
            .expect("run crdb-multiregion");
        let run = Run {
            code: out.status.code().unwrap_or_else(|| {
                panic!("crdb-multiregion {args:?} was killed by a signal: {out:?}")
            }),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        assert!(
            !run.stderr.contains("panicked") && run.code != 101,
            "crdb-multiregion {args:?} panicked:\n{}",
            run.stderr
        );
        run
    }

    /// Runs and requires exit code 0.
    fn ok(&self, args: &[&str]) -> Run {
        let run = self.run(args);
        assert_eq!(
            run.code, 0,
            "crdb-multiregion {args:?} failed:\n{}",
            run.stderr
        );
        run
    }

    /// Every file under `rel` (recursively), by path relative to the work dir.
    fn files_under(&self, rel: &str) -> BTreeMap<String, Vec<u8>> {
        fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(root, &path, out);
                } else {
                    let key = path.strip_prefix(root).unwrap().display().to_string();
                    out.insert(key, std::fs::read(&path).unwrap());
                }
            }
        }
        let mut out = BTreeMap::new();
        walk(self.dir.path(), &self.path(rel), &mut out);
        out
    }

    /// Everything `plan` writes: certificates, the CA key, manifests.
    fn outputs(&self) -> BTreeMap<String, Vec<u8>> {
        let mut all = self.files_under("certs");
        all.extend(self.files_under("my-safe-directory"));
        all.extend(self.files_under("generated"));
        all
    }

    /// Snapshot of a failed run's stderr, with this directory's path filtered.
    fn snapshot(&self, name: &str, stderr: &str) {
        let mut settings = insta::Settings::clone_current();
        settings.add_filter(
            &regex_escape(&self.dir.path().display().to_string()),
            "[TMP]",
        );
        settings.bind(|| insta::assert_snapshot!(name, stderr));
    }
}

fn regex_escape(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if "\\.+*?()|[]{}^$#&-~ ".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn yaml(text: &str) -> Value {
    serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("not YAML ({e}):\n{text}"))
}

/// The manifest file names `plan` writes for a zone of the example.
fn expected_files(zone: &str, first: bool) -> Vec<String> {
    let mut names = vec![
        format!("01-cluster-namespace-{zone}.yaml"),
        format!("02-{zone}-secret-cockroachdb.client.root.yaml"),
        "03-default-secret-cockroachdb.client.root.yaml".to_string(),
        format!("04-{zone}-secret-cockroachdb.node.yaml"),
        format!("05-{zone}-configmap-cockroachdb-join.yaml"),
        format!("06-{zone}-serviceaccount-cockroachdb.yaml"),
        format!("07-{zone}-role-cockroachdb.yaml"),
        format!("08-{zone}-rolebinding-cockroachdb.yaml"),
        format!("09-{zone}-service-cockroachdb-public.yaml"),
        format!("10-{zone}-service-cockroachdb.yaml"),
        format!("11-{zone}-poddisruptionbudget-cockroachdb-budget.yaml"),
        "12-kube-system-service-kube-dns-lb.yaml".to_string(),
        "13-default-service-cockroachdb-public.yaml".to_string(),
        format!("14-{zone}-statefulset-cockroachdb.yaml"),
    ];
    if first {
        names.push(format!("15-{zone}-job-cluster-init-secure.yaml"));
    }
    names.push("dns-forwarding.yaml".to_string());
    names.sort();
    names
}

fn dir_listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("list {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

// ---------------------------------------------------------------------------
// plan on the example config

#[test]
fn plan_writes_certs_and_one_directory_of_manifests_per_zone() {
    let work = Work::new();
    let run = work.ok(&["plan", "example.toml"]);
    assert_eq!(run.stdout, "", "without -o yaml, stdout stays empty");

    // Certificates, with the names `cockroach cert` uses; the CA key outside.
    for f in [
        "certs/ca.crt",
        "certs/client.root.crt",
        "certs/client.root.key",
    ] {
        assert!(work.path(f).is_file(), "{f} missing");
    }
    for zone in ZONES {
        assert!(work.path(&format!("certs/{zone}/node.crt")).is_file());
        assert!(work.path(&format!("certs/{zone}/node.key")).is_file());
    }
    assert!(work.path("my-safe-directory/ca.key").is_file());
    assert!(
        !work.path("certs/ca.key").exists(),
        "the CA key must stay out of certs/"
    );

    // Keys 0600, key directories 0700, Secret manifests 0600.
    for key in [
        "my-safe-directory/ca.key",
        "certs/client.root.key",
        "certs/us-west1-a/node.key",
    ] {
        assert_eq!(mode(&work.path(key)), 0o600, "{key}");
    }
    for dir in ["certs", "certs/us-west1-a", "my-safe-directory"] {
        assert_eq!(mode(&work.path(dir)), 0o700, "{dir}");
    }
    assert_eq!(
        mode(&work.path("generated/us-west1-a/04-us-west1-a-secret-cockroachdb.node.yaml")),
        0o600
    );

    // One directory per zone, one file per object, names saying what is inside,
    // and the manifest of what was written (what purge-local may delete).
    assert_eq!(dir_listing(&work.path("generated")), {
        let mut z: Vec<String> = ZONES.iter().map(|z| z.to_string()).collect();
        z.push(MANIFEST.to_string());
        z.sort();
        z
    });
    for (i, zone) in ZONES.iter().enumerate() {
        let dir = work.path(&format!("generated/{zone}"));
        assert_eq!(dir_listing(&dir), expected_files(zone, i == 0), "{zone}");
        for name in dir_listing(&dir) {
            let text = work.read_string(&format!("generated/{zone}/{name}"));
            if name == "dns-forwarding.yaml" {
                assert!(text.contains("# pending:"), "{zone}: {text}");
                continue;
            }
            let doc = yaml(&text);
            let kind = doc["kind"].as_str().unwrap().to_ascii_lowercase();
            let obj_name = doc["metadata"]["name"].as_str().unwrap();
            assert!(
                name.ends_with(&format!("-{kind}-{obj_name}.yaml")),
                "{name} holds {kind} {obj_name}"
            );
            let labels = &doc["metadata"]["labels"];
            assert_eq!(labels["app.kubernetes.io/managed-by"], "crdb-multiregion");
            assert_eq!(labels["crdb-multiregion/federation"], "cockroachdb");
            assert_eq!(labels["crdb-multiregion/zone"], *zone);
        }
    }

    // A per-zone summary on stderr, in config order.
    assert!(run.stderr.contains("CA created"), "{}", run.stderr);
    let summaries: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains(" objects in namespace "))
        .collect();
    assert_eq!(summaries.len(), 3, "{}", run.stderr);
    assert!(summaries[0].starts_with("us-east1-b: 15 objects in namespace us-east1-b"));
    assert!(summaries[1].starts_with("us-west1-a: 14 objects in namespace us-west1-a"));
    assert!(summaries[2].starts_with("us-central1-a: 14 objects in namespace us-central1-a"));
    for line in summaries {
        assert!(line.contains("forwarding pending"), "{line}");
    }
}

#[test]
fn a_second_plan_leaves_certs_ca_key_and_manifests_byte_identical() {
    let work = Work::new();
    let first_yaml = work
        .ok(&["plan", "example.toml", "-o", "yaml", "--all-zones"])
        .stdout;
    let first = work.outputs();
    assert!(first.contains_key("certs/ca.crt"));
    assert!(first.contains_key("my-safe-directory/ca.key"));
    assert!(first.contains_key("certs/us-central1-a/node.key"));
    assert!(first.contains_key("generated/us-east1-b/14-us-east1-b-statefulset-cockroachdb.yaml"));

    let run = work.ok(&["plan", "example.toml", "-o", "yaml", "--all-zones"]);
    let second = work.outputs();
    assert_eq!(
        first.keys().collect::<Vec<_>>(),
        second.keys().collect::<Vec<_>>(),
        "the second run wrote a different set of files"
    );
    for (path, bytes) in &first {
        assert!(second[path] == *bytes, "{path} changed on the second run");
    }
    assert!(
        run.stdout == first_yaml,
        "`plan -o yaml` printed something else the second time"
    );
    assert_every_certificate_reused(&run);
}

/// `plan` said it reused the CA, the root client certificate and every
/// zone's node certificate.
fn assert_every_certificate_reused(run: &Run) {
    assert!(
        run.stderr
            .contains("CA reused, root client certificate reused"),
        "{}",
        run.stderr
    );
    for zone in ZONES {
        assert!(
            run.stderr
                .contains(&format!("{zone}: node certificate reused")),
            "{}",
            run.stderr
        );
    }
}

#[test]
fn yaml_output_is_a_multi_document_stream_with_a_zone_header_on_every_document() {
    let work = Work::new();
    let run = work.ok(&[
        "plan",
        "example.toml",
        "-o",
        "yaml",
        "--all-zones",
        "--dns-address",
        "us-east1-b=10.0.0.5",
        "--dns-address",
        "us-west1-a=10.1.0.5",
        "--dns-address",
        "us-central1-a=10.2.0.5",
    ]);

    // It parses as a whole, as `kubectl apply -f -` would read it.
    let docs: Vec<Value> = serde_saphyr::from_multiple(&run.stdout)
        .unwrap_or_else(|e| panic!("stdout is not a YAML stream ({e})"));
    assert_eq!(docs.len(), 15 + 14 + 14, "one document per object");

    // Split by hand to read each document's leading comments.
    let contexts: BTreeMap<&str, &str> = [
        ("us-east1-b", "gke_cockroach1_us-east1-b_cockroachdb1"),
        ("us-west1-a", "gke_cockroach1_us-west1-a_cockroachdb2"),
        ("us-central1-a", "gke_cockroach1_us-central1-a_cockroachdb3"),
    ]
    .into();
    assert!(run.stdout.starts_with("---\n"));
    let mut objects = Vec::new();
    let mut dns_notes = BTreeMap::new();
    for chunk in run.stdout.split("---\n").skip(1) {
        let first_line = chunk.lines().next().unwrap_or_default();
        if let Some(rest) = first_line.strip_prefix("# zone: ") {
            // "# zone: Z, context: C, stage: S" on every object.
            let (zone, rest) = rest.split_once(", context: ").expect(first_line);
            let (context, stage) = rest.split_once(", stage: ").expect(first_line);
            assert_eq!(contexts[zone], context, "{first_line}");
            assert!(
                ["base", "dns-load-balancer", "workload", "init"].contains(&stage),
                "{first_line}"
            );
            let doc = yaml(chunk);
            assert_eq!(doc["metadata"]["labels"]["crdb-multiregion/zone"], zone);
            objects.push((zone.to_string(), doc));
        } else if let Some(rest) = first_line.strip_prefix("# DNS forwarding for zone ") {
            // The DNS forwarding notes are comments only: no object to apply.
            let zone = rest.split_once(' ').unwrap().0.to_string();
            assert!(chunk.lines().all(|l| l.starts_with('#')), "{chunk}");
            dns_notes.insert(zone, chunk.to_string());
        } else {
            panic!("a document without a zone header:\n{chunk}");
        }
    }
    assert_eq!(objects.len(), docs.len());
    assert_eq!(dns_notes.len(), 3);

    // The stream holds the same objects as the generated files, in order.
    for (i, zone) in ZONES.iter().enumerate() {
        let from_files: Vec<Value> = expected_files(zone, i == 0)
            .iter()
            .filter(|n| *n != "dns-forwarding.yaml")
            .map(|n| yaml(&work.read_string(&format!("generated/{zone}/{n}"))))
            .collect();
        let from_stream: Vec<Value> = objects
            .iter()
            .filter(|(z, _)| z == zone)
            .map(|(_, d)| d.clone())
            .collect();
        assert_eq!(from_stream, from_files, "{zone}");
    }

    // Each zone forwards every OTHER zone's domain, never its own.
    let ip = |z: &str| match z {
        "us-east1-b" => "10.0.0.5",
        "us-west1-a" => "10.1.0.5",
        _ => "10.2.0.5",
    };
    for zone in ZONES {
        let note = &dns_notes[zone];
        assert!(note.contains("ConfigMap kube-system/kube-dns"), "{note}");
        for other in ZONES {
            let entry = format!("\\\"{other}.svc.cluster.local\\\": [\\\"{}\\\"]", ip(other));
            assert_eq!(
                note.contains(&entry),
                other != zone,
                "{zone} / {other}:\n{note}"
            );
        }
    }
    assert!(
        run.stderr.contains("us-east1-b: 15 objects")
            && run.stderr.contains("forwarding 2 zone(s)"),
        "{}",
        run.stderr
    );
}

#[test]
fn dns_addresses_of_some_zones_leave_the_rest_pending_by_name() {
    let work = Work::new();
    let run = work.ok(&[
        "plan",
        "example.toml",
        "--dns-address",
        "us-west1-a=10.1.0.5",
    ]);
    let line = |zone: &str| {
        run.stderr
            .lines()
            .find(|l| l.starts_with(&format!("{zone}: ")))
            .unwrap_or_else(|| panic!("no summary for {zone}:\n{}", run.stderr))
            .to_string()
    };
    assert!(line("us-east1-b").ends_with("pending (no DNS address for us-central1-a)"));
    assert!(line("us-west1-a").ends_with("pending (no DNS address for us-east1-b, us-central1-a)"));
    let note = work.read_string("generated/us-east1-b/dns-forwarding.yaml");
    assert!(
        note.contains("# pending: the DNS load balancer address of us-central1-a is not known yet"),
        "{note}"
    );
}

/// Regression: with `provider = "coredns"` the forwarding file said
/// "error: ConfigMap `coredns` has no `Corefile` key" instead of showing the
/// server blocks, because it merged into a ConfigMap without a Corefile.
#[test]
fn dns_forwarding_file_shows_every_provider_format_not_an_error() {
    let ips = [
        "us-east1-b=10.0.0.5",
        "us-west1-a=10.1.0.5",
        "us-central1-a=10.2.0.5",
    ];
    let cases = [
        (
            "kube-dns",
            "[\\\"10.1.0.5\\\"]",
            "crdb-multiregion.managed-stub-domains",
        ),
        ("coredns", "forward . 10.1.0.5", "# BEGIN crdb-multiregion"),
        (
            "coredns-custom",
            "forward . 10.1.0.5",
            "crdb-multiregion.server: |",
        ),
    ];
    for (provider, west_entry, ownership) in cases {
        let work = Work::new();
        work.edit_example("provider = \"auto\"", &format!("provider = \"{provider}\""));
        let mut args = vec!["plan", "example.toml"];
        for ip in &ips {
            args.extend(["--dns-address", ip]);
        }
        let run = work.ok(&args);
        assert!(
            run.stderr
                .contains(&format!("us-east1-b: 15 objects in namespace us-east1-b (context gke_cockroach1_us-east1-b_cockroachdb1); DNS: {provider} forwarding 2 zone(s)")),
            "{}",
            run.stderr
        );
        let note = work.read_string("generated/us-east1-b/dns-forwarding.yaml");
        assert!(!note.contains("# error:"), "{provider}:\n{note}");
        assert!(
            note.contains(&format!("ConfigMap kube-system/{provider}")),
            "{note}"
        );
        assert!(note.contains(ownership), "{provider}:\n{note}");
        assert!(note.contains(west_entry), "{provider}:\n{note}");
        assert!(note.contains("us-central1-a.svc.cluster.local"), "{note}");
        assert!(
            !note.contains("us-east1-b.svc.cluster.local"),
            "{provider}: a zone must not forward its own domain:\n{note}"
        );
    }
}

#[test]
fn dns_address_for_an_unknown_zone_exits_2_naming_the_zone() {
    let work = Work::new();
    let run = work.run(&[
        "plan",
        "example.toml",
        "--dns-address",
        "us-west9-z=10.9.0.5",
    ]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(run.stdout, "");
    assert!(run.stderr.contains("\"us-west9-z\""), "{}", run.stderr);
    work.snapshot("dns_address_unknown_zone", &run.stderr);
    assert!(
        !work.path("certs").exists(),
        "a bad flag is reported before certificates are made"
    );

    for bad in ["us-west1-a", "us-west1-a=not-an-ip", "=10.0.0.1"] {
        let run = work.run(&["plan", "example.toml", "--dns-address", bad]);
        assert_eq!(run.code, 2, "--dns-address {bad}: {}", run.stderr);
        assert!(run.stderr.contains("ZONE=IP"), "{}", run.stderr);
        assert_eq!(run.stdout, "");
    }
}

#[test]
fn generated_dir_flag_overrides_the_config() {
    let work = Work::new();
    work.ok(&["plan", "example.toml", "--generated-dir", "out/manifests"]);
    assert!(!work.path("generated").exists());
    assert_eq!(
        dir_listing(&work.path("out/manifests/us-west1-a")),
        expected_files("us-west1-a", false)
    );
}

#[test]
fn stale_manifests_are_removed_and_other_files_kept() {
    let work = Work::new();
    work.ok(&["plan", "example.toml"]);
    let job = "generated/us-east1-b/15-us-east1-b-job-cluster-init-secure.yaml";
    assert!(work.path(job).is_file());
    work.write("generated/us-east1-b/NOTES.txt", "mine\n");

    // Make us-west1-a the first zone: the init Job moves there.
    let west = "[[zones]]\nname = \"us-west1-a\"\ncontext = \"gke_cockroach1_us-west1-a_cockroachdb2\"\nregion = \"us-west1\"\n\n";
    assert!(EXAMPLE.contains(west));
    let reordered = EXAMPLE.replacen(west, "", 1).replacen(
        "[[zones]]\nname = \"us-east1-b\"",
        &format!("{west}[[zones]]\nname = \"us-east1-b\""),
        1,
    );
    work.write("example.toml", &reordered);
    work.ok(&["plan", "example.toml"]);
    assert!(!work.path(job).exists(), "stale Job manifest left behind");
    assert!(
        work.path("generated/us-west1-a/15-us-west1-a-job-cluster-init-secure.yaml")
            .is_file()
    );
    assert_eq!(work.read_string("generated/us-east1-b/NOTES.txt"), "mine\n");
}

/// The manifest of what the tool wrote under `rel` (the work dir's
/// `generated` or `certs`), as path -> SHA-256 hex.
fn recorded(work: &Work, rel: &str) -> BTreeMap<String, String> {
    work.read_string(&format!("{rel}/{MANIFEST}"))
        .lines()
        .map(|line| {
            let (hash, path) = line
                .split_once("  ")
                .unwrap_or_else(|| panic!("not a manifest line: {line:?}"));
            (path.to_string(), hash.to_string())
        })
        .collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn the_generated_manifest_records_exactly_the_files_written_with_their_hashes() {
    let work = Work::new();
    work.ok(&["plan", "example.toml"]);
    let on_disk: BTreeMap<String, String> = work
        .files_under("generated")
        .into_iter()
        .filter_map(|(path, bytes)| {
            let rel = path.strip_prefix("generated/")?.to_string();
            (rel != MANIFEST).then(|| (rel, sha256_hex(&bytes)))
        })
        .collect();
    assert_eq!(on_disk.len(), 3 * 15 + 1, "{:?}", on_disk.keys());
    assert_eq!(recorded(&work, "generated"), on_disk);
    // The certs manifest too: every certificate and key (the CA key by its
    // absolute path), each with the hash of what is on disk.
    let certs = recorded(&work, "certs");
    let mut expected: BTreeMap<String, String> = work
        .files_under("certs")
        .into_iter()
        .filter_map(|(path, bytes)| {
            let rel = path.strip_prefix("certs/")?.to_string();
            (rel != MANIFEST).then(|| (rel, sha256_hex(&bytes)))
        })
        .collect();
    let ca_key = std::fs::canonicalize(work.path("my-safe-directory/ca.key")).unwrap();
    expected.insert(
        ca_key.display().to_string(),
        sha256_hex(&work.read("my-safe-directory/ca.key")),
    );
    assert_eq!(expected.len(), 3 + 2 * 3 + 1);
    let certs: BTreeMap<String, String> = certs
        .into_iter()
        .map(|(path, hash)| match std::fs::canonicalize(&path) {
            Ok(abs) if Path::new(&path).is_absolute() => (abs.display().to_string(), hash),
            _ => (path, hash),
        })
        .collect();
    assert_eq!(certs, expected);
}

/// A crash of the machine soon after `plan` can leave a generated manifest
/// (written without a sync) empty or cut short; the next `plan` puts it
/// right and records it again.
#[test]
fn a_generated_file_cut_short_by_a_crash_is_rewritten_by_the_next_plan() {
    let work = Work::new();
    work.ok(&["plan", "example.toml"]);
    let first = work.files_under("generated");
    let first_manifest = recorded(&work, "generated");
    let emptied = "generated/us-west1-a/14-us-west1-a-statefulset-cockroachdb.yaml";
    let halved = "generated/us-east1-b/04-us-east1-b-secret-cockroachdb.node.yaml";
    work.write(emptied, "");
    let half = &first[halved][..first[halved].len() / 2];
    std::fs::write(work.path(halved), half).unwrap();
    // The ownership manifest itself cut short as well: a partial last line.
    let manifest = work.read(&format!("generated/{MANIFEST}"));
    std::fs::write(
        work.path(&format!("generated/{MANIFEST}")),
        &manifest[..manifest.len() - 20],
    )
    .unwrap();

    work.ok(&["plan", "example.toml"]);
    assert_eq!(work.files_under("generated"), first);
    assert_eq!(recorded(&work, "generated"), first_manifest);
    assert_eq!(mode(&work.path(halved)), 0o600);
}

/// Keys, Secret manifests and the manifests of what was written are 0600,
/// certificates and other manifests 0644, whatever the umask: a permissive
/// one does not widen a key, a strict one does not narrow a certificate.
#[test]
fn file_modes_do_not_depend_on_the_umask() {
    use std::os::unix::process::CommandExt;
    for umask in [0o000, 0o077, 0o027] {
        let work = Work::new();
        let mut cmd = Command::new(BIN);
        cmd.args(["plan", "example.toml"])
            .current_dir(work.dir.path())
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
        // SAFETY: umask is async-signal-safe and touches only the child.
        unsafe {
            cmd.pre_exec(move || {
                libc::umask(umask);
                Ok(())
            });
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "umask {umask:03o}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for (rel, want) in [
            ("my-safe-directory/ca.key", 0o600),
            ("certs/ca.crt", 0o644),
            ("certs/client.root.key", 0o600),
            ("certs/client.root.crt", 0o644),
            ("certs/us-west1-a/node.key", 0o600),
            ("certs/us-west1-a/node.crt", 0o644),
            ("certs/.crdb-multiregion-files", 0o600),
            ("generated/.crdb-multiregion-files", 0o600),
            (
                "generated/us-west1-a/04-us-west1-a-secret-cockroachdb.node.yaml",
                0o600,
            ),
            (
                "generated/us-west1-a/02-us-west1-a-secret-cockroachdb.client.root.yaml",
                0o600,
            ),
            (
                "generated/us-west1-a/01-cluster-namespace-us-west1-a.yaml",
                0o644,
            ),
            ("generated/us-west1-a/dns-forwarding.yaml", 0o644),
        ] {
            assert_eq!(mode(&work.path(rel)), want, "{rel} under umask {umask:03o}");
        }
        for dir in ["certs", "certs/us-west1-a", "my-safe-directory"] {
            assert_eq!(
                mode(&work.path(dir)),
                0o700,
                "{dir} under umask {umask:03o}"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Certificates, as openssl and the Secrets see them

/// Runs the real openssl in the work dir; its stdout. Fails clearly if missing.
fn openssl(work: &Work, args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(work.dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "could not run `openssl` ({e}): these tests verify the certificates with the \
                 real openssl; install it (Debian/Ubuntu: apt-get install -y openssl, or run .ci/run)"
            )
        });
    assert!(
        out.status.success(),
        "openssl {} failed:\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The value lines under `header` in `openssl x509 -ext ...` output.
fn ext_value(text: &str, header: &str) -> String {
    let mut lines = text.lines();
    lines
        .by_ref()
        .find(|l| l.trim_start().starts_with(header))
        .unwrap_or_else(|| panic!("no {header} in:\n{text}"));
    lines.next().unwrap_or_default().trim().to_string()
}

fn sans(work: &Work, cert: &str) -> BTreeSet<String> {
    let text = openssl(
        work,
        &["x509", "-noout", "-ext", "subjectAltName", "-in", cert],
    );
    ext_value(&text, "X509v3 Subject Alternative Name")
        .split(", ")
        .map(|s| {
            s.strip_prefix("DNS:")
                .or_else(|| s.strip_prefix("IP Address:"))
                .unwrap_or_else(|| panic!("unexpected SAN {s}"))
                .to_string()
        })
        .collect()
}

/// What a node certificate must cover: every name setup.py used, plus the
/// fully-qualified forms it missed.
fn required_sans(ns: &str, domain: &str) -> BTreeSet<String> {
    [
        // setup.py's list
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "cockroachdb-public".to_string(),
        "cockroachdb-public.default".to_string(),
        format!("cockroachdb-public.{ns}"),
        format!("cockroachdb-public.{ns}.svc.{domain}"),
        "*.cockroachdb".to_string(),
        format!("*.cockroachdb.{ns}"),
        format!("*.cockroachdb.{ns}.svc.{domain}"),
        // added
        "cockroachdb-public.default.svc".to_string(),
        format!("cockroachdb-public.default.svc.{domain}"),
        format!("cockroachdb-public.{ns}.svc"),
        "cockroachdb".to_string(),
        format!("cockroachdb.{ns}"),
        format!("cockroachdb.{ns}.svc"),
        format!("cockroachdb.{ns}.svc.{domain}"),
        format!("*.cockroachdb.{ns}.svc"),
    ]
    .into_iter()
    .collect()
}

#[test]
fn openssl_verifies_every_node_cert_and_shows_cn_eku_and_sans() {
    let work = Work::new();
    work.ok(&["plan", "example.toml"]);
    for zone in ZONES {
        let cert = format!("certs/{zone}/node.crt");
        let out = openssl(&work, &["verify", "-CAfile", "certs/ca.crt", &cert]);
        assert_eq!(out.trim(), format!("{cert}: OK"));

        let text = openssl(
            &work,
            &[
                "x509",
                "-noout",
                "-subject",
                "-ext",
                "extendedKeyUsage",
                "-in",
                &cert,
            ],
        );
        assert!(
            text.lines().any(|l| l.trim_end().ends_with("CN = node")),
            "{text}"
        );
        let eku = ext_value(&text, "X509v3 Extended Key Usage");
        assert!(eku.contains("TLS Web Server Authentication"), "{eku}");
        assert!(eku.contains("TLS Web Client Authentication"), "{eku}");
        assert_eq!(
            sans(&work, &cert),
            required_sans(zone, "cluster.local"),
            "{zone}"
        );
    }
    let out = openssl(
        &work,
        &["verify", "-CAfile", "certs/ca.crt", "certs/client.root.crt"],
    );
    assert_eq!(out.trim(), "certs/client.root.crt: OK");
    let subject = openssl(
        &work,
        &["x509", "-noout", "-subject", "-in", "certs/client.root.crt"],
    );
    assert!(subject.trim_end().ends_with("CN = root"), "{subject}");
}

#[test]
fn node_secret_holds_the_node_files_and_not_the_root_client_key() {
    let work = Work::new();
    work.ok(&["plan", "example.toml"]);
    let secret = |rel: &str| -> BTreeMap<String, Vec<u8>> {
        let s: Secret = serde_json::from_value(yaml(&work.read_string(rel))).unwrap();
        s.data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect()
    };
    for zone in ZONES {
        let node = secret(&format!(
            "generated/{zone}/04-{zone}-secret-cockroachdb.node.yaml"
        ));
        assert_eq!(
            node.keys().map(String::as_str).collect::<Vec<_>>(),
            ["ca.crt", "node.crt", "node.key"],
            "setup.py also put the root client key here"
        );
        assert_eq!(node["ca.crt"], work.read("certs/ca.crt"));
        assert_eq!(
            node["node.crt"],
            work.read(&format!("certs/{zone}/node.crt"))
        );
        assert_eq!(
            node["node.key"],
            work.read(&format!("certs/{zone}/node.key"))
        );

        for rel in [
            format!("generated/{zone}/02-{zone}-secret-cockroachdb.client.root.yaml"),
            format!("generated/{zone}/03-default-secret-cockroachdb.client.root.yaml"),
        ] {
            let client = secret(&rel);
            assert_eq!(
                client["client.root.crt"],
                work.read("certs/client.root.crt")
            );
            assert_eq!(
                client["client.root.key"],
                work.read("certs/client.root.key")
            );
            assert_eq!(client["ca.crt"], work.read("certs/ca.crt"));
        }
    }
}

#[test]
fn a_new_cluster_domain_regenerates_node_certs_under_the_same_ca() {
    let work = Work::new();
    work.ok(&["plan", "example.toml"]);
    let ca = work.read("certs/ca.crt");
    let ca_key = work.read("my-safe-directory/ca.key");
    let node = work.read("certs/us-east1-b/node.crt");

    work.edit_example(
        "cluster_domain = \"cluster.local\"",
        "cluster_domain = \"crdb.example\"",
    );
    let run = work.ok(&["plan", "example.toml"]);
    assert!(run.stderr.contains("CA reused"), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("us-east1-b: node certificate regenerated (")
            && run.stderr.contains("lacks the SANs"),
        "{}",
        run.stderr
    );
    assert_eq!(work.read("certs/ca.crt"), ca);
    assert_eq!(work.read("my-safe-directory/ca.key"), ca_key);
    assert_ne!(work.read("certs/us-east1-b/node.crt"), node);
    let out = openssl(
        &work,
        &[
            "verify",
            "-CAfile",
            "certs/ca.crt",
            "certs/us-east1-b/node.crt",
        ],
    );
    assert_eq!(out.trim(), "certs/us-east1-b/node.crt: OK");
    assert_eq!(
        sans(&work, "certs/us-east1-b/node.crt"),
        required_sans("us-east1-b", "crdb.example")
    );
}

#[test]
fn a_half_present_ca_exits_2_and_is_never_replaced() {
    let work = Work::new();
    work.ok(&["plan", "example.toml"]);
    let ca = work.read("certs/ca.crt");
    let before = work.outputs();
    std::fs::remove_file(work.path("my-safe-directory/ca.key")).unwrap();

    let run = work.run(&["plan", "example.toml"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(run.stdout, "");
    assert!(run.stderr.starts_with("error: "), "{}", run.stderr);
    assert!(run.stderr.contains("restore the key"), "{}", run.stderr);
    assert_eq!(work.read("certs/ca.crt"), ca);
    assert!(!work.path("my-safe-directory/ca.key").exists());
    let mut after = work.outputs();
    after.insert(
        "my-safe-directory/ca.key".to_string(),
        before["my-safe-directory/ca.key"].clone(),
    );
    assert!(after == before, "a failed run changed files");
    work.snapshot("half_present_ca", &run.stderr);
}

// ---------------------------------------------------------------------------
// Bad configs

/// Configs that break one rule each (or several at once), by file name.
const BAD_CONFIGS: &[(&str, &str)] = &[
    ("no_zones", "federation = \"crdb\"\n"),
    ("empty_zones", "zones = []\n"),
    (
        "zone_not_a_dns_label",
        "[[zones]]\nname = \"US_East1\"\ncontext = \"a\"\n",
    ),
    (
        "namespace_not_a_dns_label",
        "[[zones]]\nname = \"us-east1-b\"\ncontext = \"a\"\nnamespace = \"crdb.east\"\n",
    ),
    (
        "duplicate_namespaces",
        "[[zones]]\nname = \"a\"\ncontext = \"a\"\nnamespace = \"crdb\"\n\n[[zones]]\nname = \"b\"\ncontext = \"b\"\nnamespace = \"crdb\"\n",
    ),
    (
        "duplicate_contexts",
        "[[zones]]\nname = \"a\"\ncontext = \"shared\"\n\n[[zones]]\nname = \"b\"\ncontext = \"shared\"\n",
    ),
    ("empty_context", "[[zones]]\nname = \"a\"\ncontext = \"\"\n"),
    ("missing_context", "[[zones]]\nname = \"a\"\n"),
    (
        "replicas_below_one",
        "[[zones]]\nname = \"a\"\ncontext = \"a\"\nreplicas = 0\n",
    ),
    (
        "unknown_keys",
        "federaton = \"crdb\"\n\n[cockroachdb]\nimage_tag = \"v25\"\n\n[[zones]]\nname = \"a\"\ncontxt = \"a\"\ncontext = \"a\"\n",
    ),
    (
        "malformed_values",
        "[certs]\nkey_type = \"ed25519\"\n\n[cockroachdb]\nstorage = \"lots\"\n\n[dns]\ncloud = \"gcp\"\nprotocols = \"UDP\"\n\n[[zones]]\nname = \"a\"\ncontext = \"a\"\nreplicas = \"three\"\n",
    ),
    // Values in another case than the documented one get the right
    // spelling (issue 12: `cloud = "GKE"` got no suggestion).
    (
        "enum_values_in_another_case",
        "[certs]\nkey_type = \"RSA-2048\"\n\n[dns]\ncloud = \"GKE\"\nprovider = \"CoreDNS\"\nload_balancer = \"Internal\"\n\n[[zones]]\nname = \"a\"\ncontext = \"a\"\n",
    ),
    ("toml_syntax", "[[zones]]\nname = \"a\ncontext = \"a\"\n"),
    (
        "ca_key_inside_certs_dir",
        "[certs]\ndir = \"certs\"\nca_key = \"certs/ca.key\"\n\n[[zones]]\nname = \"a\"\ncontext = \"a\"\n",
    ),
    (
        "every_problem_at_once",
        "cluster_domain = \"Cluster.Local\"\n\n[[zones]]\nname = \"US\"\ncontext = \"\"\nreplicas = -1\n\n[[zones]]\nname = \"b\"\ncontext = \"x\"\nnamespace = \"b\"\n\n[[zones]]\nname = \"c\"\ncontext = \"x\"\nnamespace = \"b\"\n",
    ),
];

/// The `file:line:col: ` problem lines of a config error.
fn problem_lines<'a>(stderr: &'a str, file: &str) -> Vec<&'a str> {
    stderr
        .lines()
        .filter(|l| {
            let Some(rest) = l.trim_start().strip_prefix(&format!("{file}:")) else {
                return false;
            };
            let mut parts = rest.splitn(3, ':');
            let line = parts.next().unwrap_or_default();
            let col = parts.next().unwrap_or_default();
            let msg = parts.next().unwrap_or_default();
            [line, col]
                .iter()
                .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                && msg.starts_with(' ')
                && msg.len() > 10
        })
        .collect()
}

#[test]
fn each_bad_config_exits_2_with_file_line_col_and_the_rule() {
    let work = Work::new();
    for (name, text) in BAD_CONFIGS {
        let file = format!("{name}.toml");
        work.write(&file, text);
        let run = work.run(&["plan", &file]);
        assert_eq!(run.code, 2, "{name}: {}", run.stderr);
        assert_eq!(run.stdout, "", "{name}");
        assert!(
            run.stderr
                .starts_with(&format!("error: {file} is not a valid config (")),
            "{name}: {}",
            run.stderr
        );
        assert!(
            !problem_lines(&run.stderr, &file).is_empty(),
            "{name}: no file:line:col line in\n{}",
            run.stderr
        );
        work.snapshot(&format!("bad_config_{name}"), &run.stderr);
    }
    // Validation comes first: nothing was generated for any of them.
    assert!(!work.path("certs").exists());
    assert!(!work.path("my-safe-directory").exists());
    assert!(!work.path("generated").exists());
}

#[test]
fn every_problem_is_reported_not_just_the_first() {
    let work = Work::new();
    let (name, text) = BAD_CONFIGS
        .iter()
        .find(|(n, _)| *n == "every_problem_at_once")
        .unwrap();
    work.write("all.toml", text);
    let run = work.run(&["plan", "all.toml"]);
    assert_eq!(run.code, 2, "{name}");
    let lines = problem_lines(&run.stderr, "all.toml");
    let rules = [
        "cluster_domain",
        "zones[0].name",
        "zones[0].context: must not be empty",
        "zones[0].replicas",
        "zones[2].context: duplicate context",
        "zones[2].namespace: duplicate namespace",
    ];
    assert_eq!(lines.len(), rules.len(), "{}", run.stderr);
    for rule in rules {
        assert!(
            lines.iter().any(|l| l.contains(rule)),
            "{rule}:\n{}",
            run.stderr
        );
    }
}

#[test]
fn unreadable_or_nonsense_configs_exit_2_without_panicking() {
    let work = Work::new();
    let cases: &[(&str, &[u8])] = &[
        ("empty", b""),
        ("not_utf8", b"zones = [\xff\xfe]\n"),
        ("nul_bytes", b"[[zones]]\nname = \"a\0\"\ncontext = \"a\"\n"),
        ("huge_integer", b"[[zones]]\nname = \"a\"\ncontext = \"a\"\nreplicas = 99999999999999999999999\n"),
        ("zones_is_a_string", b"zones = \"us-east1-b\"\n"),
        ("zones_of_numbers", b"zones = [1, 2]\n"),
        ("section_is_a_number", b"cockroachdb = 5\ndns = []\n[[zones]]\nname = \"a\"\ncontext = \"a\"\n"),
        ("incomplete_value", b"x = \n"),
        ("unicode_zone", "[[zones]]\nname = \"zoné\"\ncontext = \"ü\"\n".as_bytes()),
        ("huge_memory", b"[cockroachdb]\nmemory_limit = \"99999999999999999999999Ei\"\n[[zones]]\nname = \"a\"\ncontext = \"a\"\n"),
    ];
    for (name, bytes) in cases {
        let file = format!("{name}.toml");
        std::fs::write(work.path(&file), bytes).unwrap();
        let run = work.run(&["plan", &file]);
        assert_eq!(run.code, 2, "{name}: {}", run.stderr);
        assert_eq!(run.stdout, "", "{name}");
        assert!(run.stderr.starts_with("error: "), "{name}: {}", run.stderr);
    }
    let deep = format!("x = {}1{}\n", "[".repeat(5000), "]".repeat(5000));
    work.write("deep.toml", &deep);
    let run = work.run(&["plan", "deep.toml"]);
    assert_eq!(run.code, 2, "{}", run.stderr);

    for missing in ["does-not-exist.toml", "."] {
        let run = work.run(&["plan", missing]);
        assert_eq!(run.code, 2, "{missing}: {}", run.stderr);
        assert!(
            run.stderr
                .starts_with(&format!("error: could not read config file {missing}")),
            "{}",
            run.stderr
        );
    }
}

// ---------------------------------------------------------------------------
// Templates

#[test]
fn a_template_override_dir_tunes_the_statefulset_end_to_end() {
    let baseline = Work::new();
    baseline.ok(&["plan", "example.toml"]);

    let work = Work::new();
    let line = "terminationGracePeriodSeconds: 60";
    assert!(BUILTIN_STATEFULSET.contains(line));
    work.write(
        "my-templates/statefulset.yaml",
        &BUILTIN_STATEFULSET.replace(line, "terminationGracePeriodSeconds: 300"),
    );
    work.edit_example(
        "# templates_dir = \"my-templates\"",
        "templates_dir = \"my-templates\"",
    );
    work.ok(&["plan", "example.toml"]);

    for zone in ZONES {
        let rel = format!("generated/{zone}/14-{zone}-statefulset-cockroachdb.yaml");
        let tuned = work.read_string(&rel);
        let doc = yaml(&tuned);
        assert_eq!(
            doc["spec"]["template"]["spec"]["terminationGracePeriodSeconds"], 300,
            "{zone}"
        );
        // Only that field changed; the rest is what the built-in renders.
        let builtin = baseline.read_string(&rel);
        assert_ne!(tuned, builtin);
        assert_eq!(
            tuned.replace(
                "terminationGracePeriodSeconds: 300",
                "terminationGracePeriodSeconds: 60"
            ),
            builtin,
            "{zone}"
        );
        // Templates that were not overridden render as before.
        let pdb = format!("generated/{zone}/11-{zone}-poddisruptionbudget-cockroachdb-budget.yaml");
        assert_eq!(work.read(&pdb), baseline.read(&pdb));
    }
}

/// Override dirs that must be refused, with what the error must name.
const BAD_TEMPLATES: &[(&str, &str, &str, &[&str])] = &[
    (
        // An unknown field, in a document starting on line 4 of the output.
        "unknown_field",
        "pdb.yaml",
        "# my PDB\n# tuned\n---\napiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata:\n  name: cockroachdb-budget\n  namespace: {{ namespace }}\nspec:\n  maxUnavailable: 1\n  minAvailabel: 2\n",
        &[
            "template pdb.yaml line 4",
            "PodDisruptionBudget",
            "spec.minAvailabel",
        ],
    ),
    (
        "wrong_type",
        "services.yaml",
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: cockroachdb-public\n  namespace: {{ namespace }}\nspec:\n  ports:\n    - port: lots\n",
        &["template services.yaml line 1", "not a valid Service"],
    ),
    (
        "undefined_variable",
        "pdb.yaml",
        "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata:\n  name: {{ names.pdb_name }}\n",
        &["template pdb.yaml line 4"],
    ),
    (
        "not_yaml",
        "pdb.yaml",
        "apiVersion: policy/v1\nkind: [PodDisruptionBudget\n",
        &["template pdb.yaml line 1", "not valid YAML"],
    ),
    (
        "unsupported_kind",
        "pdb.yaml",
        "apiVersion: policy/v1beta1\nkind: PodDisruptionBudget\nmetadata:\n  name: cockroachdb-budget\n  namespace: {{ namespace }}\n",
        &[
            "template pdb.yaml line 1",
            "policy/v1beta1 PodDisruptionBudget",
        ],
    ),
    (
        "wrong_namespace",
        "pdb.yaml",
        "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata:\n  name: cockroachdb-budget\n  namespace: kube-system\nspec:\n  maxUnavailable: 1\n",
        &["template pdb.yaml line 1", "kube-system"],
    ),
    (
        "unknown_template_name",
        "statefulset.yml",
        "apiVersion: apps/v1\n",
        &["statefulset.yml does not override any built-in template"],
    ),
];

#[test]
fn a_template_override_that_yields_an_invalid_object_exits_2_naming_template_and_line() {
    for (case, file, text, needles) in BAD_TEMPLATES {
        let work = Work::new();
        work.write(&format!("my-templates/{file}"), text);
        work.edit_example(
            "# templates_dir = \"my-templates\"",
            "templates_dir = \"my-templates\"",
        );
        let run = work.run(&["plan", "example.toml", "-o", "yaml", "--all-zones"]);
        assert_eq!(run.code, 2, "{case}: {}", run.stderr);
        assert_eq!(run.stdout, "", "{case}");
        assert!(
            run.stderr.lines().any(|l| l.starts_with("error: ")),
            "{case}: {}",
            run.stderr
        );
        for needle in *needles {
            assert!(
                run.stderr.contains(needle),
                "{case}: no {needle:?} in\n{}",
                run.stderr
            );
        }
        assert!(
            !work.path("generated").exists(),
            "{case}: manifests written"
        );
        // A broken template is found before any certificate is created.
        assert!(
            !work.path("certs").exists() && !work.path("my-safe-directory").exists(),
            "{case}: certificates written"
        );
        work.snapshot(&format!("bad_template_{case}"), &run.stderr);
    }
}

#[test]
fn a_missing_template_dir_exits_2() {
    let work = Work::new();
    work.edit_example(
        "# templates_dir = \"my-templates\"",
        "templates_dir = \"my-templates\"",
    );
    let run = work.run(&["plan", "example.toml"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("my-templates"), "{}", run.stderr);
    work.snapshot("missing_template_dir", &run.stderr);
}

// ---------------------------------------------------------------------------
// The command line itself

#[test]
fn help_and_version_exit_0_on_stdout() {
    let work = Work::new();
    let help = work.ok(&["--help"]);
    assert!(help.stdout.contains("plan"), "{}", help.stdout);
    assert!(
        help.stdout.contains("Exit codes: 0 success, 1"),
        "{}",
        help.stdout
    );
    assert_eq!(help.stderr, "");

    let plan_help = work.ok(&["plan", "--help"]);
    for flag in ["--output", "--dns-address", "--generated-dir"] {
        assert!(
            plan_help.stdout.contains(flag),
            "{flag}:\n{}",
            plan_help.stdout
        );
    }
    let help_plan = work.ok(&["help", "plan"]);
    assert_eq!(help_plan.stdout, plan_help.stdout);

    let version = work.ok(&["--version"]);
    assert!(
        version
            .stdout
            .starts_with(&format!("crdb-multiregion {}", env!("CARGO_PKG_VERSION"))),
        "{}",
        version.stdout
    );
}

/// `git log -1` of this checkout, in the format `--version` shows, or None
/// when the sources are not a git checkout (a tarball).
fn git_head() -> Option<String> {
    let out = Command::new("git")
        .args(["log", "-1", "--format=%h %cs"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[test]
fn version_names_the_git_commit_and_its_date() {
    let version = Work::new().ok(&["--version"]).stdout;
    match git_head() {
        Some(head) => assert_eq!(
            version.trim(),
            format!("crdb-multiregion {} ({head})", env!("CARGO_PKG_VERSION"))
        ),
        None => assert_eq!(
            version.trim(),
            format!("crdb-multiregion {}", env!("CARGO_PKG_VERSION"))
        ),
    }
}

#[test]
fn completions_are_valid_scripts_that_know_every_command() {
    let work = Work::new();
    let bash = work.ok(&["completions", "bash"]).stdout;
    for word in [
        "plan",
        "apply",
        "diff",
        "teardown",
        "check",
        "--wait-timeout",
        "--purge-local",
    ] {
        assert!(bash.contains(word), "bash completion lacks {word}");
    }
    work.write("completion.bash", &bash);
    let syntax = Command::new("bash")
        .args(["-n", "completion.bash"])
        .current_dir(work.dir.path())
        .output()
        .expect("run bash -n");
    assert!(
        syntax.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&syntax.stderr)
    );
    // Loaded into a real bash, it registers a completion for the binary.
    let loaded = Command::new("bash")
        .args([
            "-c",
            "source completion.bash && complete -p crdb-multiregion",
        ])
        .current_dir(work.dir.path())
        .output()
        .expect("run bash");
    assert!(
        loaded.status.success(),
        "{}",
        String::from_utf8_lossy(&loaded.stderr)
    );

    assert!(
        work.ok(&["completions", "zsh"])
            .stdout
            .starts_with("#compdef crdb-multiregion")
    );
    assert!(
        work.ok(&["completions", "fish"])
            .stdout
            .contains("complete -c crdb-multiregion")
    );
    let bad = work.run(&["completions", "tcsh"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(bad.stderr.contains("possible values"), "{}", bad.stderr);
}

#[test]
fn man_page_documents_every_command_and_renders_without_warnings() {
    let work = Work::new();
    let page = work.ok(&["man"]).stdout;
    assert!(page.contains(".TH crdb-multiregion 1"), "{page}");
    for section in ["PLAN", "APPLY", "DIFF", "TEARDOWN", "CHECK", "COMPLETIONS"] {
        assert!(
            page.contains(&format!(".SH \"CRDB-MULTIREGION {section}\"")),
            "no section for {section}"
        );
    }
    // Every subcommand's flags are there, with roff's escaped hyphens kept
    // literal inside the no-fill blocks.
    assert!(page.contains("--purge-local") && page.contains("--probe-timeout"));

    // Rendered by a real man(1), when the machine has one: no warnings.
    work.write("crdb-multiregion.1", &page);
    let Ok(out) = Command::new("man")
        .args(["--warnings", "-l", "crdb-multiregion.1"])
        .env("MANWIDTH", "100")
        .current_dir(work.dir.path())
        .stdin(Stdio::null())
        .output()
    else {
        return;
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stderr), "", "man warnings");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("CRDB-MULTIREGION TEARDOWN"), "{text}");
}

#[test]
fn man_and_completions_into_a_closed_pipe_exit_0_quietly() {
    let work = Work::new();
    for args in [&["man"][..], &["completions", "bash"][..]] {
        // A pipe whose reading end is already closed: every write fails
        // with EPIPE, as when `| head` has exited.
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let out = Command::new(BIN)
            .args(args)
            .current_dir(work.dir.path())
            .stdin(Stdio::null())
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .expect("run crdb-multiregion");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert_eq!(stderr, "", "{args:?}");
    }
}

// ---------------------------------------------------------------------------
// Local files: only ours are ever deleted, dangerous directories are refused

#[test]
fn plan_never_deletes_a_user_file_named_like_a_manifest() {
    let work = Work::new();
    work.ok(&["plan", "example.toml"]);
    // A file of the user's, named like ours, and one of ours the user edited.
    work.write("generated/us-east1-b/99-my-extra-config.yaml", "mine\n");
    let job = "generated/us-east1-b/15-us-east1-b-job-cluster-init-secure.yaml";
    let edited = format!("{}# reviewed\n", work.read_string(job));
    work.write(job, &edited);

    // The init Job moves to another zone: ours would now be stale.
    let west = "[[zones]]\nname = \"us-west1-a\"\ncontext = \"gke_cockroach1_us-west1-a_cockroachdb2\"\nregion = \"us-west1\"\n\n";
    let reordered = EXAMPLE.replacen(west, "", 1).replacen(
        "[[zones]]\nname = \"us-east1-b\"",
        &format!("{west}[[zones]]\nname = \"us-east1-b\""),
        1,
    );
    work.write("example.toml", &reordered);
    work.ok(&["plan", "example.toml"]);
    assert_eq!(
        work.read_string("generated/us-east1-b/99-my-extra-config.yaml"),
        "mine\n"
    );
    assert_eq!(
        work.read_string(job),
        edited,
        "an edited file is not ours any more"
    );
}

#[test]
fn generated_or_certs_dir_that_holds_the_config_or_a_repository_is_refused() {
    let cases = [
        (
            "generated_dir = \"generated\"",
            "generated_dir = \".\"",
            "generated_dir",
            "it is the config file's directory",
        ),
        (
            "generated_dir = \"generated\"",
            "generated_dir = \"..\"",
            "generated_dir",
            "it contains the config file's directory",
        ),
        (
            "dir = \"certs\"",
            "dir = \".\"",
            "certs.dir",
            "it is the config file's directory",
        ),
        (
            "dir = \"certs\"",
            "dir = \"checkout\"",
            "certs.dir",
            "it holds a repository (.git)",
        ),
    ];
    for (from, to, key, why) in cases {
        let work = Work::new();
        std::fs::create_dir_all(work.path("checkout/.git")).unwrap();
        work.edit_example(from, to);
        let run = work.run(&["plan", "example.toml"]);
        assert_eq!(run.code, 2, "{to}: {}", run.stderr);
        let problems = problem_lines(&run.stderr, "example.toml");
        assert!(
            problems
                .iter()
                .any(|l| l.contains(&format!(": {key}: ")) && l.contains(why)),
            "{to}: {}",
            run.stderr
        );
        assert!(
            !work.path("my-safe-directory").exists(),
            "{to}: nothing written"
        );
    }

    // The repository the command runs in, even with the config elsewhere.
    let work = Work::new();
    std::fs::create_dir_all(work.path("repo/.git")).unwrap();
    std::fs::create_dir_all(work.path("repo/src")).unwrap();
    work.edit_example(
        "generated_dir = \"generated\"",
        "generated_dir = \"../repo\"",
    );
    std::fs::create_dir_all(work.path("conf")).unwrap();
    std::fs::rename(work.path("example.toml"), work.path("conf/example.toml")).unwrap();
    let run = Command::new(BIN)
        .args(["plan", "../../conf/example.toml"])
        .current_dir(work.path("repo/src"))
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("generated_dir: "), "{stderr}");
    assert!(stderr.contains("the repository"), "{stderr}");

    // --generated-dir gets the same rule.
    let work = Work::new();
    let run = work.run(&["plan", "example.toml", "--generated-dir", "."]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("it is the config file's directory"),
        "{}",
        run.stderr
    );
}

#[test]
fn relative_paths_resolve_against_the_config_files_directory() {
    let work = Work::new();
    std::fs::create_dir_all(work.path("project")).unwrap();
    std::fs::rename(work.path("example.toml"), work.path("project/example.toml")).unwrap();
    std::fs::create_dir_all(work.path("elsewhere")).unwrap();
    let run = Command::new(BIN)
        .args(["plan", "../project/example.toml"])
        .current_dir(work.path("elsewhere"))
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(work.path("project/certs/ca.crt").is_file());
    assert!(work.path("project/my-safe-directory/ca.key").is_file());
    assert!(work.path("project/generated/us-east1-b").is_dir());
    assert_eq!(dir_listing(&work.path("elsewhere")), Vec::<String>::new());
}

/// Runs the binary and waits at most 60 s for it (killing it after that), so
/// that a run that never ends fails the test instead of hanging it.
fn run_bounded(work: &Work, args: &[&str]) -> std::process::Output {
    let mut child = Command::new(BIN)
        .args(args)
        .current_dir(work.dir.path())
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let what = format!("crdb-multiregion {}", args.join(" "));
    crate::harness::wait_bounded(&mut child, std::time::Duration::from_secs(60), &what);
    child.wait_with_output().unwrap()
}

#[test]
fn plan_of_a_device_or_huge_file_is_refused_instead_of_read_forever() {
    let work = Work::new();
    let out = run_bounded(&work, &["plan", "/dev/zero"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("not a regular file"), "{stderr}");

    work.write("big.toml", &"# padding\n".repeat(200_000));
    let run = work.run(&["plan", "big.toml"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("larger than"), "{}", run.stderr);
}

#[test]
fn concurrent_plans_on_a_fresh_certs_dir_make_one_ca() {
    let work = Work::new();
    let children: Vec<_> = (0..6)
        .map(|_| {
            Command::new(BIN)
                .args(["plan", "example.toml", "-o", "yaml", "--all-zones"])
                .current_dir(work.dir.path())
                .env("NO_COLOR", "1")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut cas = BTreeSet::new();
    let mut created = 0;
    for child in children {
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        if stderr.contains("CA created") {
            created += 1;
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let secret = stdout
            .split("\n---\n")
            .find(|d| d.contains("kind: Secret") && d.contains("name: cockroachdb.node"))
            .expect("a node Secret in the output");
        let secret: Secret = serde_json::from_value(yaml(secret)).unwrap();
        cas.insert(secret.data.unwrap()["ca.crt"].0.clone());
    }
    assert_eq!(created, 1, "exactly one run creates the CA");
    assert_eq!(cas.len(), 1, "every run used the same CA");
    assert_eq!(&work.read("certs/ca.crt"), cas.first().unwrap());
    // The files on disk are consistent: the next run reuses every one of them
    // (it checks key/certificate pairs and the chain to the CA).
    let run = work.ok(&["plan", "example.toml"]);
    assert_every_certificate_reused(&run);
}

#[test]
fn a_dangling_symlink_at_ca_key_is_an_error_not_replaced() {
    let work = Work::new();
    std::fs::create_dir_all(work.path("my-safe-directory")).unwrap();
    std::os::unix::fs::symlink(
        "/nonexistent-vault/ca.key",
        work.path("my-safe-directory/ca.key"),
    )
    .unwrap();
    let run = work.run(&["plan", "example.toml"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("symbolic link"), "{}", run.stderr);
    let meta = std::fs::symlink_metadata(work.path("my-safe-directory/ca.key")).unwrap();
    assert!(meta.file_type().is_symlink());
}

#[test]
fn flag_values_beyond_their_range_are_usage_errors_not_panics() {
    let work = Work::new();
    for (flag, value, says) in [
        ("--concurrency", "2305843009213693952", "from 0 to 1000"),
        ("--concurrency", "1001", "from 0 to 1000"),
        ("--wait-timeout", "18446744073709551615", "at most 168h"),
        ("--wait-timeout", "18446744073709551615m", "at most 168h"),
        ("--timeout", "9999999999999h", "at most 168h"),
        ("--preflight-timeout", "0", "greater than zero"),
    ] {
        let run = work.run(&["apply", "example.toml", flag, value]);
        assert_eq!(run.code, 2, "{flag} {value}: {}", run.stderr);
        assert!(
            run.stderr.starts_with("error: ") && run.stderr.contains(says),
            "{flag} {value}: {}",
            run.stderr
        );
    }
}

/// Runs the binary with stdin, stdout and stderr as given; returns the exit code.
fn run_with_streams(work: &Work, args: &[&str], stdout: Stdio, stderr: Stdio) -> i32 {
    let status = Command::new(BIN)
        .args(args)
        .current_dir(work.dir.path())
        .env_remove("RUST_LOG")
        .env_remove("KUBECONFIG")
        .env("HOME", work.dir.path())
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .status()
        .expect("run crdb-multiregion");
    status
        .code()
        .unwrap_or_else(|| panic!("{args:?} was killed by a signal: {status:?}"))
}

#[test]
fn a_stderr_that_cannot_be_written_never_panics() {
    let work = Work::new();
    let full = || Stdio::from(std::fs::File::create("/dev/full").unwrap());
    // Progress lines (plan) and an error (no kubeconfig) into a full device.
    assert_eq!(
        run_with_streams(&work, &["plan", "example.toml"], Stdio::null(), full()),
        0
    );
    assert_eq!(
        run_with_streams(&work, &["apply", "example.toml"], Stdio::null(), full()),
        2
    );
    // And into a pipe nobody reads any more.
    let mut child = Command::new(BIN)
        .args(["plan", "example.toml"])
        .current_dir(work.dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stderr.take());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{status:?}");
}

#[test]
fn plan_yaml_into_a_closed_pipe_ends_quietly_with_0() {
    let work = Work::new();
    let mut child = Command::new(BIN)
        .args(["plan", "example.toml", "-o", "yaml", "--all-zones"])
        .current_dir(work.dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // `| head` that has gone before the output comes (the whole stream would
    // fit into the pipe's buffer, so reading some first proves nothing).
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("error"), "{stderr}");
}

#[test]
fn plan_yaml_into_a_full_device_exits_2_saying_so() {
    let work = Work::new();
    let out = Command::new(BIN)
        .args(["plan", "example.toml", "-o", "yaml", "--all-zones"])
        .current_dir(work.dir.path())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create("/dev/full").unwrap())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("error: could not write to stdout")
            && stderr.contains("No space left on device"),
        "{stderr}"
    );
}

#[test]
fn a_missing_kubeconfig_is_one_line_with_the_path_and_a_hint() {
    let work = Work::new();
    let run = work.run(&["apply", "example.toml", "--kubeconfig", "nope.yaml"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(
        run.stderr,
        "error: kubeconfig nope.yaml does not exist (given with --kubeconfig)\n\n\
         hint: pass the path of an existing kubeconfig to --kubeconfig\n"
    );

    // The default path, when KUBECONFIG is not set.
    let out = Command::new(BIN)
        .args(["diff", "example.toml"])
        .current_dir(work.dir.path())
        .env_remove("KUBECONFIG")
        .env("HOME", work.dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let home = work.dir.path().display().to_string();
    assert!(
        stderr.starts_with(&format!(
            "error: kubeconfig {home}/.kube/config does not exist (the default path, as KUBECONFIG is not set)\n\nhint: pass --kubeconfig PATH or set KUBECONFIG"
        )),
        "{stderr}"
    );
    assert_eq!(stderr.matches(".kube/config").count(), 1, "{stderr}");
    assert!(!stderr.contains("os error"), "{stderr}");

    // KUBECONFIG naming only files that do not exist.
    let out = Command::new(BIN)
        .args(["teardown", "example.toml", "--yes"])
        .current_dir(work.dir.path())
        .env("KUBECONFIG", "a.yaml:b.yaml")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.starts_with(
            "error: none of the kubeconfig files listed in KUBECONFIG exists: a.yaml, b.yaml\n"
        ),
        "{stderr}"
    );
}

// ---------------------------------------------------------------------------
// Values that reach a shell or an object

/// Issue: `region` with `;`, `$(...)` or a newline went unquoted into the
/// `bash -ecx` start command and `plan` exited 0. Now every such value is
/// refused with its line, nothing is written, and the exit code is 2.
#[test]
fn plan_refuses_shell_metacharacters_and_values_the_api_server_rejects() {
    for (name, from, to, expect) in [
        (
            "semicolon",
            "region = \"us-east1\"",
            "region = \"us-east1;touch pwned\"",
            "10: zones[0].region: \"us-east1;touch pwned\" must be a valid label value",
        ),
        (
            "substitution",
            "region = \"us-east1\"",
            "region = \"$(touch pwned)\"",
            "10: zones[0].region",
        ),
        (
            "newline",
            "region = \"us-east1\"",
            "region = \"us-east1\\ntouch pwned\"",
            "10: zones[0].region",
        ),
        (
            "quote",
            "region = \"us-east1\"",
            "region = \"us-east1'\"",
            "10: zones[0].region",
        ),
        (
            "zero_storage",
            "storage = \"100Gi\"",
            "storage = \"0\"",
            "11: cockroachdb.storage: \"0\" must be greater than zero",
        ),
        (
            "zero_width_image",
            "image = \"cockroachdb/cockroach:v25.4.1\"",
            "image = \"cockroachdb/cockroach:v25.4.1\u{200b}\"",
            "9: cockroachdb.image: \"cockroachdb/cockroach:v25.4.1\\u{200b}\" contains '\\u{200b}' (U+200B)",
        ),
        (
            "empty_annotation_key",
            "cloud = \"gke\"                  # gke | eks | aks | generic",
            "cloud = \"gke\"\nannotations = { \"\" = \"x\" }",
            "17: dns.annotations: key \"\" is not a valid annotation key",
        ),
        (
            "negative_cpu",
            "# cpu_request = \"2\"",
            "cpu_request = \"-2\"",
            "15: cockroachdb.cpu_request: \"-2\" is not a Kubernetes quantity: it must not be negative",
        ),
    ] {
        let work = Work::new();
        work.edit_example(from, to);
        // The line of the edited value's last line (where the key is).
        let text = EXAMPLE.replacen(from, to, 1);
        let end = text.find(to).unwrap() + to.len();
        let line = text[..end].matches('\n').count() + 1;
        let expect = format!("example.toml:{line}:{expect}");
        let run = work.run(&["plan", "example.toml"]);
        assert_eq!(run.code, 2, "{name}: {}", run.stderr);
        assert!(
            run.stderr.contains(&expect),
            "{name}: {expect}\n{}",
            run.stderr
        );
        assert!(!work.path("generated").exists(), "{name}: wrote manifests");
        assert!(!work.path("pwned").exists(), "{name}");
    }
}

#[test]
fn a_write_error_names_the_file_that_could_not_be_written() {
    let work = Work::new();
    work.ok(&["plan", "example.toml"]);
    // Something that cannot be replaced by a file, where a manifest goes.
    let target = "generated/us-west1-a/dns-forwarding.yaml";
    std::fs::remove_file(work.path(target)).unwrap();
    work.write(&format!("{target}/keep"), "x");
    let run = work.run(&["plan", "example.toml"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!("writing {target}")),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains(".tmp-"), "{}", run.stderr);
    assert_eq!(work.read_string(&format!("{target}/keep")), "x");
}

#[test]
fn plan_yaml_on_a_terminal_warns_that_it_prints_private_keys() {
    let work = Work::new();
    // Piped (as in `plan -o yaml > file`): data only, no warning.
    let run = work.ok(&["plan", "example.toml", "-o", "yaml", "--all-zones"]);
    assert!(run.stdout.contains("PRIVATE KEY") || run.stdout.contains("node.key"));
    assert!(!run.stderr.contains("private keys"), "{}", run.stderr);
    // On a terminal (util-linux `script` gives the command a pty).
    let out = Command::new("script")
        .args([
            "-qec",
            &format!("{BIN} plan example.toml -o yaml --all-zones"),
            "/dev/null",
        ])
        .current_dir(work.dir.path())
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .expect("`script` (util-linux) is needed to give plan a terminal");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("holds the Secrets with private keys"),
        "{text}"
    );
}

#[test]
fn plan_zone_prints_only_that_zones_documents() {
    let work = Work::new();
    let run = work.ok(&["plan", "example.toml", "-o", "yaml", "--zone", "us-west1-a"]);
    let headers: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.starts_with("# zone: "))
        .collect();
    assert!(!headers.is_empty(), "{}", run.stdout);
    for h in &headers {
        assert!(
            h.starts_with("# zone: us-west1-a, context: gke_cockroach1_us-west1-a_cockroachdb2,"),
            "{h}"
        );
    }
    for other in ["us-east1-b", "us-central1-a"] {
        assert!(
            !run.stdout.contains(&format!("namespace: {other}\n")),
            "{other} leaked into the stream"
        );
    }
    // Files are still written for every zone.
    for zone in ZONES {
        assert!(work.path("generated").join(zone).is_dir(), "{zone}");
    }
    // Two zones, in config order.
    let two = work.ok(&[
        "plan",
        "example.toml",
        "-o",
        "yaml",
        "--zone",
        "us-central1-a",
        "--zone",
        "us-east1-b",
    ]);
    let zones: Vec<&str> = two
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("# zone: "))
        .filter_map(|l| l.split(',').next())
        .collect();
    let mut seen = zones.clone();
    seen.dedup();
    assert_eq!(seen, vec!["us-east1-b", "us-central1-a"]);
}

#[test]
fn plan_yaml_of_several_zones_is_refused_unless_asked_for_before_writing() {
    let work = Work::new();
    let run = work.run(&["plan", "example.toml", "-o", "yaml"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(run.stdout, "");
    assert_eq!(
        run.stderr,
        "error: plan -o yaml would print the objects of all 3 zones (us-east1-b, us-west1-a, us-central1-a) on one stream, and `kubectl apply -f -` would put all of them into one cluster; print one zone with --zone ZONE and apply it with `kubectl --context <its context> apply -f -`, or pass --all-zones to print every zone (each document headed by its zone and context)\n"
    );
    assert!(!work.path("certs").exists() && !work.path("generated").exists());
    // Files alone never mix anything: plan without -o yaml writes them.
    work.ok(&["plan", "example.toml"]);
    // One zone, or every zone when asked, each document headed by its zone.
    let one = work.ok(&["plan", "example.toml", "-o", "yaml", "--zone", "us-west1-a"]);
    let all = work.ok(&["plan", "example.toml", "-o", "yaml", "--all-zones"]);
    let zones_of = |yaml: &str| -> BTreeSet<String> {
        yaml.lines()
            .filter_map(|l| l.strip_prefix("# zone: "))
            .filter_map(|l| l.split(',').next())
            .map(str::to_string)
            .collect()
    };
    assert_eq!(
        zones_of(&one.stdout),
        BTreeSet::from(["us-west1-a".to_string()])
    );
    assert_eq!(zones_of(&all.stdout).len(), 3);
    // A config of one zone has nothing to mix.
    work.write("one.toml", "[[zones]]\nname = \"solo\"\ncontext = \"c\"\n");
    let solo = work.ok(&["plan", "one.toml", "-o", "yaml"]);
    assert_eq!(zones_of(&solo.stdout), BTreeSet::from(["solo".to_string()]));
    // --all-zones and --zone say opposite things.
    let both = work.run(&[
        "plan",
        "example.toml",
        "-o",
        "yaml",
        "--all-zones",
        "--zone",
        "us-west1-a",
    ]);
    assert_eq!(both.code, 2, "{}", both.stderr);
}

#[test]
fn plan_zone_that_is_not_in_the_config_exits_2_with_a_suggestion_before_writing() {
    let work = Work::new();
    let run = work.run(&["plan", "example.toml", "-o", "yaml", "--zone", "us-west1"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(run.stdout, "");
    assert!(
        run.stderr
            .starts_with("error: --zone us-west1: no zone \"us-west1\" in ")
            && run.stderr.contains("(did you mean \"us-west1-a\"?)"),
        "{}",
        run.stderr
    );
    assert!(!work.path("certs").exists() && !work.path("generated").exists());
}

#[test]
fn status_and_diff_with_a_zone_not_in_the_config_exit_2_with_a_suggestion_before_connecting() {
    let work = Work::new();
    for command in ["status", "diff"] {
        // The kubeconfig does not exist: the zone is checked first.
        let run = work.run(&[
            command,
            "example.toml",
            "--zone",
            "us-east1",
            "--kubeconfig",
            "no-such-kubeconfig",
        ]);
        assert_eq!(run.code, 2, "{command}: {}", run.stderr);
        assert_eq!(run.stdout, "", "{command}");
        assert!(
            run.stderr
                .starts_with("error: --zone us-east1: no zone \"us-east1\" in ")
                && run.stderr.contains("(did you mean \"us-east1-b\"?)"),
            "{command}: {}",
            run.stderr
        );
    }
}
