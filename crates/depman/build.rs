// `sqlx::migrate!` embeds the migrations at compile time, and stable Rust
// cannot tell cargo that it read them: without this, a new migration is
// left out of the build until db.rs changes.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
