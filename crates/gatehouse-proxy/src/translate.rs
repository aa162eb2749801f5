//! Providers that speak another API than the chain's (OpenAI's Chat Completions): Anthropic's
//! Messages, Google's Gemini and AWS Bedrock's Converse. The route gate writes the checked request
//! in the provider's format (so what cannot be translated is refused before anything is spent); its
//! answer and its stream are read back as Chat Completions, so the response half of the chain
//! (output guardrails, usage, budgets) sees the one format it checks. The translations
//! themselves are pure and live in `gatehouse_providers::chat`.

use bytes::Bytes;
use futures_util::StreamExt;
use gatehouse_core::{DenyCode, HasDenyCode};
use gatehouse_providers::Usage;
use gatehouse_providers::chat::{ChunkDecoder, Family, openai, response_of};
use serde_json::Value;

/// A provider's whole answer in `family`'s format as a Chat Completions answer, with its usage
/// (every input token counted, cached or not). `id` and `model` name an answer whose provider
/// names neither.
pub fn chat_answer(
    family: Family,
    body: &[u8],
    id: &str,
    model: &str,
    created: u64,
) -> Result<(Bytes, Usage), DenyCode> {
    let Ok(Value::Object(o)) = serde_json::from_slice::<Value>(body) else { return Err(DenyCode::UpstreamError) };
    let mut r = response_of(family, &o).map_err(|e| e.deny_code())?;
    if r.id.is_empty() {
        r.id = format!("chatcmpl-{id}");
    }
    if r.model.is_empty() {
        model.clone_into(&mut r.model);
    }
    let v = openai::response_to(&r, created).map_err(|e| e.deny_code())?;
    Ok((Bytes::from(v.to_string()), r.usage.into()))
}

/// A provider's stream through its family's decoder, as a Chat Completions stream for the
/// chain's stream inspection. The provider's transport errors pass through (the inspection
/// judges them); a stream that breaks its protocol ends with an error event; one cut short
/// simply ends (the inspection sees it cut).
pub fn chat_chunks<S>(
    inner: S,
    decoder: Box<dyn ChunkDecoder>,
) -> impl futures_util::Stream<Item = Result<Bytes, reqwest::Error>> + use<S>
where
    S: futures_util::Stream<Item = Result<Bytes, reqwest::Error>> + Unpin,
{
    futures_util::stream::unfold((inner, decoder), |(mut inner, mut decoder)| async move {
        if decoder.ended() {
            return None;
        }
        let mut out = Vec::new();
        loop {
            match inner.next().await {
                Some(Ok(chunk)) => decoder.feed(&chunk, &mut out),
                Some(Err(e)) => return Some((Err(e), (inner, decoder))),
                None => {
                    decoder.end(&mut out);
                    if out.is_empty() {
                        return None;
                    }
                }
            }
            if !out.is_empty() {
                return Some((Ok(Bytes::from(out)), (inner, decoder)));
            }
        }
    })
}
