#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chepiao_server::fuzzing::queue_token(data));
