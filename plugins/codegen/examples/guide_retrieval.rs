//! How often the guide's module retrieval finds a held-out task's module:
//! top-1 accuracy and recall at 4 and 16 candidates on the validation split
//! (split by module file), for the index the guide builds and variants of it.
//!
//! `cargo run --release -p plinth-plugin-codegen --example guide_retrieval`

use plinth_plugin_codegen::guide::{Document, ModuleIndex};
use plinth_plugin_codegen::{extracted, SplitBy};
use plinth_plugin_sdk::protocol::Split;

fn main() -> Result<(), String> {
    let ex = extracted()?;
    let by = SplitBy::Module;
    let names = |weight: f64| plinth_plugin_codegen::guide::training_names(&ex, by, weight);
    let held: Vec<_> = ex.pairs.iter().filter(|p| by.split_of(&p.source) == Split::Validation).collect();
    let descriptions = plinth_plugin_codegen::guide::descriptions(&ex.catalogue);
    let variants: Vec<(String, Vec<Document>)> = vec![
        ("short descriptions".into(), Vec::new()),
        ("short descriptions + descriptions".into(), descriptions.clone()),
        ("short descriptions + training task names".into(), names(1.0)),
    ]
    .into_iter()
    .chain([1.0, 0.7, 0.5, 0.3].map(|w| {
        let label = if w == plinth_plugin_codegen::guide::NAME_WEIGHT { " (the guide)" } else { "" };
        (format!("+ training task names at weight {w}{label}"), descriptions.iter().cloned().chain(names(w)).collect())
    }))
    .collect();
    println!("{} validation tasks", held.len());
    for (label, docs) in variants {
        let ix = ModuleIndex::new(&ex.catalogue, &docs);
        let (mut top1, mut r4, mut r16) = (0, 0, 0);
        for p in &held {
            let near = ix.nearest(&p.name, 16);
            let rank = near.iter().position(|(m, _)| *m == p.module);
            top1 += usize::from(rank == Some(0));
            r4 += usize::from(rank.is_some_and(|r| r < 4));
            r16 += usize::from(rank.is_some());
        }
        let n = held.len() as f64;
        println!(
            "{label}: top-1 {:.3}, recall@4 {:.3}, recall@16 {:.3}",
            top1 as f64 / n,
            r4 as f64 / n,
            r16 as f64 / n
        );
    }
    Ok(())
}
