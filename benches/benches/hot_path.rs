//! Micro-benchmarks of the request path: borrowed JSON-RPC parse and header validation, the
//! express path's request head scan and checks, the fast path's routing decision, the
//! authorization decision, checking arguments against a tool's schema, each group selection
//! algorithm, SSE framing, re-addressing a reply to the client's id, a legacy call re-addressed
//! by byte splices against JSON trees, and the reply's outcome scan. Each also counts heap allocations per operation and asserts the count the code
//! is meant to have (none for routing and selection).
//!
//! `cargo bench -p hangar-benches` (criterion prints ns/op; allocations are printed first).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use hangar_config::Strategy;
use mcp_hangar::balance::{Selector, Weighted};
use mcp_hangar::jsonrpc::parse::{Envelope, ParamsHead};
use mcp_hangar::jsonrpc::{result_bytes, sse};
use mcp_hangar::proto::headers::check_modern;
use mcp_hangar::routing::index::{Listed, NameIndex};
use pingora_http::RequestHeader;

/// Heap allocations per call of `f`, over many calls (`allocation-counter` installs a counting
/// global allocator for the bench binary).
fn allocations(mut f: impl FnMut()) -> f64 {
    const N: u64 = 10_000;
    f();
    let counted = allocation_counter::measure(|| {
        for _ in 0..N {
            f();
        }
    });
    counted.count_total as f64 / N as f64
}

const BODY: &[u8] = br#"{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"math__add","arguments":{"a":1,"b":2},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}"#;

fn request_header() -> RequestHeader {
    let mut h = RequestHeader::build("POST", b"/mcp", None).expect("header");
    for (k, v) in [
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "math__add"),
    ] {
        h.insert_header(k, v).expect("header");
    }
    h
}

fn parse_and_validate(c: &mut Criterion) {
    let header = request_header();
    let op = || {
        let (env, _, head) = Envelope::parse_request(black_box(BODY)).expect("valid");
        let head = head.expect("params");
        check_modern(&header, env.method_str(), &head, "2026-07-28").expect("headers match");
        black_box(head.name.is_some())
    };
    let allocs = allocations(|| {
        op();
    });
    println!("parse + header validation: {allocs} allocations/op");
    // The envelope's validating walk builds nothing (serde_json, which read it before, allocated
    // the stack it skips nested values with).
    assert!(allocs == 0.0, "the borrowed parse and validation allocate nothing");
    c.bench_function("parse + header validation (tools/call)", |b| b.iter(op));
    // The envelope alone, as the fast path reads it and as serde_json (its reference) does.
    let text = std::str::from_utf8(BODY).expect("UTF-8");
    assert_eq!(format!("{:?}", Envelope::walked(text)), format!("{:?}", Envelope::parsed(text).ok()));
    c.bench_function("envelope (tools/call): validating walk", |b| b.iter(|| Envelope::walked(black_box(text))));
    c.bench_function("envelope (tools/call): serde_json", |b| b.iter(|| Envelope::parsed(black_box(text)).ok()));
}

/// A `tools/call` with 16 KiB of arguments read as the fast path reads it (the envelope's
/// validating walk, which hands `params`' members over for its head, then the arguments' tree
/// built from the accepted text), against three serde_json passes (the envelope, the head
/// parsed, the arguments parsed), which is how it was read before.
fn large_body(c: &mut Criterion) {
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"up__echo","arguments":{{"text":"{}"}}}}}}"#,
        "x".repeat(16_000)
    );
    let walked = || {
        let (_, _, head) = Envelope::parse_request(black_box(body.as_bytes())).expect("valid");
        let arguments = head.expect("params").arguments.expect("arguments");
        black_box(mcp_hangar::jsonrpc::tree::tree(arguments).expect("tree"))
    };
    let parsed = || {
        let env = Envelope::parsed(black_box(&body)).expect("valid");
        let head: ParamsHead<'_> = serde_json::from_str(env.params.expect("params")).expect("params");
        black_box(serde_json::from_str::<serde_json::Value>(head.arguments.expect("arguments")).expect("tree"))
    };
    assert_eq!(walked(), parsed());
    c.bench_function("16 KiB tools/call read: one pass, then walks", |b| b.iter(walked));
    c.bench_function("16 KiB tools/call read: three serde_json passes", |b| b.iter(parsed));
}

/// The express path's reading of a request head: `httparse` into views over the bytes, then the
/// checks every plain call passes on them (duplicates, content type, Accept, the 2026-07-28
/// headers against the parsed body), with the field table reused as a connection reuses it.
fn head_scan(c: &mut Criterion) {
    use mcp_hangar::front::checks::{accepts, conflicting_duplicate, is_json_body};
    use mcp_hangar::front::request_head::{RequestHead, Scan};
    use mcp_hangar::proto::fields::Fields;
    let mut raw = format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\nMCP-Protocol-Version: 2026-07-28\r\n\
         Mcp-Method: tools/call\r\nMcp-Name: math__add\r\nContent-Length: {}\r\n\r\n",
        BODY.len()
    )
    .into_bytes();
    raw.extend_from_slice(BODY);
    let (env, _) = Envelope::parse(BODY).expect("valid");
    let params = ParamsHead::parse(env.params).expect("params");
    let mut head = RequestHead::default();
    let mut op = || {
        let Scan::Complete(len) = head.scan(black_box(&raw)) else { panic!("a whole head") };
        let view = head.view(&raw[..len]);
        let a = accepts(&view);
        let plain = conflicting_duplicate(&view).is_none()
            && is_json_body(&view)
            && a.json
            && a.sse
            && view.text("mcp-protocol-version") == Some("2026-07-28")
            && check_modern(&view, "tools/call", &params, "2026-07-28").is_ok();
        black_box(plain)
    };
    assert!(op(), "the head is the plain case");
    let allocs = allocations(|| {
        op();
    });
    println!("request head scan + checks: {allocs} allocations/op");
    assert_eq!(allocs, 0.0, "reading and checking a head allocates nothing");
    c.bench_function("request head scan + checks (express path)", |b| b.iter(&mut op));
}

/// The fast path's whole routing decision (`front::fast::destination`) for one of 500 tools of 20
/// remote providers: the index lookup, authorization, the provider's exposure rule and the
/// tool's retry safety from its definition, as a request pays for them.
fn route_lookup(c: &mut Criterion) {
    use mcp_hangar::auth::Principal;
    use mcp_hangar::front::fast::destination;
    let tools: String = (0..25)
        .map(|t| {
            format!(
                "      - {{name: tool{t}, inputSchema: {{type: object}}, annotations: {{readOnlyHint: {}}}}}\n",
                t % 2 == 0
            )
        })
        .collect();
    let providers: String = (0..20)
        .map(|p| format!("  provider{p}:\n    mode: remote\n    endpoint: http://127.0.0.1:9/mcp\n    tools:\n{tools}"))
        .collect();
    let config = hangar_config::parse(&format!("providers:\n{providers}"), "bench.yaml", &|_| None).expect("config");
    // A runtime to enter: the gateway's state is built inside one (nothing is run on it here).
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let _entered = runtime.enter();
    let state = mcp_hangar::state::AppState::new(config);
    let snap = state.snapshot();
    let mut index = NameIndex::default();
    for p in 0..20 {
        for t in 0..25 {
            index.tools.insert(format!("provider{p}__tool{t}"), Listed::new(p, format!("tool{t}")));
        }
    }
    snap.routes.index.store(std::sync::Arc::new(index));
    let who = Principal::local();
    let routes = &snap.routes;
    let op = || black_box(destination(routes, "tools/call", black_box("provider13__tool17"), &who));
    let found = op().map(|d| (d.target, d.prefix_len, d.idempotent, d.listed, d.series.is_some()));
    assert_eq!(found, Some((13, "provider13__".len(), false, true, true)), "found in the index, with its series");
    let allocs = allocations(|| {
        op();
    });
    println!("routing decision (500 tools): {allocs} allocations/op");
    assert_eq!(allocs, 0.0, "routing a call allocates nothing");
    c.bench_function("fast-path routing decision among 500 tools", |b| b.iter(op));
}

fn selection(c: &mut Criterion) {
    let members: Vec<Weighted> = (0..4)
        .map(|i| Weighted { provider: i, weight: 1 + i as u32, priority: (i / 2) as u32, name: format!("member{i}") })
        .collect();
    for (strategy, label) in [
        (Strategy::WeightedRoundRobin, "weighted round-robin"),
        (Strategy::Priority, "priority"),
        (Strategy::LeastConnections, "least connections"),
        (Strategy::ConsistentHash, "consistent hash"),
    ] {
        let selector = Selector::build(strategy, &members);
        let op = || black_box(selector.select(black_box(b"user-42"), |m| m != 1, |m| m * 3));
        let allocs = allocations(|| {
            op();
        });
        println!("select ({label}, 4 members): {allocs} allocations/op");
        assert_eq!(allocs, 0.0, "selection must not allocate");
        c.bench_function(&format!("select: {label}, 4 members"), |b| b.iter(op));
    }
}

fn sse_framing(c: &mut Criterion) {
    let message =
        br#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progress":5,"total":10}}"#;
    let allocs = allocations(|| {
        black_box(sse::frame_message(black_box(message)));
    });
    println!("SSE framing: {allocs} allocations/op (the event's buffer, and its shared header when frozen)");
    assert!(allocs <= 2.0, "framing one event copies it once");
    c.bench_function("SSE framing of one message", |b| b.iter(|| black_box(sse::frame_message(black_box(message)))));
}

fn id_remapping(c: &mut Criterion) {
    let id = serde_json::value::RawValue::from_string("\"client-7\"".into()).expect("id");
    let result = serde_json::json!({"content": [{"type": "text", "text": "3"}], "isError": false});
    let allocs = allocations(|| {
        black_box(result_bytes(&id, &result));
    });
    println!("reply under the client's id: {allocs} allocations/op (the reply buffer)");
    assert!(allocs <= 1.0, "re-addressing writes one buffer");
    c.bench_function("reply re-addressed to the client's id", |b| b.iter(|| black_box(result_bytes(&id, &result))));
}

/// A legacy session's call to a modern upstream, both ways, as the fast path does it (byte
/// splices: the `_meta` envelope into the params, the gateway's id; the reply's result back under
/// the client's id without the modern-only fields) and as the slow path does it (the params and
/// the reply as JSON trees, re-serialised), in the same run.
fn legacy_readdressing(c: &mut Criterion) {
    use mcp_hangar::jsonrpc::splice;
    use mcp_hangar::mcp::hub::finish_result;
    use mcp_hangar::proto::protocol::Era;
    use mcp_hangar::upstream::remote::with_modern_meta;
    use mcp_hangar::upstream::{Caller, SessionKey};
    const REQUEST: &[u8] = br#"{"jsonrpc":"2.0","id":"client-7","method":"tools/call","params":{"name":"math__add","arguments":{"a":1,"b":2},"_meta":{"progressToken":"p-7"}}}"#;
    const REPLY: &[u8] = br#"{"jsonrpc":"2.0","id":912,"result":{"content":[{"type":"text","text":"3"}],"isError":false,"resultType":"complete","ttlMs":0,"cacheScope":"private"}}"#;
    let caller = Caller {
        session: SessionKey::Client("audit".into()),
        capabilities: serde_json::json!({"roots": {"listChanged": true}}),
        client_info: serde_json::json!({"name": "desktop", "version": "1.0"}),
        log_level: None,
        credential: None,
        owner: None,
    };
    let envelope = r#""io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{"roots":{"listChanged":true}},"io.modelcontextprotocol/clientInfo":{"name":"desktop","version":"1.0"}"#;
    let spliced = || {
        let (env, _) = Envelope::parse(black_box(REQUEST)).expect("valid");
        let head = ParamsHead::parse(env.params).expect("params");
        let params = env.params.expect("params");
        let name = head.name.as_deref().expect("name");
        let at = name.as_ptr() as usize - params.as_ptr() as usize;
        let slot = splice::meta_slot(params.as_bytes()).expect("slot");
        let request =
            splice::modern_request(912, "tools/call", params.as_bytes(), at..at + 6, &slot, envelope.as_bytes());
        let (reply, _) = Envelope::parse(black_box(REPLY)).expect("valid");
        let answer = splice::legacy_response(env.id.expect("id"), reply.result.expect("result"));
        black_box((request, answer))
    };
    let tree = || {
        let (env, kind) = Envelope::parse(black_box(REQUEST)).expect("valid");
        let mut params = env.payload(kind).expect("params");
        params["name"] = serde_json::Value::String("add".into());
        let params = with_modern_meta(params, &caller);
        let message = serde_json::json!({"jsonrpc": "2.0", "id": 912, "method": "tools/call", "params": params});
        let request = serde_json::to_vec(&message).expect("serialised");
        let reply: serde_json::Value = serde_json::from_slice(black_box(REPLY)).expect("valid");
        let result = finish_result(reply["result"].clone(), Era::Legacy);
        let answer = result_bytes(env.id.expect("id"), &result);
        black_box((request, answer))
    };
    let (fast, slow) = (spliced(), tree());
    let read = |b: &[u8]| serde_json::from_slice::<serde_json::Value>(b).expect("JSON");
    assert_eq!(read(&fast.0.expect("fits")), read(&slow.0), "the same request either way");
    assert_eq!(read(&fast.1.expect("spliced")), read(&slow.1), "the same answer either way");
    for (label, allocs) in [("splices", allocations(|| drop(spliced()))), ("JSON trees", allocations(|| drop(tree())))]
    {
        println!("legacy call re-addressed with {label}: {allocs} allocations/op");
    }
    c.bench_function("legacy call re-addressed, request and reply: byte splices (fast path)", |b| b.iter(spliced));
    c.bench_function("legacy call re-addressed, request and reply: JSON trees (slow path)", |b| b.iter(tree));
}

/// The outcome scan every fast-path reply goes through (was it a tool error?), over a small reply
/// and over 16 KiB of text content, as JSON and as an SSE event.
fn outcome_scan(c: &mut Criterion) {
    use mcp_hangar::jsonrpc::outcome::{of_json, Outcome};
    let small =
        br#"{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"ok"}],"isError":false}}"#.to_vec();
    let text = "lorem ipsum dolor sit amet, ".repeat((16 << 10) / 28);
    let large = format!(
        r#"{{"jsonrpc":"2.0","id":7,"result":{{"content":[{{"type":"text","text":"{text}"}}],"isError":true}}}}"#
    );
    // A whole JSON reply, or one SSE event's data (the fast path reads each decoded event so).
    for (label, body, outcome) in
        [("small reply", small, Outcome::Result), ("16 KiB of text", large.into_bytes(), Outcome::ToolError)]
    {
        let op = || black_box(of_json(black_box(&body)));
        assert_eq!(op(), outcome, "{label}");
        assert_eq!(
            allocations(|| {
                op();
            }),
            0.0,
            "the walk allocates nothing"
        );
        c.bench_function(&format!("outcome scan, {label}"), |b| b.iter(op));
    }
}

fn authorization(c: &mut Criterion) {
    use hangar_config::{Effect, Rule};
    use mcp_hangar::auth::{Item, Policy, Principal};
    let who = Principal::new("service:ci", vec!["developer".into()], vec!["ops".into()], "api_key");
    let item = Item::Tool { provider: "math", own: "add", exposed: "math__add" };
    let rule = |effect, roles: &[&str], tools: &[&str]| Rule {
        effect,
        principals: Vec::new(),
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        providers: vec!["*".into()],
        tools: Some(tools.iter().map(|t| (*t).to_owned()).collect()),
        prompts: None,
        resources: None,
    };
    for (label, policy) in [
        ("no rules", Policy::default()),
        (
            "5 rules",
            Policy::new(vec![
                rule(Effect::Deny, &["contractor"], &["delete_*"]),
                rule(Effect::Deny, &["developer"], &["drop_*", "truncate_*"]),
                rule(Effect::Allow, &["support"], &["get_*"]),
                rule(Effect::Allow, &["ops"], &["*"]),
                rule(Effect::Allow, &["developer"], &["add", "sub"]),
            ]),
        ),
    ] {
        let op = || black_box(policy.decide(black_box(&who), black_box(&item)).allowed);
        let allocs = allocations(|| {
            op();
        });
        println!("authorization ({label}): {allocs} allocations/op");
        c.bench_function(&format!("authorization decision, {label}"), |b| b.iter(op));
    }
}

fn argument_validation(c: &mut Criterion) {
    use mcp_hangar::mcp::arguments::{check, compile};
    let schema = serde_json::json!({"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}, "required": ["a", "b"]});
    let checker = compile(&schema, "add").expect("compiles");
    let shape = checker.shape.as_ref().expect("a schema of the usual kind");
    let raw = r#"{"a":1,"b":2}"#;
    // As the fast path does it for this schema: the arguments' text, accepted by the envelope's
    // parse, judged by the schema's shape.
    let by_shape = || black_box(shape.surely_valid(Some(black_box(raw))));
    // What the shape is not sure of (and any schema of another kind): a tree and the validator.
    let by_validator = || {
        let args = mcp_hangar::jsonrpc::tree::tree(black_box(raw)).expect("json");
        black_box(check(&checker.validator, "math__add", Some(&args)).is_ok())
    };
    assert!(by_shape() && by_validator());
    let allocs = allocations(|| {
        by_shape();
    });
    println!("argument validation by the schema's shape: {allocs} allocations/op");
    assert_eq!(allocs, 0.0, "the shape reads the text in place");
    let allocs = allocations(|| {
        by_validator();
    });
    println!("argument validation by the validator: {allocs} allocations/op (the parsed arguments)");
    c.bench_function("arguments checked on their text against the schema's shape", |b| b.iter(by_shape));
    c.bench_function("arguments parsed and checked by the schema's validator", |b| b.iter(by_validator));
}

/// The benchmark groups (criterion's macros generate undocumented functions).
#[allow(missing_docs)]
mod group {
    use super::*;
    criterion_group!(
        benches,
        parse_and_validate,
        large_body,
        head_scan,
        route_lookup,
        authorization,
        argument_validation,
        selection,
        sse_framing,
        id_remapping,
        legacy_readdressing,
        outcome_scan
    );
}
criterion_main!(group::benches);
