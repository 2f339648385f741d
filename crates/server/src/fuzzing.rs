//! Entry points for the fuzz targets (`fuzz/`, cargo-fuzz and libFuzzer) and for the test
//! that replays their corpora on every CI run (`tests/api/fuzz_corpora.rs`). Each takes
//! arbitrary bytes, as an attacker or a broken file would send them, and must neither panic
//! nor loop: what it parses it either refuses with an error or accepts, and what it accepts
//! must hold (a signed payload verifies to itself, a token checks only for its owner).
//!
//! | target        | what it parses                                        |
//! |---------------|-------------------------------------------------------|
//! | `qr`          | a ticket's QR payload: parse and verify, sign and verify |
//! | `notify`      | a payment notify: HMAC signature check and body parse |
//! | `queue_token` | a waiting room's queue token                          |
//! | `jwt`         | a login token                                         |
//! | `gate_state`  | the offline gate's state file, then a scan with it    |
//! | `config`      | the configuration file (TOML), then its validation    |

use std::sync::OnceLock;

use chepiao_api::gate::GateState;
use chepiao_api::qr::QrPayload;
use chepiao_flow::signing::TicketSigner;

use crate::hotsale::token::QueueTokens;
use crate::security::auth::Tokens;

/// The fixed seed the targets sign tickets with.
const SEED: [u8; 32] = [7; 32];
/// A fixed "now" (2026-01-01), so a run is reproducible.
const NOW_MS: i64 = 1_767_225_600_000;

fn signer() -> &'static TicketSigner {
    static SIGNER: OnceLock<TicketSigner> = OnceLock::new();
    SIGNER.get_or_init(|| TicketSigner::new(SEED, &[]).expect("no retired keys to parse"))
}

fn text(data: &[u8]) -> &str {
    std::str::from_utf8(data).unwrap_or_default()
}

/// A QR code as a gate reads it; and the bytes as a payload the issuer signs.
pub fn qr(data: &[u8]) {
    let _ = signer().verify(&String::from_utf8_lossy(data));
    if let Ok(payload) = serde_json::from_slice::<QrPayload>(data) {
        let payload = QrPayload { kid: signer().kid().to_string(), ..payload };
        let code = signer().sign(&payload);
        // Gates refuse codes over the QR size limit; the issuer's own payloads are far smaller.
        if code.len() <= chepiao_api::qr::QR_LEN_MAX {
            assert_eq!(signer().verify(&code).expect("a code it signed verifies"), payload);
        }
    }
}

/// A notify: the first line is the signature, the rest the body (as a provider sends them).
pub fn notify(data: &[u8]) {
    let secret = b"fuzz-mockpay-secret";
    let (signature, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (text(&data[..i]), &data[i + 1..]),
        None => ("", data),
    };
    let _ = chepiao_flow::channels::verify_hmac(secret, body, signature);
    let signed = chepiao_flow::channels::sign(secret, body);
    assert!(chepiao_flow::channels::verify_hmac(secret, body, &signed), "its own signature verifies");
    let _ = chepiao_flow::payments::parse_notify("mockpay", body, NOW_MS / 1000);
}

/// A queue token checked for sale `s1` and user 1; and one issued for a fuzzed sale name.
pub fn queue_token(data: &[u8]) {
    let tokens = QueueTokens::new(b"fuzz-queue-key-0123456789", 150);
    let _ = tokens.check(&String::from_utf8_lossy(data), "s1", 1, NOW_MS);
    let _ = QueueTokens::id(&String::from_utf8_lossy(data));
    let sale = String::from_utf8_lossy(data);
    let token = tokens.issue(&sale, 1, NOW_MS + 1_000);
    assert_eq!(tokens.check(&token, &sale, 1, NOW_MS), Ok(NOW_MS + 1_000), "its own token checks");
    assert!(tokens.check(&token, &sale, 2, NOW_MS).is_err(), "not another user's");
}

/// A login token.
pub fn jwt(data: &[u8]) {
    static TOKENS: OnceLock<Tokens> = OnceLock::new();
    let tokens = TOKENS.get_or_init(|| Tokens::new([9; 32], 3600));
    let _ = tokens.verify(&String::from_utf8_lossy(data));
}

/// The offline gate's state file, then a scan of a genuine ticket with it.
pub fn gate_state(data: &[u8]) {
    let Ok(mut state) = serde_json::from_slice::<GateState>(data) else { return };
    let payload = QrPayload {
        sn: "T1".into(),
        run: "G1-20260101".into(),
        from: "VNP".into(),
        to: "AOH".into(),
        class: "SECOND".into(),
        coach: 1,
        seat: "01A".into(),
        pax: "张* 1101**4258".into(),
        nbf: NOW_MS / 1000 - 60,
        exp: NOW_MS / 1000 + 60,
        kid: signer().kid().to_string(),
    };
    let _ = state.scan(&signer().sign(&payload), "VNP", NOW_MS, 60);
    let _ = state.scan(&String::from_utf8_lossy(data), "VNP", NOW_MS, i64::MAX);
}

/// The configuration file, over the defaults, then its validation.
pub fn config(data: &[u8]) {
    use figment::providers::{Format, Serialized, Toml};
    let figment =
        figment::Figment::from(Serialized::defaults(crate::Config::default())).merge(Toml::string(text(data)));
    if let Ok(config) = figment.extract::<crate::Config>() {
        let _ = config.validate();
    }
}
