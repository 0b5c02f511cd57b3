//! A `json` value's text as `to_jsonb` makes it `jsonb` and `jsonb::text`
//! prints it: objects' keys in jsonb's order (shorter first, then by
//! bytes), the last of equal keys kept, numbers as `numeric` prints them,
//! strings' escapes decoded and written as PostgreSQL's `escape_json`
//! does, `", "` and `": "` between items.

/// A value read, its scalars already in `jsonb::text`'s form.
enum Node {
    Scalar(String),
    Array(Vec<Node>),
    /// Keys decoded, in the text's order.
    Object(Vec<(String, Node)>),
}

/// `text` (a `json` value's) as `jsonb::text` prints `to_jsonb` of it,
/// appended to `out`; false, with nothing appended, when it is not JSON
/// read here: what `jsonb` refuses (`\u0000`, a lone surrogate), nesting
/// deeper than [`super::JSON_DEPTH`], a number too large for
/// [`super::write_number`].
pub(super) fn write(out: &mut String, text: &str) -> bool {
    let mut reader = Reader {
        text,
        bytes: text.as_bytes(),
        at: 0,
    };
    let Some(node) = reader.value(0) else {
        return false;
    };
    reader.space();
    if reader.at != reader.bytes.len() {
        return false;
    }
    print(out, node);
    true
}

fn print(out: &mut String, node: Node) {
    match node {
        Node::Scalar(text) => out.push_str(&text),
        Node::Array(items) => {
            out.push('[');
            for (i, item) in items.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                print(out, item);
            }
            out.push(']');
        }
        Node::Object(mut pairs) => {
            // Stable: of equal keys the last stays last, and is kept.
            pairs
                .sort_by(|(a, _), (b, _)| a.len().cmp(&b.len()).then_with(|| a.as_bytes().cmp(b.as_bytes())));
            let mut kept: Vec<(String, Node)> = Vec::with_capacity(pairs.len());
            for pair in pairs {
                match kept.last_mut() {
                    Some(last) if last.0 == pair.0 => *last = pair,
                    _ => kept.push(pair),
                }
            }
            out.push('{');
            for (i, (key, value)) in kept.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                crate::rows::write_string(out, &key);
                out.push_str(": ");
                print(out, value);
            }
            out.push('}');
        }
    }
}

struct Reader<'a> {
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    /// JSON's white space (PostgreSQL's json lexer: the same four).
    fn space(&mut self) {
        while matches!(self.bytes.get(self.at), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn value(&mut self, depth: usize) -> Option<Node> {
        if depth > super::JSON_DEPTH {
            return None;
        }
        self.space();
        match self.bytes.get(self.at)? {
            b'{' => {
                self.at += 1;
                let mut pairs = Vec::new();
                self.space();
                if self.bytes.get(self.at) == Some(&b'}') {
                    self.at += 1;
                    return Some(Node::Object(pairs));
                }
                loop {
                    self.space();
                    let key = self.string()?;
                    self.space();
                    if self.bytes.get(self.at) != Some(&b':') {
                        return None;
                    }
                    self.at += 1;
                    let value = self.value(depth + 1)?;
                    pairs.push((key, value));
                    self.space();
                    match self.bytes.get(self.at)? {
                        b',' => self.at += 1,
                        b'}' => {
                            self.at += 1;
                            return Some(Node::Object(pairs));
                        }
                        _ => return None,
                    }
                }
            }
            b'[' => {
                self.at += 1;
                let mut items = Vec::new();
                self.space();
                if self.bytes.get(self.at) == Some(&b']') {
                    self.at += 1;
                    return Some(Node::Array(items));
                }
                loop {
                    items.push(self.value(depth + 1)?);
                    self.space();
                    match self.bytes.get(self.at)? {
                        b',' => self.at += 1,
                        b']' => {
                            self.at += 1;
                            return Some(Node::Array(items));
                        }
                        _ => return None,
                    }
                }
            }
            b'"' => {
                let decoded = self.string()?;
                let mut text = String::with_capacity(decoded.len() + 2);
                crate::rows::write_string(&mut text, &decoded);
                Some(Node::Scalar(text))
            }
            b't' => self.literal("true"),
            b'f' => self.literal("false"),
            b'n' => self.literal("null"),
            _ => {
                let start = self.at;
                if self.bytes.get(self.at) == Some(&b'-') {
                    self.at += 1;
                }
                while matches!(
                    self.bytes.get(self.at),
                    Some(b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-')
                ) {
                    self.at += 1;
                }
                let number = self.text.get(start..self.at)?;
                let mut text = String::with_capacity(number.len());
                super::write_number(&mut text, number).then_some(Node::Scalar(text))
            }
        }
    }

    fn literal(&mut self, word: &'static str) -> Option<Node> {
        let end = self.at + word.len();
        if self.bytes.get(self.at..end)? != word.as_bytes() {
            return None;
        }
        self.at = end;
        Some(Node::Scalar(word.to_string()))
    }

    /// A string at the reader's position, its escapes decoded.
    fn string(&mut self) -> Option<String> {
        if self.bytes.get(self.at) != Some(&b'"') {
            return None;
        }
        self.at += 1;
        let mut decoded = String::new();
        loop {
            let run = self.bytes[self.at..]
                .iter()
                .position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
            decoded.push_str(self.text.get(self.at..self.at + run)?);
            self.at += run;
            match self.bytes[self.at] {
                b'"' => {
                    self.at += 1;
                    return Some(decoded);
                }
                b'\\' => {
                    let escaped = *self.bytes.get(self.at + 1)?;
                    self.at += 2;
                    match escaped {
                        b'"' => decoded.push('"'),
                        b'\\' => decoded.push('\\'),
                        b'/' => decoded.push('/'),
                        b'b' => decoded.push('\u{8}'),
                        b'f' => decoded.push('\u{c}'),
                        b'n' => decoded.push('\n'),
                        b'r' => decoded.push('\r'),
                        b't' => decoded.push('\t'),
                        b'u' => {
                            let high = self.hex4()?;
                            let code = match high {
                                // jsonb refuses \u0000.
                                0 => return None,
                                0xd800..=0xdbff => {
                                    if self.bytes.get(self.at..self.at + 2)? != b"\\u" {
                                        return None;
                                    }
                                    self.at += 2;
                                    let low = self.hex4()?;
                                    if !(0xdc00..=0xdfff).contains(&low) {
                                        return None;
                                    }
                                    0x10000 + ((high - 0xd800) << 10) + (low - 0xdc00)
                                }
                                0xdc00..=0xdfff => return None,
                                code => code,
                            };
                            decoded.push(char::from_u32(code)?);
                        }
                        _ => return None,
                    }
                }
                // A control character unescaped: not JSON.
                _ => return None,
            }
        }
    }

    fn hex4(&mut self) -> Option<u32> {
        let digits = self.text.get(self.at..self.at + 4)?;
        if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        self.at += 4;
        u32::from_str_radix(digits, 16).ok()
    }
}
