//! `cargo fuzz run credentials`: see `mcp_hangar::fuzz::credentials`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mcp_hangar::fuzz::credentials(data));
