//! Accounts, tokens and passengers over HTTP: error codes 40001–40008, PII encrypted at rest
//! and masked in answers, every user seeing only their own passengers.

use chepiao_api::users::Credentials;
use reqwest::Method;
use serde_json::json;

use crate::app::{Backend, TestApp, code, spawn_app};

#[tokio::test]
async fn register_login_and_the_auth_error_codes() {
    let app = spawn_app(Backend::Sqlite).await;
    let registered = app.api.register("alice", "correct horse").await.unwrap();
    assert!(registered.user_id > 0);
    assert_eq!(code(app.api.register("alice", "correct horse").await), (400, 40001));
    for (name, password, field) in [
        ("a", "correct horse", "`username`"),
        ("al ice", "correct horse", "`username`"),
        ("bob", "short", "`password`"),
    ] {
        let e = app.api.register(name, password).await.unwrap_err();
        assert_eq!((e.status(), e.code()), (Some(400), Some(40002)), "{e}");
        assert!(e.to_string().contains(field), "{e}");
    }
    let logged_in = app.api.login("alice", "correct horse").await.unwrap();
    assert!(logged_in.expires_at.ends_with("+08:00"));
    app.api.with_token(&logged_in.token).passengers().await.unwrap();
    assert_eq!(code(app.api.login("alice", "wrong horse").await).1, 40004);
    assert_eq!(code(app.api.login("nobody", "x").await).1, 40003);

    // Tokens: missing, malformed, another algorithm, wrong type, expired.
    assert_eq!(code(app.api.passengers().await), (401, 40101));
    assert_eq!(code(app.api.with_token("not.a.token").passengers().await), (401, 40006));
    let forge = forger(&app);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let with = |t: String| app.api.with_token(&t);
    assert_eq!(code(with(forge(jsonwebtoken::Algorithm::HS384, "access", now + 60)).passengers().await).1, 40005);
    assert_eq!(code(with(forge(jsonwebtoken::Algorithm::HS256, "refresh", now + 60)).passengers().await).1, 40008);
    assert_eq!(code(with(forge(jsonwebtoken::Algorithm::HS256, "access", now - 600)).passengers().await).1, 40007);
    let good = with(forge(jsonwebtoken::Algorithm::HS256, "access", now + 60)).passengers().await;
    assert!(good.is_ok(), "a well-signed token works: {good:?}");
}

/// Tokens signed with the server's own key: (algorithm, type, expiry) → token.
fn forger(app: &TestApp) -> impl Fn(jsonwebtoken::Algorithm, &str, u64) -> String {
    use base64::Engine as _;
    let secret = std::fs::read_to_string(app.dir.join("secrets/jwt.key")).unwrap();
    let key = base64::engine::general_purpose::STANDARD.decode(secret.trim()).unwrap();
    move |alg, typ, exp| {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let claims = json!({"sub": "1", "name": "alice", "iat": now, "exp": exp, "typ": typ,
            "iss": "chepiao", "aud": "chepiao-api", "ver": 0});
        jsonwebtoken::encode(&jsonwebtoken::Header::new(alg), &claims, &jsonwebtoken::EncodingKey::from_secret(&key))
            .unwrap()
    }
}

async fn passengers_are_private_masked_and_encrypted(backend: Backend) {
    let app = spawn_app(backend).await;
    let (alice, _, _) = app.user("alice").await;
    let (bob, _, _) = app.user("bob").await;
    let p = alice.add_passenger("张三丰", "ID_CARD", "110101199003074258").await.unwrap();
    assert_eq!((p.name.as_str(), p.id_no_masked.as_str()), ("张**", "1101**********4258"));
    assert_eq!(code(alice.add_passenger("张三丰", "ID_CARD", "110101199003074258").await), (409, 40901));
    // Bob may add the same person; neither sees the other's list.
    bob.add_passenger("张三丰", "ID_CARD", "110101199003074258").await.unwrap();
    bob.add_passenger("Li Na", "PASSPORT", "e1234567").await.unwrap();
    let list = alice.passengers().await.unwrap();
    assert_eq!((list.total, list.items[0].passenger_id), (1, p.passenger_id));
    let list = bob.passengers().await.unwrap();
    assert_eq!((list.total, list.items[1].id_no_masked.as_str()), (2, "E1****67"));
    let text = serde_json::to_string(&list).unwrap();
    assert!(!text.contains("110101199003074258") && !text.contains("张三丰"), "{text}");

    for (name, id_type, id_no, field) in [
        ("", "ID_CARD", "110101199003074258", "`name`"),
        ("王五", "DRIVING_LICENCE", "x", "`id_type`"),
        ("王五", "ID_CARD", "110101199003074257", "`id_no`"),
    ] {
        let e = alice.add_passenger(name, id_type, id_no).await.unwrap_err();
        assert_eq!((e.status(), e.code()), (Some(400), Some(40002)), "{e}");
        assert!(e.to_string().contains(field), "{e}");
    }
    // At rest: not a byte of the name or the number in the clear.
    if let Backend::Sqlite = backend {
        let db = rusqlite::Connection::open(app.dir.join("chepiao.db")).unwrap();
        let mut q = db.prepare("SELECT name_enc, id_no_enc, id_no_index FROM passengers").unwrap();
        let rows: Vec<[Vec<u8>; 3]> =
            q.query_map([], |r| Ok([r.get(0)?, r.get(1)?, r.get(2)?])).unwrap().map(Result::unwrap).collect();
        assert_eq!(rows.len(), 3);
        for bytes in rows.iter().flatten() {
            assert!(!bytes.windows(6).any(|w| w == b"110101"), "a column holds the ID number");
            assert!(!bytes.windows(3).any(|w| w == "张".as_bytes()), "a column holds the name");
        }
    }
}

crate::on_both_backends!(passengers_are_private_masked_and_encrypted, passengers_on_sqlite, passengers_on_postgres);

#[tokio::test]
async fn a_full_passenger_list_is_refused() {
    let app = spawn_app(Backend::Sqlite).await;
    let (carol, _, _) = app.user("carol").await;
    for i in 0..15 {
        carol.add_passenger("X", "PASSPORT", &format!("E{:07}", 1000000 + i)).await.unwrap();
    }
    assert_eq!(code(carol.add_passenger("X", "PASSPORT", "E9999999").await), (409, 40902));
}

#[tokio::test]
async fn malformed_bodies_answer_in_the_error_model() {
    let app = spawn_app(Backend::Sqlite).await;
    let register = || app.api.request(Method::POST, "/api/v1/auth/register");
    let refused = |r| async { code(chepiao_api::Client::send::<Credentials>(r).await) };
    assert_eq!(refused(register().body(r#"{"username":"a"}"#)).await, (415, 41501));
    for body in
        [r#"{"username": "a""#, r#"{"username": 5, "password": "x"}"#, r#"{"password": "abcdefgh"}"#, "\u{0}\u{1}"]
    {
        let r = register().header("content-type", "application/json").body(body);
        assert_eq!(refused(r).await, (400, 40011), "{body}");
    }
    let r = register().header("content-type", "application/json").body(vec![0xffu8, 0xfe, 0x00]);
    assert_eq!(refused(r).await.1, 40011);
}
