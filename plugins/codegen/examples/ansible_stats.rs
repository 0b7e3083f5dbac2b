//! Prints the extraction report for the pinned ansible wheels (counts, split
//! sizes, skipped blocks): `cargo run --release -p plinth-plugin-codegen --example ansible_stats`.

fn main() {
    let t = std::time::Instant::now();
    let ex = match plinth_plugin_codegen::extracted() {
        Ok(ex) => ex,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    eprintln!("extracted in {:.1} s", t.elapsed().as_secs_f64());
    let stats = plinth_plugin_codegen::stats_json(&ex);
    println!("{}", serde_json::to_string_pretty(&stats).unwrap_or_default());
}
