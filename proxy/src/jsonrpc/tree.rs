//! A JSON tree of text serde_json has already accepted as a value (a request's `params`, a tool
//! call's `arguments`, a reply's `result`), built without a second validating pass: strings are
//! found with `memchr` and copied whole, where serde_json would test every byte again for the
//! control characters and escapes the first pass already ruled out. On 16 KiB of arguments
//! that is most of the work of checking them against a schema.
//!
//! The builder takes only what it can read exactly as serde_json would; anything else (an
//! escape, a number that is not a plain integer, nesting past [`MAX_DEPTH`]) is handed to
//! serde_json, piece or whole, so the tree, and any error, is always serde_json's own.

use serde_json::{Map, Value};

use super::scan::{skip_ws, string_at};

/// Nesting the builder follows itself; deeper text goes to serde_json whole (its limit is 128,
/// and its error then says what it refused).
const MAX_DEPTH: usize = 100;

/// The tree of `text`, exactly as `serde_json::from_str::<Value>` makes it (or that call's
/// error). `text` must be a value serde_json has accepted (as a `RawValue`, say): the builder
/// relies on that and does not check the grammar again.
pub fn tree(text: &str) -> Result<Value, serde_json::Error> {
    let built = Builder { text }
        .value(skip_ws(text.as_bytes(), 0), 0)
        .filter(|&(_, end)| skip_ws(text.as_bytes(), end) == text.len());
    match built {
        Some((value, _)) => Ok(value),
        None => serde_json::from_str(text),
    }
}

struct Builder<'a> {
    text: &'a str,
}

impl Builder<'_> {
    /// The value starting at `at` and the offset just past it; `None` to leave it to serde_json.
    fn value(&self, at: usize, depth: usize) -> Option<(Value, usize)> {
        let bytes = self.text.as_bytes();
        match *bytes.get(at)? {
            b'"' => self.string(at).map(|(s, end)| (Value::String(s), end)),
            b'{' if depth < MAX_DEPTH => self.object(at, depth + 1),
            b'[' if depth < MAX_DEPTH => self.array(at, depth + 1),
            b't' => literal(bytes, at, "true", Value::Bool(true)),
            b'f' => literal(bytes, at, "false", Value::Bool(false)),
            b'n' => literal(bytes, at, "null", Value::Null),
            b'-' | b'0'..=b'9' => self.number(at),
            _ => None,
        }
    }

    fn object(&self, at: usize, depth: usize) -> Option<(Value, usize)> {
        let bytes = self.text.as_bytes();
        let mut map = Map::new();
        let mut i = skip_ws(bytes, at + 1);
        if bytes.get(i) == Some(&b'}') {
            return Some((Value::Object(map), i + 1));
        }
        loop {
            if bytes.get(i) != Some(&b'"') {
                return None;
            }
            let (key, end) = self.string(i)?;
            i = skip_ws(bytes, end);
            if bytes.get(i) != Some(&b':') {
                return None;
            }
            let (value, end) = self.value(skip_ws(bytes, i + 1), depth)?;
            // A repeated key keeps its last value, as serde_json's own tree does.
            map.insert(key, value);
            i = skip_ws(bytes, end);
            match bytes.get(i)? {
                b',' => i = skip_ws(bytes, i + 1),
                b'}' => return Some((Value::Object(map), i + 1)),
                _ => return None,
            }
        }
    }

    fn array(&self, at: usize, depth: usize) -> Option<(Value, usize)> {
        let bytes = self.text.as_bytes();
        let mut items = Vec::new();
        let mut i = skip_ws(bytes, at + 1);
        if bytes.get(i) == Some(&b']') {
            return Some((Value::Array(items), i + 1));
        }
        loop {
            let (value, end) = self.value(i, depth)?;
            items.push(value);
            i = skip_ws(bytes, end);
            match bytes.get(i)? {
                b',' => i = skip_ws(bytes, i + 1),
                b']' => return Some((Value::Array(items), i + 1)),
                _ => return None,
            }
        }
    }

    /// A string copied whole when it has no escapes; with escapes, serde_json decodes it.
    fn string(&self, at: usize) -> Option<(String, usize)> {
        let (end, escaped) = string_at(self.text.as_bytes(), at).ok()?;
        let decoded = match escaped {
            true => serde_json::from_str(self.text.get(at..end)?).ok()?,
            false => self.text.get(at + 1..end - 1)?.to_owned(),
        };
        Some((decoded, end))
    }

    /// A plain integer read here when it fits its type as serde_json reads it (`-0` is a float
    /// there, and so is an integer out of range); any other number is serde_json's.
    fn number(&self, at: usize) -> Option<(Value, usize)> {
        let bytes = self.text.as_bytes();
        let len =
            bytes[at..].iter().take_while(|b| matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')).count();
        let token = self.text.get(at..at + len)?;
        let digits = token.strip_prefix('-').unwrap_or(token);
        let plain = !digits.is_empty()
            && digits.bytes().all(|b| b.is_ascii_digit())
            && (digits == "0" || !digits.starts_with('0'));
        let value = match (plain, token.starts_with('-')) {
            (true, false) => token.parse::<u64>().ok().map(Value::from),
            (true, true) => token.parse::<i64>().ok().filter(|n| *n < 0).map(Value::from),
            _ => None,
        };
        let value = match value {
            Some(v) => v,
            None => serde_json::from_str::<Value>(token).ok()?,
        };
        Some((value, at + len))
    }
}

fn literal(bytes: &[u8], at: usize, word: &str, value: Value) -> Option<(Value, usize)> {
    bytes[at..].starts_with(word.as_bytes()).then(|| (value, at + word.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The builder's tree is serde_json's, for every text serde_json accepts.
    fn same_as_serde(text: &str) {
        let want = serde_json::from_str::<Value>(text);
        let got = tree(text);
        match (&want, &got) {
            (Ok(w), Ok(g)) => assert!(w == g && format!("{w}") == format!("{g}"), "{text}: {w} != {g}"),
            (Err(w), Err(g)) => assert_eq!(w.to_string(), g.to_string(), "{text}"),
            _ => panic!("{text}: serde {want:?}, builder {got:?}"),
        }
    }

    #[test]
    fn trees_are_serde_jsons_own() {
        for text in [
            r#"{"text":"hello","n":[1,-2,3.5,-0,0,1e3,-1.5E-7,18446744073709551615,18446744073709551616,-9223372036854775808,-9223372036854775809],"b":[true,false,null]}"#,
            r#" { "a" : { "b" : [ ] , "c" : { } } , "a" : "last wins" } "#,
            r#"{"esc":"a\"b\\c\u00e9\ud83d\ude00\n","k\u0065y":1}"#,
            r#""just a string""#,
            "12",
            "-0",
            "[[],[[]],{}]",
            r#"{"s":"\ud800"}"#,
            r#"{"x":1e400}"#,
        ] {
            same_as_serde(text);
        }
        same_as_serde(&format!(r#"{{"text":"{}"}}"#, "x".repeat(16_000)));
    }

    #[test]
    fn plain_texts_are_built_here_not_by_serde_json() {
        let built = |text: &str| Builder { text }.value(skip_ws(text.as_bytes(), 0), 0).is_some();
        assert!(built(r#" {"a":[1,-2,3.5,true,null,{"b":"c\"d"}],"e":{}} "#));
        assert!(built(&format!(r#"{{"text":"{}"}}"#, "x".repeat(16_000))));
        assert!(!built(r#"{"s":"\ud800"}"#), "a lone surrogate is serde_json's to refuse");
        assert!(!built(&format!("{}1{}", "[".repeat(101), "]".repeat(101))));
    }

    #[test]
    fn deep_nesting_is_left_to_serde_json() {
        for depth in [99, 100, 101, 127, 128, 129, 300] {
            same_as_serde(&format!("{}1{}", "[".repeat(depth), "]".repeat(depth)));
            same_as_serde(&format!("{}1{}", r#"{"a":"#.repeat(depth), "}".repeat(depth)));
        }
    }

    fn next(seed: &mut u64, n: usize) -> usize {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        (*seed % n as u64) as usize
    }

    /// A random JSON text: every kind of value, repeated and escaped keys, odd numbers,
    /// whitespace between tokens.
    fn random_json(seed: &mut u64, depth: usize) -> String {
        const SCALARS: [&str; 16] = [
            r#""s""#,
            r#""a\"b""#,
            r#""\u00e9""#,
            r#""\ud83d\ude00""#,
            r#""\ud800""#,
            "1",
            "-0",
            "0.5",
            "-7",
            "1e2",
            "-1.5E-7",
            "true",
            "false",
            "null",
            "99999999999999999999",
            r#""""#,
        ];
        const KEYS: [&str; 4] = [r#""k""#, r#""j""#, r#""\u006b""#, r#""k\n""#];
        let ws = |i: usize| [" ", "", "\n\t", ""][i];
        match next(seed, if depth > 4 { 1 } else { 4 }) {
            0 => SCALARS[next(seed, SCALARS.len())].to_owned(),
            1 => {
                let items: Vec<String> = (0..next(seed, 4)).map(|_| random_json(seed, depth + 1)).collect();
                format!("[{}]", items.join(","))
            }
            _ => {
                let n = next(seed, 4);
                let mut members = Vec::new();
                for _ in 0..n {
                    let key = KEYS[next(seed, KEYS.len())];
                    let sep = ws(next(seed, 4));
                    members.push(format!("{key}{sep}:{sep}{}", random_json(seed, depth + 1)));
                }
                format!("{{{}}}", members.join(","))
            }
        }
    }

    #[test]
    fn random_json_makes_the_same_trees() {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..20_000 {
            same_as_serde(&random_json(&mut seed, 0));
        }
    }
}
