//! The order of a diff-image UPDATE's changed fields in the archive: the
//! keys of its `new_values`, sorted as `pgtrail.changes` sorts them
//! (`ORDER BY` in the database's collation).
//!
//! In a database that sorts text by its bytes (collation `C`) the keys are
//! sorted here. In any other the server is asked, but once per distinct
//! set of keys, not once per row: an UPDATE statement's rows mostly change
//! the same columns, so a slice of 65,536 changes holds a handful of sets.
//! The decoding thread notes the sets it has not seen before the slice is
//! joined ([`KeyOrders::note`]), the reading task has the server sort them
//! ([`SORT_KEYS`]), and the answers are kept for the rest of the partition
//! ([`KeyOrders::learn`]).
//!
//! Consecutive rows mostly have the set of the row before (one statement's
//! rows), so the last set noted and the last set ordered are kept beside
//! the maps and compared key by key before any lookup key is built or
//! hashed.

use std::borrow::Cow;
use std::collections::HashMap;

/// Sorts the keys of sets `$1` (each key's set), `$2` (its position in
/// its set, as sent) and `$3` (the key) in the database's collation, as
/// `pgtrail.changes` does: per set, the positions in that order.
pub(crate) const SORT_KEYS: &str = "
SELECT u.set, array_agg(u.pos ORDER BY u.key, u.pos)
FROM unnest($1::int4[], $2::int4[], $3::text[]) AS u(set, pos, key)
GROUP BY u.set";

/// Sets of keys for the server to sort: the parameters of [`SORT_KEYS`].
#[derive(Debug, Default, PartialEq)]
pub(crate) struct ToSort {
    pub sets: Vec<i32>,
    pub positions: Vec<i32>,
    pub keys: Vec<String>,
}

impl ToSort {
    pub(crate) fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// The orders known so far, by set of keys.
#[derive(Debug)]
pub(crate) struct KeyOrders {
    /// The database sorts text by its bytes: no set needs the server.
    by_bytes: bool,
    /// Each set seen (its keys sorted by bytes, length-prefixed) and its
    /// keys' positions in the collation's order.
    orders: HashMap<Vec<u8>, Vec<u32>>,
    /// The sets asked for and not answered yet, each with its number in
    /// the question.
    asked: HashMap<Vec<u8>, i32>,
    /// A set's lookup key, reused.
    scratch: Vec<u8>,
    /// The lookup key of the last set [`Self::note`] found known or
    /// asked for (empty when none: an empty set is never noted).
    last_noted: Vec<u8>,
    /// The lookup key of the last set [`Self::order`] ordered and its
    /// positions (empty when none).
    last_ordered: (Vec<u8>, Vec<u32>),
}

impl KeyOrders {
    /// Orders for a database that sorts text by its bytes (`by_bytes`) or
    /// otherwise.
    pub(crate) fn new(by_bytes: bool) -> KeyOrders {
        KeyOrders {
            by_bytes,
            orders: HashMap::new(),
            asked: HashMap::new(),
            scratch: Vec::new(),
            last_noted: Vec::new(),
            last_ordered: (Vec::new(), Vec::new()),
        }
    }

    /// Whether sets of keys need the server's order.
    pub(crate) fn by_server(&self) -> bool {
        !self.by_bytes
    }

    fn lookup_key(keys: &[Cow<'_, [u8]>], out: &mut Vec<u8>) {
        out.clear();
        for key in keys {
            out.extend_from_slice(&(key.len() as u32).to_be_bytes());
            out.extend_from_slice(key);
        }
    }

    /// Whether `keys` are the set whose lookup key is `set` (compared
    /// without building `keys`' own).
    fn is_set(keys: &[Cow<'_, [u8]>], set: &[u8]) -> bool {
        let mut rest = set;
        for key in keys {
            let Some((length, after)) = rest.split_first_chunk::<4>() else {
                return false;
            };
            if u32::from_be_bytes(*length) as usize != key.len() || after.get(..key.len()) != Some(&key[..]) {
                return false;
            }
            rest = &after[key.len()..];
        }
        rest.is_empty()
    }

    /// Notes `keys` (sorted by bytes) in `to_sort` unless their order is
    /// known or already asked for.
    pub(crate) fn note(&mut self, keys: &[Cow<'_, [u8]>], to_sort: &mut ToSort) -> Result<(), String> {
        if self.by_bytes || keys.is_empty() || Self::is_set(keys, &self.last_noted) {
            return Ok(());
        }
        Self::lookup_key(keys, &mut self.scratch);
        if self.orders.contains_key(&self.scratch[..]) || self.asked.contains_key(&self.scratch[..]) {
            self.last_noted.clone_from(&self.scratch);
            return Ok(());
        }
        let set =
            i32::try_from(self.asked.len()).map_err(|_| "too many sets of changed fields".to_string())?;
        for (position, key) in keys.iter().enumerate() {
            let key =
                std::str::from_utf8(key).map_err(|_| "a key of `new_values` is not UTF-8".to_string())?;
            to_sort.sets.push(set);
            to_sort
                .positions
                .push(i32::try_from(position).map_err(|_| "too many changed fields".to_string())?);
            to_sort.keys.push(key.to_string());
        }
        self.asked.insert(self.scratch.clone(), set);
        self.last_noted.clone_from(&self.scratch);
        Ok(())
    }

    /// Keeps the server's answers to the sets asked since the last call:
    /// per set, its keys' positions in the collation's order.
    pub(crate) fn learn(&mut self, answers: Vec<(i32, Vec<i32>)>) -> Result<(), String> {
        let asked = std::mem::take(&mut self.asked);
        // What was asked is known only once answered; what was ordered
        // is looked up again.
        self.last_noted.clear();
        self.last_ordered.0.clear();
        if answers.len() != asked.len() {
            return Err(format!(
                "{} sets of changed fields were sent to be sorted and {} came back",
                asked.len(),
                answers.len()
            ));
        }
        let mut by_number: Vec<Option<Vec<u8>>> = vec![None; asked.len()];
        for (set, number) in asked {
            if let Some(slot) = usize::try_from(number).ok().and_then(|n| by_number.get_mut(n)) {
                *slot = Some(set);
            }
        }
        let mut asked = by_number;
        for (set, positions) in answers {
            let set = usize::try_from(set)
                .ok()
                .and_then(|s| asked.get_mut(s))
                .and_then(Option::take)
                .ok_or_else(|| format!("the sorted keys came back for set {set}, which was not asked"))?;
            let positions = positions
                .into_iter()
                .map(|p| u32::try_from(p).map_err(|_| format!("a key came back at position {p}")))
                .collect::<Result<Vec<u32>, String>>()?;
            self.orders.insert(set, positions);
        }
        Ok(())
    }

    /// `keys` (sorted by bytes) in the database's order.
    pub(crate) fn order<'a>(&mut self, keys: Vec<Cow<'a, [u8]>>) -> Result<Vec<Cow<'a, [u8]>>, String> {
        if self.by_bytes || keys.is_empty() {
            return Ok(keys);
        }
        if !Self::is_set(&keys, &self.last_ordered.0) {
            Self::lookup_key(&keys, &mut self.scratch);
            let positions = self.orders.get(&self.scratch[..]).ok_or_else(|| {
                "a set of changed fields was not sorted before its rows were joined".to_string()
            })?;
            self.last_ordered.1.clone_from(positions);
            self.last_ordered.0.clone_from(&self.scratch);
        }
        let positions = &self.last_ordered.1;
        if positions.len() != keys.len() {
            return Err("the sorted changed fields are another number than the keys".to_string());
        }
        let mut keys: Vec<Option<Cow<'a, [u8]>>> = keys.into_iter().map(Some).collect();
        positions
            .iter()
            .map(|&p| {
                keys.get_mut(p as usize).and_then(Option::take).ok_or_else(|| {
                    format!("the sorted changed fields name position {p} twice or out of range")
                })
            })
            .collect()
    }
}

/// What [`SORT_KEYS`] answers to `to_sort` for a collation that sorts
/// keys as `sort_key` makes them sort by bytes.
#[cfg(test)]
pub(crate) fn answer(to_sort: &ToSort, sort_key: impl Fn(&str) -> String) -> Vec<(i32, Vec<i32>)> {
    let mut sets: Vec<(i32, Vec<(String, i32)>)> = Vec::new();
    for ((set, position), key) in to_sort.sets.iter().zip(&to_sort.positions).zip(&to_sort.keys) {
        let entry = (sort_key(key), *position);
        match sets.iter_mut().find(|(s, _)| s == set) {
            Some((_, keys)) => keys.push(entry),
            None => sets.push((*set, vec![entry])),
        }
    }
    sets.into_iter()
        .map(|(set, mut keys)| {
            keys.sort();
            (set, keys.into_iter().map(|(_, p)| p).collect())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(names: &[&'static str]) -> Vec<Cow<'static, [u8]>> {
        names.iter().map(|n| Cow::Borrowed(n.as_bytes())).collect()
    }

    fn texts(keys: &[Cow<'_, [u8]>]) -> Vec<String> {
        keys.iter()
            .map(|k| String::from_utf8(k.to_vec()).expect("UTF-8"))
            .collect()
    }

    /// What the server answers for a collation that ignores case.
    fn sort_ignoring_case(to_sort: &ToSort) -> Vec<(i32, Vec<i32>)> {
        answer(to_sort, str::to_lowercase)
    }

    #[test]
    fn a_set_is_asked_once_and_its_rows_take_the_servers_order() {
        let mut orders = KeyOrders::new(false);
        assert!(orders.by_server());
        let mut to_sort = ToSort::default();
        let (one, two) = (keys(&["B", "a", "c"]), keys(&["Z", "y"]));
        orders.note(&one, &mut to_sort).expect("noted");
        orders.note(&two, &mut to_sort).expect("noted");
        orders.note(&one, &mut to_sort).expect("asked already");
        assert_eq!(to_sort.sets, [0, 0, 0, 1, 1]);
        assert_eq!(to_sort.positions, [0, 1, 2, 0, 1]);
        assert_eq!(to_sort.keys, ["B", "a", "c", "Z", "y"]);
        assert!(orders.order(one.clone()).is_err(), "not answered yet");
        orders.learn(sort_ignoring_case(&to_sort)).expect("learned");
        assert_eq!(texts(&orders.order(one.clone()).expect("known")), ["a", "B", "c"]);
        assert_eq!(texts(&orders.order(two.clone()).expect("known")), ["y", "Z"]);

        // Known sets are not asked again; an empty set needs no order.
        let mut again = ToSort::default();
        orders.note(&one, &mut again).expect("known");
        orders.note(&[], &mut again).expect("nothing to sort");
        assert!(again.is_empty());
        orders.learn(Vec::new()).expect("nothing was asked");
        assert_eq!(
            orders.order(Vec::new()).expect("empty"),
            Vec::<Cow<'_, [u8]>>::new()
        );
    }

    #[test]
    fn answers_that_do_not_fit_the_question_are_refused() {
        let mut orders = KeyOrders::new(false);
        let mut to_sort = ToSort::default();
        orders.note(&keys(&["a", "b"]), &mut to_sort).expect("noted");
        assert!(orders.learn(vec![]).is_err(), "no answer");
        orders
            .note(&keys(&["a", "b"]), &mut to_sort)
            .expect("noted again");
        assert!(orders.learn(vec![(3, vec![1, 0])]).is_err(), "another set");
        orders
            .note(&keys(&["a", "b"]), &mut to_sort)
            .expect("noted again");
        orders.learn(vec![(0, vec![1, 1])]).expect("kept");
        assert!(orders.order(keys(&["a", "b"])).is_err(), "a position twice");
    }

    #[test]
    fn the_last_set_is_remembered_without_changing_an_answer() {
        let mut orders = KeyOrders::new(false);
        let mut to_sort = ToSort::default();
        let (one, two) = (keys(&["B", "a"]), keys(&["B", "a", "c"]));
        let (prefix, longer) = (keys(&["B"]), keys(&["Ba"]));
        orders.note(&one, &mut to_sort).expect("noted");
        orders.note(&one, &mut to_sort).expect("the last set");
        assert_eq!(to_sort.sets, [0, 0]);
        // An answer refused: the set is asked again, not taken as known.
        assert!(orders.learn(Vec::new()).is_err());
        let mut to_sort = ToSort::default();
        for set in [&one, &one, &two, &prefix, &longer, &two, &one] {
            orders.note(set, &mut to_sort).expect("noted");
        }
        assert_eq!(to_sort.sets, [0, 0, 1, 1, 1, 2, 3]);
        orders.learn(sort_ignoring_case(&to_sort)).expect("learned");
        for _ in 0..2 {
            assert_eq!(texts(&orders.order(one.clone()).expect("known")), ["a", "B"]);
            assert_eq!(texts(&orders.order(one.clone()).expect("known")), ["a", "B"]);
            assert_eq!(texts(&orders.order(two.clone()).expect("known")), ["a", "B", "c"]);
            assert_eq!(texts(&orders.order(prefix.clone()).expect("known")), ["B"]);
            assert_eq!(texts(&orders.order(longer.clone()).expect("known")), ["Ba"]);
        }
        assert!(orders.order(keys(&["a"])).is_err(), "never asked");
        assert!(orders.order(keys(&["B", "a", "d"])).is_err(), "never asked");
    }

    #[test]
    fn a_database_sorting_by_bytes_asks_nothing() {
        let mut orders = KeyOrders::new(true);
        let mut to_sort = ToSort::default();
        orders
            .note(&keys(&["B", "a"]), &mut to_sort)
            .expect("nothing to note");
        assert!(to_sort.is_empty());
        assert_eq!(
            texts(&orders.order(keys(&["B", "a"])).expect("as they are")),
            ["B", "a"]
        );
    }
}
