//! `cargo fuzz run uri_template`: see `mcp_hangar::fuzz::uri_template`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mcp_hangar::fuzz::uri_template(data));
