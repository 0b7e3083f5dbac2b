//! Extraction from the pinned ansible wheels (fetched once into plinth's cache).

use plinth_plugin_codegen::catalogue::check_task;
use plinth_plugin_codegen::{extracted, pairs, SplitBy};
use plinth_plugin_sdk::protocol::Split;

#[test]
fn counts_are_stable_for_the_pinned_wheels() {
    let ex = extracted().expect("extraction");
    let c = &ex.counts;
    assert_eq!(c.module_files, 8868);
    assert_eq!(c.catalogue_modules, 8866);
    assert_eq!(c.with_examples, 8866);
    assert_eq!(c.collections, 88);
    assert_eq!(c.tasks_with_name_and_module, 24738);
    assert_eq!(c.unknown_module, 837);
    assert_eq!(c.undocumented_arguments, 1768);
    assert_eq!(c.duplicates_removed, 387);
    assert_eq!(c.pairs, 21746);
    let sizes: Vec<usize> = [Split::Train, Split::Validation, Split::Test]
        .iter()
        .map(|&s| pairs(s, SplitBy::Module).expect("pairs").len())
        .collect();
    assert_eq!(sizes, [17483, 2195, 2068]);
    // Malformed blocks are reported (three EXAMPLES that are not YAML) and skipped.
    let bad_yaml = ex.problems.iter().filter(|p| p.what.starts_with("EXAMPLES is not valid YAML")).count();
    assert_eq!(bad_yaml, 3, "{:?}", ex.problems);
}

#[test]
fn the_validators_accept_every_extracted_task() {
    let ex = extracted().expect("extraction");
    let docs = plinth_plugin_codegen::extract::documentation_pairs(&ex.catalogue);
    assert_eq!(docs.len(), 8866, "every module has a short_description");
    for p in ex.pairs.iter().chain(&docs) {
        let check = check_task(&p.text(), &ex.catalogue, None);
        assert!(check.ansible_aware(), "{}:\n{}\n{check:?}", p.source, p.text());
        assert_eq!(check.module.as_deref(), Some(p.module.as_str()));
    }
}

#[test]
fn no_module_file_or_collection_straddles_the_split() {
    use std::collections::HashSet;
    let collection = |source: &str| source.rsplit_once('.').map_or(String::new(), |(c, _)| c.to_string());
    let test: HashSet<String> =
        pairs(Split::Test, SplitBy::Module).expect("pairs").into_iter().map(|p| p.source).collect();
    assert!(pairs(Split::Train, SplitBy::Module).expect("pairs").iter().all(|p| !test.contains(&p.source)));
    let test: HashSet<String> =
        pairs(Split::Test, SplitBy::Collection).expect("pairs").iter().map(|p| collection(&p.source)).collect();
    assert!(pairs(Split::Train, SplitBy::Collection)
        .expect("pairs")
        .iter()
        .all(|p| !test.contains(&collection(&p.source))));
}
