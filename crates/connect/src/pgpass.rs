//! The password file (`passfile`, `PGPASSFILE`, else `~/.pgpass`), read as
//! libpq reads it: lines `host:port:database:user:password`, `*` matching
//! anything, `\` escaping `:` and `\`; the first matching line wins. A file
//! that others may read is ignored, with a warning, as libpq does.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::settings::{Env, Settings};

/// The password file that applies, if one is set or `~/.pgpass` exists.
pub(crate) fn file(settings: &Settings, env: &Env) -> Option<PathBuf> {
    match settings.value("passfile") {
        Some(file) => Some(PathBuf::from(file)),
        None => env.home_dir().map(|home| home.join(".pgpass")),
    }
}

/// The password for this host (as written: a name, an address or a socket
/// directory), port, database and user, from `file`.
pub(crate) fn lookup(file: &Path, host: &str, port: &str, dbname: &str, user: &str) -> Option<String> {
    let metadata = std::fs::metadata(file).ok()?;
    if !metadata.is_file() {
        return None;
    }
    if metadata.permissions().mode() & 0o077 != 0 {
        tracing::warn!(
            "password file {} has group or world access; permissions should be u=rw (0600) or less (ignored)",
            file.display()
        );
        return None;
    }
    let text = std::fs::read_to_string(file).ok()?;
    // A socket in the default directories counts as "localhost", as in libpq.
    let host = if host.is_empty() || host == "/var/run/postgresql" || host == "/tmp" {
        "localhost"
    } else {
        host
    };
    text.lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .find_map(|line| {
            let fields = split(line);
            if fields.len() < 5 {
                return None;
            }
            let wanted = [host, port, dbname, user];
            fields[..4]
                .iter()
                .zip(wanted)
                .all(|(field, value)| field == "*" || field == value)
                .then(|| fields[4..].join(":"))
        })
}

/// The fields of one line, unescaped.
fn split(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next()
                    && let Some(field) = fields.last_mut()
                {
                    field.push(next);
                }
            }
            ':' if fields.len() < 5 => fields.push(String::new()),
            c => {
                if let Some(field) = fields.last_mut() {
                    field.push(c);
                }
            }
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str, mode: u32) -> PathBuf {
        let path = dir.join("pgpass");
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn first_matching_line_wins_with_wildcards_and_escapes() {
        let dir = tempfile::tempdir().unwrap();
        let file = write(
            dir.path(),
            "# comment\ndb.internal:6543:shop:app:first\n*:*:*:app:p\\:w\\\\d\nlocalhost:5432:*:*:local\n",
            0o600,
        );
        assert_eq!(
            lookup(&file, "db.internal", "6543", "shop", "app").as_deref(),
            Some("first")
        );
        assert_eq!(
            lookup(&file, "other", "5432", "x", "app").as_deref(),
            Some("p:w\\d")
        );
        assert_eq!(
            lookup(&file, "/var/run/postgresql", "5432", "x", "bob").as_deref(),
            Some("local")
        );
        assert_eq!(lookup(&file, "other", "5432", "x", "bob"), None);
    }

    #[test]
    fn a_file_others_can_read_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let file = write(dir.path(), "*:*:*:*:secret\n", 0o644);
        assert_eq!(lookup(&file, "h", "1", "d", "u"), None);
    }
}
