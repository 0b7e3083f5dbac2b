//! `plinth curate`: a corpus through plinth-curate's stages into a clean corpus and a report.

use anyhow::Result;

use super::plugin_data;

pub fn curate(config: &std::path::Path) -> Result<()> {
    let file = plinth_curate::CurateFile::from_path(config)?;
    let cache = plinth_data::cache_dir();
    let plugins = match &file.corpus {
        plinth_data::CorpusSource::Plugin(_) => Some(plugin_data()?),
        _ => None,
    };
    let corpus = plinth_data::load_corpus(
        &file.corpus,
        &cache,
        plugins.as_ref().map(|p| p as &dyn plinth_plugin_protocol::Plugins),
    )?;
    let curator = plinth_curate::Curator::new(file.curate, &cache)?;
    let (kept, report) = curator.run(corpus.documents);
    plinth_curate::write_outputs(&file.out_dir, &kept, &report)?;
    let md = report.markdown();
    print!("{}", md.split("\n## ").next().unwrap_or_default());
    println!(
        "curated corpus in {}, report in {}",
        file.out_dir.join(plinth_curate::CURATED_FILE).display(),
        file.out_dir.join(plinth_curate::REPORT_MD).display()
    );
    Ok(())
}
