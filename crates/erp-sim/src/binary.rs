//! Finding the `erp-sim` binary from a test or bench of the workspace, which runs the simulator
//! as a process of its own. Cargo builds a package's binaries for its own tests only
//! (`CARGO_BIN_EXE_*`), not a dependency's, so this builds it with the caller's cargo into the
//! caller's target directory and profile (a no-op when it is up to date) and returns its path.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The `erp-sim` binary of the profile the calling test or bench was built with (`debug` for
/// tests, `release` for `cargo bench`), built first if missing or stale.
pub fn built() -> io::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let (target_dir, profile_dir) = locate(&exe).ok_or_else(|| {
        io::Error::other(format!(
            "{} is not in a cargo target directory (<target>/<profile>/deps/); \
             build the simulator with `cargo build -p erp-sim` and run it directly",
            exe.display()
        ))
    })?;
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev".to_owned(),
        Some(name) => name.to_owned(),
        None => "dev".to_owned(),
    };
    // Cargo sets CARGO for the processes it runs; the same cargo reads the same configuration.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(&cargo)
        .args([
            "build",
            "--quiet",
            "--package",
            "erp-sim",
            "--bin",
            "erp-sim",
        ])
        .arg("--profile")
        .arg(&profile)
        .arg("--target-dir")
        .arg(&target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .map_err(|e| io::Error::other(format!("cannot run {}: {e}", cargo.to_string_lossy())))?;
    if !status.success() {
        return Err(io::Error::other(format!(
            "`cargo build -p erp-sim --profile {profile}` failed: {status}"
        )));
    }
    let bin = profile_dir.join(format!("erp-sim{}", std::env::consts::EXE_SUFFIX));
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(io::Error::other(format!(
            "built, yet {} is missing",
            bin.display()
        )))
    }
}

/// `<target>/<profile>/deps/<exe>` -> (`<target>`, `<target>/<profile>`); also accepts an
/// executable directly in `<target>/<profile>/` (a binary or example).
fn locate(exe: &Path) -> Option<(PathBuf, PathBuf)> {
    let mut dir = exe.parent()?;
    if dir.file_name()? == "deps" || dir.file_name()? == "examples" {
        dir = dir.parent()?;
    }
    Some((dir.parent()?.to_path_buf(), dir.to_path_buf()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_profile_directory_is_above_deps() {
        let (target, profile) =
            locate(Path::new("/w/target/release/deps/load-0123abcd")).expect("located");
        assert_eq!(target, Path::new("/w/target"));
        assert_eq!(profile, Path::new("/w/target/release"));
        let (target, profile) = locate(Path::new("/t/debug/knitcache")).expect("located");
        assert_eq!(target, Path::new("/t"));
        assert_eq!(profile, Path::new("/t/debug"));
    }
}
