//! The SQLite implementation of [`Store`]: chepiao's embedded default. One database file under
//! the data directory, WAL mode, `synchronous = FULL` (a commit is on disk before it is
//! acknowledged), and exactly one writer connection: SQLite serialises writers anyway, and one
//! connection makes that explicit instead of a `SQLITE_BUSY` retry storm. Writes are group
//! committed by [`GroupWriter`]: many callers' writes share one transaction and one
//! fsync. Reads use a separate small pool, which WAL lets run beside the writer.

use std::borrow::Cow;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chepiao_domain::network::{NetworkData, Station, Train};
use chepiao_domain::{RunId, ServiceDate};
use chepiao_store::flow_sql::TxFuture;
use chepiao_store::writer::{GroupWriter, TxControl};
use chepiao_store::{
    AddPassenger, NewPassenger, PassengerRecord, RunRecord, RunStatus, StationRow, StopRow, Store, StoreError,
    UserRecord, check_window, trains_from_rows,
};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, Row, SqliteConnection};

type Result<T> = chepiao_store::Result<T>;

/// Reader connections; SQLite readers don't block each other or the writer in WAL mode.
const READERS_MAX: u32 = 4;
/// How long a statement waits on a lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

fn db(e: sqlx::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

fn corrupt(table: &'static str, detail: impl ToString) -> StoreError {
    StoreError::Corrupt { table, detail: detail.to_string() }
}

/// The migrations, embedded so that the binary carries its schema.
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

pub struct SqliteStore {
    writer: GroupWriter<SqliteConnection>,
    reader: SqlitePool,
}

fn exec<'a>(c: &'a mut SqliteConnection, sql: &'static str) -> TxFuture<'a, ()> {
    Box::pin(async move { sqlx::query(sql).execute(c).await.map(drop) })
}

chepiao_store::impl_flow_store!(SqliteStore, SqliteConnection, sqlx::sqlite::SqliteRow, "");

impl SqliteStore {
    /// Open (creating if missing) the database at `url` (`sqlite://path/to/file.db` or a plain
    /// path) and bring its schema up to date.
    pub async fn open(url: &str) -> Result<SqliteStore> {
        let url = if url.starts_with("sqlite:") { url.to_string() } else { format!("sqlite://{url}") };
        let options = SqliteConnectOptions::from_str(&url)
            .map_err(db)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let mut conn = SqliteConnection::connect_with(&options).await.map_err(db)?;
        migrator().run(&mut conn).await.map_err(|e| StoreError::Migration(e.to_string()))?;
        let control = TxControl { begin: "BEGIN IMMEDIATE", exec };
        let writer = GroupWriter::start("sqlite-writer", conn, control)
            .map_err(|e| StoreError::Database(format!("starting the writer: {e}")))?;
        let reader = SqlitePoolOptions::new()
            .max_connections(READERS_MAX)
            .connect_with(options.read_only(true))
            .await
            .map_err(db)?;
        Ok(SqliteStore { writer, reader })
    }

    fn reader(&self) -> &SqlitePool {
        &self.reader
    }

    /// SQLite has one writer.
    fn writer(&self) -> &GroupWriter<SqliteConnection> {
        &self.writer
    }

    /// For tests that check what is stored: a raw connection to the same file.
    pub fn reader_pool(&self) -> &SqlitePool {
        &self.reader
    }

    async fn upsert_stations(tx: &mut SqliteConnection, stations: &[Station]) -> sqlx::Result<()> {
        for s in stations {
            sqlx::query(
                "INSERT INTO stations (telecode, name, pinyin, initials, city, country) VALUES (?, ?, ?, ?, ?, ?)
                 ON CONFLICT (telecode) DO UPDATE SET name = excluded.name, pinyin = excluded.pinyin,
                 initials = excluded.initials, city = excluded.city, country = excluded.country",
            )
            .bind(s.telecode.as_str())
            .bind(&s.name)
            .bind(&s.pinyin)
            .bind(&s.initials)
            .bind(&s.city)
            .bind(&s.country)
            .execute(&mut *tx)
            .await?;
        }
        Ok(())
    }

    async fn replace_train(tx: &mut SqliteConnection, t: &Train) -> sqlx::Result<()> {
        sqlx::query("INSERT INTO trains (code) VALUES (?) ON CONFLICT DO NOTHING")
            .bind(t.code.as_str())
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM stops WHERE train_code = ?").bind(t.code.as_str()).execute(&mut *tx).await?;
        for (seq, s) in t.stops.iter().enumerate() {
            sqlx::query(
                "INSERT INTO stops (train_code, seq, telecode, arrive_min, depart_min, km) VALUES (?, ?, ?, ?, ?, ?)",
            )
            .bind(t.code.as_str())
            .bind(seq as i64)
            .bind(s.telecode.as_str())
            .bind(s.arrive_min.map(i64::from))
            .bind(s.depart_min.map(i64::from))
            .bind(i64::from(s.km))
            .execute(&mut *tx)
            .await?;
        }
        Ok(())
    }
}

fn parse<T: FromStr>(table: &'static str, s: &str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    s.parse().map_err(|e| corrupt(table, format!("{s:?}: {e}")))
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.reader).await.map_err(db)?;
        Ok(())
    }

    async fn save_network(&self, data: &NetworkData) -> Result<()> {
        // One job, so the whole network is one atomic write.
        let data = std::sync::Arc::new(data.clone());
        self.writer
            .write(move |conn| {
                let data = data.clone();
                Box::pin(async move {
                    Self::upsert_stations(conn, &data.stations).await?;
                    for t in &data.trains {
                        Self::replace_train(conn, t).await?;
                    }
                    Ok(())
                })
            })
            .await
            .map_err(db)
    }

    async fn load_network(&self) -> Result<NetworkData> {
        let rows =
            sqlx::query("SELECT telecode, name, pinyin, initials, city, country FROM stations ORDER BY telecode")
                .fetch_all(&self.reader)
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
                .fetch_all(&self.reader)
                .await
                .map_err(db)?;
        let trains = trains_from_rows(rows.iter().map(|r| StopRow {
            train_code: r.get("train_code"),
            telecode: r.get("telecode"),
            arrive_min: r.get::<Option<i64>, _>("arrive_min"),
            depart_min: r.get::<Option<i64>, _>("depart_min"),
            km: r.get::<i64, _>("km"),
        }))?;
        Ok(NetworkData { stations, trains })
    }

    async fn ensure_runs(&self, first: ServiceDate, last: ServiceDate) -> Result<u64> {
        check_window(first, last)?;
        // `WHERE true` keeps SQLite's parser from reading ON CONFLICT as a join constraint.
        let (first, last) = (first.to_string(), last.to_string());
        let done = self
            .writer
            .write(move |conn| {
                let (first, last) = (first.clone(), last.clone());
                Box::pin(async move {
                    sqlx::query(
                        "WITH RECURSIVE d(day) AS (SELECT date(?1) UNION ALL SELECT date(day, '+1 day') FROM d WHERE day < date(?2))
                         INSERT INTO runs (train_code, service_date) SELECT t.code, d.day FROM trains t CROSS JOIN d WHERE true
                         ON CONFLICT DO NOTHING",
                    )
                    .bind(first)
                    .bind(last)
                    .execute(&mut *conn)
                    .await
                })
            })
            .await
            .map_err(db)?;
        Ok(done.rows_affected())
    }

    async fn runs_between(&self, first: ServiceDate, last: ServiceDate) -> Result<Vec<RunRecord>> {
        check_window(first, last)?;
        let rows = sqlx::query("SELECT train_code, service_date, status FROM runs WHERE service_date BETWEEN ? AND ?")
            .bind(first.to_string())
            .bind(last.to_string())
            .fetch_all(&self.reader)
            .await
            .map_err(db)?;
        rows.iter()
            .map(|r| {
                let status: &str = r.get("status");
                Ok(RunRecord {
                    run_id: RunId::new(parse("runs", r.get("train_code"))?, parse("runs", r.get("service_date"))?),
                    status: RunStatus::parse(status).ok_or_else(|| corrupt("runs", status))?,
                })
            })
            .collect()
    }

    async fn set_run_status(&self, run: &RunId, status: RunStatus) -> Result<bool> {
        let (status, train, date) = (status.as_str(), run.train.to_string(), run.date.to_string());
        let done = self
            .writer
            .write(move |conn| {
                let (train, date) = (train.clone(), date.clone());
                Box::pin(async move {
                    sqlx::query("UPDATE runs SET status = ? WHERE train_code = ? AND service_date = ?")
                        .bind(status)
                        .bind(train)
                        .bind(date)
                        .execute(&mut *conn)
                        .await
                })
            })
            .await
            .map_err(db)?;
        Ok(done.rows_affected() == 1)
    }

    async fn create_user(&self, username: &str, password_hash: &str, created_at_ms: i64) -> Result<Option<i64>> {
        let (username, hash) = (username.to_string(), password_hash.to_string());
        self.writer
            .write(move |conn| {
                let (username, hash) = (username.clone(), hash.clone());
                Box::pin(async move {
                    let row = sqlx::query(
                        "INSERT INTO users (username, password_hash, created_at_ms) VALUES (?, ?, ?)
                         ON CONFLICT (username) DO NOTHING RETURNING id",
                    )
                    .bind(username)
                    .bind(hash)
                    .bind(created_at_ms)
                    .fetch_optional(&mut *conn)
                    .await?;
                    Ok(row.map(|r| r.get::<i64, _>("id")))
                })
            })
            .await
            .map_err(db)
    }

    async fn user_by_name(&self, username: &str) -> Result<Option<UserRecord>> {
        let row = sqlx::query("SELECT id, username, password_hash FROM users WHERE username = ?")
            .bind(username)
            .fetch_optional(&self.reader)
            .await
            .map_err(db)?;
        Ok(row.map(|r| UserRecord {
            id: r.get("id"),
            username: r.get("username"),
            password_hash: r.get("password_hash"),
        }))
    }

    async fn add_passenger(&self, p: &NewPassenger, max_per_user: u32) -> Result<AddPassenger> {
        let p = std::sync::Arc::new(p.clone());
        self.writer
            .write(move |conn| {
                let p = p.clone();
                Box::pin(async move {
                    // One statement: the count check and the insert cannot be split by another writer.
                    let done = sqlx::query(
                        "INSERT INTO passengers (user_id, name_enc, id_type, id_no_enc, id_no_index, created_at_ms)
                         SELECT ?, ?, ?, ?, ?, ?
                         WHERE (SELECT count(*) FROM passengers WHERE user_id = ?) < ?
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
                    .fetch_optional(&mut *conn)
                    .await;
                    match done {
                        Ok(Some(r)) => Ok(AddPassenger::Added(r.get("id"))),
                        Ok(None) => Ok(AddPassenger::TooMany),
                        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Ok(AddPassenger::Duplicate),
                        Err(e) => Err(e),
                    }
                })
            })
            .await
            .map_err(db)
    }

    async fn passengers(&self, user_id: i64) -> Result<Vec<PassengerRecord>> {
        let rows = sqlx::query(
            "SELECT id, user_id, name_enc, id_type, id_no_enc FROM passengers WHERE user_id = ? ORDER BY id",
        )
        .bind(user_id)
        .fetch_all(&self.reader)
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
