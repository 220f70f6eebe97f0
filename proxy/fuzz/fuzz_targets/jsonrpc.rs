//! `cargo fuzz run jsonrpc`: see `mcp_hangar::fuzz::jsonrpc`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mcp_hangar::fuzz::jsonrpc(data));
