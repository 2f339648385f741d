#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chepiao_server::fuzzing::jwt(data));
