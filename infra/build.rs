// The stores embed the migrations with `sqlx::migrate!`; rebuild them when a migration
// file is added or changed, not only when a Rust file of this crate changes.
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
