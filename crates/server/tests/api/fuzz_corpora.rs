//! Every input the fuzzers kept (`fuzz/corpus/<target>`, from runs of `cargo +nightly fuzz run`)
//! replayed through the same entry points, on every CI run: what once made a target panic, and
//! what reached new code, stays covered without nightly or libFuzzer.

use std::path::Path;

type Target = fn(&[u8]);

const TARGETS: [(&str, Target); 6] = [
    ("qr", chepiao_server::fuzzing::qr),
    ("notify", chepiao_server::fuzzing::notify),
    ("queue_token", chepiao_server::fuzzing::queue_token),
    ("jwt", chepiao_server::fuzzing::jwt),
    ("gate_state", chepiao_server::fuzzing::gate_state),
    ("config", chepiao_server::fuzzing::config),
];

#[test]
fn the_fuzz_corpora_replay_without_a_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    for (name, target) in TARGETS {
        let dir = root.join(name);
        let inputs: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| entry.unwrap().path())
            .collect();
        assert!(!inputs.is_empty(), "{}: an empty corpus replays nothing", dir.display());
        for input in inputs {
            let data = std::fs::read(&input).unwrap();
            let replayed = std::panic::catch_unwind(|| target(&data));
            assert!(replayed.is_ok(), "{name} panics on {}", input.display());
        }
    }
}
