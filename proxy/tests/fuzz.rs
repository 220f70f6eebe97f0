//! Runs every fuzz target (`mcp_hangar::fuzz`) over its corpus in `proxy/fuzz/corpus/<target>/`,
//! then over random mutations of it for a fixed time: `HANGAR_FUZZ_SECONDS` per target (1 by
//! default; CI runs longer). A failure prints the input as hex and saves it next to the corpus as
//! `crash-<hash>` so it can be replayed and kept. `HANGAR_FUZZ_SEED` repeats a run.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Bytes mutations like to put in: JSON structure, escapes that trip decoders, SSE and header
/// syntax, multi-byte UTF-8.
const TOKENS: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b":",
    b",",
    b"\\",
    b"\\u",
    b"\\ud800",
    b"\\udc00",
    b"\\u0000",
    b"null",
    b"true",
    b"1e999",
    b"-0",
    b"\"id\":",
    b"\"method\":",
    b"\"params\":",
    b"\"result\":",
    b"\"error\":",
    b"\"name\":",
    b"\"uri\":",
    b"\"_meta\":",
    b"\r",
    b"\n",
    b"\r\n",
    b"\n\n",
    b"data:",
    b"event:",
    b"id:",
    b"retry:",
    b": ",
    b"{+",
    b"{?",
    b"{#",
    b"{/",
    b"{.",
    b"{;",
    b"}",
    b"*",
    b"=?base64?",
    b"?=",
    b"\x00",
    b"\x7f",
    b"\xc3\xa9",
    b"\xe4\xb8\x96",
    b"\xf0\x9f\x98\x80",
    b"\xff",
    b"\xc3",
    b"%",
    b"@",
];

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz").join("corpus").join(target)
}

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus_dir(target))
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.sort();
    let inputs: Vec<Vec<u8>> = files.iter().filter_map(|p| std::fs::read(p).ok()).collect();
    assert!(!inputs.is_empty(), "the corpus of {target} is empty");
    inputs
}

fn mutate(rng: &mut StdRng, input: &[u8], others: &[Vec<u8>]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..rng.gen_range(1..=8) {
        let len = out.len();
        match rng.gen_range(0..7) {
            0 if len > 0 => {
                let i = rng.gen_range(0..len);
                out[i] ^= 1 << rng.gen_range(0..8);
            }
            1 if len > 0 => {
                let i = rng.gen_range(0..len);
                out[i] = rng.gen();
            }
            2 => {
                let token = TOKENS[rng.gen_range(0..TOKENS.len())];
                let at = rng.gen_range(0..=len);
                out.splice(at..at, token.iter().copied());
            }
            3 if len > 0 => {
                let start = rng.gen_range(0..len);
                let end = (start + rng.gen_range(1..=16)).min(len);
                out.drain(start..end);
            }
            4 if len > 0 => {
                let start = rng.gen_range(0..len);
                let end = (start + rng.gen_range(1..=64)).min(len);
                let copy = out[start..end].to_vec();
                let at = rng.gen_range(0..=out.len());
                out.splice(at..at, copy.into_iter().cycle().take((end - start) * rng.gen_range(1..=8)));
            }
            5 if !others.is_empty() => {
                let other = &others[rng.gen_range(0..others.len())];
                let cut = rng.gen_range(0..=len);
                let from = rng.gen_range(0..=other.len());
                out.truncate(cut);
                out.extend_from_slice(&other[from..]);
            }
            _ => {
                let at = rng.gen_range(0..=len);
                let n = rng.gen_range(1..=8);
                out.splice(at..at, (0..n).map(|_| rng.gen::<u8>()));
            }
        }
    }
    out.truncate(1 << 16);
    out
}

fn run(target: &str, f: fn(&[u8]), input: &[u8]) {
    if let Err(panic) = std::panic::catch_unwind(|| f(input)) {
        let why = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_default();
        let name = format!("crash-{:016x}", fxhash(input));
        let path = corpus_dir(target).join(&name);
        let _ = std::fs::write(&path, input);
        let _ = std::panic::take_hook();
        panic!("{target} failed ({why}) on {} (saved as {})", hex(input), path.display());
    }
}

fn fxhash(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &x| (h ^ u64::from(x)).wrapping_mul(0x100_0000_01b3))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn every_fuzz_target_survives_its_corpus_and_mutations() {
    let seconds: f64 = std::env::var("HANGAR_FUZZ_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(1.0);
    let seed: u64 = std::env::var("HANGAR_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    println!("fuzz seed {seed} (HANGAR_FUZZ_SEED repeats this run), {seconds} s per target");
    // Panics are expected to be caught and reported with their input, not printed for each try.
    std::panic::set_hook(Box::new(|_| {}));
    for &(target, f) in mcp_hangar::fuzz::TARGETS {
        let inputs = corpus(target);
        for input in &inputs {
            run(target, f, input);
        }
        let mut rng = StdRng::seed_from_u64(seed ^ fxhash(target.as_bytes()));
        let deadline = Instant::now() + Duration::from_secs_f64(seconds);
        let mut runs = 0u64;
        while Instant::now() < deadline {
            let base = &inputs[rng.gen_range(0..inputs.len())];
            let input = mutate(&mut rng, base, &inputs);
            run(target, f, &input);
            runs += 1;
        }
        println!("{target}: {} corpus inputs, {runs} mutated inputs", inputs.len());
    }
    let _ = std::panic::take_hook();
}
