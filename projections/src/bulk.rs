//! Writing view rows: multi-row `INSERT … ON CONFLICT` statements, the same on PostgreSQL and
//! SQLite (through sqlx's `Any` driver, `$n` placeholders).
//!
//! A statement carries at most [`ROWS_PER_STATEMENT`] rows and never more than
//! [`MAX_PARAMETERS`] bound values: SQLite allows 32,766 per statement (PostgreSQL 65,535).
//!
//! SQLite gets anonymous `?` placeholders, PostgreSQL `$n`: SQLite looks a numbered or named
//! parameter's name up in a list, once per parameter bound, which makes binding a statement of
//! n parameters cost n² (70 % of a rebuild's time at 7,500 parameters a statement).
//!
//! Statement shapes are kept few (issue 11): a batch's rows are written in statements of a
//! power-of-two number of rows (13 rows: 8, 4 and 1), and an `IN (…)` look-up names a
//! power-of-two number of ids ([`lookup_chunks`]). Every text is then one the connection has
//! prepared before, where one text per batch size cost PostgreSQL a parse, a describe round trip
//! and a plan for most live batches. The process managers (`custody-processes`) write their
//! rows the same way.

use std::fmt::Write;

use sqlx::AnyConnection;

/// Rows per statement, unless the parameter bound cuts it shorter.
pub(crate) const ROWS_PER_STATEMENT: usize = 512;
/// SQLite's bound-parameter limit (SQLITE_MAX_VARIABLE_NUMBER since 3.32), the lower of the two.
pub(crate) const MAX_PARAMETERS: usize = 32_766;
/// The most ids one `IN (…)` look-up names.
pub const IDS_PER_LOOKUP: usize = 512;

/// `ids` in chunks for `IN (…)` look-ups: at most [`IDS_PER_LOOKUP`] each, every chunk padded
/// to a power of two by repeating its first id (a repeated id changes nothing in `IN`), so that
/// a look-up has a few statement texts.
pub fn lookup_chunks<T>(ids: &[T]) -> impl Iterator<Item = Vec<&T>> {
    ids.chunks(IDS_PER_LOOKUP).map(|chunk| {
        let padded = chunk.len().next_power_of_two();
        chunk
            .iter()
            .chain(std::iter::repeat_n(&chunk[0], padded - chunk.len()))
            .collect()
    })
}

/// The sizes of the statements `rows` rows are written in, at most `full` rows each: as many
/// full statements as fit, then the rest in descending powers of two.
fn statement_sizes(rows: usize, full: usize) -> impl Iterator<Item = usize> {
    let rest = rows % full;
    std::iter::repeat_n(full, rows / full).chain(
        (0..usize::BITS)
            .rev()
            .map(|bit| 1usize << bit)
            .filter(move |size| rest & size != 0),
    )
}

/// One value of a view row.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Text(Option<String>),
    Int(Option<i64>),
}

impl From<String> for Cell {
    fn from(value: String) -> Self {
        Cell::Text(Some(value))
    }
}

impl From<&str> for Cell {
    fn from(value: &str) -> Self {
        Cell::Text(Some(value.to_string()))
    }
}

impl From<Option<String>> for Cell {
    fn from(value: Option<String>) -> Self {
        Cell::Text(value)
    }
}

impl From<i64> for Cell {
    fn from(value: i64) -> Self {
        Cell::Int(Some(value))
    }
}

impl From<Option<i64>> for Cell {
    fn from(value: Option<i64>) -> Self {
        Cell::Int(value)
    }
}

/// A row, in the order of its table's columns.
pub type Row = Vec<Cell>;

/// How a statement names its parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placeholders {
    /// `$1, $2, …` (PostgreSQL).
    Numbered,
    /// `?, ?, …` in order (SQLite).
    Anonymous,
}

impl Placeholders {
    /// The style for the database behind `connection`.
    pub fn of(connection: &sqlx::AnyConnection) -> Placeholders {
        if connection.backend_name().eq_ignore_ascii_case("sqlite") {
            Placeholders::Anonymous
        } else {
            Placeholders::Numbered
        }
    }

    /// Writes parameter `n` (from 1).
    pub fn write(self, sql: &mut String, n: usize) {
        match self {
            Placeholders::Numbered => {
                let _ = write!(sql, "${n}");
            }
            Placeholders::Anonymous => sql.push('?'),
        }
    }

    /// Parameters `first..first + count`, comma-separated.
    pub fn list(self, first: usize, count: usize) -> String {
        let mut sql = String::with_capacity(count * 6);
        for n in first..first + count {
            if n > first {
                sql.push_str(", ");
            }
            self.write(&mut sql, n);
        }
        sql
    }
}

/// What writing a row whose key is already there does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnConflict {
    /// The row is the latest state of its key (aggregate views, positions).
    Update,
    /// The row is derived from one event, the same every time (access records, alerts).
    Nothing,
    /// The row is a delta of counters: its values are added to those there (stats).
    Add,
}

/// A table rows are written to.
#[derive(Debug)]
pub struct Table {
    pub name: &'static str,
    pub columns: &'static [&'static str],
    pub key: &'static [&'static str],
    pub on_conflict: OnConflict,
}

impl Table {
    /// Rows per statement for this table.
    pub(crate) fn rows_per_statement(&self) -> usize {
        ROWS_PER_STATEMENT
            .min(MAX_PARAMETERS / self.columns.len())
            .max(1)
    }

    /// `INSERT … VALUES (…), … ON CONFLICT …` for `rows` rows.
    pub(crate) fn insert_sql(&self, rows: usize, placeholders: Placeholders) -> String {
        let width = self.columns.len();
        let mut sql = String::with_capacity(64 + rows * width * 7);
        let _ = write!(
            sql,
            "INSERT INTO {} ({}) VALUES ",
            self.name,
            self.columns.join(", ")
        );
        for row in 0..rows {
            sql.push_str(if row == 0 { "(" } else { ", (" });
            for column in 0..width {
                if column > 0 {
                    sql.push_str(", ");
                }
                placeholders.write(&mut sql, row * width + column + 1);
            }
            sql.push(')');
        }
        let _ = write!(sql, " ON CONFLICT ({}) DO ", self.key.join(", "));
        match self.on_conflict {
            OnConflict::Nothing => sql.push_str("NOTHING"),
            OnConflict::Update => {
                sql.push_str("UPDATE SET ");
                let updated: Vec<String> = self
                    .columns
                    .iter()
                    .filter(|c| !self.key.contains(c))
                    .map(|c| format!("{c} = excluded.{c}"))
                    .collect();
                sql.push_str(&updated.join(", "));
            }
            OnConflict::Add => {
                sql.push_str("UPDATE SET ");
                let added: Vec<String> = self
                    .columns
                    .iter()
                    .filter(|c| !self.key.contains(c))
                    .map(|c| format!("{c} = {}.{c} + excluded.{c}", self.name))
                    .collect();
                sql.push_str(&added.join(", "));
            }
        }
        sql
    }
}

impl Cell {
    fn cmp_key(&self, other: &Cell) -> std::cmp::Ordering {
        match (self, other) {
            (Cell::Text(a), Cell::Text(b)) => a.cmp(b),
            (Cell::Int(a), Cell::Int(b)) => a.cmp(b),
            (Cell::Text(_), Cell::Int(_)) => std::cmp::Ordering::Less,
            (Cell::Int(_), Cell::Text(_)) => std::cmp::Ordering::Greater,
        }
    }
}

/// Sorts `rows` by `table`'s key, so that they reach its primary-key index in order.
pub fn sort_by_key(table: &Table, rows: &mut [Row]) {
    let key: Vec<usize> = table
        .key
        .iter()
        .filter_map(|k| table.columns.iter().position(|c| c == k))
        .collect();
    rows.sort_unstable_by(|a, b| {
        key.iter()
            .map(|&i| a[i].cmp_key(&b[i]))
            .find(|o| o.is_ne())
            .unwrap_or(std::cmp::Ordering::Equal)
    });
}

/// Writes `rows` to `table` on the caller's connection (in its transaction), a few hundred rows
/// per statement, in statements of a power-of-two number of rows below that (module docs).
/// Rows with `OnConflict::Update` or `Add` must have distinct keys (PostgreSQL refuses to update one row
/// twice in a statement).
pub async fn insert(
    connection: &mut AnyConnection,
    table: &Table,
    rows: &[Row],
) -> Result<(), sqlx::Error> {
    let placeholders = Placeholders::of(connection);
    let mut full_sql: Option<String> = None;
    let mut rest = rows;
    for size in statement_sizes(rows.len(), table.rows_per_statement()) {
        let (chunk, after) = rest.split_at(size);
        rest = after;
        let partial;
        let sql: &str = if chunk.len() == table.rows_per_statement() {
            full_sql.get_or_insert_with(|| table.insert_sql(chunk.len(), placeholders))
        } else {
            partial = table.insert_sql(chunk.len(), placeholders);
            &partial
        };
        let mut query = sqlx::query(sql);
        for row in chunk {
            debug_assert_eq!(row.len(), table.columns.len(), "{}", table.name);
            for cell in row {
                query = match cell {
                    Cell::Text(value) => query.bind(value.as_deref()),
                    Cell::Int(value) => query.bind(*value),
                };
            }
        }
        query.execute(&mut *connection).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Table = Table {
        name: "t",
        columns: &["g", "k", "v"],
        key: &["g", "k"],
        on_conflict: OnConflict::Update,
    };

    #[test]
    fn statements_number_their_parameters_in_order() {
        assert_eq!(
            T.insert_sql(2, Placeholders::Numbered),
            "INSERT INTO t (g, k, v) VALUES ($1, $2, $3), ($4, $5, $6) \
             ON CONFLICT (g, k) DO UPDATE SET v = excluded.v"
        );
        assert_eq!(
            T.insert_sql(1, Placeholders::Anonymous),
            "INSERT INTO t (g, k, v) VALUES (?, ?, ?) ON CONFLICT (g, k) DO UPDATE SET v = excluded.v"
        );
    }

    #[test]
    fn counters_add_their_deltas() {
        let counters = Table {
            on_conflict: OnConflict::Add,
            ..T
        };
        assert_eq!(
            counters.insert_sql(1, Placeholders::Numbered),
            "INSERT INTO t (g, k, v) VALUES ($1, $2, $3) ON CONFLICT (g, k) DO UPDATE SET v = t.v + excluded.v"
        );
    }

    #[test]
    fn rows_go_in_full_statements_then_powers_of_two() {
        let sizes = |rows, full| statement_sizes(rows, full).collect::<Vec<_>>();
        assert_eq!(sizes(13, 512), [8, 4, 1]);
        assert_eq!(sizes(0, 512), Vec::<usize>::new());
        assert_eq!(sizes(1, 512), [1]);
        assert_eq!(sizes(1030, 512), [512, 512, 4, 2]);
        assert_eq!(sizes(200, 163), [163, 32, 4, 1]);
        for rows in 0..2_000 {
            assert_eq!(sizes(rows, 163).iter().sum::<usize>(), rows);
        }
    }

    #[test]
    fn lookups_are_padded_to_powers_of_two_with_their_first_id() {
        let ids: Vec<u32> = (0..5).collect();
        let chunks: Vec<Vec<&u32>> = lookup_chunks(&ids).collect();
        assert_eq!(chunks, [vec![&0, &1, &2, &3, &4, &0, &0, &0]]);
        let many: Vec<u32> = (0..600).collect();
        let sizes: Vec<usize> = lookup_chunks(&many).map(|c| c.len()).collect();
        assert_eq!(sizes, [512, 128]);
        assert_eq!(lookup_chunks::<u32>(&[]).count(), 0);
    }

    #[test]
    fn statements_stay_under_the_parameter_limit() {
        let wide = Table {
            name: "w",
            columns: &["c"; 200],
            key: &["c"],
            on_conflict: OnConflict::Nothing,
        };
        assert_eq!(wide.rows_per_statement(), MAX_PARAMETERS / 200);
        assert_eq!(T.rows_per_statement(), ROWS_PER_STATEMENT);
    }
}
