//! Security advisories against the dependencies this binary was built with: the build embeds
//! its Cargo.lock's registry packages (build.rs), and `gatehouse doctor --advisory-db DIR`
//! reads a RustSec advisory database checkout (offline, e.g. a mirror of
//! github.com/rustsec/advisory-db) and reports every advisory whose affected versions include
//! one of them. Bounded: per-file size, files per package, and the database is only read, never
//! fetched.

use std::path::Path;

use serde::Deserialize;

/// `name version` per line: the registry packages of the Cargo.lock the binary was built from.
const DEPENDENCIES: &str = include_str!(concat!(env!("OUT_DIR"), "/dependencies.txt"));

/// An advisory file is a few KiB; anything past this is not one.
const MAX_FILE: u64 = 256 * 1024;
/// Advisories read per package, at most.
const MAX_PER_PACKAGE: usize = 512;

/// One advisory that applies to a package version this binary was built with.
#[derive(Debug, PartialEq, Eq)]
pub struct Hit {
    pub id: String,
    pub package: String,
    pub version: String,
    /// `unmaintained`, `unsound`, `notice`...; `None` for a vulnerability.
    pub informational: Option<String>,
}

/// What a scan of the database found.
#[derive(Debug, Default)]
pub struct Report {
    pub hits: Vec<Hit>,
    /// Advisory files of our packages that could not be read or parsed (skipped).
    pub unreadable: usize,
    /// Packages checked.
    pub packages: usize,
}

#[derive(Deserialize)]
struct File {
    advisory: Advisory,
    #[serde(default)]
    versions: Versions,
}

#[derive(Deserialize)]
struct Advisory {
    id: String,
    package: String,
    #[serde(default)]
    informational: Option<String>,
    #[serde(default)]
    withdrawn: Option<toml::Value>,
}

#[derive(Default, Deserialize)]
struct Versions {
    #[serde(default)]
    patched: Vec<String>,
    #[serde(default)]
    unaffected: Vec<String>,
}

/// The embedded packages: (name, version).
pub fn dependencies() -> impl Iterator<Item = (&'static str, semver::Version)> {
    DEPENDENCIES.lines().filter_map(|l| {
        let (name, version) = l.split_once(' ')?;
        Some((name, semver::Version::parse(version).ok()?))
    })
}

/// Checks `packages` against the RustSec database at `db` (its `crates/<name>/*.md` files).
pub fn scan<'a>(db: &Path, packages: impl IntoIterator<Item = (&'a str, semver::Version)>) -> std::io::Result<Report> {
    let crates = db.join("crates");
    if !crates.is_dir() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{} is not a RustSec advisory database (no crates/ directory)", db.display()),
        ));
    }
    let mut report = Report::default();
    for (name, version) in packages {
        report.packages += 1;
        // a package name is [A-Za-z0-9_-]: never a path
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            continue;
        }
        let Ok(entries) = std::fs::read_dir(crates.join(name)) else { continue };
        for entry in entries.flatten().take(MAX_PER_PACKAGE) {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "md") {
                continue;
            }
            match read(&path) {
                Some(f) if f.advisory.package == name => match affects(&f.versions, &version) {
                    None => report.unreadable += 1,
                    Some(true) if f.advisory.withdrawn.is_none() => report.hits.push(Hit {
                        id: f.advisory.id,
                        package: name.to_owned(),
                        version: version.to_string(),
                        informational: f.advisory.informational,
                    }),
                    Some(_) => {}
                },
                Some(_) => {}
                None => report.unreadable += 1,
            }
        }
    }
    report.hits.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(report)
}

/// The TOML front matter of an advisory file (between its ```toml fence and the closing one).
fn read(path: &Path) -> Option<File> {
    if std::fs::metadata(path).ok()?.len() > MAX_FILE {
        return None;
    }
    let text = std::fs::read_to_string(path).ok()?;
    let body = text.trim_start().strip_prefix("```toml")?;
    let front = &body[..body.find("\n```")?];
    toml::from_str(front).ok()
}

/// Whether `v` is affected: neither patched nor unaffected. `None` when a requirement does
/// not parse (the advisory is then reported unreadable, not silently passed).
fn affects(versions: &Versions, v: &semver::Version) -> Option<bool> {
    let mut safe = false;
    for req in versions.patched.iter().chain(&versions.unaffected) {
        safe |= semver::VersionReq::parse(req).ok()?.matches(v);
    }
    Some(!safe)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn advisory(dir: &Path, package: &str, id: &str, extra: &str, versions: &str) {
        let d = dir.join("crates").join(package);
        std::fs::create_dir_all(&d).unwrap();
        let text = format!(
            "```toml\n[advisory]\nid = \"{id}\"\npackage = \"{package}\"\ndate = \"2026-01-01\"\n{extra}\n[versions]\n{versions}\n```\n\n# A title\n\nText.\n"
        );
        std::fs::write(d.join(format!("{id}.md")), text).unwrap();
    }

    fn v(s: &str) -> semver::Version {
        semver::Version::parse(s).unwrap()
    }

    #[test]
    fn only_versions_neither_patched_nor_unaffected_are_hits() {
        let db = tempfile::tempdir().unwrap();
        advisory(
            db.path(),
            "demo",
            "RUSTSEC-2099-0001",
            "",
            "patched = [\">= 1.5.1, < 1.6.0\", \">= 1.8.1\"]\nunaffected = [\"< 0.3.0\"]",
        );
        advisory(db.path(), "demo", "RUSTSEC-2099-0002", "informational = \"unmaintained\"", "patched = []");
        advisory(db.path(), "demo", "RUSTSEC-2099-0003", "withdrawn = \"2026-02-01\"", "patched = []");
        advisory(db.path(), "other", "RUSTSEC-2099-0004", "", "patched = []");
        let ids = |version: &str| -> Vec<String> {
            scan(db.path(), [("demo", v(version))]).unwrap().hits.into_iter().map(|h| h.id).collect()
        };
        assert_eq!(ids("1.5.0"), ["RUSTSEC-2099-0001", "RUSTSEC-2099-0002"]);
        assert_eq!(ids("1.5.2"), ["RUSTSEC-2099-0002"], "patched in the 1.5 line");
        assert_eq!(ids("1.9.0"), ["RUSTSEC-2099-0002"]);
        assert_eq!(ids("0.2.9"), ["RUSTSEC-2099-0002"], "unaffected");
        let r = scan(db.path(), [("demo", v("1.7.0"))]).unwrap();
        assert_eq!(r.hits[0].informational, None);
        assert_eq!(r.hits[1].informational.as_deref(), Some("unmaintained"));
        assert_eq!(r.unreadable, 0);
    }

    #[test]
    fn a_broken_or_hostile_database_is_bounded_and_reported() {
        let db = tempfile::tempdir().unwrap();
        assert!(scan(&db.path().join("nope"), [("demo", v("1.0.0"))]).is_err());
        advisory(db.path(), "demo", "RUSTSEC-2099-0005", "", "patched = [\"not a requirement\"]");
        let d = db.path().join("crates/demo");
        std::fs::write(d.join("garbage.md"), "no front matter").unwrap();
        std::fs::write(d.join("huge.md"), "x".repeat(300 * 1024)).unwrap();
        let r = scan(db.path(), [("demo", v("1.0.0")), ("../etc", v("1.0.0"))]).unwrap();
        assert!(r.hits.is_empty());
        assert_eq!(r.unreadable, 3);
        assert_eq!(r.packages, 2);
    }

    #[test]
    fn the_build_embeds_the_lock_files_packages() {
        let deps: Vec<_> = dependencies().collect();
        assert!(deps.iter().any(|(n, _)| *n == "tokio"));
        assert!(deps.iter().any(|(n, _)| *n == "rustls"));
        assert!(!deps.iter().any(|(n, _)| n.starts_with("gatehouse")), "workspace crates are ours, not the registry's");
    }
}
