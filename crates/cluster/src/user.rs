//! Which OS account runs `initdb` and `postgres`.
//!
//! PostgreSQL refuses to run as root. When we are root, the server runs as the
//! `postgres` OS user (looked up in `/etc/passwd`, falling back to `id`);
//! otherwise it runs as the current user.

use std::fs;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

/// The account the server runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Account {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
}

/// The OS user the server runs as when we are root.
pub(crate) const SERVER_OS_USER: &str = "postgres";

/// `Ok(None)`: run as ourselves. `Ok(Some(_))`: switch to that account.
/// `Err(())`: we are root and there is no `postgres` user to switch to.
pub(crate) fn server_account(euid: u32) -> Result<Option<Account>, ()> {
    if euid != 0 {
        return Ok(None);
    }
    lookup(SERVER_OS_USER).map(Some).ok_or(())
}

/// Makes `cmd` run as `account` (no-op for `None`).
pub(crate) fn run_as(cmd: &mut Command, account: Option<Account>) {
    if let Some(account) = account {
        cmd.uid(account.uid).gid(account.gid);
    }
}

fn lookup(name: &str) -> Option<Account> {
    if let Ok(passwd) = fs::read_to_string("/etc/passwd")
        && let Some(account) = parse_passwd(&passwd, name)
    {
        return Some(account);
    }
    // Users from NSS sources other than /etc/passwd (LDAP, ...).
    Some(Account {
        uid: id(&["-u", name])?,
        gid: id(&["-g", name])?,
    })
}

fn parse_passwd(passwd: &str, name: &str) -> Option<Account> {
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        if fields.next()? != name {
            return None;
        }
        let _password = fields.next()?;
        let uid = fields.next()?.parse().ok()?;
        let gid = fields.next()?.parse().ok()?;
        Some(Account { uid, gid })
    })
}

fn id(args: &[&str]) -> Option<u32> {
    let output = Command::new("id")
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    String::from_utf8(output.stdout).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::{Account, parse_passwd};

    #[test]
    fn finds_user_in_passwd() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n\
                      postgresql:x:7:7::/:/bin/sh\n\
                      postgres:x:101:104:PostgreSQL administrator,,,:/var/lib/postgresql:/bin/bash\n";
        assert_eq!(
            parse_passwd(passwd, "postgres"),
            Some(Account { uid: 101, gid: 104 })
        );
        assert_eq!(parse_passwd(passwd, "nobody"), None);
    }
}
