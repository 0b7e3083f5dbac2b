//! Guided decoding's wire types: the host asks a guide component what a completion
//! may continue with ([`GuideRequest`]) and it answers a [`Step`]. The host turns a
//! step into a token mask (`plinth-generate`); the guide sees only text.

use serde::{Deserialize, Serialize};

/// What the host tells a guide before each token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GuideRequest {
    pub prompt: String,
    /// The text generated so far, prompt excluded.
    pub completion: String,
    /// The task's data request (split and options), so the guide knows which
    /// split the model was trained on.
    #[serde(default)]
    pub request: serde_json::Map<String, serde_json::Value>,
}

/// What may come next.
///
/// * `free`: any token (with `single_line`, none that would begin the content of
///   a new line, so a line-oriented guide is asked again at every line start;
///   with `line_end: false`, none with a newline at all);
/// * `allow`: only tokens that keep the text on the way to one of `options`; a
///   token may run past the end of an option only with whitespace;
/// * `pick`: the host scores every option in full (sum of the model's
///   log-probabilities of its tokens, plus the guide's `prior` for it) and
///   appends the best one whole.
///
/// `eos` says whether the completion may end there. `next_lines` (on `free` and
/// `allow`) are the starts the next line may take.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Step {
    Free {
        #[serde(default = "yes")]
        eos: bool,
        #[serde(default)]
        single_line: bool,
        #[serde(default)]
        next_lines: Vec<String>,
        /// False: no token with a newline (the line is not finished: an open quote, say).
        #[serde(default = "yes")]
        line_end: bool,
    },
    Allow {
        options: Vec<String>,
        #[serde(default)]
        eos: bool,
        #[serde(default)]
        next_lines: Vec<String>,
    },
    Pick {
        options: Vec<String>,
        /// One number per option added to its log-probability (empty: none).
        #[serde(default)]
        prior: Vec<f64>,
    },
}

fn yes() -> bool {
    true
}
