//! The PostgreSQL implementation of [`Store`], selected with `--database-url postgres://...`.
//! Bulk writes go as one statement per table with `UNNEST` over arrays, so an import is a
//! handful of round trips, not tens of thousands. The purchase flow's writes go through a
//! group writer (one connection, many callers' writes per transaction), like SQLite's.

use std::borrow::Cow;
use std::str::FromStr;

use async_trait::async_trait;
use chepiao_domain::network::{NetworkData, Station};
use chepiao_domain::{RunId, ServiceDate};
use chepiao_store::flow_sql::TxFuture;
use chepiao_store::writer::{GroupWriter, TxControl};
use chepiao_store::{
    AddPassenger, NewPassenger, PassengerRecord, RunRecord, RunStatus, StationRow, StopRow, Store, StoreError,
    UserRecord, check_window, trains_from_rows,
};
use chrono::NaiveDate;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Connection, PgConnection, Row};

pub use sqlx::postgres::PgConnectOptions as ConnectOptions;

type Result<T> = chepiao_store::Result<T>;

/// Connections per API node; PostgreSQL's default max_connections is 100.
const CONNECTIONS_MAX: u32 = 16;

fn db(e: sqlx::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

fn corrupt(table: &'static str, detail: impl ToString) -> StoreError {
    StoreError::Corrupt { table, detail: detail.to_string() }
}

fn migrator() -> Migrator {
    let m = |version, description: &'static str, sql: &'static str| {
        Migration::new(version, Cow::Borrowed(description), MigrationType::Simple, Cow::Borrowed(sql), false)
    };
    Migrator {
        migrations: Cow::Owned(vec![
            m(1, "network", include_str!("../migrations/0001_network.sql")),
            m(2, "users", include_str!("../migrations/0002_users.sql")),
            m(3, "flow", include_str!("../migrations/0003_flow.sql")),
            m(4, "checkin", include_str!("../migrations/0004_checkin.sql")),
            m(5, "refunds", include_str!("../migrations/0005_refunds.sql")),
            m(6, "after_sale", include_str!("../migrations/0006_after_sale.sql")),
        ]),
        ..Migrator::DEFAULT
    }
}

pub struct PgStore {
    pool: PgPool,
    /// Group writers, each with a connection of its own, taken in turn: unlike SQLite,
    /// PostgreSQL runs transactions side by side, and one connection's round trips would
    /// otherwise bound every write. Appends to the audit chain still serialise on its head row.
    writers: Vec<GroupWriter<PgConnection>>,
    next_writer: std::sync::atomic::AtomicUsize,
}

/// Group writers (and their connections) per store.
const WRITERS: usize = 4;

fn exec<'a>(c: &'a mut PgConnection, sql: &'static str) -> TxFuture<'a, ()> {
    Box::pin(async move { sqlx::query(sql).execute(c).await.map(drop) })
}

chepiao_store::impl_flow_store!(PgStore, PgConnection, sqlx::postgres::PgRow, " FOR UPDATE");

impl PgStore {
    /// Connect to `url` and bring the schema up to date.
    pub async fn connect(url: &str) -> Result<PgStore> {
        Self::connect_with(PgConnectOptions::from_str(url).map_err(db)?).await
    }

    /// Connect with explicit options (tests use this to give each test its own schema).
    pub async fn connect_with(options: PgConnectOptions) -> Result<PgStore> {
        let pool =
            PgPoolOptions::new().max_connections(CONNECTIONS_MAX).connect_with(options.clone()).await.map_err(db)?;
        migrator().run(&pool).await.map_err(|e| StoreError::Migration(e.to_string()))?;
        let mut writers = Vec::with_capacity(WRITERS);
        for i in 0..WRITERS {
            let control = TxControl { begin: "BEGIN", exec };
            let options = options.clone();
            let connect = move || async move { PgConnection::connect_with(&options).await };
            let writer = GroupWriter::connect(&format!("postgres-writer-{i}"), connect, control).await.map_err(db)?;
            writers.push(writer);
        }
        Ok(PgStore { pool, writers, next_writer: Default::default() })
    }

    fn writer(&self) -> &GroupWriter<PgConnection> {
        let i = self.next_writer.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        &self.writers[i % self.writers.len()]
    }

    fn reader(&self) -> &PgPool {
        &self.pool
    }
}

fn parse<T: FromStr>(table: &'static str, s: &str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    s.parse().map_err(|e| corrupt(table, format!("{s:?}: {e}")))
}

fn to_i32(v: u32) -> Result<i32> {
    i32::try_from(v).map_err(|_| StoreError::Limit(format!("{v} does not fit a 32-bit column")))
}

#[async_trait]
impl Store for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map_err(db)?;
        Ok(())
    }

    async fn save_network(&self, data: &NetworkData) -> Result<()> {
        let s = &data.stations;
        let col = |f: fn(&Station) -> String| s.iter().map(f).collect::<Vec<String>>();
        let mut tx = self.pool.begin().await.map_err(db)?;
        sqlx::query(
            "INSERT INTO stations (telecode, name, pinyin, initials, city, country)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[])
             ON CONFLICT (telecode) DO UPDATE SET name = excluded.name, pinyin = excluded.pinyin,
             initials = excluded.initials, city = excluded.city, country = excluded.country",
        )
        .bind(col(|s| s.telecode.to_string()))
        .bind(col(|s| s.name.clone()))
        .bind(col(|s| s.pinyin.clone()))
        .bind(col(|s| s.initials.clone()))
        .bind(col(|s| s.city.clone()))
        .bind(s.iter().map(|s| s.country.clone()).collect::<Vec<Option<String>>>())
        .execute(&mut *tx)
        .await
        .map_err(db)?;

        let codes: Vec<String> = data.trains.iter().map(|t| t.code.to_string()).collect();
        sqlx::query("INSERT INTO trains (code) SELECT * FROM UNNEST($1::text[]) ON CONFLICT DO NOTHING")
            .bind(&codes)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        sqlx::query("DELETE FROM stops WHERE train_code = ANY($1)").bind(&codes).execute(&mut *tx).await.map_err(db)?;

        let (mut train, mut seq, mut code, mut arr, mut dep, mut km) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for t in &data.trains {
            for (i, st) in t.stops.iter().enumerate() {
                train.push(t.code.to_string());
                seq.push(i as i32);
                code.push(st.telecode.to_string());
                arr.push(st.arrive_min.map(to_i32).transpose()?);
                dep.push(st.depart_min.map(to_i32).transpose()?);
                km.push(to_i32(st.km)?);
            }
        }
        sqlx::query(
            "INSERT INTO stops (train_code, seq, telecode, arrive_min, depart_min, km)
             SELECT * FROM UNNEST($1::text[], $2::int[], $3::text[], $4::int[], $5::int[], $6::int[])",
        )
        .bind(train)
        .bind(seq)
        .bind(code)
        .bind(arr)
        .bind(dep)
        .bind(km)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)
    }

    async fn load_network(&self) -> Result<NetworkData> {
        let rows =
            sqlx::query("SELECT telecode, name, pinyin, initials, city, country FROM stations ORDER BY telecode")
                .fetch_all(&self.pool)
                .await
                .map_err(db)?;
        let stations = rows
            .iter()
            .map(|r| {
                StationRow {
                    telecode: r.get("telecode"),
                    name: r.get("name"),
                    pinyin: r.get("pinyin"),
                    initials: r.get("initials"),
                    city: r.get("city"),
                    country: r.get("country"),
                }
                .into_station()
            })
            .collect::<Result<Vec<_>>>()?;
        let rows =
            sqlx::query("SELECT train_code, telecode, arrive_min, depart_min, km FROM stops ORDER BY train_code, seq")
                .fetch_all(&self.pool)
                .await
                .map_err(db)?;
        let trains = trains_from_rows(rows.iter().map(|r| StopRow {
            train_code: r.get("train_code"),
            telecode: r.get("telecode"),
            arrive_min: r.get::<Option<i32>, _>("arrive_min").map(i64::from),
            depart_min: r.get::<Option<i32>, _>("depart_min").map(i64::from),
            km: i64::from(r.get::<i32, _>("km")),
        }))?;
        Ok(NetworkData { stations, trains })
    }

    async fn ensure_runs(&self, first: ServiceDate, last: ServiceDate) -> Result<u64> {
        check_window(first, last)?;
        let done = sqlx::query(
            "INSERT INTO runs (train_code, service_date)
             SELECT t.code, d::date FROM trains t CROSS JOIN generate_series($1::date, $2::date, interval '1 day') d
             ON CONFLICT DO NOTHING",
        )
        .bind(first.naive())
        .bind(last.naive())
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(done.rows_affected())
    }

    async fn runs_between(&self, first: ServiceDate, last: ServiceDate) -> Result<Vec<RunRecord>> {
        check_window(first, last)?;
        let rows =
            sqlx::query("SELECT train_code, service_date, status FROM runs WHERE service_date BETWEEN $1 AND $2")
                .bind(first.naive())
                .bind(last.naive())
                .fetch_all(&self.pool)
                .await
                .map_err(db)?;
        rows.iter()
            .map(|r| {
                let status: &str = r.get("status");
                let date: NaiveDate = r.get("service_date");
                Ok(RunRecord {
                    run_id: RunId::new(parse("runs", r.get("train_code"))?, ServiceDate::new(date)),
                    status: RunStatus::parse(status).ok_or_else(|| corrupt("runs", status))?,
                })
            })
            .collect()
    }

    async fn set_run_status(&self, run: &RunId, status: RunStatus) -> Result<bool> {
        let done = sqlx::query("UPDATE runs SET status = $1 WHERE train_code = $2 AND service_date = $3")
            .bind(status.as_str())
            .bind(run.train.as_str())
            .bind(run.date.naive())
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(done.rows_affected() == 1)
    }

    async fn create_user(&self, username: &str, password_hash: &str, created_at_ms: i64) -> Result<Option<i64>> {
        let row = sqlx::query(
            "INSERT INTO users (username, password_hash, created_at_ms) VALUES ($1, $2, $3)
             ON CONFLICT (username) DO NOTHING RETURNING id",
        )
        .bind(username)
        .bind(password_hash)
        .bind(created_at_ms)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        Ok(row.map(|r| r.get("id")))
    }

    async fn user_by_name(&self, username: &str) -> Result<Option<UserRecord>> {
        let row = sqlx::query("SELECT id, username, password_hash FROM users WHERE username = $1")
            .bind(username)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        Ok(row.map(|r| UserRecord {
            id: r.get("id"),
            username: r.get("username"),
            password_hash: r.get("password_hash"),
        }))
    }

    async fn add_passenger(&self, p: &NewPassenger, max_per_user: u32) -> Result<AddPassenger> {
        // One statement: the count check and the insert cannot be split by another writer.
        let done = sqlx::query(
            "INSERT INTO passengers (user_id, name_enc, id_type, id_no_enc, id_no_index, created_at_ms)
             SELECT $1, $2, $3, $4, $5, $6
             WHERE (SELECT count(*) FROM passengers WHERE user_id = $7) < $8
             RETURNING id",
        )
        .bind(p.user_id)
        .bind(&p.name_enc)
        .bind(&p.id_type)
        .bind(&p.id_no_enc)
        .bind(&p.id_no_index)
        .bind(p.created_at_ms)
        .bind(p.user_id)
        .bind(i64::from(max_per_user))
        .fetch_optional(&self.pool)
        .await;
        match done {
            Ok(Some(r)) => Ok(AddPassenger::Added(r.get("id"))),
            Ok(None) => Ok(AddPassenger::TooMany),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Ok(AddPassenger::Duplicate),
            Err(e) => Err(db(e)),
        }
    }

    async fn passengers(&self, user_id: i64) -> Result<Vec<PassengerRecord>> {
        let rows = sqlx::query(
            "SELECT id, user_id, name_enc, id_type, id_no_enc FROM passengers WHERE user_id = $1 ORDER BY id",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Ok(rows
            .iter()
            .map(|r| PassengerRecord {
                id: r.get("id"),
                user_id: r.get("user_id"),
                name_enc: r.get("name_enc"),
                id_type: r.get("id_type"),
                id_no_enc: r.get("id_no_enc"),
            })
            .collect())
    }
}
