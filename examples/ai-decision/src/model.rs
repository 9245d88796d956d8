//! The tiny model: next-token logits by previous token, biased by feature words of the prompt,
//! sampled at a temperature with a seeded RNG. Everything that decides an output is an input:
//! the model file, the prompt template, the parameters, the seed and the request — nothing is
//! read from the clock or the OS — and the arithmetic uses only IEEE-754's basic operations, so
//! the same inputs give the same bytes on every machine.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// The model file (`model/tiny-credit-lm-1.0.0.json`).
#[derive(Debug, Deserialize)]
pub struct Model {
    pub format: String,
    pub name: String,
    pub version: String,
    /// Logits in thousandths: previous token → next token → logit.
    pub bigram: BTreeMap<String, BTreeMap<String, i64>>,
    /// A word of the prompt → next token → bias added to its logit, whatever came before.
    pub features: BTreeMap<String, BTreeMap<String, i64>>,
}

/// The sampling parameters (`config/params.toml`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    pub temperature: f64,
    pub max_tokens: usize,
}

/// One request (a payload on the `credit-requests` topic).
#[derive(Debug, Deserialize)]
pub struct Request {
    pub id: String,
    #[serde(flatten)]
    pub fields: BTreeMap<String, serde_json::Value>,
}

/// One decision: the output whose bytes the audit reproduces.
#[derive(Debug, Serialize)]
pub struct Decision<'a> {
    pub request: &'a str,
    pub model: String,
    pub decision: String,
}

const START: &str = "<start>";
const END: &str = "<end>";

impl Model {
    pub fn parse(bytes: &[u8]) -> Result<Model, String> {
        let m: Model =
            serde_json::from_slice(bytes).map_err(|e| format!("not a tiny-lm model: {e}"))?;
        if m.format != "tiny-lm.v1" {
            return Err(format!(
                "model format {:?}, expected \"tiny-lm.v1\"",
                m.format
            ));
        }
        Ok(m)
    }

    /// The output for `request`: the prompt rendered from `template`, tokens sampled until
    /// `<end>` or `max_tokens`, as one JSON line.
    pub fn decide(
        &self,
        template: &str,
        params: &Params,
        seed: &[u8],
        request: &Request,
    ) -> Vec<u8> {
        let prompt = render(template, request);
        let features: Vec<&BTreeMap<String, i64>> = prompt
            .split_whitespace()
            .filter_map(|w| self.features.get(w))
            .collect();
        let mut rng = SplitMix64::seeded(seed, &request.id);
        let mut prev = START.to_string();
        let mut words = Vec::new();
        for _ in 0..params.max_tokens {
            let next = self.next_token(&prev, &features, params.temperature, &mut rng);
            if next == END {
                break;
            }
            words.push(next.clone());
            prev = next;
        }
        let decision = Decision {
            request: &request.id,
            model: format!("{}@{}", self.name, self.version),
            decision: words.join(" "),
        };
        let mut out = serde_json::to_vec(&decision).unwrap_or_default();
        out.push(b'\n');
        out
    }

    fn next_token(
        &self,
        prev: &str,
        features: &[&BTreeMap<String, i64>],
        temperature: f64,
        rng: &mut SplitMix64,
    ) -> String {
        let mut logits: BTreeMap<&str, i64> = match self.bigram.get(prev) {
            Some(next) => next.iter().map(|(t, l)| (t.as_str(), *l)).collect(),
            None => return END.to_string(),
        };
        for f in features {
            for (token, bias) in *f {
                if let Some(l) = logits.get_mut(token.as_str()) {
                    *l += bias;
                }
            }
        }
        let Some(max) = logits.values().copied().max() else {
            return END.to_string();
        };
        if temperature <= 0.0 {
            // Greedy: the first token (in name order) with the largest logit.
            return logits
                .iter()
                .find(|(_, l)| **l == max)
                .map_or(END, |(t, _)| *t)
                .to_string();
        }
        let weights: Vec<(&str, f64)> = logits
            .iter()
            .map(|(t, l)| (*t, exp_nonpositive((l - max) as f64 / 1000.0 / temperature)))
            .collect();
        let total: f64 = weights.iter().map(|(_, w)| w).sum();
        let mut u = rng.next_unit() * total;
        for (t, w) in &weights {
            if u < *w {
                return t.to_string();
            }
            u -= w;
        }
        weights.last().map_or(END, |(t, _)| t).to_string()
    }
}

/// Replaces each `{field}` of the template with the request's field (strings as they are,
/// anything else as JSON).
pub fn render(template: &str, request: &Request) -> String {
    let mut out = template.replace("{id}", &request.id);
    for (k, v) in &request.fields {
        let text = match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        out = out.replace(&format!("{{{k}}}"), &text);
    }
    out
}

/// e^x for x <= 0, with only +, -, * and / (exactly rounded by IEEE 754 everywhere), where
/// `f64::exp` would call the platform's libm, whose last bit may differ between machines.
pub fn exp_nonpositive(x: f64) -> f64 {
    if x.is_nan() || x < -700.0 {
        return 0.0;
    }
    // x = k·ln2 + r, |r| <= ln2/2; e^r by its Taylor series; 2^k by halving.
    let k = (x / std::f64::consts::LN_2).round();
    let r = x - k * std::f64::consts::LN_2;
    let (mut term, mut sum) = (1.0f64, 1.0f64);
    for i in 1..=18 {
        term = term * r / f64::from(i);
        sum += term;
    }
    let mut scale = 1.0f64;
    let mut n = -k as i64;
    while n > 0 {
        scale *= 0.5;
        n -= 1;
    }
    sum * scale
}

/// SplitMix64, seeded with SHA-256 of the captured seed and the request id: one stream per
/// request, so requests can be replayed one by one, in any order.
#[derive(Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn seeded(seed: &[u8], request_id: &str) -> SplitMix64 {
        let mut h = Sha256::new();
        h.update(b"tiny-lm:v1\0");
        h.update((seed.len() as u64).to_be_bytes());
        h.update(seed);
        h.update(request_id.as_bytes());
        let d = h.finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&d[..8]);
        SplitMix64(u64::from_be_bytes(first))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1), 53 bits.
    pub fn next_unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_close_to_libm() {
        for i in 0..2000 {
            let x = -(i as f64) / 37.0;
            let (a, b) = (exp_nonpositive(x), x.exp());
            assert!((a - b).abs() <= b * 1e-14 + 1e-300, "{x}: {a} vs {b}");
        }
        assert_eq!(exp_nonpositive(0.0), 1.0);
        assert_eq!(exp_nonpositive(-1000.0), 0.0);
    }

    fn model() -> Model {
        Model::parse(include_bytes!("../model/tiny-credit-lm-1.0.0.json"))
            .expect("the model parses")
    }

    fn request(json: &str) -> Request {
        serde_json::from_str(json).expect("a request")
    }

    #[test]
    fn the_same_inputs_give_the_same_bytes_and_the_seed_matters() {
        let m = model();
        let template = include_str!("../config/prompt-template.txt");
        let params = Params {
            temperature: 0.8,
            max_tokens: 10,
        };
        let r = request(
            r#"{"id":"loan-1","applicant":"A-1","income":"high","debt":"low","history":"long"}"#,
        );
        let a = m.decide(template, &params, b"seed-1", &r);
        assert_eq!(a, m.decide(template, &params, b"seed-1", &r));
        let outputs: std::collections::BTreeSet<Vec<u8>> = (0..32u8)
            .map(|s| m.decide(template, &params, &[s], &r))
            .collect();
        assert!(outputs.len() > 1, "the seed never changed the output");
        let text = String::from_utf8(a).expect("UTF-8");
        assert!(
            text.starts_with(r#"{"request":"loan-1","model":"tiny-credit-lm@1.0.0","decision":""#),
            "{text}"
        );
    }

    #[test]
    fn at_temperature_zero_the_model_is_greedy() {
        let m = model();
        let params = Params {
            temperature: 0.0,
            max_tokens: 10,
        };
        let r = request(r#"{"id":"x","income":"high","debt":"low","history":"long"}"#);
        let out = m.decide(
            "income:{income} debt:{debt} history:{history}",
            &params,
            b"any",
            &r,
        );
        assert_eq!(
            String::from_utf8(out).expect("UTF-8"),
            "{\"request\":\"x\",\"model\":\"tiny-credit-lm@1.0.0\",\"decision\":\"approve low risk because income is strong .\"}\n"
        );
    }
}
