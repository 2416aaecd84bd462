//! Core values to JS values: the messages that travel beside the event log (`crate::event`),
//! appended to the array `drain` returns, in record order.

use napi::bindgen_prelude::*;

use crate::event::Event;

/// Appends the JS value of `ev`: a string or a Buffer.
pub fn beside(env: &Env, out: &mut Array, i: &mut u32, ev: Event) -> Result<()> {
    let v = match ev {
        Event::Text(_, s) => env.create_string(&s)?.to_unknown(),
        Event::Binary(_, b) => BufferSlice::from_data(env, b)?.to_unknown(),
    };
    out.set(*i, v)?;
    *i += 1;
    Ok(())
}
