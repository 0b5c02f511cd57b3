//! Progress of `pgtrail.revert`: with `pgtrail.progress = 'on'` it sends a
//! notice after each batch, `pgtrail revert progress: DONE of TOTAL rows`.

/// The setting that turns the notices on for the current transaction.
pub const SETTING: &str = "pgtrail.progress";

const PREFIX: &str = "pgtrail revert progress: ";

/// `(done, total)` rows from a notice's message, if it is a progress notice.
pub fn parse(message: &str) -> Option<(u64, u64)> {
    let rest = message.strip_prefix(PREFIX)?.strip_suffix(" rows")?;
    let (done, total) = rest.split_once(" of ")?;
    Some((done.trim().parse().ok()?, total.trim().parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn reads_the_notice_of_the_sql() {
        assert_eq!(
            parse("pgtrail revert progress: 10000 of 100000 rows"),
            Some((10_000, 100_000))
        );
        assert_eq!(parse("something else"), None);
        assert_eq!(parse("pgtrail revert progress: x of 3 rows"), None);
    }
}
