//! plinth's feature tests, one binary so libtorch is linked once.

mod config_errors;
mod dependencies;
mod finetune;
mod generation;
mod heads;
mod interop;
mod lora;
mod model;
mod plugin_faults;
mod plugins;
mod scripts;
mod tokenizer_python;
mod training;
