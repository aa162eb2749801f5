//! Names the commit the binary was built from, for `gatehouse --version`: `GATEHOUSE_COMMIT`
//! when the build sets it (the container build, whose context has no `.git`), else
//! `git rev-parse` when the source is a git checkout, else `unknown` (a source tarball). Changes not yet committed
//! are not flagged: watching the index would rebuild the binary on every `git status`.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn main() {
    // a name, not text: `--version` prints it as is
    let given = std::env::var("GATEHOUSE_COMMIT").ok().filter(|c| {
        (1..=64).contains(&c.len()) && c.chars().all(|ch| ch.is_ascii_alphanumeric() || "._-".contains(ch))
    });
    let name = given
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]).filter(|c| !c.is_empty()))
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=GATEHOUSE_COMMIT={name}");
    // a new commit or checkout moves these
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        for f in ["HEAD", "refs", "packed-refs"] {
            println!("cargo:rerun-if-changed={dir}/{f}");
        }
    }
    println!("cargo:rerun-if-env-changed=GATEHOUSE_COMMIT");
    println!("cargo:rerun-if-changed=build.rs");
    dependencies();
}

/// The registry packages of the workspace's Cargo.lock, one `name version` per line, for
/// `gatehouse doctor` to check against an advisory database. The lock file's whole list: it
/// may name a package this binary does not link (another platform's, a test's), never miss one.
fn dependencies() {
    // read when the script runs, not baked in when it is compiled: one compiled script may run
    // for a copy of the workspace elsewhere (the image-context check shares the target dir)
    let manifest = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    let lock = std::path::Path::new(&manifest).join("../../Cargo.lock");
    println!("cargo:rerun-if-changed={}", lock.display());
    let text = std::fs::read_to_string(&lock).unwrap_or_default();
    let mut out = String::new();
    for block in text.split("[[package]]").skip(1) {
        let field = |k: &str| {
            block
                .lines()
                .find_map(|l| l.strip_prefix(k)?.trim().strip_prefix('=')?.trim().strip_prefix('"')?.strip_suffix('"'))
        };
        if let (Some(name), Some(version), Some(_)) = (field("name"), field("version"), field("source")) {
            out.push_str(name);
            out.push(' ');
            out.push_str(version);
            out.push('\n');
        }
    }
    let dir = std::env::var("OUT_DIR").unwrap_or_default();
    let _ = std::fs::write(std::path::Path::new(&dir).join("dependencies.txt"), out);
}
