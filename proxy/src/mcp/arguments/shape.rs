//! The usual tool schema checked on the arguments' text: an object whose properties each name
//! their JSON types, some of them required, others perhaps refused. Most tools' `inputSchema`
//! is just that (what FastMCP and the SDKs generate from a function's signature), and their
//! arguments can be judged by the first byte of each value, with no tree built and no
//! validator run.
//!
//! A [`Shape`] only ever says "valid for sure": anything it does not know exactly as the
//! validator does (a number that is not a plain integer where only integers are allowed, an
//! escaped or repeated key, a value of the wrong type, a required member missing) is left to
//! the tree and the validator, whose answer, and error message, then stands.

use serde_json::{Map, Value};

use crate::jsonrpc::scan::Members;

/// JSON types as a set, one bit each.
type Types = u8;
const STRING: Types = 1;
const NUMBER: Types = 2;
const INTEGER: Types = 4;
const BOOLEAN: Types = 8;
const NULL: Types = 16;
const ARRAY: Types = 32;
const OBJECT: Types = 64;
const ANY: Types = u8::MAX;

/// Keys that describe a schema without constraining what it accepts.
const ANNOTATIONS: [&str; 6] = ["title", "description", "default", "examples", "$comment", "$schema"];

/// The most properties a shape follows (its required ones are a bit set).
const MAX_PROPERTIES: usize = 64;

/// What a simple schema asks of an arguments object.
#[derive(Debug)]
pub struct Shape {
    /// Each property's name and the types it may have.
    properties: Vec<(Box<str>, Types)>,
    /// The properties that must be present, by position.
    required: u64,
    /// Whether members other than the properties are refused (`additionalProperties: false`).
    closed: bool,
}

impl Shape {
    /// The shape of `schema` when it is of the simple kind: `type: "object"`, `properties`
    /// whose schemas have a `type` (a name or a list of names) and annotations only,
    /// `required`, a boolean `additionalProperties`, annotations. `None` for any other schema.
    pub fn of(schema: &Value) -> Option<Self> {
        let schema = schema.as_object()?;
        let known = ["type", "properties", "required", "additionalProperties"];
        if schema.keys().any(|k| !known.contains(&k.as_str()) && !ANNOTATIONS.contains(&k.as_str())) {
            return None;
        }
        if schema.get("type")?.as_str()? != "object" {
            return None;
        }
        let mut properties = Vec::new();
        for (name, property) in schema.get("properties").map_or(Some(&Map::new()), Value::as_object)? {
            properties.push((name.as_str().into(), property_types(property)?));
        }
        let closed = match schema.get("additionalProperties") {
            None => false,
            Some(allowed) => !allowed.as_bool()?,
        };
        let mut required = 0u64;
        for name in schema.get("required").map_or(Some(&Vec::new()), Value::as_array)? {
            let name = name.as_str()?;
            let at = match properties.iter().position(|(n, _): &(Box<str>, Types)| &**n == name) {
                Some(at) => at,
                // Required but refused as an additional property: nothing meets such a schema,
                // and the validator says so.
                None if closed => return None,
                None => {
                    properties.push((name.into(), ANY));
                    properties.len() - 1
                }
            };
            required |= 1u64.checked_shl(u32::try_from(at).ok()?)?;
        }
        (properties.len() <= MAX_PROPERTIES).then_some(Self { properties, required, closed })
    }

    /// Whether the arguments `text` (JSON the request's walk accepted; `None`: no arguments, an
    /// empty object) surely meet the shape. `false` is "not sure", not "invalid".
    pub fn surely_valid(&self, text: Option<&str>) -> bool {
        let Some(text) = text else { return self.required == 0 };
        let bytes = text.as_bytes();
        let Ok(members) = Members::of(bytes) else { return false };
        let mut seen = 0u64;
        for member in members {
            let Ok(member) = member else { return false };
            let key = &bytes[member.key.clone()];
            if key.contains(&b'\\') {
                return false;
            }
            let Some(at) = self.properties.iter().position(|(name, _)| name.as_bytes() == key) else {
                if self.closed {
                    return false;
                }
                continue;
            };
            let bit = 1u64 << at;
            if seen & bit != 0 || !has_type(&bytes[member.value], self.properties[at].1) {
                return false;
            }
            seen |= bit;
        }
        seen & self.required == self.required
    }
}

/// The types a property's schema allows, when the schema is a `type` and annotations only.
fn property_types(schema: &Value) -> Option<Types> {
    let schema = schema.as_object()?;
    if schema.keys().any(|k| k != "type" && !ANNOTATIONS.contains(&k.as_str())) {
        return None;
    }
    match schema.get("type")? {
        Value::String(name) => type_named(name),
        Value::Array(names) if !names.is_empty() => {
            names.iter().try_fold(0, |types, name| Some(types | type_named(name.as_str()?)?))
        }
        _ => None,
    }
}

fn type_named(name: &str) -> Option<Types> {
    Some(match name {
        "string" => STRING,
        "number" => NUMBER,
        "integer" => INTEGER,
        "boolean" => BOOLEAN,
        "null" => NULL,
        "array" => ARRAY,
        "object" => OBJECT,
        _ => return None,
    })
}

/// Whether the JSON value `text` is surely of one of `types`. A number passes as an integer
/// only when it is plainly one (digits, at most 18 of them): what drafts read differently
/// (`1.0`, `1e2`, integers past 64 bits) is left to the validator. Any number passes as a
/// number only without an exponent and within 20 characters: `1e400` is JSON that the
/// validator's tree cannot hold, and its refusal stands.
fn has_type(text: &[u8], types: Types) -> bool {
    let kind = match text.first() {
        Some(b'"') => STRING,
        Some(b'{') => OBJECT,
        Some(b'[') => ARRAY,
        Some(b't' | b'f') => BOOLEAN,
        Some(b'n') => NULL,
        Some(_) => {
            let digits = text.strip_prefix(b"-").unwrap_or(text);
            let integer = (1..=18).contains(&digits.len()) && digits.iter().all(u8::is_ascii_digit);
            let finite = digits.len() <= 20 && !digits.iter().any(|b| matches!(b, b'e' | b'E'));
            return (types & INTEGER != 0 && integer) || (types & NUMBER != 0 && finite);
        }
        None => return false,
    };
    types & kind != 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn shape(schema: &Value) -> Shape {
        Shape::of(schema).expect("a simple schema")
    }

    #[test]
    fn the_usual_schemas_are_simple_and_others_are_not() {
        let fastmcp = json!({"properties": {"text": {"title": "Text", "type": "string"}},
                             "required": ["text"], "title": "echoArguments", "type": "object"});
        assert!(Shape::of(&fastmcp).is_some());
        assert!(Shape::of(&json!({"type": "object"})).is_some());
        assert!(Shape::of(&json!({"type": "object", "additionalProperties": false})).is_some());
        for other in [
            json!({"type": "object", "properties": {"n": {"type": "integer", "minimum": 1}}}),
            json!({"type": "object", "properties": {"s": {"type": "string", "format": "email"}}}),
            json!({"type": "object", "properties": {"s": {"enum": ["a"]}}}),
            json!({"type": "object", "properties": {"s": {"type": "strange"}}}),
            json!({"type": "object", "properties": {"s": {"type": []}}}),
            json!({"type": "object", "additionalProperties": {"type": "string"}}),
            json!({"type": "object", "$defs": {}}),
            // `x` is required and, not being a property, refused: no arguments meet it.
            json!({"type": "object", "required": ["x"], "additionalProperties": false}),
            json!({"type": "array"}),
            json!({"properties": {}}),
            json!(true),
        ] {
            assert!(Shape::of(&other).is_none(), "{other}");
        }
    }

    #[test]
    fn only_what_surely_meets_the_shape_passes() {
        let s = shape(&json!({"type": "object", "required": ["a", "extra"],
            "properties": {"a": {"type": "string"}, "n": {"type": "integer"}, "x": {"type": ["number", "null"]}}}));
        assert!(s.surely_valid(Some(r#"{"a": "x", "extra": [1], "n": -12, "x": null, "other": {}}"#)));
        assert!(s.surely_valid(Some(r#"{"a":"x","extra":0,"x":-1.25}"#)));
        for unsure in [
            r#"{"a": 1, "extra": 0}"#,             // wrong type
            r#"{"a": "x"}"#,                       // a required member missing
            r#"{"a": "x", "extra": 0, "n": 1.0}"#, // an integer only some drafts take
            r#"{"a": "x", "extra": 0, "n": 1234567890123456789}"#,
            r#"{"a": "x", "extra": 0, "x": 1e400}"#, // a number no tree holds
            r#"{"a": "x", "extra": 0, "x": 1.5e3}"#, // an exponent: left to the validator
            r#"{"a": "x", "a": "y", "extra": 0}"#,   // repeated
            r#"{"\u0061": "x", "extra": 0}"#,        // escaped
            r#"["a"]"#,
        ] {
            assert!(!s.surely_valid(Some(unsure)), "{unsure}");
        }
        assert!(!s.surely_valid(None), "no arguments: required members missing");
        assert!(shape(&json!({"type": "object"})).surely_valid(None));
        let closed =
            shape(&json!({"type": "object", "properties": {"a": {"type": "number"}}, "additionalProperties": false}));
        assert!(closed.surely_valid(Some(r#"{"a": 1}"#)));
        assert!(!closed.surely_valid(Some(r#"{"a": 1, "b": 2}"#)));
    }

    /// Random arguments against a few shapes: whatever a shape passes, the validator passes.
    #[test]
    fn what_a_shape_passes_the_validator_passes() {
        let schemas = [
            json!({"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "integer"}}, "required": ["a"]}),
            json!({"type": "object", "properties": {"a": {"type": ["integer", "null"]}, "b": {"type": "boolean"}},
                   "additionalProperties": false, "$schema": "http://json-schema.org/draft-04/schema#"}),
            json!({"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": ["array", "object"]}},
                   "required": ["b"], "$schema": "http://json-schema.org/draft-07/schema#"}),
        ];
        let values = [
            "\"s\"",
            "1",
            "-7",
            "1.0",
            "1.5",
            "-0.25",
            "2e3",
            "123456789012345678",
            "12345678901234567890",
            "true",
            "null",
            "[]",
            "{}",
            "[1,{\"a\":2}]",
            "{\"a\":\"\\u0062\"}",
        ];
        let keys = ["a", "b", "c", "\\u0061"];
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let (mut passed, mut tried) = (0, 0);
        for schema in &schemas {
            let (s, validator) = (shape(schema), jsonschema::validator_for(schema).expect("compiles"));
            for _ in 0..2000 {
                let members: Vec<String> = (0..next(4))
                    .map(|_| format!("\"{}\": {}", keys[next(keys.len())], values[next(values.len())]))
                    .collect();
                let text = format!("{{{}}}", members.join(", "));
                let value: Value = serde_json::from_str(&text).expect("json");
                tried += 1;
                if s.surely_valid(Some(&text)) {
                    passed += 1;
                    assert!(validator.is_valid(&value), "{schema} passed {text}");
                }
            }
        }
        assert!(passed > tried / 10, "the shapes pass many ({passed} of {tried})");
    }
}
