//! `cargo fuzz run sse`: see `mcp_hangar::fuzz::sse`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mcp_hangar::fuzz::sse(data));
