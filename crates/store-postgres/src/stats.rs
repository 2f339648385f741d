//! Sales statistics in PostgreSQL: two grouped reads of `order_lines` over its (day, train,
//! class) index (see `chepiao_store::stats`), on the read pool.

use chepiao_store::{
    LINE_SUMS_LEN, LineCounts, LineGroup, OriginGroup, STATS_GROUPS_MAX, SalesFacts, SalesQuery, days_of, line_sums_sql,
};
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};

/// The lines a query selects: `$1` the days (an equality each), `$2` the train, `$3` the class.
const SELECTION: &str = "day = ANY($1) AND ($2::text IS NULL OR train_code = $2) AND ($3::text IS NULL OR class = $3)";

/// [`LineCounts`] from the columns `line_sums_sql` selects, starting at `at`.
fn counts(r: &PgRow, at: usize) -> sqlx::Result<LineCounts> {
    let mut sums = [None; LINE_SUMS_LEN];
    for (i, v) in sums.iter_mut().enumerate() {
        *v = r.try_get(at + i)?;
    }
    Ok(LineCounts::from_sums(sums))
}

pub async fn sales_facts(pool: &PgPool, q: &SalesQuery) -> sqlx::Result<SalesFacts> {
    let (days, sums) = (days_of(q), line_sums_sql("::bigint"));
    let sql = format!(
        "SELECT day, train_code, class, {sums} FROM order_lines WHERE {SELECTION}
         GROUP BY day, train_code, class ORDER BY day, train_code, class LIMIT {}",
        STATS_GROUPS_MAX + 1
    );
    let rows = sqlx::query(&sql).bind(&days).bind(&q.train).bind(&q.class).fetch_all(pool).await?;
    let mut lines = rows
        .iter()
        .map(|r| {
            Ok(LineGroup { day: r.try_get(0)?, train_code: r.try_get(1)?, class: r.try_get(2)?, counts: counts(r, 3)? })
        })
        .collect::<sqlx::Result<Vec<_>>>()?;
    let truncated = lines.len() > STATS_GROUPS_MAX;
    lines.truncate(STATS_GROUPS_MAX);
    // Each order once (its first leg) unless a train or class narrows to the legs that match.
    let once = if q.train.is_none() && q.class.is_none() { " AND leg = 0" } else { "" };
    let sql = format!(
        "SELECT source, channel, {sums} FROM order_lines WHERE {SELECTION}{once}
         GROUP BY source, channel ORDER BY source, channel LIMIT 1000"
    );
    let rows = sqlx::query(&sql).bind(&days).bind(&q.train).bind(&q.class).fetch_all(pool).await?;
    let origins = rows
        .iter()
        .map(|r| Ok(OriginGroup { source: r.try_get(0)?, channel: r.try_get(1)?, counts: counts(r, 2)? }))
        .collect::<sqlx::Result<Vec<_>>>()?;
    Ok(SalesFacts { lines, origins, truncated })
}
