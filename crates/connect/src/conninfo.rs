//! Connection strings as libpq reads them: `postgres://` and `postgresql://`
//! URLs and `key=value` lists, turned into (keyword, value) pairs in the
//! order written. Which keywords exist, and what their values mean, is
//! [`super::settings`]'s business.

/// Parses a URL or a `key=value` connection string.
pub(crate) fn parse(text: &str) -> Result<Vec<(String, String)>, String> {
    let trimmed = text.trim();
    for prefix in ["postgresql://", "postgres://"] {
        if let Some(rest) = trimmed.strip_prefix(prefix) {
            return parse_url(rest);
        }
    }
    if trimmed.contains("://") {
        return Err("a URL must start with postgres:// or postgresql://".to_string());
    }
    parse_key_values(trimmed)
}

/// `[user[:password]@][host[:port][,...]][/dbname][?key=value&...]`, as
/// libpq reads it (percent-encoding everywhere, IPv6 in brackets, a Unix
/// socket directory as a percent-encoded host or `?host=/dir`).
fn parse_url(rest: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let (before_query, query) = match rest.split_once('?') {
        Some((before, query)) => (before, Some(query)),
        None => (rest, None),
    };
    let (authority, path) = match before_query.split_once('/') {
        Some((authority, path)) => (authority, Some(path)),
        None => (before_query, None),
    };
    let hosts = match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => {
            let (user, password) = match userinfo.split_once(':') {
                Some((user, password)) => (user, Some(password)),
                None => (userinfo, None),
            };
            if !user.is_empty() {
                out.push(("user".to_string(), decode(user)?));
            }
            if let Some(password) = password {
                out.push(("password".to_string(), decode(password)?));
            }
            hosts
        }
        None => authority,
    };
    if !hosts.is_empty() {
        let mut host_list = Vec::new();
        let mut port_list = Vec::new();
        for entry in hosts.split(',') {
            let (host, port) = split_host_port(entry)?;
            host_list.push(decode(host)?);
            port_list.push(decode(port)?);
        }
        if host_list.iter().any(|h| !h.is_empty()) {
            out.push(("host".to_string(), host_list.join(",")));
        }
        if port_list.iter().any(|p| !p.is_empty()) {
            out.push(("port".to_string(), port_list.join(",")));
        }
    }
    if let Some(path) = path
        && !path.is_empty()
    {
        out.push(("dbname".to_string(), decode(path)?));
    }
    if let Some(query) = query {
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let Some((key, value)) = pair.split_once('=') else {
                return Err(format!("`{pair}` in the URL's query has no `=`"));
            };
            let key = decode(key)?;
            let value = decode(value)?;
            // JDBC's spelling, which libpq accepts too.
            if key == "ssl" && value == "true" {
                out.push(("sslmode".to_string(), "require".to_string()));
            } else {
                out.push((key, value));
            }
        }
    }
    Ok(out)
}

/// `host`, `host:port`, `[::1]:port`.
fn split_host_port(entry: &str) -> Result<(&str, &str), String> {
    if let Some(rest) = entry.strip_prefix('[') {
        let Some((host, after)) = rest.split_once(']') else {
            return Err(format!("`{entry}`: an IPv6 address in brackets lacks its `]`"));
        };
        return match after {
            "" => Ok((host, "")),
            _ => after
                .strip_prefix(':')
                .map(|port| (host, port))
                .ok_or_else(|| format!("`{entry}`: unexpected `{after}` after the address")),
        };
    }
    Ok(entry.split_once(':').unwrap_or((entry, "")))
}

fn decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("invalid percent-encoding in `{text}`"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("`{text}` does not decode to UTF-8"))
}

/// `key=value key2='quoted value' key3 = 'it\'s'`.
fn parse_key_values(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(out);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(format!(
                "`{key}` has no `=` (a connection string is `key=value` pairs or a postgres:// URL)"
            ));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    Some('\\') => match chars.next() {
                        Some(c) => value.push(c),
                        None => return Err(format!("the value of `{key}` ends in a backslash")),
                    },
                    Some('\'') => break,
                    Some(c) => value.push(c),
                    None => return Err(format!("the quoted value of `{key}` has no closing quote")),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    if let Some(next) = chars.next() {
                        value.push(next);
                    }
                } else {
                    value.push(c);
                }
            }
        }
        out.push((key, value));
    }
}

#[cfg(test)]
mod tests {
    use super::parse;

    fn pairs(text: &str) -> Vec<(String, String)> {
        parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn kv(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn urls() {
        assert_eq!(
            pairs("postgres://app:s%40cret@db.internal:6543/shop?sslmode=verify-full&sslrootcert=system"),
            kv(&[
                ("user", "app"),
                ("password", "s@cret"),
                ("host", "db.internal"),
                ("port", "6543"),
                ("dbname", "shop"),
                ("sslmode", "verify-full"),
                ("sslrootcert", "system"),
            ])
        );
        assert_eq!(
            pairs("postgresql://a:1,b,[::1]:3/db"),
            kv(&[("host", "a,b,::1"), ("port", "1,,3"), ("dbname", "db")])
        );
        assert_eq!(
            pairs("postgres://%2Fvar%2Frun%2Fpostgresql/db"),
            kv(&[("host", "/var/run/postgresql"), ("dbname", "db")])
        );
        assert_eq!(
            pairs("postgres:///db?host=/tmp&ssl=true"),
            kv(&[("dbname", "db"), ("host", "/tmp"), ("sslmode", "require")])
        );
        assert_eq!(pairs("postgres://"), kv(&[]));
        assert!(parse("mysql://x").is_err());
        assert!(parse("postgres://h/db?sslmode").is_err());
        assert!(parse("postgres://h/%zz").is_err());
    }

    #[test]
    fn key_values() {
        assert_eq!(
            pairs("host=/tmp port = 5 dbname='my db' password='it\\'s'"),
            kv(&[
                ("host", "/tmp"),
                ("port", "5"),
                ("dbname", "my db"),
                ("password", "it's")
            ])
        );
        assert_eq!(pairs("  "), kv(&[]));
        assert!(parse("host").is_err());
        assert!(parse("password='open").is_err());
    }
}
