use serde_json::{json, Value};

use super::*;
use crate::proto::protocol::Era;

fn raw(text: &str) -> Box<RawValue> {
    RawValue::from_string(text.to_owned()).expect("raw")
}

/// What the slow path sends a legacy client for `result`, as a tree.
fn tree_path(id: &str, result: &str) -> Value {
    let result: Value = serde_json::from_str(result).expect("result");
    let finished = crate::mcp::hub::finish_result(result, Era::Legacy);
    serde_json::from_slice(&crate::jsonrpc::result_bytes(&raw(id), &finished)).expect("json")
}

#[test]
fn legacy_responses_lose_the_modern_fields_and_keep_the_rest() {
    let result = r#"{"content":[{"type":"text","text":"resultType"}],"resultType":"complete","isError":false,
        "ttlMs":0,"cacheScope":"public","_meta":{"progressToken":7},"structuredContent":{"resultType":1}}"#;
    let out = legacy_response(&raw(r#""abc""#), result).expect("spliced");
    let got: Value = serde_json::from_slice(&out).expect("json");
    assert_eq!(got, tree_path(r#""abc""#, result));
    assert_eq!(got["result"]["structuredContent"], json!({"resultType": 1}), "only top-level fields go");
    assert_eq!(got["id"], "abc");
    let only_modern = r#"{"resultType":"complete","ttlMs":5}"#;
    assert_eq!(legacy_response(&raw("1"), only_modern).expect("spliced"), br#"{"jsonrpc":"2.0","id":1,"result":{}}"#);
    assert_eq!(legacy_response(&raw("1"), "null").expect("kept"), br#"{"jsonrpc":"2.0","id":1,"result":null}"#);
}

#[test]
fn results_the_splice_cannot_take_go_the_tree_path() {
    for result in [
        r#"{"resultType":"input_required","inputRequests":{}}"#,
        r#"{"resultType":"incomplete"}"#,
        r#"{"content":[],"_meta":{"io.modelcontextprotocol/serverInfo":{}}}"#,
        r#"{"result\u0054ype":"input_required"}"#,
        r#"{"content":[] "isError":true}"#,
    ] {
        assert_eq!(legacy_response(&raw("1"), result), None, "{result}");
    }
}

fn slot_of(params: &str) -> MetaSlot {
    meta_slot(params.as_bytes()).expect("slot")
}

#[test]
fn modern_requests_get_the_envelope_and_lose_the_prefix() {
    let envelope =
        br#""io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{"name":"c"}"#;
    let cases = [
        (r#"{"name":"up__echo","arguments":{"text":"x"}}"#, json!({})),
        (r#"{ "arguments":{"name":"up__no"}, "name" : "up__echo" }"#, json!({})),
        (r#"{"name":"up__echo","_meta":{"progressToken":"p"},"arguments":{}}"#, json!({"progressToken": "p"})),
        (r#"{"_meta":{ },"name":"up__echo"}"#, json!({})),
        (r#"{"_meta":{"progressToken":1},"name":"up__echo"}"#, json!({"progressToken": 1})),
    ];
    for (params, kept_meta) in cases {
        let at = params.find("up__echo").expect("name");
        let out =
            modern_request(42, "tools/call", params.as_bytes(), at..at + 4, &slot_of(params), envelope).expect("fits");
        let got: Value =
            serde_json::from_slice(&out).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out)));
        let mut want_meta = kept_meta;
        want_meta["io.modelcontextprotocol/protocolVersion"] = json!("2026-07-28");
        want_meta["io.modelcontextprotocol/clientInfo"] = json!({"name": "c"});
        assert_eq!(got["id"], 42);
        assert_eq!(got["method"], "tools/call");
        assert_eq!(got["params"]["name"], "echo", "{params}");
        assert_eq!(got["params"]["_meta"], want_meta, "{params}");
        let mut original: Value = serde_json::from_str(params).expect("params");
        original["name"] = json!("echo");
        original["_meta"] = want_meta;
        assert_eq!(got["params"], original, "nothing else changed: {params}");
    }
    assert_eq!(
        modern_request(1, "tools/call", b"{}", 0..0, &MetaSlot::NewAfter(0), b"\"k\":1").expect("fits"),
        br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"_meta":{"k":1}}}"#
    );
    assert_eq!(modern_request(1, "m", b"{}", 5..9, &MetaSlot::NewAfter(0), b"\"k\":1"), None, "a cut past the end");
    assert_eq!(modern_request(1, "m", b"{}", 0..0, &MetaSlot::NewAfter(7), b"\"k\":1"), None, "a slot past the end");
}

#[test]
fn a_meta_that_is_not_an_object_has_no_slot() {
    assert_eq!(meta_slot(br#"{"_meta":1}"#), None);
    assert_eq!(meta_slot(br#"{"_meta":null,"name":"x"}"#), None);
    assert_eq!(meta_slot(br#"{"\u005fmeta":{},"name":"x"}"#), None, "an escaped key could be _meta");
    assert_eq!(meta_slot(b"  {}"), Some(MetaSlot::NewAfter(2)));
    assert_eq!(meta_slot(br#"{"a":{"_meta":{}}, "_meta" : {"p":1}}"#), Some(MetaSlot::Inside(29..36)));
}

/// The property the fast path relies on: where the quick check sees nothing, serde_json can
/// make a tree.
fn check_tree_property(text: &str) {
    if serde_json::from_str::<&RawValue>(text).is_err() {
        return;
    }
    let tree = serde_json::from_str::<Value>(text).is_ok();
    assert!(tree || may_not_make_a_tree(text.as_bytes()), "missed: {text}");
}

#[test]
fn the_quick_tree_check_misses_nothing_serde_refuses() {
    for depth in [10, 63, 64, 65, 126, 127, 128, 129, 200] {
        check_tree_property(&format!("{}1{}", "[".repeat(depth), "]".repeat(depth)));
        check_tree_property(&format!(r#"{}"x"{}"#, r#"{"a":"#.repeat(depth), "}".repeat(depth)));
    }
    let huge = format!(r#"{{"n":1{}}}"#, "0".repeat(400));
    for text in [
        r#"{"s":"\ud800"}"#,
        r#"{"s":"\udc00x"}"#,
        r#"{"s":"\ud83d\ude00"}"#,
        r#"{"n":1e400}"#,
        r#"{"n":-1E400}"#,
        r#"{"n":1e-400}"#,
        &huge,
    ] {
        check_tree_property(text);
        assert!(may_not_make_a_tree(text.as_bytes()), "{text}");
    }
    let plain = r#"{"name":"x","arguments":{"text":"\u00e9 \" [ { 1e400","n":[1,-2.5,300,true,null]}}"#;
    assert!(!may_not_make_a_tree(plain.as_bytes()), "strings hide brackets and numbers");
    // Random texts from the pieces the check reacts to.
    const PIECES: [&str; 16] =
        ["[", "]", "{\"k\":", "}", ",", "\"", "\\ud800", "\\u00e9", "1", "e", "400", "-", ".5", "true", " ", "\\\""];
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    for _ in 0..20_000 {
        let mut text = String::new();
        for _ in 0..12 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            text.push_str(PIECES[(seed % 16) as usize]);
        }
        check_tree_property(&text);
        let _ = crate::jsonrpc::scan::Members::of(text.as_bytes()).map(Iterator::count);
        let _ = legacy_response(&raw("1"), &text);
    }
}
