//! Core values to JS values: the events that travel beside the event log (`crate::event`),
//! appended to the array `drain` returns, in record order.

use napi::bindgen_prelude::*;

use crate::event::{Event, OpenInfo};

/// Appends the JS values of `ev`: an `info` object for an open; `info` and a `string[]` of
/// offered subprotocols for a verify; a string or Buffer for a large message; nothing for idle.
pub fn beside(env: &Env, out: &mut Array, i: &mut u32, ev: Event) -> Result<()> {
    let mut put = |v: Unknown| -> Result<()> {
        out.set(*i, v)?;
        *i += 1;
        Ok(())
    };
    match ev {
        Event::Open(info) => put(open_info(env, &info)?),
        Event::Verify(info, offered) => {
            put(open_info(env, &info)?)?;
            let mut arr = env.create_array(offered.len() as u32)?;
            for (n, p) in offered.iter().enumerate() {
                arr.set(n as u32, p.as_str())?;
            }
            put(arr.to_unknown())
        }
        Event::Text(_, s) => put(env.create_string(&s)?.to_unknown()),
        Event::Binary(_, b) => put(buffer(env, b)?),
        Event::Idle => Ok(()),
    }
}

fn buffer(env: &Env, data: Vec<u8>) -> Result<Unknown<'_>> {
    Ok(BufferSlice::from_data(env, data)?.to_unknown())
}

fn pairs<'e>(env: &'e Env, pairs: &[(String, String)]) -> Result<Array<'e>> {
    let mut arr = env.create_array((pairs.len() * 2) as u32)?;
    for (n, (k, v)) in pairs.iter().enumerate() {
        arr.set((2 * n) as u32, k.as_str())?;
        arr.set((2 * n + 1) as u32, v.as_str())?;
    }
    Ok(arr)
}

fn open_info<'e>(env: &'e Env, info: &OpenInfo) -> Result<Unknown<'e>> {
    let mut o = Object::new(env)?;
    o.set("route", info.route.0)?;
    o.set("method", info.method.as_str())?;
    o.set("url", info.target.as_str())?;
    o.set("headers", pairs(env, &info.headers)?)?;
    o.set("params", pairs(env, &info.params)?)?;
    o.set("query", pairs(env, &info.query)?)?;
    o.set("remoteAddress", info.remote.ip().to_string())?;
    o.set("remotePort", info.remote.port() as u32)?;
    o.set("protocol", info.protocol.as_deref().unwrap_or(""))?;
    Ok(o.to_unknown())
}
