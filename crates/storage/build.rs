// `sqlx::migrate!` embeds the migrations when this crate compiles; without this line a new or
// changed migration would not rebuild it, and a warm build would run the old set.
fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}
