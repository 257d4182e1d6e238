//! What the projections' benchmarks share: their options, and a throwaway PostgreSQL database
//! of their own.
// Each bench compiles this module on its own and uses a part of it.
#![allow(dead_code)]

/// The command line: `--bench` (the full run) and `--NAME VALUE` options.
pub struct Args {
    args: Vec<String>,
    /// No `--bench`: the quick run `cargo test` makes.
    pub quick: bool,
}

impl Args {
    pub fn from_env() -> Args {
        let args: Vec<String> = std::env::args().collect();
        let quick = !args.iter().any(|a| a == "--bench");
        Args { args, quick }
    }

    /// Whether the flag `name` was given.
    pub fn flag(&self, name: &str) -> bool {
        self.args.iter().any(|a| a == name)
    }

    pub fn value(&self, name: &str) -> Option<String> {
        self.args
            .iter()
            .position(|a| a == name)
            .and_then(|i| self.args.get(i + 1))
            .cloned()
    }

    /// A count from the environment variable `var`, else `--name`, else the default of a quick
    /// or a full run (`1_000_000` may be written with underscores).
    pub fn count(&self, var: &str, name: &str, quick: usize, full: usize) -> usize {
        std::env::var(var)
            .ok()
            .or_else(|| self.value(name))
            .map(|n| {
                n.replace('_', "")
                    .parse()
                    .unwrap_or_else(|_| panic!("{name} N"))
            })
            .unwrap_or(if self.quick { quick } else { full })
    }

    /// `--backend embedded|postgres|both`; by default PostgreSQL in a full run with
    /// `DATABASE_URL`, else the embedded store.
    pub fn backends(&self) -> Vec<&'static str> {
        let has_url = std::env::var("DATABASE_URL").is_ok();
        match self.value("--backend").as_deref() {
            Some("both") => vec!["postgres", "embedded"],
            Some("postgres") => vec!["postgres"],
            Some("embedded") => vec!["embedded"],
            Some(other) => panic!("--backend {other}: embedded, postgres or both"),
            None if has_url && !self.quick => vec!["postgres"],
            None => vec!["embedded"],
        }
    }
}

/// A database of this run's own on `DATABASE_URL`'s server, and the log over it; hand both to
/// [`drop_database`] when done.
pub async fn throwaway_postgres(
    prefix: &str,
    script: &str,
) -> (custody_eventlog::EventLog, Throwaway) {
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| {
        panic!("DATABASE_URL (postgres://…) for --backend postgres; see {script}")
    });
    let database = format!("{prefix}_{}", std::process::id());
    admin(&url, &format!("CREATE DATABASE {database}")).await;
    let log = custody_eventlog::EventLog::connect_postgres(&with_database(&url, &database), 8)
        .await
        .expect("connect");
    (log, Throwaway { url, database })
}

/// Where a throwaway database is.
pub struct Throwaway {
    url: String,
    database: String,
}

/// Closes the log and drops its throwaway database.
pub async fn drop_database(log: custody_eventlog::EventLog, throwaway: Throwaway) {
    drop(log);
    admin(
        &throwaway.url,
        &format!("DROP DATABASE {} WITH (FORCE)", throwaway.database),
    )
    .await;
}

/// Runs one administrative statement on the server of `url`.
pub async fn admin(url: &str, sql: &str) {
    use sqlx::Connection;
    let mut connection = sqlx::PgConnection::connect(url)
        .await
        .expect("connect to DATABASE_URL");
    sqlx::query(sql).execute(&mut connection).await.expect(sql);
}

/// `url` with its database replaced.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, ""), |(b, q)| (b, q));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{database}", &base[..host_end]);
    if !query.is_empty() {
        out.push('?');
        out.push_str(query);
    }
    out
}

/// SplitMix64: deterministic, dependency-free.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    pub fn hex(&mut self, len: usize) -> String {
        let mut out = String::with_capacity(len);
        while out.len() < len {
            let _ = std::fmt::Write::write_fmt(&mut out, format_args!("{:016x}", self.next()));
        }
        out.truncate(len);
        out
    }
}
