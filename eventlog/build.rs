//! `sqlx::migrate!` embeds `migrations/` when this crate compiles; without this, a new migration
//! file would not rebuild the crate on a stable toolchain.
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
