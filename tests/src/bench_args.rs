//! The options the benchmarks of this crate take: `--bench` (the full run `cargo bench` asks
//! for; without it, `cargo test` runs a quick one), `--store embedded|postgres|both` and
//! numbers such as `--cabinets N`.

use crate::StoreKind;

pub struct BenchArgs {
    args: Vec<String>,
    /// Whether this is the full run (`cargo bench`, or `--bench` by hand).
    pub full: bool,
}

impl BenchArgs {
    pub fn from_env() -> BenchArgs {
        let args: Vec<String> = std::env::args().collect();
        let full = args.iter().any(|a| a == "--bench");
        BenchArgs { args, full }
    }

    /// The value after `name`, if given.
    pub fn value(&self, name: &str) -> Option<String> {
        self.args
            .iter()
            .position(|a| a == name)
            .and_then(|i| self.args.get(i + 1))
            .cloned()
    }

    /// The number after `name`, else `default`.
    pub fn number(&self, name: &str, default: usize) -> usize {
        self.value(name)
            .map(|v| {
                v.parse()
                    .unwrap_or_else(|_| panic!("{name} takes a number"))
            })
            .unwrap_or(default)
    }

    /// The stores of `--store`: both in a full run by default, the embedded one in a quick run.
    pub fn stores(&self) -> Vec<StoreKind> {
        match self.value("--store").as_deref() {
            Some("embedded") => vec![StoreKind::Embedded],
            Some("postgres") => vec![StoreKind::Postgres],
            Some("both") => StoreKind::ALL.to_vec(),
            Some(other) => panic!("--store {other}: embedded, postgres or both"),
            None if self.full => StoreKind::ALL.to_vec(),
            None => vec![StoreKind::Embedded],
        }
    }
}

/// Runs `run` on each store in turn on a multi-threaded runtime, and says so when this was the
/// quick run.
pub fn run_on_each_store<F, Fut>(stores: &[StoreKind], full: bool, run: F)
where
    F: Fn(StoreKind) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        for kind in stores {
            run(*kind).await;
        }
    });
    if !full {
        println!("(check mode: run with `cargo bench` for the full figures)");
    }
}
