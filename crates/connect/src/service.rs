//! Connection services (`pg_service.conf`), as libpq finds them: the user's
//! file (`PGSERVICEFILE`, else `~/.pg_service.conf`) first, then the
//! system's (`PGSYSCONFDIR/pg_service.conf`, else Debian's
//! `/etc/postgresql-common/pg_service.conf`). A service is a `[name]`
//! section of `keyword=value` lines; `#` starts a comment.

use std::path::PathBuf;

use super::ConnectError;
use super::settings::{Env, Setting};

/// Where libpq on Debian looks for the system's service file.
const SYSCONFDIR: &str = "/etc/postgresql-common";

/// The settings of the service named by `service`, each with its file.
pub(crate) fn lookup(service: &Setting, env: &Env) -> Result<Vec<(String, String, PathBuf)>, ConnectError> {
    let mut searched = Vec::new();
    for file in files(env) {
        let text = match std::fs::read_to_string(&file) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                searched.push(file);
                continue;
            }
            Err(error) => {
                return Err(ConnectError::Service {
                    message: format!("cannot read service file {}: {error}", file.display()),
                });
            }
        };
        if let Some(pairs) =
            section(&text, &service.value).map_err(|(line, message)| ConnectError::Service {
                message: format!("{}:{line}: {message}", file.display()),
            })?
        {
            return Ok(pairs.into_iter().map(|(k, v)| (k, v, file.clone())).collect());
        }
        searched.push(file);
    }
    let looked: Vec<String> = searched.iter().map(|f| f.display().to_string()).collect();
    Err(ConnectError::Service {
        message: format!(
            "definition of service `{}` ({}) not found (looked in: {})\n  help: add a [{}] section to ~/.pg_service.conf, or set PGSERVICEFILE to the file that has it",
            service.value,
            service.origin,
            looked.join(", "),
            service.value
        ),
    })
}

fn files(env: &Env) -> Vec<PathBuf> {
    let mut files = Vec::new();
    match env.get("PGSERVICEFILE") {
        Some(file) => files.push(PathBuf::from(file)),
        None => files.extend(env.home_dir().map(|home| home.join(".pg_service.conf"))),
    }
    let sysconf = env.get("PGSYSCONFDIR").unwrap_or(SYSCONFDIR);
    files.push(PathBuf::from(sysconf).join("pg_service.conf"));
    files
}

/// The `keyword=value` pairs of section `name`, `None` if there is no such
/// section; `Err((line, message))` for a line that is not a setting.
type Pairs = Vec<(String, String)>;

fn section(text: &str, name: &str) -> Result<Option<Pairs>, (usize, String)> {
    let mut found: Option<Pairs> = None;
    let mut inside = false;
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(header) = line.strip_prefix('[') {
            if inside {
                break;
            }
            let header = header
                .strip_suffix(']')
                .ok_or((index + 1, "a section header lacks its `]`".to_string()))?;
            inside = header == name;
            if inside {
                found = Some(Vec::new());
            }
            continue;
        }
        if !inside {
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .ok_or((index + 1, format!("`{line}` is not `keyword=value`")))?;
        let key = key.trim();
        if key == "service" {
            return Err((
                index + 1,
                "nested service specifications are not supported".to_string(),
            ));
        }
        if let Some(pairs) = found.as_mut() {
            pairs.push((key.to_string(), value.trim().to_string()));
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Origin;

    #[test]
    fn reads_one_section() {
        let text = "# services\n[other]\nhost=a\n\n[shop]\nhost = db.internal\nport=6543\n# comment\nsslmode=verify-full\n[next]\nhost=b\n";
        assert_eq!(
            section(text, "shop").unwrap().unwrap(),
            vec![
                ("host".to_string(), "db.internal".to_string()),
                ("port".to_string(), "6543".to_string()),
                ("sslmode".to_string(), "verify-full".to_string()),
            ]
        );
        assert_eq!(section(text, "none").unwrap(), None);
        assert_eq!(section("[s]\nservice=t\n", "s").unwrap_err().0, 2);
        assert_eq!(section("[s]\nhost\n", "s").unwrap_err().0, 2);
    }

    #[test]
    fn user_file_first_then_system_file_and_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let user = dir.path().join("user.conf");
        std::fs::write(&user, "[a]\nhost=from-user\n").unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/pg_service.conf"),
            "[a]\nhost=from-system\n[b]\nhost=sys-b\n",
        )
        .unwrap();
        let env = Env::empty()
            .var("PGSERVICEFILE", user.to_str().unwrap())
            .var("PGSYSCONFDIR", dir.path().join("etc").to_str().unwrap());
        let setting = |name: &str| Setting {
            value: name.to_string(),
            origin: Origin::Var("PGSERVICE"),
        };
        assert_eq!(lookup(&setting("a"), &env).unwrap()[0].1, "from-user");
        assert_eq!(lookup(&setting("b"), &env).unwrap()[0].1, "sys-b");
        let error = lookup(&setting("c"), &env).unwrap_err().to_string();
        assert!(
            error.contains("definition of service `c` (from PGSERVICE) not found"),
            "{error}"
        );
    }
}
