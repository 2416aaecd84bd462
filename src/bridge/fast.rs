//! The per-message sends, the admission of each new connection and the two calls of every
//! event batch (drain, uncork), as plain N-API functions. They are the hottest calls JS makes,
//! so they skip the class machinery of generated methods (unwrapping `this` and borrow
//! tracking cost thousands of instructions a call) and the allocation of a `String` per
//! message: each function carries the server's JS-thread state as its data pointer, and a
//! string is encoded into a reused buffer.

use std::cell::RefCell;
use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::rc::Rc;

use napi::bindgen_prelude::{Array, Env, ToNapiValue};
use napi::sys;

use super::conn_id;
use super::convert;
use super::local::Local;
use crate::event::{record_len, INLINE_MAX};
use crate::protocol::frame;

/// Strings up to this many UTF-16 units are encoded into the reused buffer at once (3 bytes
/// of UTF-8 per unit at most); longer ones are measured first.
const SCRATCH_UNITS: usize = 64 * 1024;

type State = Rc<RefCell<Local>>;

/// `{ sendText(id, string), sendBinary(id, bytes), admit(id), drain(arena), uncork() }` bound
/// to `state`. The sends return whether the frame was taken without passing the backpressure
/// limit (see `Local::send`); `admit` is `Hub::admit`; `drain` and `uncork` are
/// `Local::drain` and `Local::uncork` (see `NativeServer::fast_path`).
pub fn functions(env: sys::napi_env, state: &State) -> napi::Result<sys::napi_value> {
    unsafe {
        let mut obj = ptr::null_mut();
        check(sys::napi_create_object(env, &mut obj))?;
        for (name, cb) in [(c"sendText", send_text as unsafe extern "C" fn(_, _) -> _), (c"sendBinary", send_binary), (c"admit", admit), (c"drain", drain), (c"uncork", uncork)] {
            let data = Box::into_raw(Box::new(state.clone())) as *mut c_void;
            let mut f = ptr::null_mut();
            if let Err(e) = check(sys::napi_create_function(env, name.as_ptr(), -1, Some(cb), data, &mut f)) {
                drop(Box::from_raw(data as *mut State));
                return Err(e);
            }
            // The state lives as long as the function does.
            if let Err(e) = check(sys::napi_add_finalizer(env, f, data, Some(finalize), ptr::null_mut(), ptr::null_mut())) {
                drop(Box::from_raw(data as *mut State));
                return Err(e);
            }
            check(sys::napi_set_named_property(env, obj, name.as_ptr(), f))?;
        }
        Ok(obj)
    }
}

fn check(status: sys::napi_status) -> napi::Result<()> {
    if status == sys::Status::napi_ok {
        Ok(())
    } else {
        Err(napi::Error::from_reason(format!("N-API call failed with status {status}")))
    }
}

unsafe extern "C" fn finalize(_env: sys::napi_env, data: *mut c_void, _hint: *mut c_void) {
    drop(Box::from_raw(data as *mut State));
}

/// The call's state and its `N` arguments; None if N-API refuses or arguments are missing.
unsafe fn call<'a, const N: usize>(env: sys::napi_env, info: sys::napi_callback_info) -> Option<(&'a State, [sys::napi_value; N])> {
    let mut argc = N;
    let mut argv = [ptr::null_mut(); N];
    let mut data = ptr::null_mut();
    if sys::napi_get_cb_info(env, info, &mut argc, argv.as_mut_ptr(), ptr::null_mut(), &mut data) != sys::Status::napi_ok || data.is_null() || argc < N {
        return None;
    }
    Some((&*(data as *const State), argv))
}

/// The call's state, its first argument (a connection id) and its `N - 1` others; None if
/// N-API refuses or arguments are missing.
unsafe fn args<'a, const N: usize>(env: sys::napi_env, info: sys::napi_callback_info) -> Option<(&'a State, f64, [sys::napi_value; N])> {
    let (state, argv) = call::<N>(env, info)?;
    let mut id = 0.0;
    if sys::napi_get_value_double(env, argv[0], &mut id) != sys::Status::napi_ok {
        return None;
    }
    Some((state, id, argv))
}

unsafe fn boolean(env: sys::napi_env, v: bool) -> sys::napi_value {
    let mut out = ptr::null_mut();
    sys::napi_get_boolean(env, v, &mut out);
    out
}

/// Runs `f` so that a panic becomes `false` instead of unwinding into Node.
fn guarded(f: impl FnOnce() -> bool) -> bool {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(false)
}

unsafe extern "C" fn send_text(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    let sent = guarded(|| {
        let Some((state, id, [_, value])) = args::<2>(env, info) else { return false };
        let Ok(mut local) = state.try_borrow_mut() else { return false };
        let mut units = 0usize;
        if sys::napi_get_value_string_utf16(env, value, ptr::null_mut(), 0, &mut units) != sys::Status::napi_ok {
            return false;
        }
        // Room for the longest UTF-8 the string can have, or its measured length.
        let room = if units <= SCRATCH_UNITS {
            units * 3 + 1
        } else {
            let mut bytes = 0usize;
            if sys::napi_get_value_string_utf8(env, value, ptr::null_mut(), 0, &mut bytes) != sys::Status::napi_ok {
                return false;
            }
            bytes + 1
        };
        let mut scratch = std::mem::take(&mut local.scratch);
        if scratch.len() < room {
            scratch.resize(room, 0);
        }
        let mut len = 0usize;
        let ok = sys::napi_get_value_string_utf8(env, value, scratch.as_mut_ptr() as *mut _, room, &mut len) == sys::Status::napi_ok;
        let sent = ok && local.send(conn_id(id), frame::OP_TEXT, &scratch[..len]);
        if scratch.len() > 4 * SCRATCH_UNITS {
            // Do not keep the memory of one huge message.
            scratch = Vec::new();
        }
        local.scratch = scratch;
        sent
    });
    boolean(env, sent)
}

unsafe extern "C" fn send_binary(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    let sent = guarded(|| {
        let Some((state, id, [_, value])) = args::<2>(env, info) else { return false };
        let Ok(mut local) = state.try_borrow_mut() else { return false };
        let mut data = ptr::null_mut();
        let mut len = 0usize;
        if sys::napi_get_buffer_info(env, value, &mut data, &mut len) != sys::Status::napi_ok {
            return false;
        }
        let bytes = if len == 0 || data.is_null() { &[][..] } else { std::slice::from_raw_parts(data as *const u8, len) };
        local.send(conn_id(id), frame::OP_BINARY, bytes)
    });
    boolean(env, sent)
}

unsafe extern "C" fn admit(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    let admitted = guarded(|| {
        let Some((state, id, [_])) = args::<1>(env, info) else { return false };
        let Ok(local) = state.try_borrow() else { return false };
        local.hub.admit(conn_id(id))
    });
    boolean(env, admitted)
}

/// `drain(arena)`: copies waiting events into the arena Buffer as records (see `crate::event`).
/// Returns the bytes written, or, when events travel beside the records,
/// `[bytes, ...those events]`. Throws if the arena is too small or the state is in use.
unsafe extern "C" fn drain(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    let result = catch_unwind(AssertUnwindSafe(|| -> Result<sys::napi_value, &'static str> {
        let Some((state, [arena])) = call::<1>(env, info) else { return Err("drain(arena) needs the event arena") };
        let mut data = ptr::null_mut();
        let mut len = 0usize;
        if sys::napi_get_buffer_info(env, arena, &mut data, &mut len) != sys::Status::napi_ok || data.is_null() {
            return Err("the event arena must be a Buffer");
        }
        if len < record_len(INLINE_MAX) {
            return Err("the event arena is too small");
        }
        let arena = std::slice::from_raw_parts_mut(data as *mut u8, len);
        let Ok(mut local) = state.try_borrow_mut() else { return Err("drain() called while the engine's state is in use") };
        let drained = local.drain(arena);
        drop(local);
        if drained.beside.is_empty() {
            let mut out = ptr::null_mut();
            if sys::napi_create_double(env, drained.filled as f64, &mut out) != sys::Status::napi_ok {
                return Err("could not create the count of event bytes");
            }
            return Ok(out);
        }
        let js = Env::from_raw(env);
        let built = (|| -> napi::Result<sys::napi_value> {
            let mut array = js.create_array(1 + drained.beside.len() as u32)?;
            array.set(0, drained.filled as f64)?;
            let mut i = 1;
            for ev in drained.beside {
                convert::beside(&js, &mut array, &mut i, ev)?;
            }
            Array::to_napi_value(env, array)
        })();
        built.map_err(|_| "could not create the events beside the arena")
    }));
    match result {
        Ok(Ok(value)) => value,
        Ok(Err(message)) => throw(env, message),
        Err(_) => throw(env, "the engine failed while handing over events"),
    }
}

/// `uncork()`: ends a batch (see `Local::uncork`). Returns true when more events wait.
unsafe extern "C" fn uncork(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    let more = guarded(|| {
        let Some((state, [])) = call::<0>(env, info) else { return false };
        let Ok(mut local) = state.try_borrow_mut() else { return false };
        local.uncork()
    });
    boolean(env, more)
}

/// Throws a JS Error with `message`; returns the undefined value N-API expects then.
unsafe fn throw(env: sys::napi_env, message: &str) -> sys::napi_value {
    let text = std::ffi::CString::new(message).unwrap_or_default();
    sys::napi_throw_error(env, ptr::null(), text.as_ptr());
    ptr::null_mut()
}
