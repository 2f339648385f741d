//! Accounts, tokens and passengers over HTTP: error codes 40001–40008, PII encrypted at rest
//! and masked in answers, every user seeing only their own passengers.

use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, postgres_url, spawn_app};

async fn post(app: &TestApp, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
    let mut req = app.client.post(app.url(path)).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn get(app: &TestApp, path: &str, token: &str) -> (u16, Value) {
    let r = app.client.get(app.url(path)).bearer_auth(token).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// Register and log in; the token.
pub async fn user_token(app: &TestApp, name: &str) -> String {
    let creds = json!({"username": name, "password": "correct horse"});
    let (status, body) = post(app, "/api/v1/auth/register", None, creds.clone()).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = post(app, "/api/v1/auth/login", None, creds).await;
    assert_eq!(status, 200, "{body}");
    body["token"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn register_login_and_the_auth_error_codes() {
    let app = spawn_app(Backend::Sqlite).await;
    let creds = json!({"username": "alice", "password": "correct horse"});
    let (status, body) = post(&app, "/api/v1/auth/register", None, creds.clone()).await;
    assert_eq!(status, 201);
    assert!(body["user_id"].as_i64().unwrap() > 0);
    let (status, body) = post(&app, "/api/v1/auth/register", None, creds.clone()).await;
    assert_eq!((status, body["code"].as_u64()), (400, Some(40001)));
    for (bad, field) in [
        (json!({"username": "a", "password": "correct horse"}), "`username`"),
        (json!({"username": "al ice", "password": "correct horse"}), "`username`"),
        (json!({"username": "bob", "password": "short"}), "`password`"),
    ] {
        let (status, body) = post(&app, "/api/v1/auth/register", None, bad).await;
        assert_eq!((status, body["code"].as_u64()), (400, Some(40002)), "{body}");
        assert!(body["message"].as_str().unwrap().contains(field), "{body}");
    }
    let (status, body) = post(&app, "/api/v1/auth/login", None, creds).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["expires_at"].as_str().unwrap().ends_with("+08:00"));
    let token = body["token"].as_str().unwrap();
    let (status, _) = get(&app, "/api/v1/passengers", token).await;
    assert_eq!(status, 200);

    let (_, body) =
        post(&app, "/api/v1/auth/login", None, json!({"username": "alice", "password": "wrong horse"})).await;
    assert_eq!(body["code"], 40004);
    let (_, body) = post(&app, "/api/v1/auth/login", None, json!({"username": "nobody", "password": "x"})).await;
    assert_eq!(body["code"], 40003);

    // Tokens: missing, malformed, another algorithm, wrong type, expired.
    let r = app.client.get(app.url("/api/v1/passengers")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let (status, body) = get(&app, "/api/v1/passengers", "not.a.token").await;
    assert_eq!((status, body["code"].as_u64()), (401, Some(40006)));
    let secret = std::fs::read_to_string(app.dir.join("secrets/jwt.key")).unwrap();
    let key = base64_decode(secret.trim());
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let forge = |alg, typ: &str, exp: u64| {
        let claims = json!({"sub": "1", "name": "alice", "iat": now, "exp": exp, "typ": typ});
        jsonwebtoken::encode(&jsonwebtoken::Header::new(alg), &claims, &jsonwebtoken::EncodingKey::from_secret(&key))
            .unwrap()
    };
    let (_, body) = get(&app, "/api/v1/passengers", &forge(jsonwebtoken::Algorithm::HS384, "access", now + 60)).await;
    assert_eq!(body["code"], 40005);
    let (_, body) = get(&app, "/api/v1/passengers", &forge(jsonwebtoken::Algorithm::HS256, "refresh", now + 60)).await;
    assert_eq!(body["code"], 40008);
    let (_, body) = get(&app, "/api/v1/passengers", &forge(jsonwebtoken::Algorithm::HS256, "access", now - 600)).await;
    assert_eq!(body["code"], 40007);
    let (status, _) = get(&app, "/api/v1/passengers", &forge(jsonwebtoken::Algorithm::HS256, "access", now + 60)).await;
    assert_eq!(status, 200, "a well-signed token works");
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

async fn passengers_are_private_masked_and_encrypted(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = user_token(&app, "alice").await;
    let bob = user_token(&app, "bob").await;
    let body = json!({"name": "张三丰", "id_type": "ID_CARD", "id_no": "110101199003074258"});
    let (status, p) = post(&app, "/api/v1/passengers", Some(&alice), body.clone()).await;
    assert_eq!(status, 201, "{p}");
    assert_eq!((p["name"].as_str(), p["id_no_masked"].as_str()), (Some("张**"), Some("1101**********4258")));
    let (status, dup) = post(&app, "/api/v1/passengers", Some(&alice), body.clone()).await;
    assert_eq!((status, dup["code"].as_u64()), (409, Some(40901)));
    // Bob may add the same person; neither sees the other's list.
    assert_eq!(post(&app, "/api/v1/passengers", Some(&bob), body).await.0, 201);
    let passport = json!({"name": "Li Na", "id_type": "PASSPORT", "id_no": "e1234567"});
    assert_eq!(post(&app, "/api/v1/passengers", Some(&bob), passport).await.0, 201);
    let (_, list) = get(&app, "/api/v1/passengers", &alice).await;
    assert_eq!(list["total"], 1);
    assert_eq!(list["items"][0]["passenger_id"], p["passenger_id"]);
    let (_, list) = get(&app, "/api/v1/passengers", &bob).await;
    assert_eq!(list["total"], 2);
    assert_eq!(list["items"][1]["id_no_masked"], "E1****67");
    let text = serde_json::to_string(&list).unwrap();
    assert!(!text.contains("110101199003074258") && !text.contains("张三丰"), "{text}");

    for (bad, field) in [
        (json!({"name": "", "id_type": "ID_CARD", "id_no": "110101199003074258"}), "`name`"),
        (json!({"name": "王五", "id_type": "DRIVING_LICENCE", "id_no": "x"}), "`id_type`"),
        (json!({"name": "王五", "id_type": "ID_CARD", "id_no": "110101199003074257"}), "`id_no`"),
    ] {
        let (status, body) = post(&app, "/api/v1/passengers", Some(&alice), bad).await;
        assert_eq!((status, body["code"].as_u64()), (400, Some(40002)), "{body}");
        assert!(body["message"].as_str().unwrap().contains(field), "{body}");
    }
    // At rest: not a byte of the name or the number in the clear.
    if let Backend::Sqlite = backend {
        use sqlx::{Connection, Row};
        let url = format!("sqlite://{}", app.dir.join("chepiao.db").display());
        let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
        let rows =
            sqlx::query("SELECT name_enc, id_no_enc, id_no_index FROM passengers").fetch_all(&mut conn).await.unwrap();
        assert_eq!(rows.len(), 3);
        for r in rows {
            for col in ["name_enc", "id_no_enc", "id_no_index"] {
                let bytes: Vec<u8> = r.get(col);
                assert!(!bytes.windows(6).any(|w| w == b"110101"), "{col} holds the ID number");
                assert!(!bytes.windows(3).any(|w| w == "张".as_bytes()), "{col} holds the name");
            }
        }
    }
}

#[tokio::test]
async fn passengers_on_sqlite() {
    passengers_are_private_masked_and_encrypted(Backend::Sqlite).await;
}

#[tokio::test]
async fn passengers_on_postgres() {
    if postgres_url().is_none() {
        eprintln!("CHEPIAO_TEST_POSTGRES_URL not set: skipped");
        return;
    }
    passengers_are_private_masked_and_encrypted(Backend::Postgres).await;
}

#[tokio::test]
async fn a_full_passenger_list_is_refused() {
    let app = spawn_app(Backend::Sqlite).await;
    let token = user_token(&app, "carol").await;
    for i in 0..15 {
        let id = format!("E{:07}", 1000000 + i);
        let (status, body) =
            post(&app, "/api/v1/passengers", Some(&token), json!({"name": "X", "id_type": "PASSPORT", "id_no": id}))
                .await;
        assert_eq!(status, 201, "{body}");
    }
    let (status, body) = post(
        &app,
        "/api/v1/passengers",
        Some(&token),
        json!({"name": "X", "id_type": "PASSPORT", "id_no": "E9999999"}),
    )
    .await;
    assert_eq!((status, body["code"].as_u64()), (409, Some(40902)));
}

#[tokio::test]
async fn malformed_bodies_answer_in_the_error_model() {
    let app = spawn_app(Backend::Sqlite).await;
    let url = app.url("/api/v1/auth/register");
    let r = app.client.post(&url).body(r#"{"username":"a"}"#).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 415);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], 41501);
    for body in
        [r#"{"username": "a""#, r#"{"username": 5, "password": "x"}"#, r#"{"password": "abcdefgh"}"#, "\u{0}\u{1}"]
    {
        let r = app.client.post(&url).header("content-type", "application/json").body(body).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 400, "{body}");
        assert_eq!(r.json::<Value>().await.unwrap()["code"], 40011, "{body}");
    }
    let bytes = vec![0xffu8, 0xfe, 0x00];
    let r = app.client.post(&url).header("content-type", "application/json").body(bytes).send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["code"], 40011);
}
