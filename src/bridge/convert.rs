//! Core values to JS values. Events become a flat array so one batch is one JS array:
//! `kind, id, ...fields`, with the fields per kind listed on `Kind`.

use napi::bindgen_prelude::*;

use crate::event::{Event, OpenInfo};

/// Event kinds as JS sees them (kept in step with `lib/native.js`).
#[repr(u32)]
enum Kind {
    /// `info` object
    Open = 0,
    /// `string`
    Text = 1,
    /// `Buffer`
    Binary = 2,
    /// `Buffer`
    Ping = 3,
    /// `Buffer`
    Pong = 4,
    /// `code, reason`
    Close = 5,
    /// nothing
    Drain = 6,
    /// `info` object and `string[]` of offered subprotocols; the id is the ticket to answer
    Verify = 7,
    /// nothing; the id is 0
    Idle = 8,
}

pub fn event(env: &Env, out: &mut Array, i: &mut u32, ev: Event) -> Result<()> {
    let mut put = |out: &mut Array, v: Unknown| -> Result<()> {
        out.set(*i, v)?;
        *i += 1;
        Ok(())
    };
    let head = |kind: Kind, id: u64| -> Result<(Unknown, Unknown)> {
        Ok((env.create_uint32(kind as u32)?.to_unknown(), env.create_double(id as f64)?.to_unknown()))
    };
    let (k, id, a, b) = match ev {
        Event::Open(info) => {
            let (k, id) = head(Kind::Open, info.conn.0)?;
            (k, id, open_info(env, &info)?, None)
        }
        Event::Text(c, s) => {
            let (k, id) = head(Kind::Text, c.0)?;
            (k, id, env.create_string(&s)?.to_unknown(), None)
        }
        Event::Binary(c, b) => {
            let (k, id) = head(Kind::Binary, c.0)?;
            (k, id, buffer(env, b)?, None)
        }
        Event::Ping(c, b) => {
            let (k, id) = head(Kind::Ping, c.0)?;
            (k, id, buffer(env, b)?, None)
        }
        Event::Pong(c, b) => {
            let (k, id) = head(Kind::Pong, c.0)?;
            (k, id, buffer(env, b)?, None)
        }
        Event::Close(c, code, reason) => {
            let (k, id) = head(Kind::Close, c.0)?;
            (k, id, env.create_uint32(code as u32)?.to_unknown(), Some(env.create_string(&reason)?.to_unknown()))
        }
        Event::Verify(info, offered) => {
            let (k, id) = head(Kind::Verify, info.conn.0)?;
            let mut arr = env.create_array(offered.len() as u32)?;
            for (n, p) in offered.iter().enumerate() {
                arr.set(n as u32, p.as_str())?;
            }
            (k, id, open_info(env, &info)?, Some(arr.to_unknown()))
        }
        Event::Idle => {
            let (k, id) = head(Kind::Idle, 0)?;
            (k, id, env.create_uint32(0)?.to_unknown(), None)
        }
        Event::Drain(c) => {
            let (k, id) = head(Kind::Drain, c.0)?;
            (k, id, env.create_uint32(0)?.to_unknown(), None)
        }
    };
    put(out, k)?;
    put(out, id)?;
    put(out, a)?;
    if let Some(b) = b {
        put(out, b)?;
    }
    Ok(())
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
