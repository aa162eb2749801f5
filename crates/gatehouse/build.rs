//! Names the commit the binary was built from, for `gatehouse --version`: `git rev-parse` when
//! the source is a git checkout, else `unknown` (a source tarball). Changes not yet committed
//! are not flagged: watching the index would rebuild the binary on every `git status`.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn main() {
    let name =
        git(&["rev-parse", "--short=12", "HEAD"]).filter(|c| !c.is_empty()).unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=GATEHOUSE_COMMIT={name}");
    // a new commit or checkout moves these
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        for f in ["HEAD", "refs", "packed-refs"] {
            println!("cargo:rerun-if-changed={dir}/{f}");
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}
